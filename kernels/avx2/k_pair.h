/* k_pair.h — the avx2 variant's lone K-quant calls (batched decode: up to 8 tokens and one call
 * per panel, so nothing is unpacked for later calls): Q4_K and Q6_K rows one at a time against
 * the tokens' activations, laid out once per matmul and thread so that one vpmaddwd scales two
 * runs at once.
 *
 * The shared tile (q_k.h) gives each run of 32 elements a vpmaddubsw (int16 pair sums per lane
 * k: elements 4k, 4k + 1 and 4k + 2, 4k + 3) and a vpmaddwd by the run's scale (sc, sc), which
 * adds the pair: two multiplies per run, token and row. Here runs 2j and 2j + 1 share a
 * register: lane k of `lo` holds elements 4k, 4k + 1 of run 2j and of run 2j + 1 (k16_pair_lo),
 * `hi` elements 4k + 2, 4k + 3, for weights and activations alike. vpmaddubsw of each, added
 * as int16, gives lane k the two runs' 4-element products D, D' side by side, and one
 * vpmaddwd by (sc, sc') adds sc D + sc' D' to lane k: three multiplies per two runs. The lanes
 * hold the shared tile's exact integers, so the block's fma(d_a * d_w, lane, acc), the minimum
 * terms (Q4_K: k4_min_tpair, as k_wide.h) and the fold are the reference's bits.
 *
 * D must fit int16. Q4_K: |D| <= 4 x 15 x 128. Q6_K's weights are q - 32: with the activations
 * biased to a + 128 (unsigned, vpmaddubsw's first operand) and the weights signed,
 * |D'| <= 4 x 255 x 32. D' = D + 128 (the sum of the 4 weights) adds a term of the row alone:
 * a token of zero activations (every byte 128) gives exactly its lanes, which are taken from
 * every token's.
 *
 * The block's eight d_a * d_w are one vmulps of the tokens' d (kept with the pairs) instead of a
 * scalar product and a broadcast per token.
 *
 * Against the shared tile (scripts/tile-times.c, 1 thread, avx2, best of 20, Zen 5, builds
 * alternated), 8 tokens: Q4_K 2048 x 2048 372-396 -> 302-320 us, 32000 x 2048 5802-6122 ->
 * 5194-5310, 2048 x 5632 998-1057 -> 834-882; Q6_K 385-407 -> 350-370, 6122-6350 -> 5473-5760,
 * 1072-1078 -> 949-1000. 2048 x 2048 at 2 / 3 / 4 / 6 tokens: Q4_K 130-134 / 171 / 210 /
 * 295-311 -> 114-119 / 146-153 / 175-184 / 236-247; Q6_K 3 / 4 / 6: 207-217 / 265-272 /
 * 368-385 -> 194-204 / 223-233 / 294-306. Included only by kernels/avx2/avx2.c, after q_k.h.
 */
#ifndef ELM_AVX2_K_PAIR_H
#define ELM_AVX2_K_PAIR_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/q_k.h"
#include "kernels/tiles.h"

#define KP_T 8 /* tokens of a lone call at most */
/* Fewer tokens take the shared tile (one token: its row chunks). Q6_K's zero token costs as much
 * as a token: with 2, the shared tile was faster (2048 x 2048: 150 against 161-175 us). */
#define KP_MIN_T(KIND) ((KIND) == 6 ? 3 : 2)
#define KP_MAX_BLOCKS  64 /* 16384 columns; longer rows take the shared tile */

/* One token's super-block, paired: run pair j's lo and hi (the file's top). */
struct kp_act {
    __m256i lo[4], hi[4];
};

struct kp_scratch {
    struct kp_act pa[KP_MAX_BLOCKS * KP_T];      /* [block][token] */
    _Alignas(32) float da[KP_MAX_BLOCKS][KP_T];  /* [block][token]: the tokens' d */
    struct k4_tpair mp[KP_MAX_BLOCKS][KP_T / 2]; /* Q4_K's minimum terms: [block][token pair] */
    /* the tokens pa holds (a NULL: none), and whether biased by 128 */
    const void *a;
    size_t as;
    int64_t nb;
    int nt;
    bool bias;
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS); NULL when
 * memory is short. */
static _Thread_local struct kp_scratch *kp_scratch_p;

/* One token's super-block v, paired into o; c: each byte's bias (-128 gives a + 128, 0 none). */
ALWAYS_INLINE void kp_pair_block(struct kp_act *o, const struct elm_block_q8_k *v, __m256i c)
{
    UNROLL for (int j = 0; j < 4; j++)
    {
        const __m256i y0 = _mm256_xor_si256(loadu256(v->qs + 64 * j), c),
                      y1 = _mm256_xor_si256(loadu256(v->qs + 64 * j + 32), c);
        _mm256_store_si256(&o->lo[j], k16_pair_lo(y0, y1));
        _mm256_store_si256(&o->hi[j], k16_pair_hi(y0, y1));
    }
}

/* Q4_K block x's run scales as kp_q4_weights takes them ([sc0..sc7 | sc0..sc7] as int16; runs
 * 2j, 2j + 1's pair is int16 2j, 2j + 1), and in *mins its minimum scales as k4_min_tpair takes
 * them. */
