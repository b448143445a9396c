/* lanes.h — what the avx512 variant's one-output-per-lane tiles of Q8_0 and the K-quants share
 * (q_legacy_tile.h, q_k_tile.h, iq4_tile.h; q4_0_tile.h takes its row set and gathers): the
 * per-thread buffer of the unpacked panel, the rule for reusing it, the rows of a sub-panel
 * as one block pointer and fixed offsets, the transposition that unpacks 16 rows at once, and
 * the store of the outputs.
 *
 * A panel is LN_R rows (two zmm of outputs per token, LN_S sub-panels of 16). Unpacked, its
 * weights are laid out so that lane l of a vector belongs to row ln_row(l) of its sub-panel:
 * one vpdpbusd then advances the same partial sum of 16 outputs (q4_0_tile.h does the same
 * with 16-row panels). Unpacking costs about as much as a few tokens' arithmetic over the
 * panel, so matmul.c's calls for the token tiles of one panel reuse it: the buffer is keyed by
 * (weights, row stride, blocks, rows, type), which identifies the panel only within one matmul;
 * every thread's first call in a matmul has tiles.h's ELM_TILE_FRESH set, and such a call
 * always unpacks again. Activations
 * are prepared per call (a few instructions per block and token, no buffer).
 *
 * Calls with fewer than LN_MIN_T tokens (decode, pairs) take the shared tile of the type
 * (kernels/avx2/), which streams the rows with prefetches: unpacking a panel for one or two
 * tokens costs more than it saves. Included only by kernels/avx512/avx512.c.
 */
#ifndef ELM_AVX512_LANES_H
#define ELM_AVX512_LANES_H

#include <stddef.h>
#include <stdint.h>

#include "common/scratch.h"
#include "kernels/avx2/simd.h"
#include "kernels/kernels.h"
#include "kernels/tiles.h"

#define LN_S           2           /* sub-panels of 16 rows per panel */
#define LN_R           (16 * LN_S) /* rows per panel */
#define LN_T           8           /* tokens per call at most */
#define LN_MIN_T       3           /* fewer tokens: the shared tile */
#define LN_PANEL_BYTES (384 << 10) /* the unpacked panel; longer rows take the shared tile */

_Static_assert(LN_MIN_T >= 2 && LN_T == 8, "ELM_TILE_FOR_T (tiles.h) lists the token counts 2..8");

struct ln_scratch {
    uint8_t panel[LN_PANEL_BYTES];
    struct elm_panel_key key; /* the panel the buffer holds (kind: its weight type) */
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS, which every
 * thread of every program linking the engine would zero at start); NULL when memory is short. */
static _Thread_local struct ln_scratch *ln_scratch_p;

static inline struct ln_scratch *ln_scratch_get(void)
{
    if (!ln_scratch_p)
        ln_scratch_p = elm_scratch_thread(sizeof(struct ln_scratch));
    return ln_scratch_p;
}

/* The 4x4 dword transposes put row 4 * (l % 4) + l / 4 of a sub-panel in lane l (an
 * involution: the same index vector puts the lanes back in row order). */
ALWAYS_INLINE int ln_row(int l)
{
    return 4 * (l % 4) + l / 4;
}

/* An unpack: fills nb blocks of the panel from nr rows; pf, when not NULL, the lines a tile
 * that prefetches asks for as it goes (tiles.h, ELM_TILE_PF_UNPACK). */
typedef void (*ln_unpack_fn)(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,
                             const uint8_t *pf);

/* The unpacked panel of the call, or NULL when the rows are too long for the buffer. The
 * unpack function fills `blocks` blocks of `bytes` each from nr rows. */
ALWAYS_INLINE const uint8_t *ln_panel(int type, const void *w, size_t ws, int nr, int64_t nb,
                                      size_t bytes, int stream, ln_unpack_fn unpack,
                                      const uint8_t *pf)
{
    if ((uint64_t)nb * bytes > sizeof((struct ln_scratch *)0)->panel)
        return NULL;
    struct ln_scratch *s = ln_scratch_get();
    if (!s)
        return NULL;
    if ((stream & ELM_TILE_FRESH) || !elm_panel_is(&s->key, w, ws, nb, nr, type)) {
        elm_panel_forget(&s->key); /* an unpack never fails, but keep the key honest meanwhile */
        unpack(s->panel, (const uint8_t *)w, ws, nr, nb, pf);
        elm_panel_set(&s->key, w, ws, nb, nr, type);
    }
    return s->panel;
}

/* The 16 rows of sub-panel sp: one block pointer and a fixed offset per row. Rows past nr
 * read row nr - 1 (their lanes' outputs are never stored; ln_gather_f16 gives them scale 0).
 * A pointer and a step per row (rows past nr reading a zero block, step 0) cost the unpacks
 * 16 pointer updates and stack traffic per block. */
struct ln_rowset {
    const uint8_t *w; /* row 16 sp's block 0 is at w + off[0] */
    size_t bb;        /* bytes per block */
    size_t off[16];   /* row 16 sp + r: w + off[r] */
    __mmask16 live;   /* lanes whose row is below nr */
};

