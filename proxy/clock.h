/*
 * The proxy's clocks: one monotonic millisecond clock for deadlines, ages,
 * token buckets and idle checks, and the conversion libevent wants.
 */
#ifndef SLUICE_CLOCK_H
#define SLUICE_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* Monotonic milliseconds, coarse (a tick of a few ms: cheap, and fine for
 * buckets a tenth of a second deep and timeouts in seconds). */
uint64_t clock_now_ms(void);

/* Monotonic seconds, precise (the upstream connect-time histogram). */
double clock_now_s(void);

/* MS as a struct timeval, for evtimer_add() and friends. */
struct timeval clock_tv(uint64_t ms);

#endif
