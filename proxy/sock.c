/*
 * Socket addresses and listening sockets (see sock.h).
 */
#include "sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hostport.h"

bool sock_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + 8], *host;
    uint16_t port;

    if (strlen(spec) >= sizeof(buf))
        return false;
    strcpy(buf, spec);
    if (!hostport_split(buf, 0, &host, &port))
        return false;
    memset(ss, 0, sizeof(*ss));
    if (host == buf) {                  /* no brackets: IPv4 only */
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return false;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return false;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
    }
    return true;
}

void sock_addr_str(const struct sockaddr_storage *ss, char out[SOCK_ADDR_STR])
{
    char a[INET6_ADDRSTRLEN] = "?";

    inet_ntop(ss->ss_family, sock_addr(ss), a, sizeof(a));
    snprintf(out, SOCK_ADDR_STR, ss->ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", a,
             sock_port(ss));
}

uint16_t sock_port(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

const uint8_t *sock_addr(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET
               ? (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr
               : (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

int sock_bind(const struct sockaddr_storage *ss, socklen_t len, int type, int flags,
              int backlog)
{
    int one = 1, fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        ((flags & SOCK_NODELAY) &&
         setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) ||
        ((flags & SOCK_V6ONLY) &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
        ((flags & SOCK_TRANSPARENT) &&
         (ss->ss_family == AF_INET
              ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))
              : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))) < 0) ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 ||
        (type == SOCK_STREAM && listen(fd, backlog) < 0)) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}
