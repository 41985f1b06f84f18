/*
 * The words of forwards and links: "[ADDR:]PORT", "80,443", a forward's name.
 * Pure, so that the command-line fuzzer covers them with args.c.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "hostport.h"
#include "state.h"

void forward_key(const struct forward *f, char out[FORWARD_KEY_LEN])
{
    char a[INET_ADDRSTRLEN];

    inet_ntop(AF_INET, f->addr, a, sizeof(a));
    snprintf(out, FORWARD_KEY_LEN, "%s %s:%u", f->proto == IPPROTO_UDP ? "udp" : "tcp", a,
             f->port);
}

bool forward_addr_parse(const char *s, uint8_t addr[4], uint16_t *port)
{
    char host[INET_ADDRSTRLEN];
    const char *colon = strrchr(s, ':');
    size_t n;

    if (!colon) {
        memcpy(addr, (const uint8_t[]){127, 0, 0, 1}, 4);
        return port_parse(s, port);
    }
    n = (size_t)(colon - s);
    if (n == 0 || n >= sizeof(host))
        return false;
    memcpy(host, s, n);
    host[n] = '\0';
    return inet_pton(AF_INET, host, addr) == 1 && port_parse(colon + 1, port);
}

bool link_ports_parse(const char *s, struct link *l)
{
    char buf[128], *save = NULL, *tok;
    size_t i;

    if (strlen(s) >= sizeof(buf))
        return false;
    strcpy(buf, s);
    l->n_ports = 0;
    for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        uint16_t p;

        if (l->n_ports == LINK_PORTS_MAX || !port_parse(tok, &p))
            return false;
        for (i = 0; i < l->n_ports; i++)
            if (l->ports[i] == p)
                return false;
        l->ports[l->n_ports++] = p;
    }
    return l->n_ports > 0 && s[strlen(s) - 1] != ',' && s[0] != ',' && !strstr(s, ",,");
}
