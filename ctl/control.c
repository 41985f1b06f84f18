/*
 * sluicectl --control PATH stats|flows|reload: one JSON request line to a
 * running proxy's control socket, its one JSON reply line printed for people
 * (or as it is, with --json).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "ctl.h"

#define CONTROL_REPLY_MAX (16u << 20)   /* flows of a busy proxy fit many times over */
#define CONTROL_TIMEOUT_S 10

/* Sends {"cmd": CMD} to the socket at PATH; returns the reply (malloc'd) or NULL. */
static char *control_ask(const char *path, const char *cmd, size_t *len)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct timeval tv = {CONTROL_TIMEOUT_S, 0};
    char req[64], *buf = NULL, *nb;
    size_t cap = 0, n = 0;
    ssize_t r;
    int fd, reqlen;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    strcpy(sun.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    reqlen = snprintf(req, sizeof(req), "{\"cmd\": \"%s\"}\n", cmd);
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
        connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        write(fd, req, (size_t)reqlen) != reqlen)
        goto fail;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            if (cap > CONTROL_REPLY_MAX || !(nb = realloc(buf, cap + 1))) {
                errno = EMSGSIZE;
                goto fail;
            }
            buf = nb;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0)
            goto fail;
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (n == 0) {
        free(buf);
        errno = ECONNRESET;
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
fail:
    r = errno;
    close(fd);
    free(buf);
    errno = (int)r;
    return NULL;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    yaml_node_pair_t *pair;

    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(doc, pair->key);

        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, pair->value);
    }
    return NULL;
}

static const char *map_str(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    yaml_node_t *v = map_get(doc, map, key);

    return v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : "-";
}

/* stats: every member as a "key  value" line, nested objects as "outer.inner". */
static void print_members(yaml_document_t *doc, yaml_node_t *map, const char *prefix)
{
    yaml_node_pair_t *pair;

    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(doc, pair->value);
        char name[128];

        if (!k || !v || k->type != YAML_SCALAR_NODE || strcmp((char *)k->data.scalar.value,
                                                               "ok") == 0)
            continue;
        snprintf(name, sizeof(name), "%s%s", prefix, (const char *)k->data.scalar.value);
        if (v->type == YAML_MAPPING_NODE) {
            strncat(name, ".", sizeof(name) - strlen(name) - 1);
            print_members(doc, v, name);
        } else if (v->type == YAML_SCALAR_NODE) {
            printf("%-44s %s\n", name, (const char *)v->data.scalar.value);
        }
    }
}

static void print_flows(yaml_document_t *doc, yaml_node_t *flows)
{
    yaml_node_item_t *it;

    /* DIALLED: the address the sandbox connected to; a virtual one (dns.answers:
     * virtual) is marked with a *, its HOST the name it was handed out for */
    printf("%-6s %-8s %-5s %-22s %-23s %-30s %-5s %-24s %10s %10s %8s\n", "ID", "STATE",
           "PROTO", "SOURCE", "DIALLED", "HOST", "PORT", "UPSTREAM", "UP", "DOWN", "AGE_S");
    if (!flows || flows->type != YAML_SEQUENCE_NODE)
        return;
    for (it = flows->data.sequence.items.start; it < flows->data.sequence.items.top; it++) {
        yaml_node_t *f = yaml_document_get_node(doc, *it);
        char dialled[64];

        snprintf(dialled, sizeof(dialled), "%s%s", map_str(doc, f, "orig_dst"),
                 strcmp(map_str(doc, f, "virtual"), "true") == 0 ? "*" : "");
        printf("%-6s %-8s %-5s %-22s %-23s %-30s %-5s %-24s %10s %10s %8.1f\n",
               map_str(doc, f, "id"), map_str(doc, f, "state"), map_str(doc, f, "proto"),
               map_str(doc, f, "src"), dialled, map_str(doc, f, "host"), map_str(doc, f, "port"),
               map_str(doc, f, "upstream"), map_str(doc, f, "bytes_up"),
               map_str(doc, f, "bytes_down"), strtod(map_str(doc, f, "age_ms"), NULL) / 1000);
    }
}

int cmd_control(int argc, char **argv)
{
    const char *path, *cmd;
    bool json = false;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    char *reply;
    size_t len;
    int rc = 1;

    if (argc == 4 && strcmp(argv[3], "--json") == 0)
        json = true;
    else if (argc != 3)
        return log_usage("--control takes PATH and one of stats, flows, reload");
    path = argv[1];
    cmd = argv[2];
    if (strcmp(cmd, "stats") != 0 && strcmp(cmd, "flows") != 0 && strcmp(cmd, "reload") != 0)
        return log_usage("unknown control command '%s' (stats, flows, reload)", cmd);
    reply = control_ask(path, cmd, &len);
    if (!reply) {
        fprintf(stderr, "sluicectl: %s: %s (is sluice-proxy running with --control %s? "
                "the socket is mode 0600: run as its owner)\n", path, strerror(errno), path);
        return 1;
    }
    if (!yaml_parser_initialize(&parser)) {
        free(reply);
        return 1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)reply, len);
    if (!yaml_parser_load(&parser, &doc)) {
        fprintf(stderr, "sluicectl: %s: the reply is not JSON: %.80s\n", path, reply);
        goto out_parser;
    }
    root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        fprintf(stderr, "sluicectl: %s: the reply is not a JSON object\n", path);
        goto out;
    }
    rc = strcmp(map_str(&doc, root, "ok"), "true") == 0 ? 0 : 1;
    if (json)
        fputs(reply, stdout);
    else if (rc != 0)
        fprintf(stderr, "sluicectl: %s %s: %s\n", path, cmd, map_str(&doc, root, "error"));
    else if (strcmp(cmd, "flows") == 0)
        print_flows(&doc, map_get(&doc, root, "flows"));
    else if (strcmp(cmd, "reload") == 0)
        printf("policy %s in force (%s)\n", map_str(&doc, root, "policy"),
               strcmp(map_str(&doc, root, "changed"), "true") == 0 ? "reloaded"
                                                                  : "the file is unchanged");
    else
        print_members(&doc, root, "");
out:
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
    free(reply);
    return rc;
}
