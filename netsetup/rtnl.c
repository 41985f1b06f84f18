/*
 * rtnetlink requests with libmnl. Requests ask for an ACK and wait for the
 * answer to their own sequence number; dumps restart when the kernel says the
 * dump was interrupted (NLM_F_DUMP_INTR), as wireguard-tools does.
 */
#include "rtnl.h"

#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define RTNL_BUF 8192
#define NL_BUF_SIZE 16384       /* one recv of a dump; MNL_SOCKET_BUFFER_SIZE is not a constant */
#define DUMP_RETRIES 5

struct rtnl {
    struct mnl_socket *nl;
    uint32_t portid;
    uint32_t seq;
    char last_call[160];        /* what the last request was, for messages */
};

const char *rtnl_last_call(const struct rtnl *r)
{
    return r ? r->last_call : "socket(NETLINK_ROUTE)";
}

__attribute__((format(printf, 2, 3)))
static void note_call(struct rtnl *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->last_call, sizeof(r->last_call), fmt, ap);
    va_end(ap);
}

int rtnl_open(struct rtnl **out)
{
    struct rtnl *r = calloc(1, sizeof(*r));
    int err;

    if (!r)
        return -ENOMEM;
    r->nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
    if (!r->nl || mnl_socket_bind(r->nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        err = -errno;
        rtnl_close(r);
        return err;
    }
    r->portid = mnl_socket_get_portid(r->nl);
    r->seq = (uint32_t)time(NULL);
    *out = r;
    return 0;
}

void rtnl_close(struct rtnl *r)
{
    if (!r)
        return;
    if (r->nl)
        mnl_socket_close(r->nl);
    free(r);
}

/* Sends NLH and runs CB over the answers until the ACK or DONE; -errno on failure. */
static int talk(struct rtnl *r, struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
    char buf[NL_BUF_SIZE];
    uint32_t seq = ++r->seq;
    /* NLM_F_DUMP shares its bits with NLM_F_EXCL|NLM_F_CREATE: only a GET dumps */
    bool dumping = (nlh->nlmsg_type & 3) == 2 &&
                   (nlh->nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP;
    int ret;

    nlh->nlmsg_seq = seq;
    if (!dumping)
        nlh->nlmsg_flags |= NLM_F_ACK;     /* a dump ends with NLMSG_DONE instead */
    if (mnl_socket_sendto(r->nl, nlh, nlh->nlmsg_len) < 0)
        return -errno;
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(r->nl, buf, sizeof(buf));

        if (n < 0)
            return -errno;
        ret = mnl_cb_run(buf, (size_t)n, seq, r->portid, cb, data);
        if (ret < 0)
            return errno ? -errno : -EIO;
        if (ret == MNL_CB_STOP)
            return 0;
    }
}

struct dump_ctx {
    mnl_cb_t fn;
    void *data;
    bool interrupted;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
    struct dump_ctx *c = data;

    if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
        c->interrupted = true;
    return c->fn(nlh, c->data);
}

/* A dump of TYPE/FAMILY, restarted while the kernel reports it interrupted. */
static int dump(struct rtnl *r, uint16_t type, uint8_t family, size_t hdrlen, mnl_cb_t fn,
                void *data)
{
    char buf[NL_BUF_SIZE];
    struct dump_ctx c = {.fn = fn, .data = data};
    int tries, ret = 0;

    for (tries = 0; tries < DUMP_RETRIES; tries++) {
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        uint8_t *fam;

        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
        fam = mnl_nlmsg_put_extra_header(nlh, hdrlen);
        *fam = family;          /* every rt*msg starts with its family byte */
        c.interrupted = false;
        ret = talk(r, nlh, dump_cb, &c);
        if (ret < 0 || !c.interrupted)
            return ret;
    }
    return -EAGAIN;
}

static struct nlmsghdr *new_msg(char *buf, uint16_t type, uint16_t flags)
{
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);

    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    return nlh;
}

/* mnl_attr_for_each, with the length conversion spelled out for -Wconversion */
#define for_each_attr(a, nlh, off)                                                   \
    for ((a) = mnl_nlmsg_get_payload_offset((nlh), (off));                           \
         mnl_attr_ok((a), (int)((const char *)mnl_nlmsg_get_payload_tail(nlh) -      \
                                (const char *)(a)));                                 \
         (a) = mnl_attr_next(a))

static size_t family_len(int family)
{
    return family == AF_INET ? 4 : 16;
}

/* ---- links ---- */

