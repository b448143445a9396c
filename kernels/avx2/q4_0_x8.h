/* q4_0_x8.h — the avx2 variant's Q4_0 tile on weights packed at load time (ELM_LAYOUT_X8,
 * kernels.h; the bytes are defined by kernels/pack.c).
 *
 * A packed block of 8 rows is the four registers q40v_unpack_rows (q4_0_wide.h) makes from the
 * rows by a transpose: lane l of register g holds bytes 4g..4g+3 of row l's quants, so its low
 * nibbles are weights 4g..4g+3 and its high nibbles 16+4g..16+4g+3; then the rows' 8 scales.
 * What is left at run time is a mask and a shift per register, done in registers:
 *  - one token (decode) and a single tile of several (batched decode): the run reads the panel
 *    as it is, with no scratch;
 *  - prefill (more token tiles of the same panel follow, ELM_TILE_MORE): the panel is unpacked
 *    once into q4_0_wide.h's scratch and its run serves every token tile, as for file rows.
 * The arithmetic and its order are q4_0_wide.h's (read its top): the same int16 sums, the same
 * per-block float chain, so the bits are the reference's. Included by kernels/avx2/avx2.c and,
 * for its one-token calls and the calls its zmm tile does not take, by the avx512 variant
 * (kernels/avx512/q4_0_tile.h).
 */
#ifndef ELM_AVX2_Q4_0_X8_H
#define ELM_AVX2_Q4_0_X8_H

#include "kernels/avx2/q4_0_wide.h"

#define Q40X_QS    128 /* quant bytes of a packed block: 4 registers of 8 rows x 4 bytes */
#define Q40X_BLOCK (Q40V_R * sizeof(struct elm_block_q4_0)) /* a packed block, scales too */
#define Q40X_CHUNK 64 /* blocks of prepared token tiles on the stack, where none are kept */
#define Q40X_KIND  1  /* the scratch's panel key: a packed panel, not file rows */
_Static_assert(Q40X_BLOCK == Q40X_QS + Q40V_R * sizeof(uint16_t),
               "a packed block takes the bytes of its 8 rows' blocks");

/* Block b's four registers and its 8 scales in the panel at p, nb blocks long. */
ALWAYS_INLINE const uint8_t *q40x_qs(const uint8_t *p, int64_t b)
{
    return p + (size_t)b * Q40X_QS;
}

ALWAYS_INLINE __m256 q40x_scales(const uint8_t *p, int64_t nb, int64_t b)
{
    return _mm256_cvtph_ps(
        _mm_loadu_si128((const __m128i *)(p + (size_t)nb * Q40X_QS + (size_t)b * 16)));
}

/* The panel at p into the scratch, as q40v_unpack would make it from the 8 rows. pf: when not
 * NULL, the next panel, of which the first nb * Q40V_PF_UNPACK bytes are prefetched here and the
 * rest by the run (q40v_run), as q4_0_tile_wide shares them. */
static void q40x_unpack(struct q40v_scratch *s, const uint8_t *p, int64_t nb, const uint8_t *pf)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * Q40V_PF_UNPACK, Q40V_PF_UNPACK);
        struct q40v_wblock *o = &s->wb[b];
        UNROLL for (int g = 0; g < 4; g++)
        {
            const __m256i raw = loadu256(q40x_qs(p, b) + 32 * g);
            _mm256_store_si256(&o->w[g], _mm256_and_si256(raw, m4));
            _mm256_store_si256(&o->w[g + 4], _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4));
        }
        _mm256_store_ps((float *)&o->dw, q40x_scales(p, nb, b));
    }
}

/* NT tokens against blocks [b0, b1) of the panel at p, read as packed, into acc; ab[b - b0]
 * holds block b's token corrections and scales. The loop is q40v_run's, with the weights
 * unmasked from the panel instead of loaded from the scratch. pf: when not NULL, the next
 * panel, prefetched as much a block as this one reads (the panels are in one piece, but the
 * hardware prefetchers stop at each 4 KiB page; the file's rows had the same rule). */
