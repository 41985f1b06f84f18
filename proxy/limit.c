/* Token buckets and the log gate (see limit.h). */
#include "limit.h"

void limit_bucket_init(struct limit_bucket *b, uint64_t depth, uint64_t now_ms)
{
    b->tokens = (double)depth;
    b->last_ms = now_ms;
}

uint64_t limit_bucket_take(struct limit_bucket *b, uint64_t rate, uint64_t depth,
                           uint64_t want, uint64_t now_ms)
{
    uint64_t got;

    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * (double)rate / 1000.0;
        b->last_ms = now_ms;
    }
    if (b->tokens > (double)depth)
        b->tokens = (double)depth;      /* also a policy reload that lowered the depth */
    if (b->tokens < 1.0)
        return 0;
    got = (uint64_t)b->tokens;
    if (got > want)
        got = want;
    b->tokens -= (double)got;
    return got;
}

void limit_bucket_refund(struct limit_bucket *b, uint64_t n)
{
    b->tokens += (double)n;
}

uint64_t limit_bucket_wait_ms(const struct limit_bucket *b, uint64_t rate, uint64_t n)
{
    double missing = (double)n - b->tokens;
    uint64_t ms;

    if (missing <= 0 || rate == 0)
        return 1;
    ms = (uint64_t)(missing * 1000.0 / (double)rate) + 1;
    return ms;
}

bool log_gate_pass(struct log_gate *g, uint64_t per_second, uint64_t now_ms,
                   uint64_t *suppressed)
{
    uint64_t second = now_ms / 1000;

    if (second != g->second) {
        g->second = second;
        g->count = 0;
    }
    if (++g->count > per_second) {
        g->suppressed++;
        return false;
    }
    *suppressed = g->suppressed;
    g->suppressed = 0;
    return true;
}
