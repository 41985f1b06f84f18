/*
 * Sandbox lifecycle. `up` records the sandbox first, then builds namespace,
 * veth, addresses, routes, policy routing and the nft batch; any failure
 * runs the same teardown that `down` runs, which removes only what exists,
 * so a rerun after a crash converges.
 */
#include "sandbox.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "netns.h"
#include "nft_rules.h"
#include "pool.h"
#include "rtnl.h"
#include "sandbox_int.h"

#define ETC_NETNS "/etc/netns"
#define SANDBOX_IF "eth0"

/* Notes the step about to be tried: if it fails, the message names it. */
void sandbox_note(struct ns_error *e, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->what, sizeof(e->what), fmt, ap);
    va_end(ap);
}

/* Keeps RT's call text as the error description when R is an error. */
int sandbox_rtnl_check(struct ns_error *e, const struct rtnl *rt, int r)
{
    if (r < 0)
        sandbox_note(e, "%s", rtnl_last_call(rt));
    return r;
}

static int write_file(struct ns_error *e, const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;
    size_t len = strlen(value);

    sandbox_note(e, "writing %s", path);
    if (fd < 0)
        return -errno;
    if (write(fd, value, len) != (ssize_t)len)
        r = -errno;
    close(fd);
    return r;
}

static int sysctl_if(struct ns_error *e, const char *ifname, const char *key, const char *value)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/%s", ifname, key);
    return write_file(e, path, value);
}

static void addr_text(int family, const uint8_t *a, char *out, size_t len)
{
    if (!inet_ntop(family, a, out, (socklen_t)len))
        snprintf(out, len, "?");
}

/* ---- printing ---- */

struct sandbox_view {
    char sandbox_addr[64], gateway_addr[64], sandbox_addr6[80], gateway_addr6[80];
    char proxy_listen[80], dns_listen[80];
};

static void view(const struct sandbox *s, struct sandbox_view *v)
{
    uint8_t gw[16], sb[16];
    char g[INET6_ADDRSTRLEN], a[INET6_ADDRSTRLEN];

    memset(v, 0, sizeof(*v));
    sandbox_gateway(&s->subnet, gw);
    sandbox_address(&s->subnet, sb);
    addr_text(AF_INET, gw, g, sizeof(g));
    addr_text(AF_INET, sb, a, sizeof(a));
    snprintf(v->gateway_addr, sizeof(v->gateway_addr), "%s/%u", g, s->subnet.len);
    snprintf(v->sandbox_addr, sizeof(v->sandbox_addr), "%s/%u", a, s->subnet.len);
    snprintf(v->proxy_listen, sizeof(v->proxy_listen), "%s:%u", g, s->proxy_port);
    snprintf(v->dns_listen, sizeof(v->dns_listen), "%s:%u", g, s->dns_port);
    if (s->v6) {
        sandbox_gateway(&s->subnet6, gw);
        sandbox_address(&s->subnet6, sb);
        addr_text(AF_INET6, gw, g, sizeof(g));
        addr_text(AF_INET6, sb, a, sizeof(a));
        snprintf(v->gateway_addr6, sizeof(v->gateway_addr6), "%s/%u", g, s->subnet6.len);
        snprintf(v->sandbox_addr6, sizeof(v->sandbox_addr6), "%s/%u", a, s->subnet6.len);
    }
}

void sandbox_print(const struct sandbox *s, bool json, FILE *out)
{
    struct sandbox_view v;
    bool ns = s->mode == SANDBOX_NETNS;

    if (s->mode == SANDBOX_ISOLATED) {
        fprintf(out, json ? "{\"netns\": \"%s\", \"mode\": \"isolated\"}\n"
                          : "netns=%s\nmode=isolated\n", s->name);
        return;
    }
    view(s, &v);
    if (!json) {
        fprintf(out, "netns=%s\nhost_if=%s\nsandbox_if=%s\nsandbox_addr=%s\n"
                "gateway_addr=%s\n", ns ? s->name : "", s->host_if, s->sandbox_if,
                v.sandbox_addr, v.gateway_addr);
        if (s->v6)
            fprintf(out, "sandbox_addr6=%s\ngateway_addr6=%s\n", v.sandbox_addr6,
                    v.gateway_addr6);
        fprintf(out, "proxy_listen=%s\ndns_listen=%s\n", v.proxy_listen, v.dns_listen);
        return;
    }
    /* Every value is from a closed alphabet (names, addresses): no escaping needed. */
    fprintf(out, "{\"netns\": ");
    fprintf(out, ns ? "\"%s\"" : "null", s->name);
    fprintf(out, ", \"host_if\": \"%s\", \"sandbox_if\": ", s->host_if);
    fprintf(out, ns ? "\"%s\"" : "null", s->sandbox_if);
    fprintf(out, ", \"sandbox_addr\": \"%s\", \"gateway_addr\": \"%s\"", v.sandbox_addr,
            v.gateway_addr);
    if (s->v6)
        fprintf(out, ", \"sandbox_addr6\": \"%s\", \"gateway_addr6\": \"%s\"",
                v.sandbox_addr6, v.gateway_addr6);
    fprintf(out, ", \"proxy_listen\": \"%s\", \"dns_listen\": \"%s\"}\n", v.proxy_listen,
            v.dns_listen);
}

void pod_print(const struct pod_opts *o, bool json, FILE *out)
{
    if (json)
        fprintf(out, "{\"mode\": \"pod\", \"proxy_uid\": %u, \"proxy_listen\": "
                "\"127.0.0.1:%u\", \"dns_listen\": \"127.0.0.1:%u\", \"metrics_port\": %u}\n",
                o->proxy_uid, o->proxy_port, o->dns_port, o->metrics_port);
    else
        fprintf(out, "mode=pod\nproxy_uid=%u\nproxy_listen=127.0.0.1:%u\n"
                "dns_listen=127.0.0.1:%u\nmetrics_port=%u\n", o->proxy_uid, o->proxy_port,
                o->dns_port, o->metrics_port);
}

/* ---- pieces shared by up, attach and down ---- */

/* A record written before --max-conntrack existed holds the default. */
static uint32_t conntrack_of(const struct sandbox *s)
{
    return s->max_conntrack ? s->max_conntrack : DEFAULT_MAX_CONNTRACK;
}

void sandbox_nft_view(const struct sandbox *s, struct nft_sandbox *n)
{
    uint8_t gw[16];

    memset(n, 0, sizeof(*n));
    n->name = s->name;
    n->ifname = s->host_if;
    sandbox_gateway(&s->subnet, gw);
    memcpy(n->gw4, gw, 4);
    sandbox_address(&s->subnet, gw);
    memcpy(n->addr4, gw, 4);
    n->v6 = s->v6;
    if (s->v6) {
        sandbox_gateway(&s->subnet6, n->gw6);
        sandbox_address(&s->subnet6, n->addr6);
    }
    n->proxy_port = s->proxy_port;
    n->dns_port = s->dns_port;
    n->max_conntrack = conntrack_of(s);
}

static int nft_commit_keep(struct ns_error *e, struct nft_batch *b, struct nft_socket **keep)
{
    char desc[128];
    int r = nft_send_keep(b, desc, sizeof(desc), keep);

    if (r < 0)
        sandbox_note(e, "%s", desc);
    return r;
}