ALWAYS_INLINE __m256i kp_q4_scales(const struct elm_block_q4_k *x, __m256i *mins)
{
    const __m256i sm = _mm256_cvtepu8_epi16(k4_scales_vec(x->scales)); /* [sc0..sc7 | m0..m7] */
    *mins = k4_tpair_mins(sm);
    return _mm256_permute2x128_si256(sm, sm, 0x00);
}

/* Q6_K block x's 16 scales as int16, as kp_q6_weights (and k16_run_scales) take them. */
ALWAYS_INLINE void kp_q6_scales(const struct elm_block_q6_k *x, __m256i scv[2])
{
    const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)x->scales));
    scv[0] = _mm256_permute2x128_si256(sc, sc, 0x00);
    scv[1] = _mm256_permute2x128_si256(sc, sc, 0x11);
}

/* Run pair j of Q4_K block x, paired: the quants of runs 2j (low nibbles) and 2j + 1 (high) in
 * *wlo, *whi, their scales in *sc2 (scv: [sc0..sc7 | sc0..sc7] as int16). */
ALWAYS_INLINE void kp_q4_weights(const struct elm_block_q4_k *x, __m256i scv, int j, __m256i *wlo,
                                 __m256i *whi, __m256i *sc2)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i raw = loadu256(x->qs + 32 * j);
    const __m256i q0 = _mm256_and_si256(raw, m4),
                  q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
    *wlo = k16_pair_lo(q0, q1);
    *whi = k16_pair_hi(q0, q1);
    *sc2 = _mm256_shuffle_epi8(scv, _mm256_set1_epi32(K16_PICK2(2 * j, 2 * j + 1)));
}

/* Run pair j of Q6_K block x, paired: the weights q - 32 of runs 2j, 2j + 1 in *wlo, *whi, their
 * scales in *sc2 (scv: as k16_run_scales takes it), and the zero token's lanes (every
 * activation byte 128) added to *z. */
ALWAYS_INLINE void kp_q6_weights(const struct elm_block_q6_k *x, const __m256i scv[2], int j,
                                 __m256i *wlo, __m256i *whi, __m256i *sc2, __m256i *z)
{
    const __m256i c32 = _mm256_set1_epi8(32), c128 = _mm256_set1_epi8(-128);
    const __m256i q0 = _mm256_sub_epi8(q6_run_quants(x, 2 * j), c32),
                  q1 = _mm256_sub_epi8(q6_run_quants(x, 2 * j + 1), c32);
    *wlo = k16_pair_lo(q0, q1);
    *whi = k16_pair_hi(q0, q1);
    *sc2 = k16_pair_scales(scv, j);
    *z = madd_acc(
        *z, _mm256_add_epi16(_mm256_maddubs_epi16(c128, *wlo), _mm256_maddubs_epi16(c128, *whi)),
        *sc2);
}

/* Run pair j of one row (its paired weights wlo, whi and scales sc2) against NT tokens' paired
 * activations p[0..NT): adds sc D + sc' D' to each token's lanes li[t] (j 0 starts them). KIND 4:
 * Q4_K (weights 0..15, signed activations); 6: Q6_K (weights q - 32, activations + 128). */
ALWAYS_INLINE void kp_tokens(__m256i *li, __m256i wlo, __m256i whi, __m256i sc2,
                             const struct kp_act *p, int j, const int NT, const int KIND)
{
    UNROLL for (int t = 0; t < NT; t++)
    {
        const __m256i alo = _mm256_load_si256(&p[t].lo[j]), ahi = _mm256_load_si256(&p[t].hi[j]);
        /* vpmaddubsw's first operand is the unsigned one */
        const __m256i d =
            KIND == 6
                ? _mm256_add_epi16(_mm256_maddubs_epi16(alo, wlo), _mm256_maddubs_epi16(ahi, whi))
                : _mm256_add_epi16(_mm256_maddubs_epi16(wlo, alo), _mm256_maddubs_epi16(whi, ahi));
        li[t] = j == 0 ? _mm256_madd_epi16(d, sc2) : madd_acc(li[t], d, sc2);
        KEEP_CHAIN(li[t]);
    }
}

/* The nt tokens at a, paired (biased to a + 128 when bias): made by the thread's first call
 * of a matmul (ELM_TILE_FRESH: what the pointers keyed may have changed), kept by its others.
 * NULL when memory is short. */
