/* q_legacy.h — SIMD kernels for ggml's 32-element block types: vec_dot and matmul tiles for
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; dequantization of the same; activation quantization to Q8_0
 * and Q8_1. Compiled once per variant (see simd.h); included only by kernels/avx2/avx2.c and
 * kernels/avx512/avx512.c.
 *
 * The float arithmetic is the reference's (kernels/ref/q_legacy.c):
 *   - Q4_1, Q5_0, Q5_1, Q8_0: eight float lanes, lane l the exact integer dot product of
 *     elements 4l..4l+3 of each block, advanced by fma(d_w * d_a, lane, acc) block after block,
 *     folded by hsum8 at the end; Q4_1/Q5_1 add their offset chain fma(m_w, s_a, summs) last.
 *     A 256-bit integer dot product (vpmaddubsw + vpmaddwd, or VNNI's vpdpbusd) produces
 *     exactly those eight lanes, so the lane structure is the natural one.
 *   - Q4_0: one fused chain per output over whole-block integer sums (llama.cpp's repacked
 *     kernels). A single chain cannot be vectorised along the row, so the tiles put one output
 *     per lane instead: the 8 int32 lanes of each (row, token) pair are summed, eight pairs at
 *     once (hsum8x8_epi32), and one vector fma advances eight outputs' chains.
 * The integer parts are exact whatever instructions compute them; where a weight needs an
 * offset (Q4_0's -8, Q5_0's -16, Q8_0's signs on VNNI) it is taken out as an exact integer
 * correction per lane, computed once per token block (or row block) rather than per pair.
 *
 * Tiles: *_impl(NR, NT) computes NR rows x NT tokens with all loops unrolled; DEFINE_TILE
 * instantiates the shapes matmul asks for (tiles.h).
 */
#ifndef ELM_SIMD_Q_LEGACY_H
#define ELM_SIMD_Q_LEGACY_H

#include "kernels/avx2/simd.h"
#include "kernels/blocks.h"
#include "kernels/tiles.h"

/* Largest tiles: 16 registers hold a 4 x 2 tile of 8-lane accumulators, 32 registers 4 x 4. */
#ifdef ELM_SIMD_VNNI
#define LEG_R 4
#define LEG_T 4
#else
#define LEG_R 4
#define LEG_T 2
#endif
#define LEG_R_GEMV 4 /* rows per step when there is one token */
#define Q40_R_GEMV 8 /* Q4_0: outputs live in lanes, 8 per vector */
#define Q40_T      4
#ifdef ELM_SIMD_VNNI
#define Q40_R 8
#else
#define Q40_R 4
#endif

/* ---- tile plumbing --------------------------------------------------------------------------- */

/* pf: when not NULL, the start of the next group of rows, prefetched a block's share at a time
 * (NR blocks' worth of bytes per block) so that it is in cache when its turn comes. */
#define TILE_ARGS                                                                                  \
    int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, size_t as, float *y, int64_t ys,     \
        const uint8_t *pf

/* Calls impl with a compile-time NT in 1..T (T <= 8; nt <= T is the caller's promise) and the
 * prefetch pointer pf in scope. The cases past 4 exist only for T > 4 (the branch on the
 * constant T drops them otherwise), so tiles of at most 4 tokens keep their code size. */
#define NT_AT_MOST(k, T) ((k) < (T) ? (k) : (T))
#define NT_CASE(impl, NR, T, k)                                                                    \
    case k:                                                                                        \
        impl(n, wb, ws, ab, as, yb, ys, pf, NR, NT_AT_MOST(k, T));                                 \
        break