int sandbox_nft_commit(struct ns_error *e, struct nft_batch *b)
{
    return nft_commit_keep(e, b, NULL);
}

/* Policy routing for TPROXY: "fwmark MARK lookup TABLE" + "local default dev lo". */
static int routing_ensure(struct ns_error *e, struct rtnl *rt, int family)
{
    int lo, r;

    if ((lo = sandbox_rtnl_check(e, rt, rtnl_link_index(rt, "lo"))) < 0)
        return lo;
    /* create-exclusive, "already there" is success: no dump that grows with N */
    r = rtnl_rule_fwmark(rt, true, family, NFT_MARK, NFT_ROUTE_TABLE, NFT_RULE_PRIO);
    if (r < 0 && r != -EEXIST)
        return sandbox_rtnl_check(e, rt, r);
    r = rtnl_route_local_default(rt, true, family, NFT_ROUTE_TABLE, lo);
    if (r < 0 && r != -EEXIST)
        return sandbox_rtnl_check(e, rt, r);
    return 0;
}

static int routing_remove(struct ns_error *e, struct rtnl *rt, int family)
{
    int lo = rtnl_link_index(rt, "lo"), r;

    while ((r = rtnl_rule_fwmark_exists(rt, family, NFT_MARK, NFT_ROUTE_TABLE)) > 0)
        if ((r = sandbox_rtnl_check(e, rt, rtnl_rule_fwmark(rt, false, family, NFT_MARK, NFT_ROUTE_TABLE,
                                             NFT_RULE_PRIO))) < 0)
            return r;
    if (r < 0 && r != -EAFNOSUPPORT)
        return sandbox_rtnl_check(e, rt, r);
    r = rtnl_route_local_default_exists(rt, family, NFT_ROUTE_TABLE);
    if (r > 0 && lo > 0)
        r = rtnl_route_local_default(rt, false, family, NFT_ROUTE_TABLE, lo);
    if (r < 0 && r != -EAFNOSUPPORT && r != -ESRCH && r != -ENOENT)
        return sandbox_rtnl_check(e, rt, r);
    return 0;
}

/*
 * up --ca: the inspect-mode CA, trusted by whatever `ip netns exec` runs in
 * the sandbox. That bind-mounts each entry of /etc/netns/NAME over its
 * namesake in /etc, so /etc/netns/NAME/ssl becomes the sandbox's /etc/ssl:
 * the host's openssl.cnf, certs/ca-certificates.crt (the host's bundle with
 * the CA appended: OpenSSL, curl, Python and Debian's tools read it), and
 * certs/sluice-ca.pem alone (for NODE_EXTRA_CA_CERTS). Only a certificate is
 * copied: a file with a private key in it is refused.
 */
#define SSL_DIR "ssl"
#define CERTS_DIR "ssl/certs"
static const char *const ca_files[] = {
    "ssl/certs/sluice-ca.pem", "ssl/certs/ca-certificates.crt", "ssl/openssl.cnf",
};

/* Appends the file at PATH (at most MAX bytes) to OUT; ENOENT is no error when OPTIONAL. */
static int append_file(FILE *out, const char *path, size_t max, bool optional)
{
    char buf[8192];
    size_t n, total = 0;
    FILE *in = fopen(path, "re");

    if (!in)
        return optional && errno == ENOENT ? 0 : -errno;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0 && total <= max) {
        total += n;
        if (fwrite(buf, 1, n, out) != n) {
            fclose(in);
            return -EIO;
        }
    }
    fclose(in);
    return total > max ? -EFBIG : 0;
}

static int write_joined(struct ns_error *e, const char *dir, const char *name,
                        const char *first, bool first_optional, const char *second)
{
    char path[192];
    FILE *out;
    int r;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    sandbox_note(e, "writing %s", path);
    out = fopen(path, "we");
    if (!out)
        return -errno;
    r = append_file(out, first, 16u << 20, first_optional);
    if (r == 0 && second)
        r = append_file(out, second, SANDBOX_CA_MAX, false);
    if (fclose(out) != 0 && r == 0)
        r = -errno;
    if (r == 0 && chmod(path, 0644) < 0)
        r = -errno;
    return r;
}

static int ca_install(struct ns_error *e, const char *dir, const char *ca)
{
    char buf[SANDBOX_CA_MAX + 1], sub[128];
    size_t n;
    FILE *in;
    int r;

    sandbox_note(e, "reading --ca %s", ca);
    in = fopen(ca, "re");
    if (!in)
        return -errno;
    n = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[n] = '\0';
    if (n == 0 || n == SANDBOX_CA_MAX || !strstr(buf, "-----BEGIN CERTIFICATE-----") ||
        strstr(buf, "PRIVATE KEY")) {
        e->hint = "give the CA's certificate (ca.pem from sluicectl ca init), never its key";
        return -EINVAL;
    }
    snprintf(sub, sizeof(sub), "%s/%s", dir, SSL_DIR);
    if (mkdir(sub, 0755) < 0 && errno != EEXIST)
        return sandbox_note(e, "creating %s", sub), -errno;
    snprintf(sub, sizeof(sub), "%s/%s", dir, CERTS_DIR);
    if (mkdir(sub, 0755) < 0 && errno != EEXIST)
        return sandbox_note(e, "creating %s", sub), -errno;
    if ((r = write_joined(e, dir, ca_files[0], ca, false, NULL)) < 0 ||
        (r = write_joined(e, dir, ca_files[1], "/etc/ssl/certs/ca-certificates.crt", true,
                          ca)) < 0 ||
        (r = write_joined(e, dir, ca_files[2], "/etc/ssl/openssl.cnf", true, NULL)) < 0)
        return r;
    return 0;
}

/* Removes what ca_install() made, if anything. */
static int ca_remove(struct ns_error *e, const char *dir)
{
    char path[192];
    size_t i;

    for (i = 0; i < sizeof(ca_files) / sizeof(ca_files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, ca_files[i]);
        if (unlink(path) < 0 && errno != ENOENT)
            return sandbox_note(e, "removing %s", path), -errno;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, CERTS_DIR);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/%s", dir, SSL_DIR);
    rmdir(path);
    return 0;
}

static int resolv_conf(struct ns_error *e, const struct sandbox *s, bool create)
{
    char dir[64], path[96], gw[INET6_ADDRSTRLEN], gw6[INET6_ADDRSTRLEN];
    uint8_t a[16];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/%s", ETC_NETNS, s->name);
    snprintf(path, sizeof(path), "%s/resolv.conf", dir);
    if (!create) {
        if (unlink(path) < 0 && errno != ENOENT)
            return sandbox_note(e, "removing %s", path), -errno;
        int r = ca_remove(e, dir);

        if (r < 0)
            return r;
        if (rmdir(dir) < 0 && errno != ENOENT)
            return sandbox_note(e, "removing %s", dir), -errno;
        rmdir(ETC_NETNS);       /* ours if empty now; ENOTEMPTY leaves others' alone */
        return 0;
    }
    sandbox_note(e, "writing %s", path);
    if ((mkdir(ETC_NETNS, 0755) < 0 && errno != EEXIST) ||
        (mkdir(dir, 0755) < 0 && errno != EEXIST))
        return -errno;
    f = fopen(path, "we");
    if (!f)
        return -errno;
    sandbox_gateway(&s->subnet, a);
    addr_text(AF_INET, a, gw, sizeof(gw));
    fprintf(f, "# written by sluice-netsetup: every DNS query is answered by sluice-proxy\n"
            "nameserver %s\n", gw);
    if (s->v6) {
        sandbox_gateway(&s->subnet6, a);
        addr_text(AF_INET6, a, gw6, sizeof(gw6));
        fprintf(f, "nameserver %s\n", gw6);
    }
    if (fclose(f) != 0)
        return -errno;
    return 0;
}