struct index_ctx {
    int index;
    bool up;
};

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
    const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
    struct index_ctx *c = data;

    c->index = ifi->ifi_index;
    c->up = (ifi->ifi_flags & IFF_UP) != 0;
    return MNL_CB_OK;
}

static int link_get(struct rtnl *r, const char *ifname, struct index_ctx *c)
{
    char buf[RTNL_BUF];
    struct nlmsghdr *nlh = new_msg(buf, RTM_GETLINK, 0);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
    int ret;

    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    c->index = -1;
    ret = talk(r, nlh, link_cb, c);
    if (ret == 0 && c->index < 0)
        ret = -ENODEV;
    return ret;
}

int rtnl_link_index(struct rtnl *r, const char *ifname)
{
    struct index_ctx c;
    int ret;

    note_call(r, "RTM_GETLINK %s", ifname);
    ret = link_get(r, ifname, &c);
    return ret < 0 ? ret : c.index;
}

int rtnl_link_is_up(struct rtnl *r, const char *ifname)
{
    struct index_ctx c;
    int ret;

    note_call(r, "RTM_GETLINK %s", ifname);
    ret = link_get(r, ifname, &c);
    return ret < 0 ? ret : c.up;
}

int rtnl_link_add_veth(struct rtnl *r, const char *host_if, const char *peer_if,
                       int netns_fd)
{
    char buf[RTNL_BUF];
    struct nlmsghdr *nlh = new_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi)), *peer;
    struct nlattr *linkinfo, *infodata, *peerattr;

    note_call(r, "RTM_NEWLINK veth %s", host_if);
    ifi->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, host_if);
    linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
    mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
    infodata = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
    peerattr = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
    peer = mnl_nlmsg_put_extra_header(nlh, sizeof(*peer));
    peer->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_if);
    mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, (uint32_t)netns_fd);
    mnl_attr_nest_end(nlh, peerattr);
    mnl_attr_nest_end(nlh, infodata);
    mnl_attr_nest_end(nlh, linkinfo);
    return talk(r, nlh, NULL, NULL);
}

/* An RTM_*LINK message with its ifinfomsg (family AF_UNSPEC) in BUF. */
static struct nlmsghdr *link_msg(char *buf, uint16_t type, struct ifinfomsg **ifi)
{
    struct nlmsghdr *nlh = new_msg(buf, type, 0);

    *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(**ifi));
    (*ifi)->ifi_family = AF_UNSPEC;
    return nlh;
}

int rtnl_link_del(struct rtnl *r, const char *ifname)
{
    char buf[RTNL_BUF];
    struct ifinfomsg *ifi;
    struct nlmsghdr *nlh = link_msg(buf, RTM_DELLINK, &ifi);

    note_call(r, "RTM_DELLINK %s", ifname);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    return talk(r, nlh, NULL, NULL);
}

/*
 * Many links deleted in one request: each joins GROUP, then one RTM_DELLINK
 * for the group unregisters them together, sharing the kernel's waits for
 * RCU that a deletion each would pay one by one.
 */
int rtnl_link_set_group(struct rtnl *r, const char *ifname, uint32_t group)
{
    char buf[RTNL_BUF];
    struct ifinfomsg *ifi;
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, &ifi);

    note_call(r, "RTM_NEWLINK %s group %u", ifname, group);
    mnl_attr_put_strz(nlh, IFLA_IFNAME, ifname);
    mnl_attr_put_u32(nlh, IFLA_GROUP, group);
    return talk(r, nlh, NULL, NULL);
}

int rtnl_link_del_group(struct rtnl *r, uint32_t group)
{
    char buf[RTNL_BUF];
    struct ifinfomsg *ifi;
    struct nlmsghdr *nlh = link_msg(buf, RTM_DELLINK, &ifi);

    note_call(r, "RTM_DELLINK group %u", group);
    mnl_attr_put_u32(nlh, IFLA_GROUP, group);
    return talk(r, nlh, NULL, NULL);
}

struct group_ctx {
    uint32_t group;
    bool used;
};

static int group_cb(const struct nlmsghdr *nlh, void *data)
{
    struct group_ctx *c = data;
    const struct nlattr *a;

    for_each_attr(a, nlh, sizeof(struct ifinfomsg))
        if (mnl_attr_get_type(a) == IFLA_GROUP && mnl_attr_get_payload_len(a) == 4 &&
            mnl_attr_get_u32(a) == c->group)
            c->used = true;
    return MNL_CB_OK;
}

