/*
 * One rtnetlink route lookup per address, on a socket opened once, its answer
 * kept until the kernel announces a change of any link, address, route or
 * routing rule (a second socket, subscribed to those groups, which the event
 * loop watches): a flow to a destination seen before costs no netlink round
 * trip. The request is a single fixed message framed with the kernel's own
 * uapi macros (NLMSG_*, RTA_*): libmnl, which netsetup uses, ships no static
 * library in Debian, and -Dstatic_proxy must stay possible.
 */
#include "route.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ROUTE_REPLY_MAX 8192    /* one RTM_NEWROUTE answer is a few hundred bytes */
#define ROUTE_STALE_MAX 8       /* replies to earlier, abandoned questions skipped */
#define ROUTE_CACHE 256         /* answers kept, one slot per address hash */
/* what can change whether an address is the host's own */
#define ROUTE_GROUPS (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | \
                      RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE | RTMGRP_IPV4_RULE)

struct route_answer {
    uint8_t family;             /* 0: empty */
    uint8_t local;
    uint8_t addr[16];
};

struct route_probe {
    int fd;
    int watch;                  /* change notifications; -1: nothing is kept */
    uint32_t seq;
    struct route_answer cache[ROUTE_CACHE];
};

/* The socket that hears of changes, or -1 (then every question goes to the kernel). */
static int watch_open(void)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = ROUTE_GROUPS};
    int group = RTNLGRP_IPV6_RULE;      /* has no legacy group bit */
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);

    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(group)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int route_probe_open(struct route_probe **out)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct route_probe *rp = calloc(1, sizeof(*rp));
    int err;

    if (!rp)
        return -ENOMEM;
    rp->watch = -1;
    rp->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (rp->fd < 0 || bind(rp->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        route_probe_free(rp);
        return err;
    }
    rp->watch = watch_open();
    *out = rp;
    return 0;
}

int route_probe_watch_fd(const struct route_probe *rp)
{
    return rp->watch;
}

void route_probe_changed(struct route_probe *rp)
{
    uint8_t buf[ROUTE_REPLY_MAX];

    /* whatever it says (ENOBUFS too: changes were lost), every answer is forgotten */
    while (recv(rp->watch, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
    memset(rp->cache, 0, sizeof(rp->cache));
}

void route_probe_free(struct route_probe *rp)
{
    if (!rp)
        return;
    if (rp->fd >= 0)
        close(rp->fd);
    if (rp->watch >= 0)
        close(rp->watch);
    free(rp);
}

/* The answer to question SEQ in the LEN bytes of BUF: 1/0 as route_is_local(),
 * -EAGAIN when BUF holds no answer to it. */
static int route_reply(const uint8_t *buf, size_t len, uint32_t seq)
{
    size_t off = 0;

    while (len - off >= sizeof(struct nlmsghdr)) {
        const struct nlmsghdr *h = (const struct nlmsghdr *)(const void *)(buf + off);
        size_t mlen = h->nlmsg_len;

        if (mlen < sizeof(*h) || mlen > len - off)
            return -EBADMSG;
        off += NLMSG_ALIGN(mlen) < len - off ? NLMSG_ALIGN(mlen) : len - off;
        if (h->nlmsg_seq != seq)
            continue;
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);

            if (mlen < NLMSG_LENGTH(sizeof(*e)))
                return -EBADMSG;
            /* no route at all (unreachable, prohibited, blackhole): not ours either */
            if (e->error == -ENETUNREACH || e->error == -EHOSTUNREACH ||
                e->error == -EACCES || e->error == -EINVAL)
                return 0;
            return e->error < 0 ? e->error : -EBADMSG;
        }
        if (h->nlmsg_type == RTM_NEWROUTE) {
            const struct rtmsg *rt = NLMSG_DATA(h);

            if (mlen < NLMSG_LENGTH(sizeof(*rt)))
                return -EBADMSG;
            return rt->rtm_type == RTN_LOCAL || rt->rtm_type == RTN_BROADCAST;
        }
    }
    return -EAGAIN;
}

/* ADDR's slot in the cache (FNV-1a: a hostile resolver can only make answers miss). */
static struct route_answer *slot(struct route_probe *rp, int family, const uint8_t *addr,
                                 size_t alen)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    size_t i;

    for (i = 0; i < alen; i++)
        h = (h ^ addr[i]) * 16777619u;
    return &rp->cache[h % ROUTE_CACHE];
}

/* The kernel's answer for ADDR (ALEN bytes of FAMILY), as route_is_local(). */
static int ask(struct route_probe *rp, int family, const uint8_t *addr, size_t alen)
{
    struct {
        struct nlmsghdr h;
        struct rtmsg rt;
        uint8_t attrs[RTA_SPACE(16)];
    } req;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    uint8_t buf[ROUTE_REPLY_MAX] __attribute__((aligned(NLMSG_ALIGNTO)));
    struct rtattr *rta;
    int i, rc;

    memset(&req, 0, sizeof(req));
    req.h.nlmsg_type = RTM_GETROUTE;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.h.nlmsg_seq = ++rp->seq;
    req.rt.rtm_family = (unsigned char)family;
    req.rt.rtm_dst_len = (unsigned char)(alen * 8);
    rta = (struct rtattr *)(void *)req.attrs;
    rta->rta_type = RTA_DST;
    rta->rta_len = (unsigned short)RTA_LENGTH(alen);
    memcpy(RTA_DATA(rta), addr, alen);
    req.h.nlmsg_len = (uint32_t)(NLMSG_LENGTH(sizeof(req.rt)) + RTA_SPACE(alen));

    if (sendto(rp->fd, &req, req.h.nlmsg_len, 0, (struct sockaddr *)&kernel,
               sizeof(kernel)) < 0)
        return -errno;
    /* rtnetlink answers within the sendto: the reply is queued already */
    for (i = 0; i < ROUTE_STALE_MAX; i++) {
        ssize_t n = recv(rp->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0)
            return -errno;
        rc = route_reply(buf, (size_t)n, rp->seq);
        if (rc != -EAGAIN)
            return rc;
    }
    return -EAGAIN;
}

int route_is_local(struct route_probe *rp, int family, const uint8_t *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    size_t alen = family == AF_INET ? 4 : 16;
    struct route_answer *a;
    int rc;

    if (family == AF_INET6 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
        family = AF_INET;               /* the kernel sends it as IPv4 */
        addr += sizeof(mapped);
        alen = 4;
    }
    if (rp->watch < 0)
        return ask(rp, family, addr, alen);
    a = slot(rp, family, addr, alen);
    if (a->family == family && memcmp(a->addr, addr, alen) == 0)
        return a->local;
    rc = ask(rp, family, addr, alen);
    if (rc >= 0) {                      /* an error is asked again next time */
        a->family = (uint8_t)family;
        a->local = (uint8_t)rc;
        memset(a->addr, 0, sizeof(a->addr));
        memcpy(a->addr, addr, alen);
    }
    return rc;
}
