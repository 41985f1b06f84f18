/* What the sluicectl commands share beyond the policy: sizes for people. */
#include <stdio.h>

#include "ctl.h"

void ctl_bytes(uint64_t n, char out[CTL_BYTES_MAX])
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, CTL_BYTES_MAX, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}
