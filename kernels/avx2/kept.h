/* kept.h — where the avx2 prefill tiles (q4_0_wide.h, k_wide.h) keep their prepared token
 * tiles, and the rule that drops them. A tile prepares what its tokens need (activation sums,
 * scales) once, and every panel of the token chunk reuses it: matmul.c runs the chunk's token
 * tiles for one panel after another, so the tiles of a chunk, whose addresses are T rows apart,
 * take consecutive slots of a per-thread cache. A tag says what a slot was made from; a
 * generation, advanced by every ELM_TILE_FRESH call (kept_begin), makes what an earlier matmul
 * left stale (tiles.h: the data behind the same pointers may have changed). Included by the
 * avx2 and avx512 Q4_0 and K-quant tiles' headers.
 */
#ifndef ELM_AVX2_KEPT_H
#define ELM_AVX2_KEPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/tiles.h"

/* What a kept token tile was made from; gen: the cache's generation when it was made. */
struct kept_tag {
    const void *a;
    size_t as;
    int64_t nb;
    int nt;
    uint64_t gen;
};

/* What a tile's call with these stream flags does to what it keeps: on a new matmul
 * (ELM_TILE_FRESH) its unpacked panel is forgotten and its kept token tiles are made stale (gen
 * advanced), since the data behind kept pointers may have changed. */
static inline void kept_begin(struct elm_panel_key *key, uint64_t *gen, int stream)
{
    if (stream & ELM_TILE_FRESH) {
        elm_panel_forget(key);
        (*gen)++;
    }
}

/* The slot of the nt tokens at a (rows as bytes apart, nb blocks, tiles of T tokens) in a cache
 * of `blocks` blocks of prepared tiles and at most max_slots tags: blocks / nb slots of nb
 * blocks each, or max_slots. *make: the slot does not hold them yet; its tag is then claimed,
 * so the caller prepares the slot (its blocks from slot * nb) before it returns. */
static inline int64_t kept_slot(struct kept_tag *tags, int64_t blocks, int64_t max_slots, int T,
                                const void *a, size_t as, int64_t nb, int nt, uint64_t gen,
                                bool *make)
{
    const int64_t nslot = blocks / nb < max_slots ? blocks / nb : max_slots;
    const size_t span = (size_t)T * (as ? as : 1);
    const int64_t slot = (int64_t)(((uintptr_t)a / span) % (uint64_t)nslot);
    struct kept_tag *tag = &tags[slot];
    *make = tag->a != a || tag->as != as || tag->nb != nb || tag->nt != nt || tag->gen != gen;
    if (*make)
        *tag = (struct kept_tag){.a = a, .as = as, .nb = nb, .nt = nt, .gen = gen};
    return slot;
}

#endif