struct others {
    size_t all, v6;             /* other sandboxes on record, and those with IPv6 */
};

/* An isolated sandbox is its namespace and its record. */
static int teardown_isolated(struct ns_error *e, const struct sandbox *s)
{
    int r = netns_delete(s->name);

    if (r < 0) {
        sandbox_note(e, "removing %s/%s", NETNS_RUN_DIR, s->name);
        return r;
    }
    if ((r = state_remove(s->name)) < 0)
        sandbox_note(e, "removing the record of %s", s->name);
    return r;
}

/* Removes whatever of S exists; shared pieces go with the last sandbox using them. */
static int teardown(struct ns_error *e, const struct sandbox *s, struct others others)
{
    struct nft_sandbox n;
    struct nft_batch *b;
    struct nft_socket *nft = NULL;
    struct rtnl *rt = NULL;
    struct nft_chains c;
    struct sandbox *all = NULL;
    size_t n_all = 0;
    int r, first = 0;

    if (s->mode == SANDBOX_ISOLATED)
        return teardown_isolated(e, s);
    sandbox_nft_view(s, &n);
    nft_chain_names(s->name, &c);
    sandbox_note(e, "reading table inet " NFT_TABLE);
    r = nft_table_exists();
    if (r > 0) {
        bool elems = nft_sandbox_elem_exists(s->host_if) > 0;
        bool chains = nft_chain_exists(c.pre) > 0;

        b = nft_batch_new();
        if (!b)
            return -ENOMEM;
        if (others.all == 0) {
            r = nft_build_table_del(b);
        } else if (elems || chains) {   /* else: gone already (down of many) */
            r = state_list(&all, &n_all);
            if (r == 0 && chains)       /* with its chains, its forwards and links */
                r = sandbox_build_peer_del(e, b, s, all, n_all, NULL);
            if (r == 0)
                r = nft_build_sandbox_del(b, &n, elems, chains);
        }
        if (r == 0 && nft_batch_msgs(b) == 0) {
            nft_batch_free(b);
            b = NULL;
        }
        if (r == 0 && b)
            r = nft_commit_keep(e, b, &nft);     /* released after the veth is gone */
        nft_batch_free(b);
        if (r == 0 && all)
            sandbox_forget_peer(s, all, n_all);
        free(all);
    }
    if (r < 0)
        first = r;

    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0) {
        nft_release(nft);
        return first ? first : r;
    }
    if (s->mode == SANDBOX_NETNS) {
        r = rtnl_link_del(rt, s->host_if);       /* takes the peer with it */
        if (r < 0 && r != -ENODEV && !first)
            first = sandbox_rtnl_check(e, rt, r);
        if ((r = netns_delete(s->name)) < 0 && !first) {
            sandbox_note(e, "removing %s/%s", NETNS_RUN_DIR, s->name);
            first = r;
        }
        if ((r = resolv_conf(e, s, false)) < 0 && !first)
            first = r;
    } else {
        int idx = rtnl_link_index(rt, s->host_if);
        uint8_t gw[16];

        if (idx > 0) {      /* the VMM owns the tap: only take our addresses back */
            sandbox_gateway(&s->subnet, gw);
            r = rtnl_addr_del(rt, idx, AF_INET, gw, s->subnet.len);
            if (r < 0 && r != -EADDRNOTAVAIL && !first)
                first = sandbox_rtnl_check(e, rt, r);
            if (s->v6) {
                sandbox_gateway(&s->subnet6, gw);
                r = rtnl_addr_del(rt, idx, AF_INET6, gw, s->subnet6.len);
                if (r < 0 && r != -EADDRNOTAVAIL && !first)
                    first = sandbox_rtnl_check(e, rt, r);
            }
        }
    }
    if (others.all == 0 && (r = routing_remove(e, rt, AF_INET)) < 0 && !first)
        first = r;
    if (others.v6 == 0 && (r = routing_remove(e, rt, AF_INET6)) < 0 && !first)
        first = r;
    rtnl_close(rt);
    nft_release(nft);
    if (!first && (r = state_remove(s->name)) < 0) {
        sandbox_note(e, "removing the record of %s", s->name);
        first = r;
    }
    return first;
}

/* The records, read once for many sandboxes in one call and added to as they are made. */
struct known {
    struct sandbox *v;
    size_t n, cap;
    struct cidr *addrs;         /* this namespace's IPv4 addresses, dumped once */
    size_t n_addrs, cap_addrs;
    bool defer_nft;             /* the caller batches the sandboxes' rules */
    bool existed;               /* set by create(): it was complete already, a no-op */
};

static int known_add(struct known *k, const struct sandbox *s)
{
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        struct sandbox *v = realloc(k->v, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        k->v = v;
        k->cap = cap;
    }
    k->v[k->n++] = *s;
    return 0;
}

struct used_ctx {
    struct cidr *v;
    size_t n, cap;
};

static int collect_used(const struct cidr *prefix, int ifindex, void *data)
{
    struct used_ctx *u = data;
    struct cidr net;
    char text[CIDR_STRLEN];

    (void)ifindex;
    if (prefix->family != AF_INET || u->n == u->cap)
        return 0;
    cidr_format(prefix, text);
    /* the address with its prefix length: normalise to the network */
    cidr_parse(text, &net);
    u->v[u->n++] = net;
    return 0;
}

/*
 * Picks S's subnet: the one asked for, checked for clashes, or the first free
 * slot of the pool. Clashes count every sandbox on record and every IPv4
 * address of this namespace.
 */
static int choose_subnet(struct ns_error *e, struct rtnl *rt, const struct up_opts *o,
                         struct sandbox *s, const struct known *known)
{
    struct sandbox *all = NULL;
    struct used_ctx u = {0};
    struct cidr pool;
    size_t n = 0, i;
    int r;

