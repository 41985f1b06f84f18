/* Sandbox records under the run directory, and the lock. */
#include "state.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostport.h"

const char *state_dir(void)
{
    const char *d = getenv("SLUICE_RUN_DIR");

    return d && *d ? d : STATE_DEFAULT_DIR;
}

static int sandboxes_dir(char out[PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/sandboxes", state_dir());

    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static int make_dirs(void)
{
    char d[PATH_MAX];
    int r;

    if (mkdir(state_dir(), 0755) < 0 && errno != EEXIST)
        return -errno;
    if ((r = sandboxes_dir(d)) < 0)
        return r;
    if (mkdir(d, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int state_lock(void)
{
    char path[PATH_MAX];
    int fd, r;

    if ((r = make_dirs()) < 0)
        return r;
    snprintf(path, sizeof(path), "%s/lock", state_dir());
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            r = -errno;
            close(fd);
            return r;
        }
    }
    return fd;
}

void state_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

static int file_of(const char *name, char out[PATH_MAX])
{
    char d[PATH_MAX];
    int r = sandboxes_dir(d), n;

    if (r < 0)
        return r;
    n = snprintf(out, PATH_MAX, "%s/%s", d, name);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

static void net_host(const struct cidr *net, unsigned n, uint8_t out[16])
{
    size_t len = net->family == AF_INET ? 4 : 16;

    memset(out, 0, 16);
    memcpy(out, net->addr, len);
    out[len - 1] = (uint8_t)(out[len - 1] + n);   /* host bits are zero: no carry */
}

void sandbox_gateway(const struct cidr *net, uint8_t out[16])
{
    net_host(net, 1, out);
}

void sandbox_address(const struct cidr *net, uint8_t out[16])
{
    net_host(net, 2, out);
}

const char *sandbox_mode_name(enum sandbox_mode m)
{
    return m == SANDBOX_ATTACH ? "attach" : m == SANDBOX_ISOLATED ? "isolated" : "netns";
}

struct forward *sandbox_find_forward(struct sandbox *s, uint8_t proto, const uint8_t addr[4],
                                uint16_t port)
{
    size_t i;

    for (i = 0; i < s->n_forwards; i++)
        if (s->forwards[i].proto == proto && s->forwards[i].port == port &&
            memcmp(s->forwards[i].addr, addr, 4) == 0)
            return &s->forwards[i];
    return NULL;
}

struct link *sandbox_find_link(struct sandbox *s, const char *peer)
{
    size_t i;

    for (i = 0; i < s->n_links; i++)
        if (strcmp(s->links[i].peer, peer) == 0)
            return &s->links[i];
    return NULL;
}

/* forward=tcp 127.0.0.1:8080 80 10.0.0.0/8,192.0.2.0/24 (or "-": any source) */
static void forward_write(FILE *f, const struct forward *fw)
{
    char key[FORWARD_KEY_LEN], net[CIDR_STRLEN];
    size_t i;

    forward_key(fw, key);
    fprintf(f, "forward=%s %u ", key, fw->to_port);
    for (i = 0; i < fw->n_from; i++) {
        cidr_format(&fw->from[i], net);
        fprintf(f, "%s%s", i ? "," : "", net);
    }
    fprintf(f, "%s\n", fw->n_from ? "" : "-");
}

static bool forward_read(char *v, struct forward *fw)
{
    char *proto, *at, *to, *from, *save = NULL, *tok;

    memset(fw, 0, sizeof(*fw));
    if (!(proto = strtok_r(v, " ", &save)) || !(at = strtok_r(NULL, " ", &save)) ||
        !(to = strtok_r(NULL, " ", &save)) || !(from = strtok_r(NULL, " ", &save)))
        return false;
    if (strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0)
        return false;
    fw->proto = strcmp(proto, "udp") == 0 ? IPPROTO_UDP : IPPROTO_TCP;
    if (!strchr(at, ':') || !forward_addr_parse(at, fw->addr, &fw->port) ||
        !port_parse(to, &fw->to_port))
        return false;
    if (strcmp(from, "-") == 0)
        return true;
    save = NULL;
    for (tok = strtok_r(from, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (fw->n_from == FORWARD_FROM_MAX || cidr_parse(tok, &fw->from[fw->n_from]) != CIDR_OK ||
            fw->from[fw->n_from].family != AF_INET)
            return false;
        fw->n_from++;
    }
    return true;
}

/* link=PEER 80,443 */
static bool link_read(char *v, struct link *l)
{
    char *sp = strchr(v, ' ');

    memset(l, 0, sizeof(*l));
    if (!sp)
        return false;
    *sp = '\0';
    return sandbox_name_valid(v) && snprintf(l->peer, sizeof(l->peer), "%s", v) > 0 &&
           link_ports_parse(sp + 1, l);
}

int state_save(const struct sandbox *s)
{
    char path[PATH_MAX], tmp[PATH_MAX + 8], net[CIDR_STRLEN], net6[CIDR_STRLEN];
    FILE *f;
    int r;

    if ((r = make_dirs()) < 0 || (r = file_of(s->name, path)) < 0)
        return r;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "we");
    if (!f)
        return -errno;
    if (s->mode == SANDBOX_ISOLATED) {
        fprintf(f, "name=%s\nmode=isolated\n", s->name);
    } else {
        cidr_format(&s->subnet, net);
        fprintf(f, "name=%s\nmode=%s\nhost_if=%s\nsandbox_if=%s\nsubnet=%s\n"
                "proxy_port=%u\ndns_port=%u\nmax_conntrack=%u\n", s->name,
                sandbox_mode_name(s->mode), s->host_if, s->sandbox_if, net, s->proxy_port,
                s->dns_port, s->max_conntrack);
    }
    if (s->v6) {
        cidr_format(&s->subnet6, net6);
        fprintf(f, "subnet6=%s\n", net6);
    }
    for (size_t i = 0; i < s->n_forwards; i++)
        forward_write(f, &s->forwards[i]);
    for (size_t i = 0; i < s->n_links; i++) {
        fprintf(f, "link=%s ", s->links[i].peer);
        for (size_t j = 0; j < s->links[i].n_ports; j++)
            fprintf(f, "%s%u", j ? "," : "", s->links[i].ports[j]);
        fprintf(f, "\n");
    }
    /* no fsync: the record describes kernel objects that a reboot removes too;
     * the rename below is what makes it whole or absent */
    if (fflush(f) != 0) {
        r = -errno;
        fclose(f);
        unlink(tmp);
        return r;
    }
    fclose(f);
    if (rename(tmp, path) < 0) {
        r = -errno;
        unlink(tmp);
        return r;
    }
    return 0;
}

static bool copy_str(char *dst, size_t len, const char *v)
{
    if (strlen(v) >= len)
        return false;
    strcpy(dst, v);
    return true;
}

int state_load(const char *name, struct sandbox *s)
{
    char path[PATH_MAX], line[512];
    bool ok = true, have_net = false;
    FILE *f;
    int r;

    if (!sandbox_name_valid(name))
        return -EINVAL;
    if ((r = file_of(name, path)) < 0)
        return r;
    f = fopen(path, "re");
    if (!f)
        return -errno;
    memset(s, 0, sizeof(*s));
    while (ok && fgets(line, sizeof(line), f)) {
        char *eq = strchr(line, '='), *v;

        line[strcspn(line, "\n")] = '\0';
        if (!eq) {
            ok = false;
            break;
        }
        *eq = '\0';
        v = eq + 1;
        if (strcmp(line, "name") == 0)
            ok = copy_str(s->name, sizeof(s->name), v) && strcmp(v, name) == 0;
        else if (strcmp(line, "mode") == 0)
            s->mode = strcmp(v, "attach") == 0 ? SANDBOX_ATTACH
                    : strcmp(v, "isolated") == 0 ? SANDBOX_ISOLATED : SANDBOX_NETNS;
        else if (strcmp(line, "host_if") == 0)
            ok = copy_str(s->host_if, sizeof(s->host_if), v);
        else if (strcmp(line, "sandbox_if") == 0)
            ok = copy_str(s->sandbox_if, sizeof(s->sandbox_if), v);
        else if (strcmp(line, "subnet") == 0)
            ok = have_net = cidr_parse(v, &s->subnet) == CIDR_OK;
        else if (strcmp(line, "subnet6") == 0)
            ok = s->v6 = cidr_parse(v, &s->subnet6) == CIDR_OK;
        else if (strcmp(line, "proxy_port") == 0)
            ok = port_parse(v, &s->proxy_port);
        else if (strcmp(line, "dns_port") == 0)
            ok = port_parse(v, &s->dns_port);
        else if (strcmp(line, "max_conntrack") == 0)
            ok = sscanf(v, "%u", &s->max_conntrack) == 1;
        else if (strcmp(line, "forward") == 0)
            ok = s->n_forwards < SANDBOX_FORWARDS_MAX &&
                 forward_read(v, &s->forwards[s->n_forwards++]);
        else if (strcmp(line, "link") == 0)
            ok = s->n_links < SANDBOX_LINKS_MAX && link_read(v, &s->links[s->n_links++]);
    }
    fclose(f);
    if (s->mode == SANDBOX_ISOLATED)
        return ok && s->name[0] ? 0 : -EINVAL;
    return ok && have_net && s->name[0] && s->host_if[0] ? 0 : -EINVAL;
}

int state_remove(const char *name)
{
    char path[PATH_MAX];
    int r = file_of(name, path);

    if (r < 0)
        return r;
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct sandbox *)a)->name, ((const struct sandbox *)b)->name);
}

int state_list(struct sandbox **out, size_t *n)
{
    char d[PATH_MAX];
    struct sandbox *v = NULL;
    size_t cap = 0;
    struct dirent *e;
    DIR *dir;
    int r;

    *out = NULL;
    *n = 0;
    if ((r = sandboxes_dir(d)) < 0)
        return r;
    dir = opendir(d);
    if (!dir)
        return errno == ENOENT ? 0 : -errno;
    while ((e = readdir(dir)) != NULL) {
        if (!sandbox_name_valid(e->d_name))
            continue;
        if (*n == cap) {
            struct sandbox *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof(*nv));

            if (!nv) {
                free(v);
                closedir(dir);
                return -ENOMEM;
            }
            v = nv;
            cap = cap ? cap * 2 : 16;
        }
        if (state_load(e->d_name, &v[*n]) == 0)
            (*n)++;
    }
    closedir(dir);
    qsort(v, *n, sizeof(*v), by_name);
    *out = v;
    return 0;
}
