/*
 * crc32.h — CRC-32 (IEEE 802.3 / zlib polynomial), as Python's zlib.crc32.
 */
#ifndef EDGEMOE_CRC32_H
#define EDGEMOE_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 of n bytes at data, continuing from crc (pass 0 to start), as zlib.crc32(data, crc). */
uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t n);

#endif /* EDGEMOE_CRC32_H */