    if (known) {            /* many in one call: the records read once, kept up to date */
        all = known->v;
        n = known->n;
    } else {
        sandbox_note(e, "listing sandboxes in %s", state_dir());
        if ((r = state_list(&all, &n)) < 0)
            return r;
    }
    u.cap = n + 1024 + (known ? known->n_addrs : 0);
    u.v = calloc(u.cap, sizeof(*u.v));
    if (!u.v) {
        if (!known)
            free(all);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++)
        if (strcmp(all[i].name, s->name) != 0)
            u.v[u.n++] = all[i].subnet;
    if (known && known->addrs) {
        for (i = 0; i < known->n_addrs && u.n < u.cap; i++)
            u.v[u.n++] = known->addrs[i];
        r = 0;
    } else {
        r = sandbox_rtnl_check(e, rt, rtnl_addr_each(rt, collect_used, &u));
    }
    if (r == 0 && o->have_subnet) {
        s->subnet = o->subnet;
        for (i = 0; i < u.n; i++) {
            if (cidr_overlaps(&o->subnet, &u.v[i])) {
                char a[CIDR_STRLEN], b[CIDR_STRLEN];

                cidr_format(&o->subnet, a);
                cidr_format(&u.v[i], b);
                sandbox_note(e, "subnet %s overlaps %s, which is in use", a, b);
                r = -EADDRINUSE;
                break;
            }
        }
    } else if (r == 0) {
        cidr_parse(POOL_DEFAULT, &pool);
        sandbox_note(e, "allocating a /%d from %s", POOL_SLOT_LEN, POOL_DEFAULT);
        r = pool_pick(&pool, POOL_SLOT_LEN, u.v, u.n, &s->subnet);
    }
    free(u.v);
    if (!known)
        free(all);
    return r;
}

static bool same_request(const struct sandbox *s, const struct up_opts *o)
{
    return (!o->have_subnet || memcmp(&o->subnet, &s->subnet, sizeof(s->subnet)) == 0) &&
           o->v6 == s->v6 &&
           (!o->v6 || memcmp(&o->subnet6, &s->subnet6, sizeof(s->subnet6)) == 0) &&
           o->proxy_port == s->proxy_port && o->dns_port == s->dns_port &&
           o->max_conntrack == conntrack_of(s) &&
           (!o->iface || strcmp(o->iface, s->host_if) == 0);
}

/* Whether everything S needs exists (a cheap look, not verify's full one). */
static bool is_complete(const struct sandbox *s)
{
    struct rtnl *rt;
    struct nft_chains c;
    bool ok;
    int fd;

    nft_chain_names(s->name, &c);
    if (rtnl_open(&rt) < 0)
        return false;
    ok = rtnl_link_is_up(rt, s->host_if) == 1 && nft_chain_exists(c.fwd) == 1 &&
         nft_sandbox_elem_exists(s->host_if) == 1;
    rtnl_close(rt);
    if (ok && s->mode == SANDBOX_NETNS) {
        fd = netns_open(s->name);
        ok = fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    return ok;
}

/* Inside the sandbox's namespace: lo, eth0, addresses, default routes, sysctls. */
static int configure_inside(struct ns_error *e, const struct sandbox *s, int nsfd)
{
    struct rtnl *rt = NULL;
    uint8_t gw[16], sb[16];
    int saved, r, lo, eth;

    sandbox_note(e, "entering network namespace %s", s->name);
    if ((r = netns_enter(nsfd, &saved)) < 0)
        return r;
    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0)
        goto out;
    if ((r = sandbox_rtnl_check(e, rt, lo = rtnl_link_index(rt, "lo"))) < 0 ||
        (r = sandbox_rtnl_check(e, rt, rtnl_link_set_up(rt, lo))) < 0 ||
        (r = sandbox_rtnl_check(e, rt, eth = rtnl_link_index(rt, SANDBOX_IF))) < 0)
        goto out;
    /* v6 off: no addresses, no router advertisements, no link-local chatter */
    if ((r = sysctl_if(e, "all", "accept_ra", "0")) < 0 ||
        (r = sysctl_if(e, "default", "accept_ra", "0")) < 0 ||
        (r = sysctl_if(e, SANDBOX_IF, "accept_ra", "0")) < 0 ||
        (r = sysctl_if(e, "all", "disable_ipv6", s->v6 ? "0" : "1")) < 0 ||
        (r = sysctl_if(e, "default", "disable_ipv6", s->v6 ? "0" : "1")) < 0 ||
        (r = sysctl_if(e, SANDBOX_IF, "disable_ipv6", s->v6 ? "0" : "1")) < 0)
        goto out;
    sandbox_gateway(&s->subnet, gw);
    sandbox_address(&s->subnet, sb);
    if ((r = sandbox_rtnl_check(e, rt, rtnl_addr_add(rt, eth, AF_INET, sb, s->subnet.len))) < 0 ||
        (r = sandbox_rtnl_check(e, rt, rtnl_link_set_up(rt, eth))) < 0 ||
        (r = sandbox_rtnl_check(e, rt, rtnl_route_add_default(rt, AF_INET, gw, eth))) < 0)
        goto out;
    if (s->v6) {
        sandbox_gateway(&s->subnet6, gw);
        sandbox_address(&s->subnet6, sb);
        if ((r = sandbox_rtnl_check(e, rt, rtnl_addr_add(rt, eth, AF_INET6, sb, s->subnet6.len))) < 0 ||
            (r = sandbox_rtnl_check(e, rt, rtnl_route_add_default(rt, AF_INET6, gw, eth))) < 0)
            goto out;
    }
out:
    rtnl_close(rt);
    if (netns_leave(saved) < 0 && r == 0) {
        sandbox_note(e, "returning to the host's network namespace");
        r = -errno;
    }
    return r;
}

/* The host side of S: gateway address on HOST_IF (up), policy routing, and its
 * rules unless DEFER_NFT (then the caller sends them with others'). */
static int configure_host(struct ns_error *e, struct rtnl *rt, const struct sandbox *s,
                          bool defer_nft)
{
    struct nft_sandbox n;
    struct nft_batch *b;
    uint8_t gw[16];
    int idx, r;

    if ((r = sandbox_rtnl_check(e, rt, idx = rtnl_link_index(rt, s->host_if))) < 0)
        return r;
    if ((r = sysctl_if(e, s->host_if, "accept_ra", "0")) < 0 ||
        (r = sysctl_if(e, s->host_if, "disable_ipv6", s->v6 ? "0" : "1")) < 0)
        return r;
    sandbox_gateway(&s->subnet, gw);
    if ((r = sandbox_rtnl_check(e, rt, rtnl_addr_add(rt, idx, AF_INET, gw, s->subnet.len))) < 0)
        return r;
    if (s->v6) {
        sandbox_gateway(&s->subnet6, gw);
        if ((r = sandbox_rtnl_check(e, rt, rtnl_addr_add(rt, idx, AF_INET6, gw, s->subnet6.len))) < 0)
            return r;
    }
    if ((r = sandbox_rtnl_check(e, rt, rtnl_link_set_up(rt, idx))) < 0 ||
        (r = routing_ensure(e, rt, AF_INET)) < 0 ||
        (s->v6 && (r = routing_ensure(e, rt, AF_INET6)) < 0))
        return r;

    if (defer_nft)
        return 0;
    /* The base chains are written only with the table: rewriting them on every
     * up would make the kernel wait for the old rules' release (~10 ms). */
    sandbox_note(e, "reading table inet " NFT_TABLE);
    if ((r = nft_table_exists()) < 0)
        return r;
    if (r == 1)             /* a table from before forwards: its base is rewritten once */
        r = nft_chain_exists(NFT_CHAIN_FORWARDS);
    b = nft_batch_new();
    if (!b)
        return -ENOMEM;
    sandbox_nft_view(s, &n);
    r = r == 0 ? nft_build_base(b) : 0;
    if (r == 0)
        r = nft_build_sandbox_add(b, &n);
    if (r == 0)
        r = sandbox_nft_commit(e, b);
    else
        sandbox_note(e, "building the nftables batch");
    nft_batch_free(b);
    return r;
}

