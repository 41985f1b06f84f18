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
#include <poll.h>
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

#define ETC_NETNS "/etc/netns"
#define SANDBOX_IF "eth0"
#define TEXT_MAX 8192

static char err_what[256];
static const char *err_hint;    /* the fix, when the failing step knows it */

const char *netsetup_error(void)
{
    return err_what;
}

const char *netsetup_hint(void)
{
    return err_hint;
}

__attribute__((format(printf, 1, 2)))
static void what(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err_what, sizeof(err_what), fmt, ap);
    va_end(ap);
}

/* Keeps the rtnl call text as the error description when R is an error. */
static int rtnl_check(int r)
{
    if (r < 0)
        what("%s", rtnl_last_call());
    return r;
}

static int write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;
    size_t len = strlen(value);

    what("writing %s", path);
    if (fd < 0)
        return -errno;
    if (write(fd, value, len) != (ssize_t)len)
        r = -errno;
    close(fd);
    return r;
}

static int sysctl_if(const char *ifname, const char *key, const char *value)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "/proc/sys/net/ipv6/conf/%s/%s", ifname, key);
    return write_file(path, value);
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

static void nft_view(const struct sandbox *s, struct nft_sandbox *n)
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

static int nft_commit_keep(struct nft_batch *b, struct nft_socket **keep)
{
    char desc[128];
    int r = nft_send_keep(b, desc, sizeof(desc), keep);

    if (r < 0)
        what("%s", desc);
    return r;
}

static int nft_commit(struct nft_batch *b)
{
    return nft_commit_keep(b, NULL);
}

/* Policy routing for TPROXY: "fwmark MARK lookup TABLE" + "local default dev lo". */
static int routing_ensure(struct rtnl *rt, int family)
{
    int lo, r;

    if ((lo = rtnl_check(rtnl_link_index(rt, "lo"))) < 0)
        return lo;
    /* create-exclusive, "already there" is success: no dump that grows with N */
    r = rtnl_rule_fwmark(rt, true, family, NFT_MARK, NFT_ROUTE_TABLE, NFT_RULE_PRIO);
    if (r < 0 && r != -EEXIST)
        return rtnl_check(r);
    r = rtnl_route_local_default(rt, true, family, NFT_ROUTE_TABLE, lo);
    if (r < 0 && r != -EEXIST)
        return rtnl_check(r);
    return 0;
}

static int routing_remove(struct rtnl *rt, int family)
{
    int lo = rtnl_link_index(rt, "lo"), r;

    while ((r = rtnl_rule_fwmark_exists(rt, family, NFT_MARK, NFT_ROUTE_TABLE)) > 0)
        if ((r = rtnl_check(rtnl_rule_fwmark(rt, false, family, NFT_MARK, NFT_ROUTE_TABLE,
                                             NFT_RULE_PRIO))) < 0)
            return r;
    if (r < 0 && r != -EAFNOSUPPORT)
        return rtnl_check(r);
    r = rtnl_route_local_default_exists(rt, family, NFT_ROUTE_TABLE);
    if (r > 0 && lo > 0)
        r = rtnl_route_local_default(rt, false, family, NFT_ROUTE_TABLE, lo);
    if (r < 0 && r != -EAFNOSUPPORT && r != -ESRCH && r != -ENOENT)
        return rtnl_check(r);
    return 0;
}

