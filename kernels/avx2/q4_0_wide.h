/* q4_0_wide.h — the avx2 variant's Q4_0 prefill tile: one output per 32-bit lane, the AVX2
 * counterpart of kernels/avx512/q4_0_tile.h (read that first: same layout, same reuse rules).
 *
 * A ymm accumulator holds 8 rows of one token. For group g (elements 4g..4g+3) of a block the
 * weight register holds the 8 rows' 4 weight bytes (0..15) and the activation operand is the
 * token's 4 bytes broadcast to every lane. AVX2 has no vpdpbusd, so each group is one
 * vpmaddubsw (two int16 pair sums per lane) and the eight groups' int16 results are added as
 * int16 before a single vpmaddwd folds each lane's pair into its int32 block sum: a lane's 32
 * products are at most 15 * 128 in size each, 16 of them per int16 at most 30720 < 32767, so
 * nothing saturates and the block sum is exact. A block thus costs 8 vpmaddubsw, 7 vpaddw, one
 * vpmaddwd, the -8 offset correction (one vpaddd) and one cvt, mul, fma per 8 outputs, against
 * the shared tile's per-pair reductions and lane permutes (q_legacy.h).
 *
 * The float chain is the reference's (elm_ref_q4_0_vec_dot), block after block:
 * sum = fma((float)isum, d_w * d_a, sum). The unpacked panel ([block][group][8 rows x 4 bytes]
 * plus 8 float scales, 288 bytes a block, 144 KiB for the longest row) lives in a per-thread
 * buffer; so do the prepared token tiles (the -8 * sum(a) corrections and scales). Both are
 * reused under exactly the avx512 tile's rules: keyed by pointers, dropped by every
 * ELM_TILE_FRESH call (tiles.h), so nothing survives from one matmul into the next. Included only
 * by kernels/avx2/avx2.c, after q_legacy.h.
 */
#ifndef ELM_AVX2_Q4_0_WIDE_H
#define ELM_AVX2_Q4_0_WIDE_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/kept.h"
#include "kernels/avx2/q_legacy.h"
#include "kernels/tiles.h"

#define Q40V_R          8    /* rows per panel: one ymm of outputs per token */
#define Q40V_T          8    /* tokens per tile: 8 int16 sums + a weight + a broadcast */
#define Q40V_MIN_T      2    /* fewer tokens: the shared tile */
#define Q40V_MAX_BLOCKS 512  /* 16384 columns; longer rows take the shared tile */
#define Q40V_ABLOCKS    4096 /* kept token tiles: this many blocks in all (256 KiB) */
#define Q40V_SLOTS      64   /* at most this many token tiles kept */
/* Bytes of the next panel prefetched per block of the unpack and of the run (together a block
 * of the 8 rows; the rule is tiles.h's). */
#define Q40V_PF_UNPACK ELM_TILE_PF_UNPACK(Q40V_R * sizeof(struct elm_block_q4_0))
#define Q40V_PF_RUN    (Q40V_R * sizeof(struct elm_block_q4_0) - Q40V_PF_UNPACK)
_Static_assert(Q40V_MIN_T >= 2 && Q40V_T == 8,
               "ELM_TILE_FOR_T (tiles.h) lists the token counts 2..8");

/* One block of an 8-row panel: lane l of each vector is row l. */
struct q40v_wblock {
    __m256i w[8]; /* group g: the 4 weight bytes (0..15) of elements 4g..4g+3 */
    __m256 dw;    /* the rows' scales */
};

/* One block of a token tile: one cache line. */
struct q40v_ablock {
    int32_t corr[Q40V_T]; /* -8 * sum of the token's 32 activation bytes */
    float da[Q40V_T];     /* the token's scale */
};

struct q40v_scratch {
    struct q40v_wblock wb[Q40V_MAX_BLOCKS];
    struct q40v_ablock ab[Q40V_ABLOCKS];
    struct kept_tag atag[Q40V_SLOTS];
    uint64_t gen; /* advanced by every FRESH call: kept token tiles older than it are stale */
    struct elm_panel_key key; /* the panel wb holds */
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS, which every
 * thread of every program linking the engine would zero at start); NULL when memory is short. */
static _Thread_local struct q40v_scratch *q40v_scratch_p;

static inline struct q40v_scratch *q40v_scratch_get(void)
{
    if (!q40v_scratch_p)
        q40v_scratch_p = elm_scratch_thread(sizeof(struct q40v_scratch));
    return q40v_scratch_p;
}

/* The scratch for a call with these stream flags (kept_begin). */
static inline struct q40v_scratch *q40v_begin(int stream)
{
    struct q40v_scratch *s = q40v_scratch_get();
    if (s)
        kept_begin(&s->key, &s->gen, stream);
    return s;
}