static struct others count_others(const char *name)
{
    struct others o = {0, 0};
    struct sandbox *all;
    size_t n, i;

    if (state_list(&all, &n) < 0)
        return (struct others){1, 1};   /* unknown: keep the shared pieces */
    for (i = 0; i < n; i++) {
        if (strcmp(all[i].name, name) != 0 && all[i].mode != SANDBOX_ISOLATED) {
            o.all++;
            o.v6 += all[i].v6;
        }
    }
    free(all);
    return o;
}

/* The namespace of sandbox NAME, whose record is saved: on failure nothing is built
 * yet, the record goes, and a namespace of that name is not ours to undo. */
static int create_netns(struct ns_error *e, const char *name)
{
    int r;

    sandbox_note(e, "creating network namespace %s/%s", NETNS_RUN_DIR, name);
    if ((r = netns_create(name)) < 0) {
        if (r == -EEXIST) {
            sandbox_note(e, "network namespace %s/%s exists and is not a sluice sandbox's",
                         NETNS_RUN_DIR, name);
            e->hint = "pick another name";
        }
        state_remove(name);
    }
    return r;
}

/*
 * up --isolated: a namespace with lo up and nothing else. No interface joins it,
 * so nothing it sends can leave, and no rule is needed to say so.
 */
static int create_isolated(struct ns_error *e, const char *name, struct sandbox *out)
{
    struct sandbox s = {.mode = SANDBOX_ISOLATED}, old;
    struct rtnl *rt = NULL;
    int r, nsfd = -1, saved, lo;

    r = state_load(name, &old);
    if (r == 0 && old.mode != SANDBOX_ISOLATED) {
        sandbox_note(e, "sandbox %s exists with a network (interface %s)", name, old.host_if);
        e->hint = "run 'sluice-netsetup down NAME' first, or pick another name";
        r = -EEXIST;
        goto out;
    }
    if (r == 0 && (nsfd = netns_open(name)) >= 0) {
        *out = old;                     /* up twice is a no-op */
        r = 0;
        goto out;
    }
    if (r == 0 && (r = teardown_isolated(e, &old)) < 0)     /* half-built: start over */
        goto out;
    snprintf(s.name, sizeof(s.name), "%s", name);
    sandbox_note(e, "recording sandbox %s in %s", name, state_dir());
    if ((r = state_save(&s)) < 0 || (r = create_netns(e, name)) < 0)
        goto out;
    sandbox_note(e, "opening network namespace %s", name);
    if ((r = nsfd = netns_open(name)) < 0 || (r = netns_enter(nsfd, &saved)) < 0)
        goto fail;
    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) == 0 &&
        (r = sandbox_rtnl_check(e, rt, lo = rtnl_link_index(rt, "lo"))) >= 0)
        r = sandbox_rtnl_check(e, rt, rtnl_link_set_up(rt, lo));
    rtnl_close(rt);
    if (netns_leave(saved) < 0 && r >= 0) {
        sandbox_note(e, "returning to the host's network namespace");
        r = -errno;
    }
    if (r < 0)
        goto fail;
    *out = s;
    r = 0;
    goto out;
fail:
    {
        struct ns_error cleanup = {.hint = NULL};

        teardown_isolated(&cleanup, &s);
    }
out:
    if (nsfd >= 0)
        close(nsfd);
    return r;
}

/* up and attach: the parts they share. */
static int create(struct ns_error *e, const char *name, const struct up_opts *o,
                  enum sandbox_mode mode, struct sandbox *out, struct known *known)
{
    struct sandbox s = {0}, old;
    struct rtnl *rt = NULL;
    int r, nsfd = -1;

    r = state_load(name, &old);
    if (r == 0) {
        if (old.mode == SANDBOX_ISOLATED) {
            sandbox_note(e, "sandbox %s exists, isolated", name);
            e->hint = "run 'sluice-netsetup down NAME' first, or pick another name";
            r = -EEXIST;
            goto out;
        }
        if (old.mode != mode || !same_request(&old, o)) {
            char net[CIDR_STRLEN];

            cidr_format(&old.subnet, net);
            sandbox_note(e, "sandbox %s exists with other settings (subnet %s, interface %s)", name,
                 net, old.host_if);
            e->hint = "run 'sluice-netsetup down NAME' first, or pick another name";
            r = -EEXIST;
            goto out;
        }
        if (is_complete(&old)) {        /* up twice is a no-op */
            *out = old;
            if (known)
                known->existed = true;
            r = 0;
            goto out;
        }
        if ((r = teardown(e, &old, count_others(name))) < 0)     /* half-built: start over */
            goto out;
    }

    snprintf(s.name, sizeof(s.name), "%s", name);
    s.mode = mode;
    s.v6 = o->v6;
    s.subnet6 = o->subnet6;
    s.proxy_port = o->proxy_port;
    s.dns_port = o->dns_port;
    s.max_conntrack = o->max_conntrack;
    if (mode == SANDBOX_NETNS) {
        sandbox_host_ifname(name, s.host_if);
        snprintf(s.sandbox_if, sizeof(s.sandbox_if), SANDBOX_IF);
    } else {
        snprintf(s.host_if, sizeof(s.host_if), "%s", o->iface);
    }
    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0)
        goto out;
    r = rtnl_link_index(rt, s.host_if);
    if (mode == SANDBOX_NETNS && r >= 0) {
        sandbox_note(e, "interface %s exists and is not a sluice sandbox's", s.host_if);
        e->hint = "pick another name, or remove the interface";
        r = -EEXIST;
        goto out;
    }
    if (mode == SANDBOX_ATTACH && r < 0) {
        sandbox_rtnl_check(e, rt, r);
        goto out;
    }
    if ((r = choose_subnet(e, rt, o, &s, known)) < 0)
        goto out;
    sandbox_note(e, "recording sandbox %s in %s", name, state_dir());
    if ((r = state_save(&s)) < 0)
        goto out;

    if (mode == SANDBOX_NETNS) {
        if ((r = create_netns(e, name)) < 0)
            goto out;
        sandbox_note(e, "opening network namespace %s", name);
        if ((r = nsfd = netns_open(name)) < 0)
            goto fail;
        if ((r = sandbox_rtnl_check(e, rt, rtnl_link_add_veth(rt, s.host_if, SANDBOX_IF, nsfd))) < 0 ||
            (r = configure_inside(e, &s, nsfd)) < 0)
            goto fail;
    }
    if ((r = configure_host(e, rt, &s, known && known->defer_nft)) < 0)
        goto fail;
    if (mode == SANDBOX_NETNS && (r = resolv_conf(e, &s, true)) < 0)
        goto fail;
    if (o->ca) {
        char dir[64];

        snprintf(dir, sizeof(dir), "%s/%s", ETC_NETNS, name);
        if ((r = ca_install(e, dir, o->ca)) < 0)
            goto fail;
    }
    *out = s;
    r = 0;
    goto out;

fail:
    {
        struct ns_error cleanup = {.hint = NULL};   /* report the cause, not the cleanup */

        teardown(&cleanup, &s, count_others(name));
    }
out:
    if (nsfd >= 0)
        close(nsfd);
    rtnl_close(rt);
    return r;
}