ALWAYS_INLINE void ln_rows(struct ln_rowset *rs, const uint8_t *w, size_t ws, int nr, int sp,
                           size_t block_bytes)
{
    rs->w = w;
    rs->bb = block_bytes;
    rs->live = 0;
    for (int r = 0; r < 16; r++) {
        const int row = 16 * sp + r;
        rs->off[r] = (size_t)(row < nr ? row : nr - 1) * ws;
    }
    for (int l = 0; l < 16; l++)
        rs->live |= (__mmask16)((16 * sp + ln_row(l) < nr) << l);
}

/* Row 16 sp + r's block b. */
ALWAYS_INLINE const uint8_t *ln_block(const struct ln_rowset *rs, int r, int64_t b)
{
    return rs->w + (size_t)b * rs->bb + rs->off[r];
}

/* z[k], k < 4: the 16 bytes at byte offset off of block b of rows 4k .. 4k + 3, one row per
 * 128-bit lane: what ln_transpose4 makes ln_gather4's vectors of. */
ALWAYS_INLINE void ln_load4(const struct ln_rowset *rs, int64_t b, size_t off, __m512i z[4])
{
    const uint8_t *x = rs->w + (size_t)b * rs->bb + off;
    UNROLL for (int k = 0; k < 4; k++)
    {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(x + rs->off[4 * k])));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + rs->off[4 * k + 1])), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + rs->off[4 * k + 2])), 2);
        z[k] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(x + rs->off[4 * k + 3])), 3);
    }
}

/* out[d]: dword d of each row's 16 bytes in z (ln_load4), lane l from row ln_row(l). */
ALWAYS_INLINE void ln_transpose4(const __m512i z[4], __m512i out[4])
{
    /* per 128-bit lane q: [z0.d z1.d z2.d z3.d], so lane 4q + k holds row 4k + q */
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(t0, t2);
    out[1] = _mm512_unpackhi_epi64(t0, t2);
    out[2] = _mm512_unpacklo_epi64(t1, t3);
    out[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* out[d], d < 4: dword d of the 16 bytes at byte offset off of block b of the 16 rows, lane l
 * from row ln_row(l). */
ALWAYS_INLINE void ln_gather4(const struct ln_rowset *rs, int64_t b, size_t off, __m512i out[4])
{
    __m512i z[4];
    ln_load4(rs, b, off, z);
    ln_transpose4(z, out);
}

/* The fp16 in the low half of every dword of v, as floats: a block's scale from a dword that
 * ln_gather4 brought with other fields. */
ALWAYS_INLINE __m512 ln_f16_lo(__m512i v)
{
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

/* The 16 rows' fp16 scale at byte offset off of block b, as floats in lane order; 0 in lanes
 * past nr. Sixteen scalar loads packed four to a general register, not a vpgatherdd: on Zen 5
 * a 16-lane gather issues once in ~12 cycles and holds up the multiply-adds around it
 * (docs/kernels-perf.md). Lane 4k + j is row 4j + k (ln_row). */
ALWAYS_INLINE __m512 ln_gather_f16(const struct ln_rowset *rs, int64_t b, size_t off)
{
    const uint8_t *x = rs->w + (size_t)b * rs->bb + off;
    uint64_t q[4];
    UNROLL for (int k = 0; k < 4; k++)
    {
        q[k] = 0;
        UNROLL for (int j = 0; j < 4; j++) q[k] |= (uint64_t)load_u16(x + rs->off[4 * j + k])
                                                   << (16 * j);
    }
    const __m256i h =
        _mm256_set_epi64x((long long)q[3], (long long)q[2], (long long)q[1], (long long)q[0]);
    return _mm512_maskz_mov_ps(rs->live, _mm512_cvtph_ps(h));
}

/* elm_hsum8 of eight accumulators, lane by lane: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)). */
ALWAYS_INLINE __m512 ln_hsum8(const __m512 a[8])
{
    const __m512 r0 = _mm512_add_ps(a[0], a[4]), r1 = _mm512_add_ps(a[1], a[5]);
    const __m512 r2 = _mm512_add_ps(a[2], a[6]), r3 = _mm512_add_ps(a[3], a[7]);
    return _mm512_add_ps(_mm512_add_ps(r0, r2), _mm512_add_ps(r1, r3));
}

/* Stores the outputs of sub-panel sp (lane order) of one token: rows [16 sp, nr) of y. */
ALWAYS_INLINE void ln_store(float *y, int nr, int sp, __m512 v)
{
    const __m512i back =
        _mm512_setr_epi32(ln_row(0), ln_row(1), ln_row(2), ln_row(3), ln_row(4), ln_row(5),
                          ln_row(6), ln_row(7), ln_row(8), ln_row(9), ln_row(10), ln_row(11),
                          ln_row(12), ln_row(13), ln_row(14), ln_row(15));
    const int n = nr - 16 * sp;
    if (n <= 0)
        return;
    const __mmask16 m = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    _mm512_mask_storeu_ps(y + 16 * sp, m, _mm512_permutexvar_ps(back, v));
}

#endif
