/* q4_0_x8.h — the avx512 variant's Q4_0 tile on weights packed at load time (ELM_LAYOUT_X8,
 * kernels.h; bytes defined by kernels/pack.c).
 *
 * Calls of 4 to 8 tokens and 16 rows keep q4_0_tile.h's zmm tile and its arithmetic
 * (q40w_step): its 16-row panel is two packed panels, whose four registers per block (lane l:
 * 4 quant bytes of row l) become the tile's by one insert and one lane permute (ln_row's order)
 * each, where the file's rows took 16 loads and a transpose. As for rows, the panel is unpacked
 * into the buffer when more token tiles will use it (prefill, ELM_TILE_MORE), and a lone call
 * (batched decode) runs straight from the panels.
 * The rest, one token above all (decode), and fewer rows or tokens, takes the avx2 packed tile
 * (kernels/avx2/q4_0_x8.h, compiled here with this variant's flags), which reads the panels in
 * place. Same bits as every tile. Included only by kernels/avx512/avx512.c.
 */
#ifndef ELM_AVX512_Q4_0_X8_H
#define ELM_AVX512_Q4_0_X8_H

#include "kernels/avx2/q4_0_x8.h"
#include "kernels/avx512/q4_0_tile.h"

/* ln_row's lane order as a permute index (an involution: also its inverse). */
ALWAYS_INLINE __m512i q40w_order(void)
{
    return _mm512_setr_epi32(ln_row(0), ln_row(1), ln_row(2), ln_row(3), ln_row(4), ln_row(5),
                             ln_row(6), ln_row(7), ln_row(8), ln_row(9), ln_row(10), ln_row(11),
                             ln_row(12), ln_row(13), ln_row(14), ln_row(15));
}

/* Block b of the 16 rows of the packed panels p and q (the next), lane l holding row ln_row(l)
 * as q40w_block leaves it: wg the weight bytes of each group, dw the scales. */
ALWAYS_INLINE void q40w_block_x8(const uint8_t *p, const uint8_t *q, int64_t nb, int64_t b,
                                 __m512i order, __m512i wg[8], __m512 *dw)
{
    __m512i raw[4];
    UNROLL for (int g = 0; g < 4; g++) raw[g] = _mm512_permutexvar_epi32(
        order, _mm512_inserti64x4(_mm512_castsi256_si512(loadu256(q40x_qs(p, b) + 32 * g)),
                                  loadu256(q40x_qs(q, b) + 32 * g), 1));
    q40w_nibbles(raw, wg);
    const size_t d = (size_t)nb * Q40X_QS + (size_t)b * 16;
    const __m256i h =
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p + d))),
                                _mm_loadu_si128((const __m128i *)(q + d)), 1);
    *dw = _mm512_permutexvar_ps(order, _mm512_cvtph_ps(h));
}

/* The 16 rows of the packed panels at p (p and the next, ws * 8 bytes on) into the buffer, as
 * q40w_unpack leaves rows. pf: q40w_unpack's. */
static void q40w_unpack_x8(struct q40w_scratch *s, const uint8_t *p, size_t ws, int64_t nb,
                           const uint8_t *pf)
{
    const __m512i order = q40w_order();
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            ln_prefetch_l2(pf + b * Q40W_PF_UNPACK, Q40W_PF_UNPACK);
        struct q40w_wblock *o = &s->wb[b];
        __m512i wg[8];
        __m512 dw;
        q40w_block_x8(p, p + Q40V_R * ws, nb, b, order, wg, &dw);
        UNROLL for (int g = 0; g < 8; g++) _mm512_store_si512(&o->w[g], wg[g]);
        _mm512_store_ps(&o->dw, dw);
    }
}

/* NT tokens against the 16 rows of the packed panels at p, straight from them: for a call that
 * no later one reuses (batched decode), as q40w_run_direct does for rows. pf: its. */
ALWAYS_INLINE void q40w_run_direct_x8(const uint8_t *p, size_t ws, int64_t nb,
                                      const struct q40w_ablock *abs, const uint8_t *a, size_t as,
                                      float *y, int64_t ys, const uint8_t *pf, const int NT)
{
    const __m512i order = q40w_order();
    __m512 acc[Q40W_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            ln_prefetch_l2(pf + b * Q40W_R * sizeof(struct elm_block_q4_0),
                           Q40W_R * sizeof(struct elm_block_q4_0));
        __m512i wg[8];
        __m512 dw;
        q40w_block_x8(p, p + Q40V_R * ws, nb, b, order, wg, &dw);
        q40w_step(acc, wg, dw, &abs[b], a, as, b, NT);
    }
    UNROLL for (int t = 0; t < NT; t++) ln_store(y + t * ys, Q40W_R, 0, acc[t]);
}

/* The tile_x8 of the avx512 Q4_0 entry (tiles.h): nt <= Q40W_T; any nr for one token, nr <=
 * Q40W_R for several. */
static void q40w_tile_x8(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                         int nt, float *y, int64_t ys, int stream)
{
    /* both tiles' buffers start the matmul afresh, whichever of them this call takes */
    struct q40w_scratch *s = q40w_begin(stream);
    const int64_t nb = n / ELM_QK;
    if (!s || nt < Q40W_MIN_T || nr != Q40W_R || nb < 1 || nb > Q40W_MAX_BLOCKS) {
        q4_0_tile_x8(n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    (void)q40v_begin(stream);
    /* the panel after next, into L2, as q40w_tile prefetches it */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? (const uint8_t *)w + 2 * Q40W_R * ws : NULL;
    const bool kept = elm_panel_is(&s->key, w, ws, nb, nr, Q40X_KIND);
    if (!kept && !(stream & ELM_TILE_MORE)) {
        const struct q40w_ablock *abs = q40w_acts(s, a, as, nt, nb);
#define Q40W_X8_DIRECT(T) q40w_run_direct_x8(w, ws, nb, abs, a, as, y, ys, pf, T)
        ELM_TILE_FOR_T(nt, Q40W_X8_DIRECT);
#undef Q40W_X8_DIRECT
        return;
    }
    if (!kept) {
        q40w_unpack_x8(s, w, ws, nb, pf);
        elm_panel_set(&s->key, w, ws, nb, nr, Q40X_KIND);
    }
    const struct q40w_ablock *abs = q40w_acts(s, a, as, nt, nb);
    if (pf) /* the unpack asked for the first Q40W_PF_UNPACK bytes a block */
        pf += nb * Q40W_PF_UNPACK;
#define Q40W_X8_RUN(T) q40w_run(s, abs, nb, a, as, y, ys, nr, pf, T)
    ELM_TILE_FOR_T(nt, Q40W_X8_RUN);
#undef Q40W_X8_RUN
}

#endif
