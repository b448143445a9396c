/* le.h — little-endian loads from frames and rings (memcpy: they have no alignment; the host is
 * little endian, proto.h asserts it). */
#ifndef ELM_IPC_LE_H
#define ELM_IPC_LE_H

#include <stdint.h>
#include <string.h>

static inline uint16_t elm_rd16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint32_t elm_rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline uint64_t elm_rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#endif