/* up or attach of NAME, under the lock the caller holds */
static int create_locked(struct ns_error *e, const char *name, const struct up_opts *o,
                         enum sandbox_mode mode, struct sandbox *out, struct known *known)
{
    if (o->isolated)
        return create_isolated(e, name, out);
    return create(e, name, o, mode, out, known);
}

int sandbox_lock(struct ns_error *e)
{
    sandbox_note(e, "locking %s/lock", state_dir());
    return state_lock();
}

static int create_one(struct ns_error *e, const char *name, const struct up_opts *o,
                      enum sandbox_mode mode, struct sandbox *out)
{
    int lock = sandbox_lock(e), r;

    if (lock < 0)
        return lock;
    r = create_locked(e, name, o, mode, out, NULL);
    state_unlock(lock);
    return r;
}

int sandbox_up(struct ns_error *e, const char *name, const struct up_opts *o,
               struct sandbox *out)
{
    return create_one(e, name, o, SANDBOX_NETNS, out);
}

int sandbox_attach(struct ns_error *e, const char *name, const struct up_opts *o,
                   struct sandbox *out)
{
    return create_one(e, name, o, SANDBOX_ATTACH, out);
}

static int down_locked(struct ns_error *e, const char *name, bool *found)
{
    struct sandbox s;
    int r;

    *found = false;
    r = state_load(name, &s);
    if (r == -ENOENT)
        return 0;
    if (r < 0) {
        sandbox_note(e, "reading the record of %s in %s", name, state_dir());
        return r;
    }
    *found = true;
    return teardown(e, &s, count_others(name));
}

int sandbox_down(struct ns_error *e, const char *name, bool *found)
{
    int lock = sandbox_lock(e), r;

    *found = false;
    if (lock < 0)
        return lock;
    r = down_locked(e, name, found);
    state_unlock(lock);
    return r;
}

static int collect_addr(const struct cidr *prefix, int ifindex, void *data)
{
    struct known *k = data;

    (void)ifindex;
    if (prefix->family != AF_INET)
        return 0;
    if (k->n_addrs == k->cap_addrs) {
        size_t cap = k->cap_addrs ? k->cap_addrs * 2 : 256;
        struct cidr *v = realloc(k->addrs, cap * sizeof(*v));

        if (!v)
            return 1;           /* stops the walk: the dump is incomplete */
        k->addrs = v;
        k->cap_addrs = cap;
    }
    collect_used(prefix, ifindex, &(struct used_ctx){k->addrs + k->n_addrs, 0, 1});
    k->n_addrs++;
    return 0;
}

#define UP_CHUNK_MSGS 400           /* a sandbox's rules are some 30 messages */
#define UP_CHUNK_BYTES (96 * 1024)

/* Does S's rules alone (and the base when the table lacks it). */
static int nft_one(struct ns_error *e, const struct sandbox *s)
{
    struct nft_batch *b = nft_batch_new();
    struct nft_sandbox n;
    int r;

    if (!b)
        return -ENOMEM;
    sandbox_nft_view(s, &n);
    r = nft_table_exists() == 1 && nft_chain_exists(NFT_CHAIN_FORWARDS) == 1 ? 0
                                                                           : nft_build_base(b);
    if (r == 0)
        r = nft_build_sandbox_add(b, &n);
    if (r == 0)
        r = sandbox_nft_commit(e, b);
    nft_batch_free(b);
    return r;
}

/*
 * The rules of the jobs PENDING[0..NP) in one batch (B, with the base first
 * when NEED_BASE). If the kernel refuses it, each is tried alone, and one
 * refused alone fails its job and is torn down.
 */
static void up_flush(struct sandbox_job *jobs, const size_t *pending, size_t np,
                     struct nft_batch *b, bool *need_base)
{
    char desc[128];
    size_t i;

    if (np == 0)
        return;
    if (nft_send(b, desc, sizeof(desc)) == 0) {
        *need_base = false;
        return;
    }
    for (i = 0; i < np; i++) {
        struct sandbox_job *j = &jobs[pending[i]];

        if ((j->err = nft_one(&j->e, &j->s)) < 0) {
            struct ns_error cleanup = {.hint = NULL};

            teardown(&cleanup, &j->s, count_others(j->name));
        }
    }
}

int sandbox_up_many(struct sandbox_job *jobs, size_t n)
{
    struct ns_error e = {.hint = NULL};
    struct known k = {.defer_nft = true};
    struct nft_batch *b = NULL;
    struct rtnl *rt = NULL;
    size_t *pending, np = 0, i, j;
    bool need_base;
    int lock = sandbox_lock(&e), r;

    if (lock < 0)
        return lock;
    pending = calloc(n + 1, sizeof(*pending));
    if (!pending || (r = state_list(&k.v, &k.n)) < 0 || (r = rtnl_open(&rt)) < 0 ||
        (r = rtnl_addr_each(rt, collect_addr, &k)) < 0) {
        r = pending ? r : -ENOMEM;
        goto out;
    }
    k.cap = k.n;
    need_base = !(nft_table_exists() == 1 && nft_chain_exists(NFT_CHAIN_FORWARDS) == 1);
    for (i = 0; i < n; i++) {
        struct sandbox_job *jb = &jobs[i];
        struct nft_sandbox ns;

        for (j = 0; j < i && !jb->err; j++) {
            if (strcmp(jobs[j].name, jb->name) == 0) {
                jb->err = -EINVAL;
                snprintf(jb->usage, sizeof(jb->usage), "NAME '%s' is given twice", jb->name);
            }
        }
        if (jb->err)
            continue;
        k.existed = false;
        jb->err = create_locked(&jb->e, jb->name, &jb->opts, SANDBOX_NETNS, &jb->s, &k);
        if (jb->err || k.existed)           /* up twice: its rules are there */
            continue;
        if ((jb->err = known_add(&k, &jb->s)) < 0 || jb->s.mode == SANDBOX_ISOLATED)
            continue;
        if (!b && !(b = nft_batch_new())) {
            jb->err = -ENOMEM;
            continue;
        }
        if (np == 0 && need_base)
            nft_build_base(b);
        sandbox_nft_view(&jb->s, &ns);
        nft_build_sandbox_add(b, &ns);
        pending[np++] = i;
        if (nft_batch_msgs(b) >= UP_CHUNK_MSGS || nft_batch_bytes(b) >= UP_CHUNK_BYTES) {
            up_flush(jobs, pending, np, b, &need_base);
            nft_batch_free(b);
            b = NULL;
            np = 0;
        }
    }
    up_flush(jobs, pending, np, b, &need_base);
    r = 0;
out:
    nft_batch_free(b);
    rtnl_close(rt);
    free(pending);
    free(k.addrs);
    free(k.v);
    state_unlock(lock);
    return r;
}

#define DOWN_CHUNK_MSGS 400     /* a sandbox's deletion is a few dozen messages */
#define DOWN_GROUP 0x534c0000u  /* link group for deleting many veths at once (+ pid) */

/*
 * The nft part of many downs: the whole table when nothing else is left, or
 * each sandbox's elements, chains, forward rules and link elements, in as few
 * batches as fit. A batch the kernel refuses marks its jobs for the one-by-one
 * path (FALLBACK), which checks what exists first. The sockets are kept (KEEP)
 * until the veths are gone, so that the two waits overlap.
 */
