/*
 * The libFuzzer entry point every target in this directory defines, declared
 * once so that the targets and the standalone replay driver agree on it.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
