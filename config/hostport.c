/*
 * Ports and HOST[:PORT] (see hostport.h).
 */
#include "hostport.h"

#include <string.h>

bool port_parse(const char *s, uint16_t *out)
{
    unsigned v = 0;
    size_t i;

    for (i = 0; s[i]; i++) {
        if (i == 5 || s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (i == 0 || v < 1 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

bool hostport_split(char *s, uint16_t default_port, char **host, uint16_t *port)
{
    char *colon;

    if (s[0] == '[') {
        char *close = strchr(s, ']');

        if (!close || (close[1] != '\0' && close[1] != ':'))
            return false;
        *close = '\0';
        *host = s + 1;
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        *host = s;
        colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':'))
            colon = NULL;               /* a bare IPv6 address */
    }
    if (colon)
        *colon = '\0';
    if (**host == '\0')
        return false;
    if (!colon) {
        *port = default_port;
        return default_port != 0;
    }
    return port_parse(colon + 1, port);
}