/* Unpacks rows [0, nr) of the panel; lanes of rows nr..7 get zero weights and scales.
 * FULL: nr is 8, so every row
 * advances by one block and its address is the first row's plus r * ws: the compiler then
 * keeps eight row pointers in registers, where the general case's per-row steps (0 for a
 * missing row) spilled them and their steps to the stack (callgrind: 80 instructions a block,
 * a third of them that bookkeeping, against about 8 tokens x 35 of arithmetic). */
ALWAYS_INLINE void q40v_unpack_rows(struct q40v_scratch *s, const uint8_t *w, size_t ws, int nr,
                                    int64_t nb, const uint8_t *pf, const bool FULL)
{
    static const struct elm_block_q4_0 zero;
    const uint8_t *base[Q40V_R];
    size_t step[Q40V_R];
    for (int r = 0; r < Q40V_R; r++) {
        base[r] = FULL || r < nr ? w + (size_t)r * ws : (const uint8_t *)&zero;
        step[r] = FULL || r < nr ? sizeof(struct elm_block_q4_0) : 0;
    }
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * Q40V_PF_UNPACK, Q40V_PF_UNPACK);
        const struct elm_block_q4_0 *x[Q40V_R];
        UNROLL for (int r = 0; r < Q40V_R; r++) x[r] =
            (const struct elm_block_q4_0 *)(base[r] +
                                            (size_t)b *
                                                (FULL ? sizeof(struct elm_block_q4_0) : step[r]));
        /* z[k]: row k's 16 qs bytes in the low half, row k + 4's in the high half */
        __m256i z[4];
        UNROLL for (int k = 0; k < 4; k++) z[k] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)x[k]->qs)),
            _mm_loadu_si128((const __m128i *)x[k + 4]->qs), 1);
        /* a 4x4 dword transpose per half: raw[d] lane l = dword d of row l (rows in order) */
        const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]),
                      t1 = _mm256_unpackhi_epi32(z[0], z[1]);
        const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]),
                      t3 = _mm256_unpackhi_epi32(z[2], z[3]);
        const __m256i raw[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                                _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
        struct q40v_wblock *o = &s->wb[b];
        /* byte j holds element j (low nibble) and element j + 16 (high nibble) */
        UNROLL for (int g = 0; g < 4; g++)
        {
            _mm256_store_si256(&o->w[g], _mm256_and_si256(raw[g], m4));
            _mm256_store_si256(&o->w[g + 4], _mm256_and_si256(_mm256_srli_epi16(raw[g], 4), m4));
        }
        /* the scales inserted straight from memory (vpinsrw): one instruction a row */
        __m128i d = _mm_cvtsi32_si128(load_u16(&x[0]->d));
        d = _mm_insert_epi16(d, load_u16(&x[1]->d), 1);
        d = _mm_insert_epi16(d, load_u16(&x[2]->d), 2);
        d = _mm_insert_epi16(d, load_u16(&x[3]->d), 3);
        d = _mm_insert_epi16(d, load_u16(&x[4]->d), 4);
        d = _mm_insert_epi16(d, load_u16(&x[5]->d), 5);
        d = _mm_insert_epi16(d, load_u16(&x[6]->d), 6);
        d = _mm_insert_epi16(d, load_u16(&x[7]->d), 7);
        _mm256_store_ps((float *)&o->dw, _mm256_cvtph_ps(d));
    }
}

static void q40v_unpack(struct q40v_scratch *s, const uint8_t *w, size_t ws, int nr, int64_t nb,
                        const uint8_t *pf)
{
    if (nr == Q40V_R)
        q40v_unpack_rows(s, w, ws, nr, nb, pf, true);
    else
        q40v_unpack_rows(s, w, ws, nr, nb, pf, false);
}

/* The per-block corrections and scales of tokens [0, nt), into ab[0..nb). */
static void q40v_prep(struct q40v_ablock *ab, const uint8_t *a, size_t as, int nt, int64_t nb)
{
    for (int t = 0; t < nt; t++) {
        const struct elm_block_q8_0 *v = (const struct elm_block_q8_0 *)(a + (size_t)t * as);
        int64_t b = 0;
        for (; b + 8 <= nb; b += 8) {
            __m256i p[8];
            UNROLL for (int j = 0; j < 8; j++) p[j] = neg_sum4(loadu256(v[b + j].qs), 8);
            int32_t c[8];
            _mm256_storeu_si256((__m256i *)c,
                                hsum8x8_epi32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]));
            UNROLL for (int j = 0; j < 8; j++)
            {
                ab[b + j].corr[t] = c[j];
                ab[b + j].da[t] = h2f(v[b + j].d);
            }
        }
        for (; b < nb; b++) {
            ab[b].corr[t] = hsum_epi32(neg_sum4(loadu256(v[b].qs), 8));
            ab[b].da[t] = h2f(v[b].d);
        }
    }
}

