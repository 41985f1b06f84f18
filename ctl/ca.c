/*
 * sluicectl ca init DIR --policy POLICY [--days N] | ca show DIR: the
 * inspect-mode CA, name-constrained to the policy's inspect rules (certs/).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "ctl.h"

static int ca_cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"days", required_argument, NULL, 'd'},
        {NULL, 0, NULL, 0},
    };
    const char *policy = NULL;
    unsigned long days = CA_DAYS_DEFAULT;
    char err[CA_ERR_MAX], path[4096], *end;
    struct ca_info info;
    struct policy *p;
    int c, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'p') {
            policy = optarg;
        } else if (c == 'd') {
            days = strtoul(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end || days < 1 || days > CA_DAYS_MAX)
                return log_usage("--days '%s' is not a number of days (1-%u)", optarg,
                                 CA_DAYS_MAX);
        } else {
            return log_usage("ca init: unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1 || !policy)
        return log_usage("ca init takes DIR and --policy POLICY");
    p = ctl_load(policy);
    if (!p) {
        fprintf(stderr, "%s: invalid policy; fix it first ('sluicectl check')\n", policy);
        return LOG_EXIT_USAGE;
    }
    rc = ca_init(argv[optind], p, (unsigned)days, err);
    policy_free(p);
    if (rc < 0) {
        log_warnx("ca init: %s", err);
        return 1;
    }
    snprintf(path, sizeof(path), "%s/%s", argv[optind], CA_CERT_FILE);
    if (ca_read(path, &info, err) < 0) {
        log_warnx("ca init: %s", err);
        return 1;
    }
    printf("%s: CA made (its key is %s/%s, mode 0600: keep it to the proxy)\n", path,
           argv[optind], CA_KEY_FILE);
    ca_print(&info, stdout);
    ca_info_clear(&info);
    return 0;
}

static int ca_cmd_show(int argc, char **argv)
{
    char err[CA_ERR_MAX], path[4096];
    struct ca_info info;

    if (argc != 2)
        return log_usage("ca show takes DIR (or the certificate's path)");
    if (strlen(argv[1]) > 4 && strcmp(argv[1] + strlen(argv[1]) - 4, ".pem") == 0)
        snprintf(path, sizeof(path), "%s", argv[1]);
    else
        snprintf(path, sizeof(path), "%s/%s", argv[1], CA_CERT_FILE);
    if (ca_read(path, &info, err) < 0) {
        log_warnx("ca show: %s", err);
        return 1;
    }
    printf("%s\n", path);
    ca_print(&info, stdout);
    ca_info_clear(&info);
    return 0;
}

int cmd_ca(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "init") == 0)
        return ca_cmd_init(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "show") == 0)
        return ca_cmd_show(argc - 1, argv + 1);
    return log_usage("ca takes init or show");
}