static const struct kp_scratch *kp_acts(const uint8_t *a, size_t as, int nt, int64_t nb, bool bias,
                                        int stream)
{
    struct kp_scratch *s =
        kp_scratch_p ? kp_scratch_p : (kp_scratch_p = elm_scratch_thread(sizeof *s));
    if (!s || (!(stream & ELM_TILE_FRESH) && s->a == a && s->as == as && s->nb == nb &&
               s->nt == nt && s->bias == bias))
        return s;
    const __m256i c = _mm256_set1_epi8(bias ? -128 : 0);
    for (int t = 0; t < nt; t++)
        for (int64_t b = 0; b < nb; b++) {
            const struct elm_block_q8_k *v = BLK(elm_block_q8_k, a, as, t, b);
            s->da[b][t] = v->d;
            kp_pair_block(&s->pa[b * KP_T + t], v, c);
        }
    for (int64_t b = 0; b < nb; b++) /* the lanes of no token: a product nobody reads, of zeros */
        for (int u = nt; u < KP_T; u++)
            s->da[b][u] = 0.0f;
    if (!bias) /* Q4_K */
        for (int64_t b = 0; b < nb; b++)
            for (int p = 0; 2 * p < nt; p++)
                s->mp[b][p] = k4_tpair_make(
                    BLK(elm_block_q8_k, a, as, 2 * p, b),
                    BLK(elm_block_q8_k, a, as, 2 * p + 1 < nt ? 2 * p + 1 : 2 * p, b));
    s->a = a;
    s->as = as;
    s->nb = nb;
    s->nt = nt;
    s->bias = bias;
    return s;
}

/* Row w (KIND 4: Q4_K, 6: Q6_K) against the NT tokens paired in s; output t to y[t * ys].
 * pf: the next row, prefetched a super-block at a time. */
ALWAYS_INLINE void kp_row(const struct kp_scratch *s, int64_t nb, const uint8_t *w, float *y,
                          int64_t ys, const uint8_t *pf, const int NT, const int KIND)
{
    const size_t bb = KIND == 6 ? sizeof(struct elm_block_q6_k) : sizeof(struct elm_block_q4_k);
    const int NP = (NT + 1) / 2; /* token pairs */
    __m256 acc[KP_T], accm[KP_T / 2];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    UNROLL for (int p = 0; p < NP; p++) accm[p] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *xb = w + (size_t)b * bb;
        if (pf)
            prefetch_span(pf + b * bb, bb);
        float dw;
        __m256i scv[2], z = _mm256_setzero_si256();
        if (KIND == 6) {
            const struct elm_block_q6_k *x = (const void *)xb;
            dw = h2f(x->d);
            kp_q6_scales(x, scv);
        } else {
            const struct elm_block_q4_k *x = (const void *)xb;
            dw = h2f(x->d);
            __m256i mins;
            scv[0] = kp_q4_scales(x, &mins);
            const __m256 ndm = _mm256_set1_ps(-h2f(x->dmin));
            UNROLL for (int p = 0; p < NP; p++) accm[p] =
                k4_min_tpair(accm[p], mins, ndm, &s->mp[b][p]);
        }
        const struct kp_act *p = &s->pa[b * KP_T];
        __m256i li[KP_T];
        UNROLL for (int j = 0; j < 4; j++)
        {
            __m256i wlo, whi, sc2;
            if (KIND == 6) /* the zero token's lanes too, taken from every token's below */
                kp_q6_weights((const void *)xb, scv, j, &wlo, &whi, &sc2, &z);
            else
                kp_q4_weights((const void *)xb, scv[0], j, &wlo, &whi, &sc2);
            kp_tokens(li, wlo, whi, sc2, p, j, NT, KIND);
        }
        if (KIND == 6) {
            UNROLL for (int t = 0; t < NT; t++) li[t] = _mm256_sub_epi32(li[t], z);
        }
        /* the 8 products d_a * d_w at once, each broadcast from memory (a load) */
        float d[KP_T];
        _mm256_storeu_ps(d, _mm256_mul_ps(_mm256_load_ps(s->da[b]), _mm256_set1_ps(dw)));
        UNROLL for (int t = 0; t < NT; t++) acc[t] =
            _mm256_fmadd_ps(_mm256_broadcast_ss(&d[t]), _mm256_cvtepi32_ps(li[t]), acc[t]);
    }
    UNROLL for (int t = 0; t < NT; t++) y[t * ys] =
        KIND == 6 ? hsum8_ps(acc[t]) : hsum8_ps(acc[t]) + k4_min_fold(accm[t / 2], t % 2);
}

/* A lone call of nt (KP_MIN_T(KIND)..KP_T) tokens and nr rows of KIND (kp_row). Returns false,
 * having done nothing, when it cannot take it (other token counts, rows too long, memory short):
 * the caller's shared tile then does. */
ALWAYS_INLINE bool kp_lone(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream, const int KIND)
{
    const int64_t nb = n / ELM_QK_K;
    if (nt < KP_MIN_T(KIND) || nt > KP_T || nb < 1 || nb > KP_MAX_BLOCKS)
        return false;
    const struct kp_scratch *s = kp_acts(a, as, nt, nb, KIND == 6, stream);
    if (!s)
        return false;
    for (int r = 0; r < nr; r++) {
        const uint8_t *wr = (const uint8_t *)w + (size_t)r * ws;
        const uint8_t *pf = stream & ELM_TILE_STREAM ? wr + ws : NULL;
#define KP_ROW(T) kp_row(s, nb, wr, y + r, ys, pf, T, KIND)
        ELM_TILE_FOR_T(nt, KP_ROW);
#undef KP_ROW
    }
    return true;
}

#endif
