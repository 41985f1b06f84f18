/*
 * SipHash-2-4 against the reference implementation's vectors (key 00..0f,
 * message 00, 01, ... of each length): the block loop, the tail and the
 * length byte each get a row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "siphash.h"

static void test_vectors(void **state)
{
    static const struct {
        size_t len;
        uint64_t hash;
        const char *why;
    } rows[] = {
        {0, 0x726fdb47dd0e0e31ULL, "the length byte alone"},
        {1, 0x74f839c593dc67fdULL, "a one-byte tail"},
        {7, 0xab0200f58b01d137ULL, "the longest tail without a block"},
        {8, 0x93f5f5799a932462ULL, "one block, no tail"},
        {15, 0xa129ca6149be45e5ULL, "the paper's example"},
        {16, 0x3f2acc7f57c29bdbULL, "two blocks"},
        {63, 0x958a324ceb064572ULL, "the reference's longest vector"},
    };
    const uint64_t key[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    uint8_t msg[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)i;
    for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        if (siphash24(key, msg, rows[i].len) != rows[i].hash)
            fail_msg("length %zu (%s)", rows[i].len, rows[i].why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