#define SWITCH_NT(impl, NR, T, nt)                                                                 \
    do {                                                                                           \
        if ((T) > 4) {                                                                             \
            switch (nt) {                                                                          \
                NT_CASE(impl, NR, T, 1);                                                           \
                NT_CASE(impl, NR, T, 2);                                                           \
                NT_CASE(impl, NR, T, 3);                                                           \
                NT_CASE(impl, NR, T, 4);                                                           \
                NT_CASE(impl, NR, T, 5);                                                           \
                NT_CASE(impl, NR, T, 6);                                                           \
                NT_CASE(impl, NR, T, 7);                                                           \
            default:                                                                               \
                impl(n, wb, ws, ab, as, yb, ys, pf, NR, NT_AT_MOST(8, T));                         \
                break;                                                                             \
            }                                                                                      \
            break;                                                                                 \
        }                                                                                          \
        switch (nt) {                                                                              \
            NT_CASE(impl, NR, T, 1);                                                               \
            NT_CASE(impl, NR, T, 2);                                                               \
            NT_CASE(impl, NR, T, 3);                                                               \
        default:                                                                                   \
            impl(n, wb, ws, ab, as, yb, ys, pf, NR, NT_AT_MOST(4, T));                             \
            break;                                                                                 \
        }                                                                                          \
    } while (0)

/* name(): the elm_tile_fn of impl. One token: RG rows at a time; several: R rows x nt tokens;
 * rows left over one at a time. (Only these shapes are instantiated, to bound code size.) */
#define DEFINE_TILE(name, impl, R, T, RG)                                                          \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,        \
                     int nt, float *y, int64_t ys, int stream)                                     \
    {                                                                                              \
        const uint8_t *ab = a;                                                                     \
        int r = 0;                                                                                 \
        if (nt == 1)                                                                               \
            for (; r + (RG) <= nr; r += (RG)) {                                                    \
                const uint8_t *wb = (const uint8_t *)w + (size_t)r * ws;                           \
                float *yb = y + r;                                                                 \
                impl(n, wb, ws, ab, as, yb, ys, wb + (RG)*ws, RG, 1);                              \
            }                                                                                      \
        for (; r + (R) <= nr; r += (R)) {                                                          \
            const uint8_t *wb = (const uint8_t *)w + (size_t)r * ws;                               \
            const uint8_t *pf = stream & ELM_TILE_STREAM ? wb + (R)*ws : NULL;                     \
            float *yb = y + r;                                                                     \
            SWITCH_NT(impl, R, T, nt);                                                             \
        }                                                                                          \
        for (; r < nr; r++) {                                                                      \
            const uint8_t *wb = (const uint8_t *)w + (size_t)r * ws;                               \
            const uint8_t *pf = NULL;                                                              \
            float *yb = y + r;                                                                     \
            SWITCH_NT(impl, 1, T, nt);                                                             \
        }                                                                                          \
    }

#define BLK(type, base, stride, i, b) ((const struct type *)((base) + (size_t)(i) * (stride)) + (b))

/* ---- Q8_0 x Q8_0: signed x signed ------------------------------------------------------------ */

/* The signed products as lanes of unsigned x signed dots. AVX2: |x| times y with x's sign
 * (llama.cpp's trick); VNNI: (y + 128) times x, minus 128 * sum(x), the correction computed
 * once per weight block. Both give the exact lane sums. */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE void q8_prep_w(__m256i x, __m256i *u, __m256i *c)
{
    *u = x;
    *c = _mm256_sub_epi32(_mm256_setzero_si256(),
                          _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), x));
}

ALWAYS_INLINE __m256i q8_prep_a(__m256i y)
{
    return _mm256_xor_si256(y, _mm256_set1_epi8(-128));
}

ALWAYS_INLINE __m256i q8_dot(__m256i u, __m256i c, __m256i ya)
{
    return _mm256_dpbusd_epi32(c, ya, u);
}
#else
ALWAYS_INLINE void q8_prep_w(__m256i x, __m256i *u, __m256i *c)
{
    *u = _mm256_abs_epi8(x);
    *c = x;
}

ALWAYS_INLINE __m256i q8_prep_a(__m256i y)
{
    return y;
}