static void down_nft(struct sandbox_job *jobs, struct sandbox **rec, size_t n, bool whole,
                     const struct sandbox *all, size_t n_all, bool *fallback,
                     struct nft_socket **keep, size_t *n_keep)
{
    struct nft_batch *b = NULL;
    bool *done = calloc(n_all + 1, sizeof(*done));
    size_t i, first = 0;
    int r;

    if (!done || nft_table_exists() != 1) {
        free(done);             /* no table: nothing to remove; no memory: one by one */
        if (!done)
            for (i = 0; i < n; i++)
                fallback[i] = true;
        return;
    }
    for (i = 0; i <= n; i++) {
        bool last = i == n;
        struct nft_sandbox ns;

        if (!last && (!rec[i] || rec[i]->mode == SANDBOX_ISOLATED || jobs[i].err))
            continue;
        if (!b && !(b = nft_batch_new()))
            break;
        if (!last && whole)
            continue;
        if (!last) {
            sandbox_nft_view(rec[i], &ns);
            sandbox_build_peer_del(&jobs[i].e, b, rec[i], all, n_all, done);
            nft_build_sandbox_del(b, &ns, true, true);
            done[rec[i] - all] = true;
        }
        if (!last && nft_batch_msgs(b) < DOWN_CHUNK_MSGS)
            continue;
        if (whole)
            nft_build_table_del(b);
        if (nft_batch_msgs(b) > 0) {
            char desc[128];

            r = nft_send_keep(b, desc, sizeof(desc), &keep[*n_keep]);
            if (r == 0)
                (*n_keep)++;
            for (size_t k = first; r < 0 && k <= i && k < n; k++)
                fallback[k] = true;
        }
        nft_batch_free(b);
        b = NULL;
        first = i + 1;
    }
    nft_batch_free(b);
    free(done);
}

/* The veths of the netns-mode jobs, deleted in one request by link group. */
static void down_veths(struct rtnl *rt, struct sandbox_job *jobs, struct sandbox **rec,
                       size_t n, const bool *fallback)
{
    uint32_t group = DOWN_GROUP | ((uint32_t)getpid() & 0xffff);
    size_t i, members = 0;
    int tries;

    for (tries = 0; tries < 16 && rtnl_link_group_used(rt, group) != 0; tries++)
        group++;                /* someone else's group: never delete their links */
    if (tries == 16)
        return;                 /* teardown() below deletes each veth by name */
    for (i = 0; i < n; i++)
        if (rec[i] && rec[i]->mode == SANDBOX_NETNS && !jobs[i].err && !fallback[i] &&
            rtnl_link_set_group(rt, rec[i]->host_if, group) == 0)
            members++;
    if (members)
        rtnl_link_del_group(rt, group);
}

int sandbox_down_many(struct sandbox_job *jobs, size_t n)
{
    struct ns_error e = {.hint = NULL};
    struct sandbox *all = NULL, **rec = NULL, *rest = NULL;
    struct nft_socket **keep = NULL;
    struct others left = {0, 0};
    bool *going = NULL, *fallback = NULL;
    size_t n_all = 0, n_rest = 0, n_keep = 0, i, k;
    struct rtnl *rt = NULL;
    int lock = sandbox_lock(&e), r;

    if (lock < 0)
        return lock;
    if ((r = state_list(&all, &n_all)) < 0)
        goto out;
    rec = calloc(n + 1, sizeof(*rec));
    fallback = calloc(n + 1, sizeof(*fallback));
    going = calloc(n_all + 1, sizeof(*going));
    rest = calloc(n_all + 1, sizeof(*rest));
    keep = calloc(n / 8 + 2, sizeof(*keep));
    if (!rec || !fallback || !going || !rest || !keep) {
        r = -ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        for (k = 0; !jobs[i].err && k < n_all; k++) {
            if (strcmp(all[k].name, jobs[i].name) == 0 && !going[k]) {
                rec[i] = &all[k];
                going[k] = jobs[i].found = true;
            }
        }
    }
    for (k = 0; k < n_all; k++) {
        if (!going[k])
            rest[n_rest++] = all[k];
        if (!going[k] && all[k].mode != SANDBOX_ISOLATED) {
            left.all++;
            left.v6 += all[k].v6;
        }
    }
    for (i = 0; i < n; i++)
        if (rec[i] && rec[i]->mode == SANDBOX_ISOLATED)
            jobs[i].err = teardown_isolated(&jobs[i].e, rec[i]);
    down_nft(jobs, rec, n, left.all == 0, all, n_all, fallback, keep, &n_keep);
    if ((r = sandbox_rtnl_check(&e, rt, rtnl_open(&rt))) < 0)
        goto out;
    down_veths(rt, jobs, rec, n, fallback);
    rtnl_close(rt);
    rt = NULL;
    for (i = 0; i < n; i++) {
        struct sandbox_job *j = &jobs[i];

        if (!rec[i] || rec[i]->mode == SANDBOX_ISOLATED || j->err)
            continue;
        /* what is left of it (the veth if the group failed, the namespace, files,
         * an attached tap's addresses) goes the one-by-one way, which skips what
         * is gone; with the rules gone too, it sends no nft batch */
        j->err = teardown(&j->e, rec[i], fallback[i] ? count_others(j->name) : left);
        if (j->err == 0)
            sandbox_forget_peer(rec[i], rest, n_rest);
    }
    r = 0;
out:
    for (i = 0; i < n_keep; i++)
        nft_release(keep[i]);
    rtnl_close(rt);
    free(keep);
    free(rest);
    free(going);
    free(fallback);
    free(rec);
    free(all);
    state_unlock(lock);
    return r;
}

/* ---- pod mode ---- */

int pod_up(struct ns_error *e, const struct pod_opts *o)
{
    struct nft_pod p = {o->proxy_uid, o->proxy_port, o->dns_port, o->metrics_port,
                        o->max_conntrack};
    struct nft_batch *b;
    struct rtnl *rt;
    int r;

    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0)
        return r;
    r = routing_ensure(e, rt, AF_INET);
    /* IPv6 may be off in the pod; then there is nothing of v6 to intercept */
    if (r == 0 && access("/proc/sys/net/ipv6", F_OK) == 0)
        r = routing_ensure(e, rt, AF_INET6);
    rtnl_close(rt);
    if (r < 0)
        return r;
    b = nft_batch_new();
    if (!b)
        return -ENOMEM;
    r = nft_build_pod(b, &p);
    if (r == 0)
        r = sandbox_nft_commit(e, b);
    nft_batch_free(b);
    return r;
}

int pod_down(struct ns_error *e)
{
    struct nft_batch *b;
    struct rtnl *rt;
    int r;

    sandbox_note(e, "reading table inet " NFT_TABLE);
    r = nft_table_exists();
    if (r > 0) {
        b = nft_batch_new();
        if (!b)
            return -ENOMEM;
        r = nft_build_table_del(b);
        if (r == 0)
            r = sandbox_nft_commit(e, b);
        nft_batch_free(b);
    }
    if (r < 0)
        return r;
    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0)
        return r;
    r = routing_remove(e, rt, AF_INET);
    if (r == 0)
        r = routing_remove(e, rt, AF_INET6);
    rtnl_close(rt);
    return r;
}