int rtnl_link_group_used(struct rtnl *r, uint32_t group)
{
    struct group_ctx c = {group, false};
    int ret;

    note_call(r, "RTM_GETLINK dump");
    ret = dump(r, RTM_GETLINK, AF_UNSPEC, sizeof(struct ifinfomsg), group_cb, &c);
    return ret < 0 ? ret : c.used;
}

int rtnl_link_set_up(struct rtnl *r, int ifindex)
{
    char buf[RTNL_BUF];
    struct ifinfomsg *ifi;
    struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, &ifi);

    note_call(r, "RTM_NEWLINK set up index %d", ifindex);
    ifi->ifi_index = ifindex;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    return talk(r, nlh, NULL, NULL);
}

/* ---- addresses ---- */

static int addr_msg(struct rtnl *r, uint16_t type, int ifindex, int family,
                    const uint8_t *addr, unsigned len)
{
    char buf[RTNL_BUF];
    struct nlmsghdr *nlh = new_msg(buf, type, type == RTM_NEWADDR
                                   ? NLM_F_CREATE | NLM_F_EXCL : 0);
    struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));

    ifa->ifa_family = (uint8_t)family;
    ifa->ifa_prefixlen = (uint8_t)len;
    ifa->ifa_index = (uint32_t)ifindex;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    if (family == AF_INET6)
        ifa->ifa_flags = IFA_F_NODAD;   /* usable at once; the link is point-to-point */
    mnl_attr_put(nlh, IFA_LOCAL, family_len(family), addr);
    mnl_attr_put(nlh, IFA_ADDRESS, family_len(family), addr);
    return talk(r, nlh, NULL, NULL);
}

static void note_addr(struct rtnl *r, const char *call, int ifindex, int family,
                      const uint8_t *addr, unsigned len)
{
    struct cidr c = {.family = (uint8_t)family, .len = (uint8_t)len};
    char text[CIDR_STRLEN];

    memcpy(c.addr, addr, family_len(family));
    cidr_format(&c, text);
    note_call(r, "%s %s index %d", call, text, ifindex);
}

int rtnl_addr_add(struct rtnl *r, int ifindex, int family, const uint8_t *addr, unsigned len)
{
    note_addr(r, "RTM_NEWADDR", ifindex, family, addr, len);
    return addr_msg(r, RTM_NEWADDR, ifindex, family, addr, len);
}

int rtnl_addr_del(struct rtnl *r, int ifindex, int family, const uint8_t *addr, unsigned len)
{
    note_addr(r, "RTM_DELADDR", ifindex, family, addr, len);
    return addr_msg(r, RTM_DELADDR, ifindex, family, addr, len);
}

struct addr_each_ctx {
    int (*fn)(const struct cidr *prefix, int ifindex, void *data);
    void *data;
    int stopped;
};

static int addr_cb(const struct nlmsghdr *nlh, void *data)
{
    const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
    struct addr_each_ctx *c = data;
    const struct nlattr *a;
    struct cidr prefix = {.family = ifa->ifa_family, .len = ifa->ifa_prefixlen};

    if (c->stopped || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
        return MNL_CB_OK;
    for_each_attr(a, nlh, sizeof(*ifa)) {
        if (mnl_attr_get_type(a) == IFA_ADDRESS &&
            mnl_attr_get_payload_len(a) == family_len(ifa->ifa_family)) {
            memcpy(prefix.addr, mnl_attr_get_payload(a), family_len(ifa->ifa_family));
            c->stopped = c->fn(&prefix, (int)ifa->ifa_index, c->data);
            break;
        }
    }
    return MNL_CB_OK;
}

int rtnl_addr_each(struct rtnl *r, int (*fn)(const struct cidr *prefix, int ifindex,
                                             void *data), void *data)
{
    struct addr_each_ctx c = {.fn = fn, .data = data};

    note_call(r, "RTM_GETADDR dump");
    return dump(r, RTM_GETADDR, AF_INET, sizeof(struct ifaddrmsg), addr_cb, &c);
}

/* ---- routes ---- */

int rtnl_route_add_default(struct rtnl *r, int family, const uint8_t *gw, int oif)
{
    char buf[RTNL_BUF];
    struct nlmsghdr *nlh = new_msg(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

    note_call(r, "RTM_NEWROUTE default %s", family == AF_INET ? "ipv4" : "ipv6");
    rtm->rtm_family = (uint8_t)family;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_UNIVERSE;
    rtm->rtm_type = RTN_UNICAST;
    mnl_attr_put(nlh, RTA_GATEWAY, family_len(family), gw);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)oif);
    return talk(r, nlh, NULL, NULL);
}

