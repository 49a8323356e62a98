/*
 * crc32.c — table-driven CRC-32, reflected polynomial 0xEDB88320 (zlib, PNG, Ethernet).
 *
 * The 1 KiB table is rebuilt on every call instead of being kept in a lazily-filled global:
 * it costs about 2,000 operations, which is nothing next to hashing a header, and keeps the
 * function free of shared state (safe from any thread with no initialisation step).
 */
#include "crc32.h"

/* Fill table[b] = CRC of the single byte b, for b in 0..255. */
static void crc32_table_fill(uint32_t table[256]) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[b] = c;
    }
}

uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t n) {
    uint32_t table[256];
    crc32_table_fill(table);
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}