/* ---- status ---- */

/* S's forwards (with their counters) and links: JSON arrays closing S's object,
 * or indented lines under its row. */
static void print_peers(const struct sandbox *s, bool json, FILE *out)
{
    char key[FORWARD_KEY_LEN], net[CIDR_STRLEN];
    size_t i, j;

    if (json)
        fprintf(out, ", \"forwards\": [");
    for (i = 0; i < s->n_forwards; i++) {
        const struct forward *f = &s->forwards[i];
        struct nft_forward_counters c;
        char addr[INET_ADDRSTRLEN];

        forward_key(f, key);
        addr_text(AF_INET, f->addr, addr, sizeof(addr));
        if (nft_forward_counters(s->name, key, &c) < 0)
            memset(&c, 0, sizeof(c));
        if (json) {
            fprintf(out, "%s{\"proto\": \"%s\", \"addr\": \"%s\", \"port\": %u, "
                    "\"sandbox_port\": %u, \"from\": [", i ? ", " : "",
                    f->proto == IPPROTO_UDP ? "udp" : "tcp", addr, f->port, f->to_port);
            for (j = 0; j < f->n_from; j++) {
                cidr_format(&f->from[j], net);
                fprintf(out, "%s\"%s\"", j ? ", " : "", net);
            }
            fprintf(out, "], \"connections\": %llu, \"packets_in\": %llu, \"bytes_in\": %llu, "
                    "\"packets_out\": %llu, \"bytes_out\": %llu}",
                    (unsigned long long)c.connections, (unsigned long long)c.packets_in,
                    (unsigned long long)c.bytes_in, (unsigned long long)c.packets_out,
                    (unsigned long long)c.bytes_out);
            continue;
        }
        fprintf(out, "  forward %s -> port %u from ", key, f->to_port);
        for (j = 0; j < f->n_from; j++) {
            cidr_format(&f->from[j], net);
            fprintf(out, "%s%s", j ? "," : "", net);
        }
        fprintf(out, "%s: %llu connections, in %llu packets %llu bytes, out %llu packets "
                "%llu bytes\n", f->n_from ? "" : "any", (unsigned long long)c.connections,
                (unsigned long long)c.packets_in, (unsigned long long)c.bytes_in,
                (unsigned long long)c.packets_out, (unsigned long long)c.bytes_out);
    }
    if (json)
        fprintf(out, "], \"links\": [");
    for (i = 0; i < s->n_links; i++) {
        const struct link *l = &s->links[i];

        fprintf(out, json ? "%s{\"to\": \"%s\", \"ports\": [" : "%s  link -> %s ports ",
                json && i ? ", " : "", l->peer);
        for (j = 0; j < l->n_ports; j++)
            fprintf(out, "%s%u", j ? "," : "", l->ports[j]);
        fprintf(out, json ? "]}" : "\n");
    }
    if (json)
        fprintf(out, "]}");
}

int sandbox_status(struct ns_error *e, const char *name, bool json, FILE *out)
{
    struct sandbox *all = NULL, one;
    size_t n = 0, i;
    struct rtnl *rt = NULL;
    int r;

    if (name) {
        sandbox_note(e, "reading the record of %s in %s", name, state_dir());
        if ((r = state_load(name, &one)) < 0)
            return r;
        all = malloc(sizeof(one));
        if (!all)
            return -ENOMEM;
        all[0] = one;
        n = 1;
    } else {
        sandbox_note(e, "listing sandboxes in %s", state_dir());
        if ((r = state_list(&all, &n)) < 0)
            return r;
    }
    if ((r = sandbox_rtnl_check(e, rt, rtnl_open(&rt))) < 0) {
        free(all);
        return r;
    }
    if (json)
        fprintf(out, "[");
    else
        fprintf(out, "%-15s %-8s %-15s %-18s %-21s %5s %9s %9s %9s %9s %12s %12s\n", "NAME",
                "MODE", "HOST_IF", "GATEWAY", "PROXY", "LINK", "PROXY_PKT", "DNS_PKT",
                "REJECTED", "DROPPED", "BYTES_IN", "BYTES_OUT");
    for (i = 0; i < n; i++) {
        struct nft_counters c;
        struct sandbox_view v;
        int up;

        if (all[i].mode == SANDBOX_ISOLATED) {     /* no link, no address, no counters */
            if (json)
                fprintf(out, "%s{\"name\": \"%s\", \"mode\": \"isolated\", \"host_if\": "
                        "null, \"gateway_addr\": null, \"sandbox_addr\": null, "
                        "\"proxy_listen\": null, \"dns_listen\": null, \"link_up\": false, "
                        "\"counters\": null, \"forwards\": [], \"links\": []}",
                        i ? ", " : "", all[i].name);
            else
                fprintf(out, "%-15s %-8s %-15s %-18s %-21s %5s %9s %9s %9s %9s %12s %12s\n",
                        all[i].name, "isolated", "-", "-", "-", "-", "-", "-", "-", "-", "-",
                        "-");
            continue;
        }
        up = rtnl_link_is_up(rt, all[i].host_if);
        view(&all[i], &v);
        if (nft_sandbox_counters(all[i].name, &c) < 0)
            memset(&c, 0, sizeof(c));
        if (json) {
            fprintf(out, "%s{\"name\": \"%s\", \"mode\": \"%s\", \"host_if\": \"%s\", "
                    "\"gateway_addr\": \"%s\", \"sandbox_addr\": \"%s\", "
                    "\"proxy_listen\": \"%s\", \"dns_listen\": \"%s\", \"link_up\": %s, "
                    "\"counters\": {\"proxy\": %llu, \"dns\": %llu, \"rejected\": %llu, "
                    "\"dropped\": %llu, \"packets_in\": %llu, \"bytes_in\": %llu, "
                    "\"packets_out\": %llu, \"bytes_out\": %llu}", i ? ", " : "", all[i].name,
                    sandbox_mode_name(all[i].mode), all[i].host_if,
                    v.gateway_addr, v.sandbox_addr, v.proxy_listen, v.dns_listen,
                    up == 1 ? "true" : "false", (unsigned long long)c.proxy,
                    (unsigned long long)c.dns, (unsigned long long)c.rejected,
                    (unsigned long long)c.dropped, (unsigned long long)c.packets_in,
                    (unsigned long long)c.bytes_in, (unsigned long long)c.packets_out,
                    (unsigned long long)c.bytes_out);
        } else {
            fprintf(out, "%-15s %-8s %-15s %-18s %-21s %5s %9llu %9llu %9llu %9llu %12llu "
                    "%12llu\n", all[i].name, sandbox_mode_name(all[i].mode),
                    all[i].host_if, v.gateway_addr, v.proxy_listen,
                    up == 1 ? "up" : up == 0 ? "down" : "gone", (unsigned long long)c.proxy,
                    (unsigned long long)c.dns, (unsigned long long)c.rejected,
                    (unsigned long long)c.dropped, (unsigned long long)c.bytes_in,
                    (unsigned long long)c.bytes_out);
        }
        print_peers(&all[i], json, out);
    }
    if (json)
        fprintf(out, "]\n");
    rtnl_close(rt);
    free(all);
    return 0;
}