ALWAYS_INLINE __m256i q8_dot(__m256i u, __m256i c, __m256i ya)
{
    return dot4(_mm256_setzero_si256(), u, _mm256_sign_epi8(ya, c));
}
#endif

/* One token, NR (LEG_R_GEMV) rows: decode, which streams the weights only as fast as this
 * arithmetic lets it. q8_0_impl's products and float steps, with what the rows share done once
 * per block: their scales converted as one vector and multiplied by the token's (the
 * reference's products, d_w * d_a), and, with VNNI, the +128 of vpdpbusd's unsigned operand on
 * the weights' side, so that its correction is the token's (q8_prep_w and q8_prep_a with their
 * roles swapped: x + 128 is exact for every int8, as y + 128 is). Without VNNI the weights keep
 * the abs/sign roles: a weight of -128 (possible in a file) would not survive vpsignb. */
ALWAYS_INLINE void q8_0_gemv(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, float *y,
                             const uint8_t *pf, const int NR)
{
    _Static_assert(LEG_R_GEMV <= 8, "the rows' scales in one vector");
    __m256 acc[LEG_R_GEMV];
    UNROLL for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        if (pf)
            prefetch_span(pf + b * NR * sizeof(struct elm_block_q8_0),
                          NR * sizeof(struct elm_block_q8_0));
        const struct elm_block_q8_0 *v = (const struct elm_block_q8_0 *)a + b;
        const uint8_t *xb[LEG_R_GEMV];
        UNROLL for (int r = 0; r < NR; r++) xb[r] =
            (const uint8_t *)BLK(elm_block_q8_0, w, ws, r, b);
        float dv[8] __attribute__((aligned(32)));
        const float *dq =
            f16_times(f16_rows(xb, offsetof(struct elm_block_q8_0, d), NR), h2f(v->d), dv);
#ifdef ELM_SIMD_VNNI
        __m256i yu, yc;
        q8_prep_w(loadu256(v->qs), &yu, &yc);
#else
        const __m256i ya = q8_prep_a(loadu256(v->qs));
#endif
        UNROLL for (int r = 0; r < NR; r++)
        {
#ifdef ELM_SIMD_VNNI
            const __m256i dot =
                q8_dot(yu, yc, q8_prep_a(loadu256(((const struct elm_block_q8_0 *)xb[r])->qs)));
#else
            __m256i wu, wc;
            q8_prep_w(loadu256(((const struct elm_block_q8_0 *)xb[r])->qs), &wu, &wc);
            const __m256i dot = q8_dot(wu, wc, ya);
#endif
            acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&dq[r]), _mm256_cvtepi32_ps(dot), acc[r]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) y[r] = hsum8_ps(acc[r]);
}

ALWAYS_INLINE void q8_0_impl(TILE_ARGS, const int NR, const int NT)
{
    if (NT == 1 && NR == LEG_R_GEMV) {
        q8_0_gemv(n, w, ws, a, y, pf, NR);
        return;
    }
    enum { MR = LEG_R_GEMV > LEG_R ? LEG_R_GEMV : LEG_R };
    __m256 acc[MR][LEG_T];
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        if (pf)
            prefetch_span(pf + b * NR * sizeof(struct elm_block_q8_0),
                          NR * sizeof(struct elm_block_q8_0));
        __m256i wu[MR], wc[MR];
        float dw[MR];
        UNROLL for (int r = 0; r < NR; r++)
        {
            const struct elm_block_q8_0 *x = BLK(elm_block_q8_0, w, ws, r, b);
            dw[r] = h2f(x->d);
            q8_prep_w(loadu256(x->qs), &wu[r], &wc[r]);
        }
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_0 *v = BLK(elm_block_q8_0, a, as, t, b);
            const float da = h2f(v->d);
            const __m256i ya = q8_prep_a(loadu256(v->qs));
            UNROLL for (int r = 0; r < NR; r++)
            {
                const __m256 lane = _mm256_cvtepi32_ps(q8_dot(wu[r], wc[r], ya));
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * da), lane, acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) y[t * ys + r] = hsum8_ps(acc[r][t]);
    }
}