ALWAYS_INLINE void q40x_run(const uint8_t *p, int64_t nb, int64_t b0, int64_t b1,
                            const struct q40v_ablock *ab, const uint8_t *a, size_t as, __m256 *acc,
                            const uint8_t *pf, const int NT)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t b = b0; b < b1; b++) {
        if (pf)
            prefetch_span(pf + (size_t)b * Q40X_BLOCK, Q40X_BLOCK);
        const uint8_t *q =
            a + (size_t)b * sizeof(struct elm_block_q8_0) + offsetof(struct elm_block_q8_0, qs);
        const struct q40v_ablock *x = &ab[b - b0];
        /* VNNI: the block sum as one vpdpbusd chain per half, from the correction: 8 multiply-
         * adds and one add where the int16 sums take 17 instructions (the same exact integer) */
#ifdef ELM_SIMD_VNNI
        __m256i s32[Q40V_T][2];
#else
        __m256i s16[Q40V_T];
#endif
        UNROLL for (int g = 0; g < 4; g++)
        {
            const __m256i raw = loadu256(q40x_qs(p, b) + 32 * g);
            const __m256i w[2] = {_mm256_and_si256(raw, m4),
                                  _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4)};
            UNROLL for (int h = 0; h < 2; h++) UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256i act =
                    _mm256_set1_epi32((int32_t)load_u32(q + (size_t)t * as + 16 * h + 4 * g));
#ifdef ELM_SIMD_VNNI
                const __m256i from = g   ? s32[t][h]
                                     : h ? _mm256_setzero_si256()
                                         : _mm256_set1_epi32(x->corr[t]);
                s32[t][h] = _mm256_dpbusd_epi32(from, w[h], act);
#else
                const __m256i prod = _mm256_maddubs_epi16(w[h], act);
                s16[t] = g == 0 && h == 0 ? prod : _mm256_add_epi16(s16[t], prod);
                KEEP_CHAIN(s16[t]); /* as in q40v_run */
#endif
            }
        }
        const __m256 dw = q40x_scales(p, nb, b);
        UNROLL for (int t = 0; t < NT; t++)
        {
#ifdef ELM_SIMD_VNNI
            const __m256i isum = _mm256_add_epi32(s32[t][0], s32[t][1]);
#else
            const __m256i isum = _mm256_add_epi32(_mm256_madd_epi16(s16[t], _mm256_set1_epi16(1)),
                                                  _mm256_set1_epi32(x->corr[t]));
#endif
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum),
                                     _mm256_mul_ps(dw, _mm256_set1_ps(x->da[t])), acc[t]);
        }
    }
}

/* NT tokens against the packed panel at p, outputs y[t * ys + r] for its 8 rows. abs: the
 * prepared token tile of all nb blocks, or NULL to prepare it here a chunk at a time (no
 * scratch, or rows longer than the kept tiles hold). pf: q40x_run's. */
ALWAYS_INLINE void q40x_panel(const uint8_t *p, int64_t nb, const struct q40v_ablock *abs,
                              const uint8_t *a, size_t as, float *y, int64_t ys, const uint8_t *pf,
                              const int NT)
{
    __m256 acc[Q40V_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    if (abs) {
        q40x_run(p, nb, 0, nb, abs, a, as, acc, pf, NT);
    } else {
        for (int64_t b0 = 0; b0 < nb; b0 += Q40X_CHUNK) {
            const int64_t len = nb - b0 < Q40X_CHUNK ? nb - b0 : Q40X_CHUNK;
            struct q40v_ablock ab[Q40X_CHUNK];
            q40v_prep(ab, a + (size_t)b0 * sizeof(struct elm_block_q8_0), as, NT, len);
            q40x_run(p, nb, b0, b0 + len, ab, a, as, acc, pf, NT);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) _mm256_storeu_ps(y + t * ys, acc[t]);
}

/* The tile_x8 of the avx2 Q4_0 entry (tiles.h): nt <= Q40V_T; any nr for one token, nr <=
 * Q40V_R for several. */
static void q4_0_tile_x8(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                         int nt, float *y, int64_t ys, int stream)
{
    struct q40v_scratch *s = q40v_begin(stream);
    const int64_t nb = n / ELM_QK;
    const int full = nr - nr % Q40V_R;
    const struct q40v_ablock *abs =
        s && full && nb <= Q40V_ABLOCKS ? q40v_acts(s, a, as, nt, nb) : NULL;
    for (int r = 0; r < full; r += Q40V_R) {
        const uint8_t *p = (const uint8_t *)w + (size_t)r * ws;
        /* the weights come from memory: bring the next panel (or rows) while this one runs */
        const uint8_t *pf = stream & ELM_TILE_STREAM ? p + Q40V_R * ws : NULL;
        const bool kept = abs && elm_panel_is(&s->key, p, ws, nb, Q40V_R, Q40X_KIND);
        if (nt == 1) {
            q40x_panel(p, nb, abs, a, as, y + r, ys, pf, 1);
        } else if (kept || (abs && nb <= Q40V_MAX_BLOCKS && (stream & ELM_TILE_MORE))) {
            if (!kept) {
                q40x_unpack(s, p, nb, pf);
                elm_panel_set(&s->key, p, ws, nb, Q40V_R, Q40X_KIND);
            }
            const uint8_t *pf_run = pf ? pf + nb * Q40V_PF_UNPACK : NULL;
#define Q40X_KEPT(T) q40v_run(s, abs, nb, a, as, y + r, ys, Q40V_R, pf_run, T)
            ELM_TILE_FOR_T(nt, Q40X_KEPT);
#undef Q40X_KEPT
        } else {
#define Q40X_DIRECT(T) q40x_panel(p, nb, abs, a, as, y + r, ys, pf, T)
            ELM_TILE_FOR_T(nt, Q40X_DIRECT);
#undef Q40X_DIRECT
        }
    }
    /* the matrix's last rows, not a whole panel, are as in the file */
    if (full < nr)
        q4_0_tile_wide(n, (const uint8_t *)w + (size_t)full * ws, ws, nr - full, a, as, nt,
                       y + full, ys, stream & ~ELM_TILE_FRESH);
}

#endif