static struct nlmsghdr *local_default_msg(char *buf, bool add, int family, uint32_t table,
                                          int lo)
{
    struct nlmsghdr *nlh = new_msg(buf, add ? RTM_NEWROUTE : RTM_DELROUTE,
                                   add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    struct rtmsg *rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));

    rtm->rtm_family = (uint8_t)family;
    rtm->rtm_table = RT_TABLE_UNSPEC;
    rtm->rtm_protocol = RTPROT_STATIC;
    rtm->rtm_scope = RT_SCOPE_HOST;
    rtm->rtm_type = RTN_LOCAL;
    mnl_attr_put_u32(nlh, RTA_TABLE, table);
    mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)lo);
    return nlh;
}

int rtnl_route_local_default(struct rtnl *r, bool add, int family, uint32_t table, int lo)
{
    char buf[RTNL_BUF];

    note_call(r, "%s local default table %u", add ? "RTM_NEWROUTE" : "RTM_DELROUTE", table);
    return talk(r, local_default_msg(buf, add, family, table, lo), NULL, NULL);
}

struct route_find {
    uint32_t table;
    bool found;
};

static int route_find_cb(const struct nlmsghdr *nlh, void *data)
{
    const struct rtmsg *rtm = mnl_nlmsg_get_payload(nlh);
    struct route_find *c = data;
    const struct nlattr *a;
    uint32_t table = rtm->rtm_table;

    for_each_attr(a, nlh, sizeof(*rtm))
        if (mnl_attr_get_type(a) == RTA_TABLE)
            table = mnl_attr_get_u32(a);
    if (table == c->table && rtm->rtm_type == RTN_LOCAL && rtm->rtm_dst_len == 0)
        c->found = true;
    return MNL_CB_OK;
}

int rtnl_route_local_default_exists(struct rtnl *r, int family, uint32_t table)
{
    struct route_find c = {.table = table};
    int ret;

    note_call(r, "RTM_GETROUTE dump");
    ret = dump(r, RTM_GETROUTE, (uint8_t)family, sizeof(struct rtmsg), route_find_cb, &c);
    return ret < 0 ? ret : c.found;
}

/* ---- policy rules ---- */

int rtnl_rule_fwmark(struct rtnl *r, bool add, int family, uint32_t mark, uint32_t table,
                     uint32_t prio)
{
    char buf[RTNL_BUF];
    struct nlmsghdr *nlh = new_msg(buf, add ? RTM_NEWRULE : RTM_DELRULE,
                                   add ? NLM_F_CREATE | NLM_F_EXCL : 0);
    struct fib_rule_hdr *frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));

    note_call(r, "%s fwmark 0x%x lookup %u", add ? "RTM_NEWRULE" : "RTM_DELRULE", mark, table);
    frh->family = (uint8_t)family;
    frh->action = FR_ACT_TO_TBL;
    frh->table = RT_TABLE_UNSPEC;
    mnl_attr_put_u32(nlh, FRA_TABLE, table);
    mnl_attr_put_u32(nlh, FRA_FWMARK, mark);
    mnl_attr_put_u32(nlh, FRA_FWMASK, mark);
    mnl_attr_put_u32(nlh, FRA_PRIORITY, prio);
    return talk(r, nlh, NULL, NULL);
}

struct rule_find {
    uint32_t mark, table;
    bool found;
};

static int rule_find_cb(const struct nlmsghdr *nlh, void *data)
{
    const struct fib_rule_hdr *frh = mnl_nlmsg_get_payload(nlh);
    struct rule_find *c = data;
    const struct nlattr *a;
    uint32_t mark = 0, table = frh->table;

    for_each_attr(a, nlh, sizeof(*frh)) {
        if (mnl_attr_get_type(a) == FRA_FWMARK)
            mark = mnl_attr_get_u32(a);
        else if (mnl_attr_get_type(a) == FRA_TABLE)
            table = mnl_attr_get_u32(a);
    }
    if (mark == c->mark && table == c->table)
        c->found = true;
    return MNL_CB_OK;
}

int rtnl_rule_fwmark_exists(struct rtnl *r, int family, uint32_t mark, uint32_t table)
{
    struct rule_find c = {.mark = mark, .table = table};
    int ret;

    note_call(r, "RTM_GETRULE dump");
    ret = dump(r, RTM_GETRULE, (uint8_t)family, sizeof(struct fib_rule_hdr), rule_find_cb,
               &c);
    return ret < 0 ? ret : c.found;
}