/* ---- Q5_0, Q4_1, Q5_1 x Q8_0 / Q8_1: unsigned weights ---------------------------------------- */

/* Q5_0/Q5_1 quants 0..31: the low nibbles plus 16 where qh has the element's bit. */
ALWAYS_INLINE __m256i q5_quants(const uint8_t *qs, const uint8_t *qh)
{
    const __m256i hi = _mm256_and_si256(bytes_from_bits(load_u32(qh)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles16(qs), hi);
}

/* -k * (sum of each 4 activations), the lane correction for weights stored as q + k */
ALWAYS_INLINE __m256i neg_sum4(__m256i ya, char k)
{
    return _mm256_sub_epi32(_mm256_setzero_si256(),
                            dot4(_mm256_setzero_si256(), _mm256_set1_epi8(k), ya));
}

/* One impl for the three: KIND 0 = Q5_0 (q - 16, Q8_0 activations), 1 = Q4_1, 2 = Q5_1 (q * d
 * + m, Q8_1 activations with the offset chain). */
ALWAYS_INLINE void qx_impl(TILE_ARGS, const int NR, const int NT, const int KIND)
{
    enum { MR = LEG_R_GEMV > LEG_R ? LEG_R_GEMV : LEG_R };
    __m256 acc[MR][LEG_T];
    float summs[MR][LEG_T];
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++)
        {
            acc[r][t] = _mm256_setzero_ps();
            summs[r][t] = 0.0f;
        }
    }
    const size_t bb = KIND == 0   ? sizeof(struct elm_block_q5_0)
                      : KIND == 1 ? sizeof(struct elm_block_q4_1)
                                  : sizeof(struct elm_block_q5_1);
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        if (pf)
            prefetch_span(pf + b * NR * bb, NR * bb);
        __m256i wq[MR];
        float dw[MR], mw[MR];
        UNROLL for (int r = 0; r < NR; r++)
        {
            if (KIND == 0) {
                const struct elm_block_q5_0 *x = BLK(elm_block_q5_0, w, ws, r, b);
                dw[r] = h2f(x->d);
                wq[r] = q5_quants(x->qs, x->qh);
            } else if (KIND == 1) {
                const struct elm_block_q4_1 *x = BLK(elm_block_q4_1, w, ws, r, b);
                dw[r] = h2f(x->d);
                mw[r] = h2f(x->m);
                wq[r] = unpack_nibbles16(x->qs);
            } else {
                const struct elm_block_q5_1 *x = BLK(elm_block_q5_1, w, ws, r, b);
                dw[r] = h2f(x->d);
                mw[r] = h2f(x->m);
                wq[r] = q5_quants(x->qs, x->qh);
            }
        }
        UNROLL for (int t = 0; t < NT; t++)
        {
            __m256i ya, c;
            float da, sa = 0.0f;
            if (KIND == 0) {
                const struct elm_block_q8_0 *v = BLK(elm_block_q8_0, a, as, t, b);
                da = h2f(v->d);
                ya = loadu256(v->qs);
                c = neg_sum4(ya, 16);
            } else {
                const struct elm_block_q8_1 *v = BLK(elm_block_q8_1, a, as, t, b);
                da = h2f(v->d);
                sa = h2f(v->s);
                ya = loadu256(v->qs);
                c = _mm256_setzero_si256();
            }
            UNROLL for (int r = 0; r < NR; r++)
            {
                if (KIND != 0)
                    summs[r][t] = fmaf(mw[r], sa, summs[r][t]);
                const __m256 lane = _mm256_cvtepi32_ps(dot4(c, wq[r], ya));
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * da), lane, acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++)
        {
            const float s = hsum8_ps(acc[r][t]);
            y[t * ys + r] = KIND == 0 ? s : s + summs[r][t];
        }
    }
}

