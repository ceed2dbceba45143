/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of every record in the
 * data directory's files (datafile.h).  Slicing-by-8 tables, no CPU
 * intrinsics, so every build computes the same bytes.
 */
#ifndef KVSD_CRC32C_H
#define KVSD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: crc32c(0, p, n) is the checksum of p[0..n);
 * crc32c(crc32c(0, a, n), b, m) that of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
