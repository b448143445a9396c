/* q6_k_wide.h — the avx2 variant's Q6_K prefill tile: the shared tile's arithmetic (q_k.h,
 * q16_impl) over a panel unpacked once per matmul instead of once per token pair.
 *
 * The shared tile rebuilds every run's 6-bit quants from ql and qh (two loads, up to two
 * shifts, two masks, an or) and picks the run's scales (a vpshufb) for each row in every call,
 * and a call covers only 4 rows x 2 tokens: at pp512 each panel is unpacked 256 times, and the
 * unpack costs about as much as the products it feeds. Here the 4-row panel's quants (bytes 0..63)
 * and per-run scale vectors (int16, the run's two 16-element groups in the two halves) are written
 * once into a per-thread buffer; a run then costs per row and token one vpmaddubsw, one vpsubw
 * (the -32 offset, one vpmaddubsw per token and run), one vpmaddwd by the stored scales and one
 * vpaddd. The lanes, their integers and the block's float step are exactly q16_impl's: lane k
 * of a run holds the exact scaled sum of elements 4k..4k+3 (k < 4: group 2R, else 2R + 1), the
 * 8 runs add up in int32 and one fma(d_a * d_w, lane, acc) per block follows, folded by hsum8
 * at the end, so the bits are the reference's (elm_ref_q6_k_vec_dot).
 *
 * Buffer: 2064 bytes a block for 4 rows, 129 KiB for rows of up to 64 blocks (16384 columns;
 * longer rows take the shared tile), reused by the panel's token tiles under q4_0_wide.h's rules
 * (keyed by pointers, dropped by an ELM_TILE_FRESH call). A panel is unpacked only when more
 * calls will use it (ELM_TILE_MORE, tiles.h); a lone call takes the shared tile: unpacking costs
 * about as much as 8 tokens' products (callgrind, elm_matmul, 256 x 2048, instructions, this
 * tile against the shared 1 x 8 one: 6 tokens 884K vs 787K, 8 tokens 1.09M vs 0.98M, 12 tokens
 * (two calls) 1.51M vs 1.56M, 64 tokens 6.94M vs 7.72M). A lone call of 3..8 tokens
 * (batched decode) takes k_pair.h's rows. Included only by kernels/avx2/avx2.c, after q_k.h.
 */
#ifndef ELM_AVX2_Q6_K_WIDE_H
#define ELM_AVX2_Q6_K_WIDE_H

#include <stddef.h>

#include "common/scratch.h"
#include "kernels/avx2/k_pair.h"
#include "kernels/avx2/q_k.h"
#include "kernels/tiles.h"

#define Q6V_R          4  /* rows per panel */
#define Q6V_T          8  /* tokens per call, taken two at a time */
#define Q6V_MAX_BLOCKS 64 /* 16384 columns; longer rows take the shared tile */

/* One block of a 4-row panel. */
struct q6v_block {
    __m256i q[8][Q6V_R];  /* run R, row r: the run's 32 quants, 0..63 */
    __m256i sc[8][Q6V_R]; /* run R, row r: scale of group 2R in the low half, 2R + 1 high */
    float d[Q6V_R];       /* the rows' d */
    float pad[8 - Q6V_R];
};

struct q6v_scratch {
    struct q6v_block wb[Q6V_MAX_BLOCKS];
    /* the panel wb holds (w NULL: none) */
    const void *w;
    size_t ws;
    int64_t nb;
    int nr;
};

/* This thread's scratch, made on its first call (common/scratch.h: not static TLS); NULL when
 * memory is short, and then the shared tile does the work. */
static _Thread_local struct q6v_scratch *q6v_scratch_p;

/* Unpacks rows [0, nr) of the panel (rows nr..3: zero quants, scales and d). pf: when not
 * NULL, the next panel's rows, prefetched a block's share at a time. */
static void q6v_unpack(struct q6v_scratch *s, const uint8_t *w, size_t ws, int nr, int64_t nb,
                       const uint8_t *pf)
{
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            prefetch_span(pf + b * Q6V_R * sizeof(struct elm_block_q6_k),
                          Q6V_R * sizeof(struct elm_block_q6_k));
        struct q6v_block *o = &s->wb[b];
        for (int r = 0; r < Q6V_R; r++) {
            if (r >= nr) {
                UNROLL for (int R = 0; R < 8; R++)
                {
                    _mm256_store_si256(&o->q[R][r], _mm256_setzero_si256());
                    _mm256_store_si256(&o->sc[R][r], _mm256_setzero_si256());
                }
                o->d[r] = 0.0f;
                continue;
            }
            const struct elm_block_q6_k *x =
                (const void *)(w + (size_t)r * ws + (size_t)b * sizeof(struct elm_block_q6_k));
            o->d[r] = h2f(x->d);
            const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)x->scales));
            const __m256i scv[2] = {_mm256_permute2x128_si256(sc, sc, 0x00),
                                    _mm256_permute2x128_si256(sc, sc, 0x11)};
            UNROLL for (int R = 0; R < 8; R++)
            {
                _mm256_store_si256(&o->q[R][r], q6_run_quants(x, R));
                _mm256_store_si256(&o->sc[R][r], k16_run_scales(scv, R));
            }
        }
    }
}