#define q5_0_impl(...) qx_impl(__VA_ARGS__, 0)
#define q4_1_impl(...) qx_impl(__VA_ARGS__, 1)
#define q5_1_impl(...) qx_impl(__VA_ARGS__, 2)

/* ---- Q4_0 x Q8_0: one fused chain per output, outputs in lanes ------------------------------- */

/* Two rows per vector: row 2p's 16 bytes in the low half, row 2p+1's in the high half; the low
 * nibbles (elements 0..15) meet activations 0..15 broadcast to both halves, the high nibbles
 * (16..31) activations 16..31. Each half then holds four partial sums of its row's block, and
 * hsum4x4_epi32 turns four such vectors into eight block sums, lanes
 * [v0.lo v1.lo v2.lo v3.lo v0.hi v1.hi v2.hi v3.hi]. */
ALWAYS_INLINE void q4_0_pair(const struct elm_block_q4_0 *x0, const struct elm_block_q4_0 *x1,
                             const bool two, __m256i *lo, __m256i *hi)
{
    const __m128i a = _mm_loadu_si128((const __m128i *)x0->qs);
    const __m256i v = two ? _mm256_inserti128_si256(_mm256_castsi128_si256(a),
                                                    _mm_loadu_si128((const __m128i *)x1->qs), 1)
                          : _mm256_zextsi128_si256(a);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    *lo = _mm256_and_si256(v, m4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
}

/* acc + the lanes of u1 . s1 + u2 . s2 (4 products each); |u| <= 15, so the int16 sums of
 * the AVX2 path (at most 2 * 2 * 15 * 128) cannot saturate */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE __m256i dot4x2(__m256i acc, __m256i u1, __m256i s1, __m256i u2, __m256i s2)
{
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(acc, u1, s1), u2, s2);
}
#else
ALWAYS_INLINE __m256i dot4x2(__m256i acc, __m256i u1, __m256i s1, __m256i u2, __m256i s2)
{
    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(u1, s1), _mm256_maddubs_epi16(u2, s2));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}
#endif

