/* Sandbox name validation and derived names. */
#include "sandbox_name.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

bool sandbox_name_valid(const char *s)
{
    size_t i, len = strlen(s);

    if (len == 0 || len > SANDBOX_NAME_MAX)
        return false;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

void sandbox_host_ifname(const char *name, char out[IFNAME_LEN])
{
    uint32_t h = 2166136261u;
    size_t i, len = strlen(name);

    if (len <= IFNAME_LEN - 1 - 3) {
        snprintf(out, IFNAME_LEN, "sl-%s", name);
        return;
    }
    for (i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    snprintf(out, IFNAME_LEN, "sl-%.7s%05x", name, (unsigned)(h & 0xfffff));
}
