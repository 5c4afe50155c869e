// CRC-32C for the journal's records. Hand-written because no library the
// package may depend on offers it (swift-crypto has none); the hardware
// path is the x86 `crc32` instruction, eight bytes at a time.
#include "CSecureOpsSystem.h"
#include <string.h>

#define CRC32C_POLY 0x82F63B78u // reflected Castagnoli polynomial

static uint32_t table[256];

__attribute__((constructor)) static void crc32c_init_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
        table[n] = c;
    }
}

static uint32_t crc32c_table(uint32_t crc, const unsigned char *p, size_t length) {
    while (length--) crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const unsigned char *p, size_t length) {
    uint64_t c = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        length -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (length--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t cs_crc32c(uint32_t crc, const void *data, size_t length) {
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc32c_sse42(crc, data, length);
#endif
    return ~crc32c_table(crc, data, length);
}