static int resolv_conf(const struct sandbox *s, bool create)
{
    char dir[64], path[96], gw[INET6_ADDRSTRLEN], gw6[INET6_ADDRSTRLEN];
    uint8_t a[16];
    FILE *f;

    snprintf(dir, sizeof(dir), "%s/%s", ETC_NETNS, s->name);
    snprintf(path, sizeof(path), "%s/resolv.conf", dir);
    if (!create) {
        if (unlink(path) < 0 && errno != ENOENT)
            return what("removing %s", path), -errno;
        if (rmdir(dir) < 0 && errno != ENOENT)
            return what("removing %s", dir), -errno;
        rmdir(ETC_NETNS);       /* ours if empty now; ENOTEMPTY leaves others' alone */
        return 0;
    }
    what("writing %s", path);
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

/* Removes whatever of S exists; shared pieces go with the last sandbox using them. */
static int teardown(const struct sandbox *s, struct others others)
{
    struct nft_sandbox n;
    struct nft_batch *b;
    struct nft_socket *nft = NULL;
    struct rtnl *rt = NULL;
    char pre[64], nat[64];
    int r, first = 0;

    nft_view(s, &n);
    nft_chain_names(s->name, pre, nat);
    what("reading table inet " NFT_TABLE);
    r = nft_table_exists();
    if (r > 0) {
        b = nft_batch_new();
        if (!b)
            return -ENOMEM;
        if (others.all == 0)
            r = nft_build_table_del(b);
        else
            r = nft_build_sandbox_del(b, &n, nft_sandbox_elem_exists(s->host_if) > 0,
                                      nft_chain_exists(pre) > 0);
        if (r == 0)
            r = nft_commit_keep(b, &nft);     /* released after the veth is gone */
        nft_batch_free(b);
    }
    if (r < 0)
        first = r;

    if ((r = rtnl_check(rtnl_open(&rt))) < 0) {
        nft_release(nft);
        return first ? first : r;
    }
    if (s->mode == SANDBOX_NETNS) {
        r = rtnl_link_del(rt, s->host_if);       /* takes the peer with it */
        if (r < 0 && r != -ENODEV && !first)
            first = rtnl_check(r);
        if ((r = netns_delete(s->name)) < 0 && !first) {
            what("removing %s/%s", NETNS_RUN_DIR, s->name);
            first = r;
        }
        if ((r = resolv_conf(s, false)) < 0 && !first)
            first = r;
    } else {
        int idx = rtnl_link_index(rt, s->host_if);
        uint8_t gw[16];

        if (idx > 0) {      /* the VMM owns the tap: only take our addresses back */
            sandbox_gateway(&s->subnet, gw);
            r = rtnl_addr_del(rt, idx, AF_INET, gw, s->subnet.len);
            if (r < 0 && r != -EADDRNOTAVAIL && !first)
                first = rtnl_check(r);
            if (s->v6) {
                sandbox_gateway(&s->subnet6, gw);
                r = rtnl_addr_del(rt, idx, AF_INET6, gw, s->subnet6.len);
                if (r < 0 && r != -EADDRNOTAVAIL && !first)
                    first = rtnl_check(r);
            }
        }
    }
    if (others.all == 0 && (r = routing_remove(rt, AF_INET)) < 0 && !first)
        first = r;
    if (others.v6 == 0 && (r = routing_remove(rt, AF_INET6)) < 0 && !first)
        first = r;
    rtnl_close(rt);
    nft_release(nft);
    if (!first && (r = state_remove(s->name)) < 0) {
        what("removing the record of %s", s->name);
        first = r;
    }
    return first;
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
static int choose_subnet(struct rtnl *rt, const struct up_opts *o, struct sandbox *s)
{
    struct sandbox *all = NULL;
    struct used_ctx u = {0};
    struct cidr pool;
    size_t n = 0, i;
    int r;

    what("listing sandboxes in %s", state_dir());
    if ((r = state_list(&all, &n)) < 0)
        return r;
    u.cap = n + 1024;
    u.v = calloc(u.cap, sizeof(*u.v));
    if (!u.v) {
        free(all);
        return -ENOMEM;
    }
    for (i = 0; i < n; i++)
        if (strcmp(all[i].name, s->name) != 0)
            u.v[u.n++] = all[i].subnet;
    r = rtnl_check(rtnl_addr_each(rt, collect_used, &u));
    if (r == 0 && o->have_subnet) {
        s->subnet = o->subnet;
        for (i = 0; i < u.n; i++) {
            if (cidr_overlaps(&o->subnet, &u.v[i])) {
                char a[CIDR_STRLEN], b[CIDR_STRLEN];

                cidr_format(&o->subnet, a);
                cidr_format(&u.v[i], b);
                what("subnet %s overlaps %s, which is in use", a, b);
                r = -EADDRINUSE;
                break;
            }
        }
    } else if (r == 0) {
        cidr_parse(POOL_DEFAULT, &pool);
        what("allocating a /%d from %s", POOL_SLOT_LEN, POOL_DEFAULT);
        r = pool_pick(&pool, POOL_SLOT_LEN, u.v, u.n, &s->subnet);
    }
    free(u.v);
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
    char pre[64], nat[64];
    bool ok;
    int fd;

    nft_chain_names(s->name, pre, nat);
    if (rtnl_open(&rt) < 0)
        return false;
    ok = rtnl_link_is_up(rt, s->host_if) == 1 && nft_chain_exists(pre) == 1 &&
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
static int configure_inside(const struct sandbox *s, int nsfd)
{
    struct rtnl *rt = NULL;
    uint8_t gw[16], sb[16];
    int saved, r, lo, eth;

    what("entering network namespace %s", s->name);
    if ((r = netns_enter(nsfd, &saved)) < 0)
        return r;
    if ((r = rtnl_check(rtnl_open(&rt))) < 0)
        goto out;
    if ((r = rtnl_check(lo = rtnl_link_index(rt, "lo"))) < 0 ||
        (r = rtnl_check(rtnl_link_set_up(rt, lo))) < 0 ||
        (r = rtnl_check(eth = rtnl_link_index(rt, SANDBOX_IF))) < 0)
        goto out;
    /* v6 off: no addresses, no router advertisements, no link-local chatter */
    if ((r = sysctl_if("all", "accept_ra", "0")) < 0 ||
        (r = sysctl_if("default", "accept_ra", "0")) < 0 ||
        (r = sysctl_if(SANDBOX_IF, "accept_ra", "0")) < 0 ||
        (r = sysctl_if("all", "disable_ipv6", s->v6 ? "0" : "1")) < 0 ||
        (r = sysctl_if("default", "disable_ipv6", s->v6 ? "0" : "1")) < 0 ||
        (r = sysctl_if(SANDBOX_IF, "disable_ipv6", s->v6 ? "0" : "1")) < 0)
        goto out;
    sandbox_gateway(&s->subnet, gw);
    sandbox_address(&s->subnet, sb);
    if ((r = rtnl_check(rtnl_addr_add(rt, eth, AF_INET, sb, s->subnet.len))) < 0 ||
        (r = rtnl_check(rtnl_link_set_up(rt, eth))) < 0 ||
        (r = rtnl_check(rtnl_route_add_default(rt, AF_INET, gw, eth))) < 0)
        goto out;
    if (s->v6) {
        sandbox_gateway(&s->subnet6, gw);
        sandbox_address(&s->subnet6, sb);
        if ((r = rtnl_check(rtnl_addr_add(rt, eth, AF_INET6, sb, s->subnet6.len))) < 0 ||
            (r = rtnl_check(rtnl_route_add_default(rt, AF_INET6, gw, eth))) < 0)
            goto out;
    }
out:
    rtnl_close(rt);
    if (netns_leave(saved) < 0 && r == 0) {
        what("returning to the host's network namespace");
        r = -errno;
    }
    return r;
}

/* The host side of S: gateway address on HOST_IF (up), policy routing, rules. */
static int configure_host(struct rtnl *rt, const struct sandbox *s)
{
    struct nft_sandbox n;
    struct nft_batch *b;
    uint8_t gw[16];
    int idx, r;

    if ((r = rtnl_check(idx = rtnl_link_index(rt, s->host_if))) < 0)
        return r;
    if ((r = sysctl_if(s->host_if, "accept_ra", "0")) < 0 ||
        (r = sysctl_if(s->host_if, "disable_ipv6", s->v6 ? "0" : "1")) < 0)
        return r;
    sandbox_gateway(&s->subnet, gw);
    if ((r = rtnl_check(rtnl_addr_add(rt, idx, AF_INET, gw, s->subnet.len))) < 0)
        return r;
    if (s->v6) {
        sandbox_gateway(&s->subnet6, gw);
        if ((r = rtnl_check(rtnl_addr_add(rt, idx, AF_INET6, gw, s->subnet6.len))) < 0)
            return r;
    }
    if ((r = rtnl_check(rtnl_link_set_up(rt, idx))) < 0 ||
        (r = routing_ensure(rt, AF_INET)) < 0 || (s->v6 && (r = routing_ensure(rt, AF_INET6)) < 0))
        return r;

    /* The base chains are written only with the table: rewriting them on every
     * up would make the kernel wait for the old rules' release (~10 ms). */
    what("reading table inet " NFT_TABLE);
    if ((r = nft_table_exists()) < 0)
        return r;
    b = nft_batch_new();
    if (!b)
        return -ENOMEM;
    nft_view(s, &n);
    r = r == 0 ? nft_build_base(b) : 0;
    if (r == 0)
        r = nft_build_sandbox_add(b, &n);
    if (r == 0)
        r = nft_commit(b);
    else
        what("building the nftables batch");
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
        if (strcmp(all[i].name, name) != 0) {
            o.all++;
            o.v6 += all[i].v6;
        }
    }
    free(all);
    return o;
}

/* up and attach: the parts they share. */
static int create(const char *name, const struct up_opts *o, enum sandbox_mode mode,
                  struct sandbox *out)
{
    struct sandbox s = {0}, old;
    struct rtnl *rt = NULL;
    int lock, r, nsfd = -1;

    what("locking %s/lock", state_dir());
    if ((lock = state_lock()) < 0)
        return lock;
    r = state_load(name, &old);
    if (r == 0) {
        if (!same_request(&old, o) || old.mode != mode) {
            char net[CIDR_STRLEN];

            cidr_format(&old.subnet, net);
            what("sandbox %s exists with other settings (subnet %s, interface %s)", name,
                 net, old.host_if);
            err_hint = "run 'sluice-netsetup down NAME' first, or pick another name";
            r = -EEXIST;
            goto out;
        }
        if (is_complete(&old)) {        /* up twice is a no-op */
            *out = old;
            r = 0;
            goto out;
        }
        if ((r = teardown(&old, count_others(name))) < 0)     /* half-built: start over */
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
    if ((r = rtnl_check(rtnl_open(&rt))) < 0)
        goto out;
    r = rtnl_link_index(rt, s.host_if);
    if (mode == SANDBOX_NETNS && r >= 0) {
        what("interface %s exists and is not a sluice sandbox's", s.host_if);
        err_hint = "pick another name, or remove the interface";
        r = -EEXIST;
        goto out;
    }
    if (mode == SANDBOX_ATTACH && r < 0) {
        rtnl_check(r);
        goto out;
    }
    if ((r = choose_subnet(rt, o, &s)) < 0)
        goto out;
    what("recording sandbox %s in %s", name, state_dir());
    if ((r = state_save(&s)) < 0)
        goto out;

    if (mode == SANDBOX_NETNS) {
        what("creating network namespace %s/%s", NETNS_RUN_DIR, name);
        if ((r = netns_create(name)) < 0) {
            /* nothing is built yet, and a namespace of that name is not ours to undo */
            if (r == -EEXIST) {
                what("network namespace %s/%s exists and is not a sluice sandbox's",
                     NETNS_RUN_DIR, name);
                err_hint = "pick another name";
            }
            state_remove(name);
            goto out;
        }
        what("opening network namespace %s", name);
        if ((r = nsfd = netns_open(name)) < 0)
            goto fail;
        if ((r = rtnl_check(rtnl_link_add_veth(rt, s.host_if, SANDBOX_IF, nsfd))) < 0 ||
            (r = configure_inside(&s, nsfd)) < 0)
            goto fail;
    }
    if ((r = configure_host(rt, &s)) < 0)
        goto fail;
    if (mode == SANDBOX_NETNS && (r = resolv_conf(&s, true)) < 0)
        goto fail;
    *out = s;
    r = 0;
    goto out;

fail:
    {
        char keep[sizeof(err_what)];

        memcpy(keep, err_what, sizeof(keep));   /* report the cause, not the cleanup */
        teardown(&s, count_others(name));
        memcpy(err_what, keep, sizeof(keep));
    }
out:
    if (nsfd >= 0)
        close(nsfd);
    rtnl_close(rt);
    state_unlock(lock);
    return r;
}

int sandbox_up(const char *name, const struct up_opts *o, struct sandbox *out)
{
    return create(name, o, SANDBOX_NETNS, out);
}

int sandbox_attach(const char *name, const struct up_opts *o, struct sandbox *out)
{
    return create(name, o, SANDBOX_ATTACH, out);
}

int sandbox_down(const char *name, bool *found)
{
    struct sandbox s;
    int lock, r;

    *found = false;
    what("locking %s/lock", state_dir());
    if ((lock = state_lock()) < 0)
        return lock;
    r = state_load(name, &s);
    if (r == -ENOENT) {
        r = 0;
    } else if (r < 0) {
        what("reading the record of %s in %s", name, state_dir());
    } else {
        *found = true;
        r = teardown(&s, count_others(name));
    }
    state_unlock(lock);
    return r;
}

/* ---- pod mode ---- */

int pod_up(const struct pod_opts *o)
{
    struct nft_pod p = {o->proxy_uid, o->proxy_port, o->dns_port, o->metrics_port,
                        o->max_conntrack};
    struct nft_batch *b;
    struct rtnl *rt;
    int r;

    if ((r = rtnl_check(rtnl_open(&rt))) < 0)
        return r;
    r = routing_ensure(rt, AF_INET);
    /* IPv6 may be off in the pod; then there is nothing of v6 to intercept */
    if (r == 0 && access("/proc/sys/net/ipv6", F_OK) == 0)
        r = routing_ensure(rt, AF_INET6);
    rtnl_close(rt);
    if (r < 0)
        return r;
    b = nft_batch_new();
    if (!b)
        return -ENOMEM;
    r = nft_build_pod(b, &p);
    if (r == 0)
        r = nft_commit(b);
    nft_batch_free(b);
    return r;
}

int pod_down(void)
{
    struct nft_batch *b;
    struct rtnl *rt;
    int r;

    what("reading table inet " NFT_TABLE);
    r = nft_table_exists();
    if (r > 0) {
        b = nft_batch_new();
        if (!b)
            return -ENOMEM;
        r = nft_build_table_del(b);
        if (r == 0)
            r = nft_commit(b);
        nft_batch_free(b);
    }
    if (r < 0)
        return r;
    if ((r = rtnl_check(rtnl_open(&rt))) < 0)
        return r;
    r = routing_remove(rt, AF_INET);
    if (r == 0)
        r = routing_remove(rt, AF_INET6);
    rtnl_close(rt);
    return r;
}

/* ---- status ---- */

int sandbox_status(const char *name, bool json, FILE *out)
{
    struct sandbox *all = NULL, one;
    size_t n = 0, i;
    struct rtnl *rt = NULL;
    int r;

    if (name) {
        what("reading the record of %s in %s", name, state_dir());
        if ((r = state_load(name, &one)) < 0)
            return r;
        all = malloc(sizeof(one));
        if (!all)
            return -ENOMEM;
        all[0] = one;
        n = 1;
    } else {
        what("listing sandboxes in %s", state_dir());
        if ((r = state_list(&all, &n)) < 0)
            return r;
    }
    if ((r = rtnl_check(rtnl_open(&rt))) < 0) {
        free(all);
        return r;
    }
    if (json)
        fprintf(out, "[");
    else
        fprintf(out, "%-15s %-6s %-15s %-18s %-21s %5s %9s %9s %9s %9s\n", "NAME", "MODE",
                "HOST_IF", "GATEWAY", "PROXY", "LINK", "PROXY_PKT", "DNS_PKT", "REJECTED",
                "DROPPED");
    for (i = 0; i < n; i++) {
        struct nft_counters c;
        struct sandbox_view v;
        int up = rtnl_link_is_up(rt, all[i].host_if);

        view(&all[i], &v);
        if (nft_sandbox_counters(all[i].name, &c) < 0)
            memset(&c, 0, sizeof(c));
        if (json) {
            fprintf(out, "%s{\"name\": \"%s\", \"mode\": \"%s\", \"host_if\": \"%s\", "
                    "\"gateway_addr\": \"%s\", \"sandbox_addr\": \"%s\", "
                    "\"proxy_listen\": \"%s\", \"dns_listen\": \"%s\", \"link_up\": %s, "
                    "\"counters\": {\"proxy\": %llu, \"dns\": %llu, \"rejected\": %llu, "
                    "\"dropped\": %llu}}", i ? ", " : "", all[i].name,
                    all[i].mode == SANDBOX_ATTACH ? "attach" : "netns", all[i].host_if,
                    v.gateway_addr, v.sandbox_addr, v.proxy_listen, v.dns_listen,
                    up == 1 ? "true" : "false", (unsigned long long)c.proxy,
                    (unsigned long long)c.dns, (unsigned long long)c.rejected,
                    (unsigned long long)c.dropped);
        } else {
            fprintf(out, "%-15s %-6s %-15s %-18s %-21s %5s %9llu %9llu %9llu %9llu\n",
                    all[i].name, all[i].mode == SANDBOX_ATTACH ? "attach" : "netns",
                    all[i].host_if, v.gateway_addr, v.proxy_listen,
                    up == 1 ? "up" : up == 0 ? "down" : "gone", (unsigned long long)c.proxy,
                    (unsigned long long)c.dns, (unsigned long long)c.rejected,
                    (unsigned long long)c.dropped);
        }
    }
    if (json)
        fprintf(out, "]\n");
    rtnl_close(rt);
    free(all);
    return 0;
}

/* ---- verify ---- */

__attribute__((format(printf, 3, 4)))
static void problem(FILE *out, int *n, const char *fmt, ...)
{
    va_list ap;

    fprintf(out, "FAIL: ");
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fprintf(out, "\n");
    (*n)++;
}

static void compare_chain(const struct sandbox *s, const char *chain, FILE *out, int *n)
{
    struct nft_sandbox ns;
    char *live = malloc(TEXT_MAX), *want = malloc(TEXT_MAX);

    nft_view(s, &ns);
    if (!live || !want)
        problem(out, n, "out of memory comparing chain %s", chain);
    else if (nft_chain_text(chain, live, TEXT_MAX) < 0)
        problem(out, n, "chain %s in table inet %s cannot be read", chain, NFT_TABLE);
    else if (nft_expect_text(&ns, chain, want, TEXT_MAX) < 0 || strcmp(live, want) != 0)
        problem(out, n, "chain %s differs from what up installs:\n--- live\n%s--- expected\n%s",
                chain, live, want);
    free(live);
    free(want);
}

/* Reads the sandbox's counters; N names what the probe should have moved. */
static uint64_t counter_of(const char *name, int which)
{
    struct nft_counters c;

    if (nft_sandbox_counters(name, &c) < 0)
        return 0;
    return which == 0 ? c.proxy : which == 1 ? c.rejected : c.dropped;
}

/*
 * Probes from inside the namespace, proving by the rules' own counters that
 * each packet was handled as P1 says: TCP to a port of the gateway is taken
 * by TPROXY, QUIC is refused at once, other UDP and ICMP are dropped, and a
 * DNS query with another host's source address is dropped before anything
 * could answer that host.
 */
/* Whether an echo reply arrives on raw ICMP socket FD within MS (other ICMP, such
 * as the port-unreachable the QUIC probe earned, is skipped). */
static bool echo_answered(int fd, int ms)
{
    uint8_t pkt[256];

    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t got;
        size_t ihl;

        if (poll(&p, 1, ms) != 1)
            return false;
        got = recv(fd, pkt, sizeof(pkt), MSG_DONTWAIT);
        if (got < 20)
            continue;
        ihl = (size_t)(pkt[0] & 0x0f) * 4;
        if ((size_t)got > ihl && pkt[ihl] == 0)       /* ICMP_ECHOREPLY */
            return true;
    }
}

/* An IPv4 UDP datagram to DST:53 from 192.0.2.2 (TEST-NET-1: not the sandbox);
 * the kernel fills in the IP checksum, length and id; the UDP checksum is 0. */
static size_t spoofed_dns(uint8_t pkt[33], const struct in_addr *dst)
{
    static const uint8_t head[20] = {0x45, 0, 0, 0, 0, 0, 0, 0, 64, IPPROTO_UDP, 0, 0,
                                     192, 0, 2, 2};
    static const uint8_t udp[13] = {0x9c, 0x40, 0, 53, 0, 13, 0, 0, 'p', 'r', 'o', 'b', 'e'};

    memcpy(pkt, head, sizeof(head));
    memcpy(pkt + 16, &dst->s_addr, 4);
    memcpy(pkt + 20, udp, sizeof(udp));
    return 33;
}

static void probe(const struct sandbox *s, FILE *out, int *n)
{
    struct sockaddr_in gw = {.sin_family = AF_INET}, far = {.sin_family = AF_INET};
    static const uint8_t echo[8] = {8, 0, 0xf7, 0xff, 0, 0, 0, 0};   /* checksum set */
    int tcp = -1, quic = -1, udp = -1, icmp = -1, raw = -1, nsfd, saved;
    uint8_t spoof[33];
    uint64_t before;
    uint8_t a[16];
    char buf[64];

    sandbox_gateway(&s->subnet, a);
    memcpy(&gw.sin_addr, a, 4);
    inet_pton(AF_INET, "192.0.2.1", &far.sin_addr);   /* TEST-NET-1: never routed */

    /* Sockets belong to the namespace they are made in: make them inside, then
     * come back, so that the counters are read from the host's rules. */
    nsfd = netns_open(s->name);
    if (nsfd < 0 || netns_enter(nsfd, &saved) < 0) {
        problem(out, n, "cannot enter network namespace %s", s->name);
        if (nsfd >= 0)
            close(nsfd);
        return;
    }
    tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    quic = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    icmp = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    raw = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (netns_leave(saved) < 0)
        problem(out, n, "cannot return to the host's network namespace");
    close(nsfd);
    if (tcp < 0 || quic < 0 || udp < 0 || icmp < 0 || raw < 0) {
        problem(out, n, "cannot open probe sockets in %s: %s", s->name, strerror(errno));
        goto out;
    }

    before = counter_of(s->name, 0);                 /* TCP: intercepted, whatever port */
    gw.sin_port = htons(22);
    {
        struct pollfd p = {.fd = tcp, .events = POLLOUT};

        connect(tcp, (struct sockaddr *)&gw, sizeof(gw));
        poll(&p, 1, 500);
    }
    if (counter_of(s->name, 0) == before)
        problem(out, n, "TCP to the gateway's port 22 was not taken by TPROXY");

    before = counter_of(s->name, 1);                 /* QUIC: refused at once */
    far.sin_port = htons(443);
    {
        struct pollfd p = {.fd = quic, .events = POLLIN};
        ssize_t got = -1;

        errno = 0;
        if (connect(quic, (struct sockaddr *)&far, sizeof(far)) == 0 &&
            send(quic, "quic", 4, 0) == 4 && poll(&p, 1, 1000) == 1)
            got = recv(quic, buf, sizeof(buf), MSG_DONTWAIT);
        if (!(got < 0 && errno == ECONNREFUSED))
            problem(out, n, "UDP to port 443 was not refused (QUIC must fail at once)");
    }
    if (counter_of(s->name, 1) == before)
        problem(out, n, "UDP to port 443 did not hit the reject rule");

    before = counter_of(s->name, 2);                 /* other UDP and ICMP: dropped */
    far.sin_port = htons(9);
    sendto(udp, "probe", 5, 0, (struct sockaddr *)&far, sizeof(far));
    sendto(icmp, echo, sizeof(echo), 0, (struct sockaddr *)&gw, sizeof(gw));
    if (echo_answered(icmp, 300))
        problem(out, n, "ICMP echo to the gateway was answered");
    if (counter_of(s->name, 2) < before + 2)
        problem(out, n, "UDP to port 9 and ICMP were not both dropped by the sandbox chain");

    before = counter_of(s->name, 2);                 /* another host's source: dropped */
    sendto(raw, spoof, spoofed_dns(spoof, &gw.sin_addr), 0, (struct sockaddr *)&gw,
           sizeof(gw));
    if (counter_of(s->name, 2) < before + 1)
        problem(out, n, "a DNS query with a source other than the sandbox's was not dropped");
out:
    if (tcp >= 0)
        close(tcp);
    if (quic >= 0)
        close(quic);
    if (udp >= 0)
        close(udp);
    if (icmp >= 0)
        close(icmp);
    if (raw >= 0)
        close(raw);
}

int sandbox_verify(const char *name, FILE *out)
{
    struct sandbox s;
    struct rtnl *rt = NULL;
    char pre[64], nat[64];
    int n = 0, r, fd;

    what("reading the record of %s in %s", name, state_dir());
    if ((r = state_load(name, &s)) < 0)
        return r;
    if ((r = rtnl_check(rtnl_open(&rt))) < 0)
        return r;
    if (rtnl_link_is_up(rt, s.host_if) != 1)
        problem(out, &n, "interface %s is missing or down", s.host_if);
    if (rtnl_rule_fwmark_exists(rt, AF_INET, NFT_MARK, NFT_ROUTE_TABLE) != 1)
        problem(out, &n, "policy rule 'fwmark 0x%x lookup %u' is missing", NFT_MARK,
                NFT_ROUTE_TABLE);
    if (rtnl_route_local_default_exists(rt, AF_INET, NFT_ROUTE_TABLE) != 1)
        problem(out, &n, "route 'local default dev lo table %u' is missing", NFT_ROUTE_TABLE);
    rtnl_close(rt);

    nft_chain_names(s.name, pre, nat);
    if (nft_sandbox_elem_exists(s.host_if) != 1)
        problem(out, &n, "%s is not in the sandboxes set of table inet %s", s.host_if,
                NFT_TABLE);
    compare_chain(&s, pre, out, &n);
    compare_chain(&s, nat, out, &n);

    if (s.mode == SANDBOX_NETNS) {
        fd = netns_open(s.name);
        if (fd < 0)
            problem(out, &n, "network namespace %s/%s is missing", NETNS_RUN_DIR, s.name);
        else
            close(fd);
        if (n == 0)
            probe(&s, out, &n);
    }
    if (n == 0)
        fprintf(out, "ok: sandbox %s holds P1 (rules, routing and probes checked)\n", name);
    return n;
}

/* ---- verify --pod ---- */

#define POD_METRICS_PROBE_PORT 15090    /* the default --metrics-port */

static void pod_counters(struct nft_counters *c)
{
    memset(c, 0, sizeof(*c));
    nft_chain_counters("pod_mark", c);
    nft_chain_counters("pod_out", c);
}

static uint64_t caught(const struct nft_counters *c)
{
    return c->proxy + c->rejected + c->dropped;
}

static uint16_t sum16(const uint8_t *p, size_t n, uint32_t acc)
{
    size_t i;

    for (i = 0; i + 1 < n; i += 2)
        acc += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        acc += (uint32_t)(p[n - 1] << 8);
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return (uint16_t)~acc;
}

/* An IPv4 TCP segment with FLAGS from SRC:SPORT to DST:DPORT and a 5-byte body;
 * the kernel fills in the IP checksum, length and id. */
static size_t tcp_segment(uint8_t pkt[45], const struct in_addr *src, uint16_t sport,
                          const struct in_addr *dst, uint16_t dport, uint8_t flags)
{
    uint8_t pseudo[12 + 25];
    uint16_t c;

    memset(pkt, 0, 45);
    pkt[0] = 0x45;
    pkt[8] = 64;
    pkt[9] = IPPROTO_TCP;
    memcpy(pkt + 12, &src->s_addr, 4);
    memcpy(pkt + 16, &dst->s_addr, 4);
    pkt[20] = (uint8_t)(sport >> 8);
    pkt[21] = (uint8_t)sport;
    pkt[22] = (uint8_t)(dport >> 8);
    pkt[23] = (uint8_t)dport;
    pkt[27] = pkt[31] = 1;                      /* seq, ack */
    pkt[32] = 5 << 4;
    pkt[33] = flags;
    pkt[34] = pkt[35] = 0xff;                   /* window */
    memcpy(pkt + 40, "probe", 5);
    memcpy(pseudo, pkt + 12, 8);
    pseudo[8] = 0;
    pseudo[9] = IPPROTO_TCP;
    pseudo[10] = 0;
    pseudo[11] = 25;
    memcpy(pseudo + 12, pkt + 20, 25);
    c = sum16(pseudo, sizeof(pseudo), 0);
    pkt[36] = (uint8_t)(c >> 8);
    pkt[37] = (uint8_t)c;
    return 45;
}

/* Neighbour discovery with a body, to a global address: must not leave. */
static void pod_probe_nd(FILE *out, int *n)
{
    struct sockaddr_in6 far = {.sin6_family = AF_INET6};
    uint8_t ns[8 + 16 + 5] = {135};
    struct nft_counters before, after;
    int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6), hops = 255;
    ssize_t r;

    if (fd < 0) {
        fprintf(out, "skipped: neighbour-discovery probe (no IPv6 here: %s)\n",
                strerror(errno));
        return;
    }
    inet_pton(AF_INET6, "2001:db8::1", &far.sin6_addr);     /* documentation: never ours */
    memcpy(ns + 8, &far.sin6_addr, 16);
    memcpy(ns + 24, "probe", 5);
    setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops));
    pod_counters(&before);
    r = sendto(fd, ns, sizeof(ns), 0, (struct sockaddr *)&far, sizeof(far));
    if (r < 0 && errno == ENETUNREACH)
        fprintf(out, "skipped: neighbour-discovery probe (no IPv6 route out of the pod)\n");
    else if (pod_counters(&after), r >= 0 || after.dropped == before.dropped)
        problem(out, n, "neighbour discovery with a body, to a global address, was not "
                "dropped by pod_out");
    close(fd);
}