/* NT (1 or 2) tokens against the unpacked panel; rows [0, nr) of their outputs are stored. */
ALWAYS_INLINE void q6v_run(const struct q6v_scratch *s, int64_t nb, const uint8_t *a, size_t as,
                           float *y, int64_t ys, int nr, const int NT)
{
    __m256 acc[Q6V_R][2];
    UNROLL for (int r = 0; r < Q6V_R; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    }
    const __m256i c32 = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < nb; b++) {
        const struct q6v_block *p = &s->wb[b];
        const struct elm_block_q8_k *v[2];
        UNROLL for (int t = 0; t < NT; t++) v[t] = BLK(elm_block_q8_k, a, as, t, b);
        __m256i li[Q6V_R][2];
        UNROLL for (int r = 0; r < Q6V_R; r++)
        {
            UNROLL for (int t = 0; t < NT; t++) li[r][t] = _mm256_setzero_si256();
        }
        UNROLL for (int R = 0; R < 8; R++)
        {
            __m256i q[Q6V_R];
            UNROLL for (int r = 0; r < Q6V_R; r++) q[r] = _mm256_load_si256(&p->q[R][r]);
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256i ya = loadu256(v[t]->qs + 32 * R);
                const __m256i m32 = _mm256_maddubs_epi16(c32, ya);
                UNROLL for (int r = 0; r < Q6V_R; r++)
                {
                    const __m256i pr = _mm256_sub_epi16(_mm256_maddubs_epi16(q[r], ya), m32);
                    li[r][t] = madd_acc(li[r][t], pr, _mm256_load_si256(&p->sc[R][r]));
                    KEEP_CHAIN(li[r][t]);
                }
            }
        }
        UNROLL for (int r = 0; r < Q6V_R; r++)
        {
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256 d = _mm256_set1_ps(v[t]->d * p->d[r]);
                acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(li[r][t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < Q6V_R; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) if (r < nr) y[t * ys + r] = hsum8_ps(acc[r][t]);
    }
}

/* The elm_tile_fn of the avx2 Q6_K entry: nt <= Q6V_T; nr <= Q6V_R with several tokens (one
 * token: a whole row chunk, for the shared tile). */
static void q6_k_tile_wide(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                           int nt, float *y, int64_t ys, int stream)
{
    struct q6v_scratch *s =
        q6v_scratch_p ? q6v_scratch_p : (q6v_scratch_p = elm_scratch_thread(sizeof *s));
    const int64_t nb = n / ELM_QK_K;
    if (s && (stream & ELM_TILE_FRESH)) /* a new matmul: what pointers kept may have changed */
        s->w = NULL;
    const bool kept = s && s->w == w && s->ws == ws && s->nb == nb && s->nr == nr;
    /* a lone call (batched decode): k_pair.h */
    if (!kept && !(stream & ELM_TILE_MORE) && kp_lone(n, w, ws, nr, a, as, nt, y, ys, stream, 6))
        return;
    if (!s || (!kept && !(stream & ELM_TILE_MORE)) || nr > Q6V_R || nb < 1 || nb > Q6V_MAX_BLOCKS) {
        elm_tile_in_panels(q6_k_tile, KQ_R, KQ_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    if (!kept) {
        q6v_unpack(s, w, ws, nr, nb,
                   stream & ELM_TILE_STREAM ? (const uint8_t *)w + Q6V_R * ws : NULL);
        s->w = w;
        s->ws = ws;
        s->nb = nb;
        s->nr = nr;
    }
    int t = 0;
    for (; t + 2 <= nt; t += 2)
        q6v_run(s, nb, (const uint8_t *)a + (size_t)t * as, as, y + t * ys, ys, nr, 2);
    if (t < nt)
        q6v_run(s, nb, (const uint8_t *)a + (size_t)t * as, as, y + t * ys, ys, nr, 1);
}

#endif