/* NT tokens against the unpacked panel; rows [0, nr) of each token's outputs are stored.
 * pf: when not NULL, what the unpack left of the next panel's rows (the weights come from
 * memory), prefetched Q40V_PF_RUN bytes per block of this run so that memory works while the
 * multiply-adds do, as the avx512 tile does (kern9a). The whole panel at once during the unpack
 * queued the prefetches behind the panel's own loads and the run that followed left memory
 * idle. */
ALWAYS_INLINE void q40v_run(const struct q40v_scratch *s, const struct q40v_ablock *abs, int64_t nb,
                            const uint8_t *a, size_t as, float *y, int64_t ys, int nr,
                            const uint8_t *pf, const int NT)
{
    __m256 acc[Q40V_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; b++) {
        const struct q40v_wblock *wb = &s->wb[b];
        const struct q40v_ablock *ab = &abs[b];
        if (pf)
            prefetch_span(pf + b * Q40V_PF_RUN, Q40V_PF_RUN);
        /* group by group, each weight register serving all NT tokens at once: NT int16 sums,
         * one weight and one broadcast live instead of all eight weights (which, with the NT
         * accumulators, spilled). The int16 sums are exact in any order (see the top). At 8
         * tokens three float accumulators still spill, a load and a store per block off the
         * multiply ports; one 8-token pass over the panel is still faster than two 4-token ones
         * (docs/kernels-perf.md, "Zen 5, 8 tokens"). */
        const uint8_t *q =
            a + (size_t)b * sizeof(struct elm_block_q8_0) + offsetof(struct elm_block_q8_0, qs);
        __m256i s16[Q40V_T];
        UNROLL for (int g = 0; g < 8; g++)
        {
            const __m256i wg = _mm256_load_si256(&wb->w[g]);
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256i p = _mm256_maddubs_epi16(
                    wg, _mm256_set1_epi32((int32_t)load_u32(q + (size_t)t * as + 4 * g)));
                s16[t] = g == 0 ? p : _mm256_add_epi16(s16[t], p);
                KEEP_CHAIN(s16[t]); /* else GCC makes trees and spills them (simd.h) */
            }
        }
        const __m256 dw = _mm256_load_ps((const float *)&wb->dw);
        UNROLL for (int t = 0; t < NT; t++)
        {
            const __m256i isum =
                _mm256_add_epi32(_mm256_madd_epi16(s16[t], ones), _mm256_set1_epi32(ab->corr[t]));
            /* sum = fmaf((float)isum, d_w * d_a, sum), 8 outputs at once */
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum),
                                     _mm256_mul_ps(dw, _mm256_set1_ps(ab->da[t])), acc[t]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
    {
        if (nr == Q40V_R) {
            _mm256_storeu_ps(y + t * ys, acc[t]);
        } else {
            float out[Q40V_R];
            _mm256_storeu_ps(out, acc[t]);
            for (int r = 0; r < nr; r++)
                y[t * ys + r] = out[r];
        }
    }
}

/* The prepared token tile at a: a kept one if this thread made it since the last FRESH call,
 * else made now (kept.h; the rules of q40w_acts in kernels/avx512/q4_0_tile.h). */
static const struct q40v_ablock *q40v_acts(struct q40v_scratch *s, const uint8_t *a, size_t as,
                                           int nt, int64_t nb)
{
    bool make;
    const int64_t slot =
        kept_slot(s->atag, Q40V_ABLOCKS, Q40V_SLOTS, Q40V_T, a, as, nb, nt, s->gen, &make);
    struct q40v_ablock *ab = &s->ab[slot * nb];
    if (make)
        q40v_prep(ab, a, as, nt, nb);
    return ab;
}

/* The elm_tile_fn of the avx2 Q4_0 entry: nt <= Q40V_T; nr <= Q40V_R with several tokens
 * (one token: a whole row chunk, for the shared tile). */
static void q4_0_tile_wide(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream)
{
    struct q40v_scratch *s = q40v_begin(stream);
    const int64_t nb = n / ELM_QK;
    if (!s || nt < Q40V_MIN_T || nr > Q40V_R || nb < 1 || nb > Q40V_MAX_BLOCKS) {
        elm_tile_in_panels(q4_0_tile, Q40_R, Q40_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    /* the first token tile of a panel brings the next one (matmul.c: STREAM only when t is 0),
     * a part during the unpack and the rest during the run */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? (const uint8_t *)w + Q40V_R * ws : NULL;
    if (!elm_panel_is(&s->key, w, ws, nb, nr, 0)) {
        q40v_unpack(s, w, ws, nr, nb, pf);
        elm_panel_set(&s->key, w, ws, nb, nr, 0);
    }
    const struct q40v_ablock *abs = q40v_acts(s, a, as, nt, nb);
    if (pf) /* the unpack asked for the first Q40V_PF_UNPACK bytes a block */
        pf += nb * Q40V_PF_UNPACK;
#define Q40V_RUN(T) q40v_run(s, abs, nb, a, as, y, ys, nr, pf, T)
    ELM_TILE_FOR_T(nt, Q40V_RUN);
#undef Q40V_RUN
}

#endif