/* A spoofed ACK to the metrics port, then a forged "reply" from it: the first
 * is dropped for its source, the second never leaves as a reply. */
static void pod_probe_spoof(FILE *out, int *n)
{
    struct sockaddr_in far = {.sin_family = AF_INET, .sin_port = htons(9)}, self;
    struct nft_counters before, after;
    socklen_t len = sizeof(self);
    uint8_t pkt[45];
    int fd = -1, u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

    inet_pton(AF_INET, "192.0.2.2", &far.sin_addr);         /* TEST-NET-1: never ours */
    /* the source the kernel would pick for the outside: the pod's own address */
    if (u < 0 || connect(u, (struct sockaddr *)&far, sizeof(far)) < 0 ||
        getsockname(u, (struct sockaddr *)&self, &len) < 0) {
        fprintf(out, "skipped: spoofed-source probes (no IPv4 route out of the pod)\n");
        goto out;
    }
    fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
    if (fd < 0) {
        problem(out, n, "cannot open a raw socket: %s", strerror(errno));
        goto out;
    }
    pod_counters(&before);
    sendto(fd, pkt, tcp_segment(pkt, &far.sin_addr, 40000, &self.sin_addr,
                                POD_METRICS_PROBE_PORT, 0x10), 0,
           (struct sockaddr *)&self, sizeof(self));
    pod_counters(&after);
    if (after.dropped == before.dropped)
        problem(out, n, "a packet with another host's source address was not dropped");
    before = after;
    sendto(fd, pkt, tcp_segment(pkt, &self.sin_addr, POD_METRICS_PROBE_PORT, &far.sin_addr,
                                40000, 0x18), 0, (struct sockaddr *)&far, sizeof(far));
    pod_counters(&after);
    if (caught(&after) == caught(&before))
        problem(out, n, "a forged reply from the metrics port was neither intercepted nor "
                "dropped");
out:
    if (u >= 0)
        close(u);
    if (fd >= 0)
        close(fd);
}

int pod_verify(FILE *out)
{
    static const char *const chains[] = {"pod_mark", "pod_tproxy", "pod_dns", "pod_out"};
    size_t i;
    int n = 0;

    for (i = 0; i < sizeof(chains) / sizeof(chains[0]); i++)
        if (nft_chain_exists(chains[i]) != 1)
            problem(out, &n, "chain %s is missing from table inet %s (run 'sluice-netsetup "
                    "pod')", chains[i], NFT_TABLE);
    if (n == 0) {
        pod_probe_nd(out, &n);
        pod_probe_spoof(out, &n);
    }
    if (n == 0)
        fprintf(out, "ok: the pod's rules hold P1 (chains, and probes: neighbour discovery "
                "to a global address, a spoofed source, a forged metrics reply)\n");
    fprintf(out, "not checked (not visible from inside the pod): that the workload never "
            "runs as root, as the proxy's UID, or with CAP_SETUID, CAP_NET_ADMIN or "
            "CAP_NET_RAW; the pod spec must say so\n");
    return n;
}