ALWAYS_INLINE void q4_0_impl(TILE_ARGS, const int NR, const int NT)
{
    enum { MR = Q40_R_GEMV > Q40_R ? Q40_R_GEMV : Q40_R, MP = (MR + 1) / 2 };
    enum { GMAX = (MP * Q40_T + 3) / 4 };
    /* vector v holds row pair v % RP of token v / RP; four vectors make a group of 8 lanes */
    const int RP = (NR + 1) / 2, V = RP * NT, G = (V + 3) / 4;
    __m256 acc[GMAX];
    UNROLL for (int g = 0; g < G; g++) acc[g] = _mm256_setzero_ps();
    _Pragma("GCC unroll 2") for (int64_t b = 0; b < n / ELM_QK; b++)
    {
        if (pf)
            prefetch_span(pf + b * NR * sizeof(struct elm_block_q4_0),
                          NR * sizeof(struct elm_block_q4_0));
        __m256i lo[MP], hi[MP], ylo[Q40_T], yhi[Q40_T], c[Q40_T];
        UNROLL for (int p = 0; p < RP; p++)
        {
            const struct elm_block_q4_0 *x0 = BLK(elm_block_q4_0, w, ws, 2 * p, b);
            const struct elm_block_q4_0 *x1 = BLK(elm_block_q4_0, w, ws, 2 * p + 1, b);
            q4_0_pair(x0, x1, 2 * p + 1 < NR, &lo[p], &hi[p]);
        }
        /* the scales: rows in lanes 0..NR-1 of dwv, tokens in lanes 0..NT-1 of dav */
        const __m256 dwv = load_h8_strided(w + (size_t)b * sizeof(struct elm_block_q4_0), ws, NR);
        const __m256 dav =
            NT == 1 ? _mm256_set1_ps(h2f(BLK(elm_block_q8_0, a, as, 0, b)->d))
                    : load_h8_strided(a + (size_t)b * sizeof(struct elm_block_q8_0), as, NT);
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_0 *v = BLK(elm_block_q8_0, a, as, t, b);
            ylo[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)v->qs));
            yhi[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)v->qs + 1));
            /* (q - 8) * y = q * y - 8 * y: each half must carry -8 * sum(y) of the block */
            const __m256i e8 = _mm256_set1_epi8(8);
            c[t] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                    dot4x2(_mm256_setzero_si256(), e8, ylo[t], e8, yhi[t]));
        }
        UNROLL for (int g = 0; g < G; g++)
        {
            __m256i pv[4];
            int rl[8], tl[8]; /* each lane's row and token (compile-time after unrolling) */
            UNROLL for (int j = 0; j < 4; j++)
            {
                const int vi = 4 * g + j, p = vi % RP, t = vi / RP;
                pv[j] =
                    vi < V ? dot4x2(c[t], lo[p], ylo[t], hi[p], yhi[t]) : _mm256_setzero_si256();
                rl[j] = vi < V ? 2 * p : 0;
                rl[j + 4] = vi < V && 2 * p + 1 < NR ? 2 * p + 1 : 0;
                tl[j] = tl[j + 4] = vi < V ? t : 0;
            }
            const __m256i isum = hsum4x4_epi32(pv[0], pv[1], pv[2], pv[3]);
            const __m256 dwl = _mm256_permutevar8x32_ps(
                dwv, _mm256_setr_epi32(rl[0], rl[1], rl[2], rl[3], rl[4], rl[5], rl[6], rl[7]));
            const __m256 dal =
                NT == 1
                    ? dav
                    : _mm256_permutevar8x32_ps(dav, _mm256_setr_epi32(tl[0], tl[1], tl[2], tl[3],
                                                                      tl[4], tl[5], tl[6], tl[7]));
            /* sum = fmaf((float)isum, d_w * d_a, sum), eight outputs at once */
            acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dwl, dal), acc[g]);
        }
    }
    UNROLL for (int g = 0; g < G; g++)
    {
        float out[8];
        _mm256_storeu_ps(out, acc[g]);
        UNROLL for (int j = 0; j < 8; j++)
        {
            const int vi = 4 * g + j % 4, r = 2 * (vi % RP) + j / 4, t = vi / RP;
            if (vi < V && r < NR)
                y[t * ys + r] = out[j];
        }
    }
}

/* ---- tiles and vec_dot ----------------------------------------------------------------------- */

DEFINE_TILE(q8_0_tile, q8_0_impl, LEG_R, LEG_T, LEG_R_GEMV)
DEFINE_TILE(q5_0_tile, q5_0_impl, LEG_R, LEG_T, LEG_R_GEMV)
DEFINE_TILE(q4_1_tile, q4_1_impl, LEG_R, LEG_T, LEG_R_GEMV)
DEFINE_TILE(q5_1_tile, q5_1_impl, LEG_R, LEG_T, LEG_R_GEMV)
DEFINE_TILE(q4_0_tile, q4_0_impl, Q40_R, Q40_T, Q40_R_GEMV)

static void q8_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    q8_0_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

static void q5_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    q5_0_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

static void q4_1_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    q4_1_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

static void q5_1_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    q5_1_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

/* A single output is a single chain: eight blocks' integer sums at a time, then their eight
 * fused steps in order. */
