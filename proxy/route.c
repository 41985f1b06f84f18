/*
 * One rtnetlink route lookup per question, on a socket opened once. The
 * request is a single fixed message framed with the kernel's own uapi macros
 * (NLMSG_*, RTA_*): libmnl, which netsetup uses, ships no static library in
 * Debian, and -Dstatic_proxy must stay possible.
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

struct route_probe {
    int fd;
    uint32_t seq;
};

int route_probe_open(struct route_probe **out)
{
    struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
    struct route_probe *rp = calloc(1, sizeof(*rp));
    int err;

    if (!rp)
        return -ENOMEM;
    rp->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (rp->fd < 0 || bind(rp->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        route_probe_free(rp);
        return err;
    }
    *out = rp;
    return 0;
}

void route_probe_free(struct route_probe *rp)
{
    if (!rp)
        return;
    if (rp->fd >= 0)
        close(rp->fd);
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

int route_is_local(struct route_probe *rp, int family, const uint8_t *addr)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    struct {
        struct nlmsghdr h;
        struct rtmsg rt;
        uint8_t attrs[RTA_SPACE(16)];
    } req;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    uint8_t buf[ROUTE_REPLY_MAX] __attribute__((aligned(NLMSG_ALIGNTO)));
    struct rtattr *rta;
    size_t alen = family == AF_INET ? 4 : 16;
    int i, rc;

    if (family == AF_INET6 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
        family = AF_INET;               /* the kernel sends it as IPv4 */
        addr += sizeof(mapped);
        alen = 4;
    }
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
