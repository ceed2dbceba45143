/*
 * crc32c.c - CRC-32C, slicing-by-8 (the reflected polynomial 0x82f63b78,
 * as in iSCSI, ext4 and LevelDB).  The tables are built once, on first
 * use; a race between two threads building them writes identical bytes.
 */
#include "crc32c.h"

#define POLY 0x82f63b78u

static uint32_t table[8][256];
static int table_ready;

static void build_tables(void)
{
    uint32_t i, j, c;

    for (i = 0; i < 256; ++i) {
        c = i;
        for (j = 0; j < 8; ++j)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (i = 0; i < 256; ++i)
        for (j = 1; j < 8; ++j)
            table[j][i] = (table[j - 1][i] >> 8) ^ table[0][table[j - 1][i] & 0xff];
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t n)
{
    const unsigned char *p = buf;

    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE))
        build_tables();
    crc = ~crc;
    while (n >= 8) {
        /* little-endian load, byte by byte: no alignment assumptions */
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
              table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^ table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0)
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}