static void q4_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_0 *x = w;
    const struct elm_block_q8_0 *v = a;
    const int64_t nb = n / ELM_QK;
    float sum = 0.0f;
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        __m256i p[8];
        UNROLL for (int j = 0; j < 8; j++)
        {
            const __m256i ya = loadu256(v[b + j].qs);
            p[j] = dot4(neg_sum4(ya, 8), unpack_nibbles16(x[b + j].qs), ya);
        }
        int32_t isum[8];
        _mm256_storeu_si256((__m256i *)isum,
                            hsum8x8_epi32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]));
        UNROLL for (int j = 0; j < 8; j++) sum =
            fmaf((float)isum[j], h2f(x[b + j].d) * h2f(v[b + j].d), sum);
    }
    for (; b < nb; b++) {
        const __m256i ya = loadu256(v[b].qs);
        const int32_t isum = hsum_epi32(dot4(neg_sum4(ya, 8), unpack_nibbles16(x[b].qs), ya));
        sum = fmaf((float)isum, h2f(x[b].d) * h2f(v[b].d), sum);
    }
    *s = sum;
}

/* ---- dequantization -------------------------------------------------------------------------- */

/* dst[0..32) = (float)(q[j] + k) * d (+ m): the reference's expression, one rounding each (and
 * a second for the offset: the reference does not fuse it either). */
ALWAYS_INLINE void bytes_to_float(__m256i q, int k, float d, float m, bool offset, float *dst)
{
    const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
    const __m256i kv = _mm256_set1_epi32(k);
    UNROLL for (int i = 0; i < 4; i++)
    {
        const __m128i q8 = i < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
        const __m256i q32 = _mm256_cvtepi8_epi32(i % 2 ? _mm_srli_si128(q8, 8) : q8);
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(q32, kv)), dv);
        if (offset)
            f = _mm256_add_ps(f, mv);
        _mm256_storeu_ps(dst + 8 * i, f);
    }
}

static void q4_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        bytes_to_float(unpack_nibbles16(x[i].qs), -8, h2f(x[i].d), 0, false, dst + i * ELM_QK);
}

static void q4_1_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        bytes_to_float(unpack_nibbles16(x[i].qs), 0, h2f(x[i].d), h2f(x[i].m), true,
                       dst + i * ELM_QK);
}

static void q5_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        bytes_to_float(q5_quants(x[i].qs, x[i].qh), -16, h2f(x[i].d), 0, false, dst + i * ELM_QK);
}

static void q5_1_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        bytes_to_float(q5_quants(x[i].qs, x[i].qh), 0, h2f(x[i].d), h2f(x[i].m), true,
                       dst + i * ELM_QK);
}

static void q8_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        bytes_to_float(loadu256(x[i].qs), 0, h2f(x[i].d), 0, false, dst + i * ELM_QK);
}

/* ---- activation quantization: Q8_0 and Q8_1 -------------------------------------------------- */

/* One block of 32 floats as ggml's x86 build rounds it (ref: elm_ref_q8_0_from_float):
 * amax exact (a max), mul = 127 / amax, each x * mul rounded half to even (the default MXCSR
 * mode of vcvtps2dq) and saturated to int8 by the packs, which is the reference's clamp. */
ALWAYS_INLINE __m256i q8_block(const float *x, float *amax_out)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 mx = _mm256_setzero_ps();
    UNROLL for (int i = 0; i < 4; i++)
    {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    *amax_out = amax;
    const __m256 mul = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    UNROLL for (int i = 0; i < 4; i++) q[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], mul));
    /* packs work within 128-bit halves; the permute restores element order */
    const __m256i p01 = _mm256_packs_epi32(q[0], q[1]), p23 = _mm256_packs_epi32(q[2], q[3]);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23),
                                       _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void q8_0_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        float amax;
        const __m256i q = q8_block(src + i * ELM_QK, &amax);
        y[i].d = f2h(amax / 127.0f);
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
    }
}

static void q8_1_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        float amax;
        const __m256i q = q8_block(src + i * ELM_QK, &amax);
        const float d = amax / 127.0f;
        const int32_t qsum = hsum_epi32(dot4(_mm256_setzero_si256(), _mm256_set1_epi8(1), q));
        y[i].d = f2h(d);
        y[i].s = f2h(d * (float)qsum); /* the unrounded d, as the reference */
        _mm256_storeu_si256((__m256i *)y[i].qs, q);
    }
}

#endif
