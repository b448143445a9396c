/* q_k_tile.h — the avx512 variant's K-quant prefill tiles (Q2_K ... Q6_K): one output per
 * 32-bit lane (lanes.h), 32 rows x up to 8 tokens per call.
 *
 * The reference (kernels/ref/q_k.c) keeps eight float lanes per output; lane k advances once
 * per super-block by fma(d_a * d_w, L_k, lane) with the exact integer
 *   L_k = sum over the 8 runs r of 32 elements of sc(r, k) * D(r, k),
 *   D(r, k) = the integer products of elements 32r + 4k .. 32r + 4k + 3,
 * sc(r, k) the scale of their 16-element group. Here lane k of an output is one lane of a
 * zmm: vpdpbusd gives D(r, k) for 16 rows at once (the rows' 4 weight bytes against the
 * token's 4 activation bytes, broadcast), and vpdpwssd multiplies it by the rows' scale and
 * adds it to L_k: every |D| < 2^15, so the scale vector holds (sc, 0) per lane and the high
 * half of D (its sign) meets the zero. Weights with an offset (Q6_K's -32, Q3_K's -4) are
 * stored biased (unsigned) and D's chain starts at -offset * (the sum of the 4 activation
 * bytes), made per super-block and token: D is the exact signed sum either way. Kinds
 * without an offset take D from vpmaddubsw instead, as two int16 halves against (sc, sc)
 * (kql_scale_vec): no zeroed vpdpbusd accumulator to copy per product; Q4_K and Q5_K, whose
 * runs have one scale each, pair their runs so that one vpdpwssd scales two (kql_weight_pairs).
 * The minimum terms are vpdpwssd of the rows' (m, m') pairs against the token's bsums pairs:
 * Q2_K into the same lanes first, Q4_K into four lanes of their own folded as the reference
 * folds them, Q5_K one fused chain. Per super-block and 16 outputs: 128 integer
 * multiplies (96 paired), 8 conversions and 8 fma.
 * Included only by kernels/avx512/avx512.c, after q_k.h and lanes.h.
 */
#ifndef ELM_AVX512_Q_K_TILE_H
#define ELM_AVX512_Q_K_TILE_H

#include "kernels/avx2/q_k.h"
#include "kernels/avx512/lanes.h"

/* One super-block of a panel: sub-panel s, lane l = row 16 s + ln_row(l). */
struct kql_block {
    __m512i q[LN_S][8][8];       /* [s][run r][k]: the weights of elements 32r + 4k.., one per byte
                                  * (Q4_K with one token tile, kql_tile: runs r, r + 1 as nibbles of
                                  * r's bytes, r even) */
    __m512i sc[LN_S][16];        /* [s][group of 16]: kql_scale_vec, as int16 pairs per lane; Q4_K
                                  * and Q5_K (one scale per run of 32) fill only the odd groups,
                                  * with run pairs' scales (KQL_PAIR_SC) */
    __m512i mn[LN_S][8];         /* [s][k]: the minimum pairs (m, m') as int16 per lane; Q2_K fills
                                  * all 8, Q4_K and Q5_K k < 4, Q3_K and Q6_K none (no minimum) */
    __m512 d[LN_S], ndmin[LN_S]; /* ndmin = -dmin: the run's minimum factor -(d_a * d_min) is
                                  * then one product (negation is exact either side of it) */
};

/* Q4_K and Q5_K pair their runs (kql_weight_pairs); the scale pair of runs 2j, 2j + 1 is kept
 * in sc's odd groups, which their one scale per run leaves unused. */
#define KQL_PAIRS(KIND) ((KIND) == 4 || (KIND) == 5)
#define KQL_PAIR_SC(j)  (2 * (j) + 1)

/* The bias of the stored weights: D's chain starts at -bias * (sum of 4 activations). */
#define KQL_BIAS(KIND) ((KIND) == 6 ? 32 : (KIND) == 3 ? 4 : 0)

/* The scale vector of a group from its scale as a dword per lane (0 <= sc < 2^16; Q3_K/Q6_K
 * pass their signed scale already as (sc & 0xffff)). Kinds with a bias take D from vpdpbusd,
 * a dword whose high half is its sign: (sc, 0). The others take D as vpmaddubsw's two int16
 * halves (w0 a0 + w1 a1, w2 a2 + w3 a3; |half| <= 31 * 128 * 2, no saturation), so (sc, sc)
 * gives sc * D: the same exact integer, without zeroing a vpdpbusd accumulator per product
 * (a register copy per vpdpbusd in the 8-token run, docs/kernels-perf.md). */
ALWAYS_INLINE __m512i kql_scale_vec(__m512i sc, const int KIND)
{
    return KQL_BIAS(KIND) ? sc : _mm512_or_si512(sc, _mm512_slli_epi32(sc, 16));
}

/* Byte i of every dword of v, as dwords. */
ALWAYS_INLINE __m512i kql_byte(__m512i v, int i)
{
    return _mm512_and_si512(_mm512_srli_epi32(v, 8 * i), _mm512_set1_epi32(0xff));
}

/* (lo, hi) as the int16 pair of a dword; both in 0..255. */
ALWAYS_INLINE __m512i kql_pair(__m512i lo, __m512i hi)
{
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* -v, exactly (the sign bit flipped). */
ALWAYS_INLINE __m512 kql_neg(__m512 v)
{
    return _mm512_castsi512_ps(
        _mm512_xor_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN)));
}

/* The scales and minimum pairs of 16 rows' super-block b, in lane order, into p (sub-panel
 * sp): the packed fields are gathered as dwords and unpacked by the same word arithmetic as
 * k4_scales / k3_scales, lane by lane. Q3_K, Q4_K and Q5_K take d (and dmin) from the same
 * gather, which the layouts below place in it. */
_Static_assert(offsetof(struct elm_block_q4_k, dmin) == 2 &&
                   offsetof(struct elm_block_q4_k, scales) == 4 &&
                   offsetof(struct elm_block_q5_k, dmin) == 2 &&
                   offsetof(struct elm_block_q5_k, scales) == 4 &&
                   offsetof(struct elm_block_q3_k, d) ==
                       offsetof(struct elm_block_q3_k, scales) - 2 + 14,
               "kql_scales: d and dmin within the scales' gather");
ALWAYS_INLINE void kql_scales(struct kql_block *p, int sp, const struct ln_rowset *rs, int64_t b,
                              const int KIND)
{
    __m512i v[4];
    if (KIND == 4 || KIND == 5) {
        /* from the block's start: dword 0 is (d, dmin), dwords 1..3 the 12 scale bytes */
        __m512i g[4];
        ln_gather4(rs, b, 0, g);
        p->d[sp] = ln_f16_lo(g[0]);
        p->ndmin[sp] = kql_neg(ln_f16_lo(_mm512_srli_epi32(g[0], 16)));
        v[0] = g[1];
        v[1] = g[2];
        v[2] = g[3];
        const __m512i m1 = _mm512_set1_epi32(0x3f3f3f3f), m2 = _mm512_set1_epi32(0x0f0f0f0f),
                      m3 = _mm512_set1_epi32(0x03030303);
        /* u[0], u[1]: the 8 scales; u[2], u[3]: the 8 mins (k4_scales) */
        __m512i u[4];
        u[3] =
            _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(v[2], 4), m2),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v[1], 6), m3), 4));
        u[2] = _mm512_and_si512(v[1], m1);
        u[1] =
            _mm512_or_si512(_mm512_and_si512(v[2], m2),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(v[0], 6), m3), 4));
        u[0] = _mm512_and_si512(v[0], m1);
        if (KQL_PAIRS(KIND)) {
            /* runs 2j and 2j + 1's scales as one int16 pair per lane (kql_run pairs them) */
            UNROLL for (int j = 0; j < 4; j++) _mm512_store_si512(
                &p->sc[sp][KQL_PAIR_SC(j)],
                kql_pair(kql_byte(u[j / 2], 2 * (j % 2)), kql_byte(u[j / 2], 2 * (j % 2) + 1)));
        } else {
            /* a run's scale once (kql_group): its second group of 16 has the same, and a
             * stored copy cost 8 of the unpack's ~90 zmm stores per 16 rows x super-block */
            UNROLL for (int r = 0; r < 8; r++) _mm512_store_si512(
                &p->sc[sp][2 * r], kql_scale_vec(kql_byte(u[r / 4], r % 4), KIND));
        }
        UNROLL for (int k = 0; k < 4; k++)
            _mm512_store_si512(&p->mn[sp][k], kql_pair(kql_byte(u[2 + k / 2], 2 * (k % 2)),
                                                       kql_byte(u[2 + k / 2], 2 * (k % 2) + 1)));
    } else if (KIND == 2) {
        ln_gather4(rs, b, offsetof(struct elm_block_q2_k, scales), v);
        const __m512i m4 = _mm512_set1_epi32(0x0f);
        UNROLL for (int g = 0; g < 16; g++) _mm512_store_si512(
            &p->sc[sp][g], kql_scale_vec(_mm512_and_si512(kql_byte(v[g / 4], g % 4), m4), KIND));
        UNROLL for (int k = 0; k < 8; k++) _mm512_store_si512(
            &p->mn[sp][k], kql_pair(_mm512_srli_epi32(kql_byte(v[k / 2], 2 * (k % 2)), 4),
                                    _mm512_srli_epi32(kql_byte(v[k / 2], 2 * (k % 2) + 1), 4)));
    } else {
        const __m512i m16 = _mm512_set1_epi32(0xffff);
        if (KIND == 6) {
            ln_gather4(rs, b, offsetof(struct elm_block_q6_k, scales), v);
            /* group g: byte g % 4 of dword g / 4, sign-extended, as (sc, 0) */
            UNROLL for (int g = 0; g < 16; g++) _mm512_store_si512(
                &p->sc[sp][g],
                _mm512_and_si512(
                    _mm512_srai_epi32(_mm512_slli_epi32(v[g / 4], 24 - 8 * (g % 4)), 24), m16));
        } else {
            /* the 16 bytes ending with the block's last scale byte (from the scales' offset
             * they would run 2 bytes past the block, past the tensor on its last row): scale
             * byte i is byte i + 2 of them */
            ln_gather4(rs, b, offsetof(struct elm_block_q3_k, scales) - 2, v);
            /* and d, the block's last 2 bytes: the high half of dword 3 */
            p->d[sp] = ln_f16_lo(_mm512_srli_epi32(v[3], 16));
            /* elm_k3_scales: low nibble from byte j % 8 (high nibble for j >= 8), top two bits
             * from byte 8 + j % 4, pair j / 4; minus 32 */
            const __m512i m4 = _mm512_set1_epi32(0x0f), m3 = _mm512_set1_epi32(3),
                          b32 = _mm512_set1_epi32(32);
            UNROLL for (int j = 0; j < 16; j++)
            {
                const int il = j % 8 + 2, ih = 8 + j % 4 + 2;
                const __m512i lo = _mm512_and_si512(
                    _mm512_srli_epi32(kql_byte(v[il / 4], il % 4), 4 * (j / 8)), m4);
                const __m512i hi = _mm512_and_si512(
                    _mm512_srli_epi32(kql_byte(v[ih / 4], ih % 4), 2 * (j / 4)), m3);
                const __m512i sc =
                    _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), b32);
                _mm512_store_si512(&p->sc[sp][j], _mm512_and_si512(sc, m16));
            }
        }
    }
}

ALWAYS_INLINE size_t kql_bytes(const int KIND)
{
    return KIND == 2   ? sizeof(struct elm_block_q2_k)
           : KIND == 3 ? sizeof(struct elm_block_q3_k)
           : KIND == 4 ? sizeof(struct elm_block_q4_k)
           : KIND == 5 ? sizeof(struct elm_block_q5_k)
                       : sizeof(struct elm_block_q6_k);
}

/* Sixteen rows' bytes [off, off + 16 * nc) of block b as dwords in lane order: out[i]. Only
 * for the high-bit fields (8 or 16 zmm), which every run's weights take bits from. */
ALWAYS_INLINE void kql_dwords(const struct ln_rowset *rs, int64_t b, size_t off, int nc,
                              __m512i *out)
{
    UNROLL for (int c = 0; c < nc; c++) ln_gather4(rs, b, off + 16 * (size_t)c, out + 4 * c);
}

/* One super-block's weights of 16 rows into p->q[sp], a 16-byte chunk of the low bits at a time:
 * each chunk's four dwords are split into their runs' fields as soon as they are gathered, so
 * nothing but the high bits (hi) waits in registers. Loops unrolled: rolled, GCC kept the
 * gathered dwords on the stack and reloaded them per field with a branch and computed shift
 * counts (~1250 instructions per 16 rows x Q4_K super-block, now 536; docs/kernels-perf.md). Q4_K,
 * Q5_K: qs dword 8 (r / 2) + k, low nibble run r even; Q2_K, Q3_K: qs dword 8 (r / 4) + k, bits 2
 * (r % 4); Q6_K: ql dword 16 h + 8 (qd % 2) + k, nibble qd / 2, qh dword 8 h + k, bits 2 qd (r = 4
 * h + qd). */
ALWAYS_INLINE void kql_weights(struct kql_block *p, int sp, const struct ln_rowset *rs, int64_t b,
                               const int KIND)
{
    const __m512i m1 = _mm512_set1_epi8(1), m3 = _mm512_set1_epi8(3), m4 = _mm512_set1_epi8(0x0f);
    __m512i hi[16], v[4];
    if (KIND == 5)
        kql_dwords(rs, b, offsetof(struct elm_block_q5_k, qh), 2, hi);
    if (KIND == 3)
        kql_dwords(rs, b, offsetof(struct elm_block_q3_k, hmask), 2, hi);
    if (KIND == 6)
        kql_dwords(rs, b, offsetof(struct elm_block_q6_k, qh), 4, hi);
    const size_t qs = KIND == 4   ? offsetof(struct elm_block_q4_k, qs)
                      : KIND == 5 ? offsetof(struct elm_block_q5_k, qs)
                      : KIND == 6 ? offsetof(struct elm_block_q6_k, ql)
                      : KIND == 2 ? offsetof(struct elm_block_q2_k, qs)
                                  : offsetof(struct elm_block_q3_k, qs);
    const int chunks = KIND == 2 || KIND == 3 ? 4 : 8;
    UNROLL for (int c = 0; c < chunks; c++)
    {
        ln_gather4(rs, b, qs + 16 * (size_t)c, v);
        UNROLL for (int i = 0; i < 4; i++)
        {
            const int k = 4 * (c % 2) + i; /* dword 4 c + i of the field */
            if (KIND == 4 || KIND == 5) {
                UNROLL for (int n = 0; n < 2; n++)
                {
                    const int r = 2 * (c / 2) + n;
                    __m512i q = _mm512_and_si512(n ? _mm512_srli_epi32(v[i], 4) : v[i], m4);
                    if (KIND == 5) /* bit r of qh byte 4k.. */
                        q = _mm512_or_si512(
                            q, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hi[k], r), m1),
                                                 4));
                    _mm512_store_si512(&p->q[sp][r][k], q);
                }
            } else if (KIND == 6) {
                const int h = c / 4;
                UNROLL for (int n = 0; n < 2; n++)
                {
                    const int qd = (c / 2) % 2 + 2 * n, r = 4 * h + qd;
                    const __m512i l = _mm512_and_si512(n ? _mm512_srli_epi32(v[i], 4) : v[i], m4);
                    const __m512i t =
                        _mm512_and_si512(_mm512_srli_epi32(hi[8 * h + k], 2 * qd), m3);
                    _mm512_store_si512(&p->q[sp][r][k],
                                       _mm512_or_si512(l, _mm512_slli_epi32(t, 4)));
                }
            } else {
                UNROLL for (int n = 0; n < 4; n++)
                {
                    const int r = 4 * (c / 2) + n;
                    __m512i q = _mm512_and_si512(n ? _mm512_srli_epi32(v[i], 2 * n) : v[i], m3);
                    if (KIND == 3) /* bit r of hmask byte 4k..: q - 4 + 4 * hbit */
                        q = _mm512_or_si512(
                            q, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hi[k], r), m1),
                                                 2));
                    _mm512_store_si512(&p->q[sp][r][k], q);
                }
            }
        }
    }
}

ALWAYS_INLINE void kql_unpack(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,
                              const uint8_t *pf, const int KIND)
{
    /* the unpack's part of the panel ahead (tiles.h), half of it per sub-panel pass */
    const size_t pfs = ELM_TILE_PF_UNPACK(LN_R * kql_bytes(KIND)) / LN_S;
    struct kql_block *o = (struct kql_block *)panel;
    const size_t bb = kql_bytes(KIND);
    for (int sp = 0; sp < LN_S; sp++) {
        struct ln_rowset rs;
        ln_rows(&rs, w, ws, nr, sp, bb);
        for (int64_t b = 0; b < nb; b++) {
            struct kql_block *p = &o[b];
            if (pf)
                prefetch_span(pf + ((size_t)sp * (size_t)nb + (size_t)b) * pfs, pfs);
            kql_weights(p, sp, &rs, b, KIND);
            if (KIND == 6)
                p->d[sp] = ln_gather_f16(&rs, b, offsetof(struct elm_block_q6_k, d));
            if (KIND == 2) { /* Q3_K's d comes with its scales (kql_scales) */
                p->d[sp] = ln_gather_f16(&rs, b, offsetof(struct elm_block_q2_k, d));
                p->ndmin[sp] =
                    kql_neg(ln_gather_f16(&rs, b, offsetof(struct elm_block_q2_k, dmin)));
            }
            kql_scales(p, sp, &rs, b, KIND);
        }
    }
}

/* Part c (c < 8) of one super-block of Q4_K's nibble-pair panel (kql_block.q, PACK), both
 * sub-panels: chunk c of qs as it is, dwords 4c .. 4c + 3, both runs' nibbles in run 2 (c / 2)'s
 * place; at c == 0 the scales. A lone call (kql_tile) unpacks super-block b + 1 this way, a part
 * per lane step of b's run, into a ring of two blocks. */
ALWAYS_INLINE void kql_ring_part(struct kql_block *p, const struct ln_rowset rs[LN_S], int64_t b,
                                 int c)
{
    UNROLL for (int s = 0; s < LN_S; s++)
    {
        __m512i v[4];
        ln_gather4(&rs[s], b, offsetof(struct elm_block_q4_k, qs) + 16 * (size_t)c, v);
        UNROLL for (int i = 0; i < 4; i++)
            _mm512_store_si512(&p->q[s][2 * (c / 2)][4 * (c % 2) + i], v[i]);
        if (c == 0)
            kql_scales(p, s, &rs[s], b, 4);
    }
}

/* The group of 16 whose scale vector (kql_block.sc) lane step k of run r takes (the kinds that
 * do not pair their runs). */
ALWAYS_INLINE int kql_group(int r, int k)
{
    return 2 * r + (k >= 4);
}

/* L + sc * D (int16 pairs, vpdpwssd), or sc * D for run 0, whose L is not yet set. */
ALWAYS_INLINE __m512i kql_scaled(__m512i L, __m512i D, __m512i sc, int r)
{
    return r ? _mm512_dpwssd_epi32(L, D, sc) : _mm512_madd_epi16(D, sc);
}

/* Q4_K's and Q5_K's runs 2j and 2j + 1 paired, as k_pair.h pairs them for AVX2: per lane, lo
 * holds elements 4k, 4k + 1 of run 2j then of run 2j + 1, hi elements 4k + 2, 4k + 3 of each.
 * Then vpmaddubsw of each, added as int16, gives the two runs' 4-element products D, D' side by
 * side (|D| <= 4 x 31 x 128), and one vpmaddwd / vpdpwssd by the scale pair (sc, sc') adds
 * sc D + sc' D' to L_k: three multiplies per two runs instead of four, the same exact L_k. */
ALWAYS_INLINE void kql_weight_pairs(const struct kql_block *pb, int s, int j, int k, const int PACK,
                                    __m512i *lo, __m512i *hi)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i q0, q1; /* runs 2j, 2j + 1: the 4 weights of lane step k, a byte each */
    if (PACK) {
        const __m512i raw = _mm512_load_si512(&pb->q[s][2 * j][k]);
        q0 = _mm512_and_si512(raw, m4);
        q1 = _mm512_and_si512(_mm512_srli_epi32(raw, 4), m4);
    } else {
        q0 = _mm512_load_si512(&pb->q[s][2 * j][k]);
        q1 = _mm512_load_si512(&pb->q[s][2 * j + 1][k]);
    }
    *lo = _mm512_mask_blend_epi16(0xaaaaaaaa, q0, _mm512_slli_epi32(q1, 16));
    *hi = _mm512_mask_blend_epi16(0xaaaaaaaa, _mm512_srli_epi32(q0, 16), q1);
}

/* The activations' side of kql_weight_pairs, for one token's super-block: ap[j][0][k] the lo
 * dword of runs 2j, 2j + 1 at lane step k, ap[j][1][k] the hi one. */
ALWAYS_INLINE void kql_act_pairs(const int8_t *qs, int32_t ap[4][2][8])
{
    const __m256i m = _mm256_set1_epi32(0xffff);
    UNROLL for (int j = 0; j < 4; j++)
    {
        const __m256i r0 = _mm256_loadu_si256((const __m256i *)(qs + 64 * j));
        const __m256i r1 = _mm256_loadu_si256((const __m256i *)(qs + 64 * j + 32));
        _mm256_store_si256((__m256i *)ap[j][0],
                           _mm256_or_si256(_mm256_and_si256(r0, m), _mm256_slli_epi32(r1, 16)));
        _mm256_store_si256((__m256i *)ap[j][1],
                           _mm256_or_si256(_mm256_srli_epi32(r0, 16), _mm256_andnot_si256(m, r1)));
    }
}

/* Bytes of the panel ahead that each lane step of the run prefetches: an eighth of what the
 * unpack left of a super-block's share. */
#define KQL_PF_RUN(KIND) ((LN_R * kql_bytes(KIND) - ELM_TILE_PF_UNPACK(LN_R * kql_bytes(KIND))) / 8)

/* NT tokens against the unpacked panel p, or (ring, rrs: a lone Q4_K call, kql_tile) against
 * the ring that it fills as it goes (PACK: Q4_K's weights as nibble pairs). */
ALWAYS_INLINE void kql_run(const struct kql_block *p, int64_t nb, const uint8_t *a, size_t as,
                           float *y, int64_t ys, int nr, const uint8_t *pf, const int NT,
                           const int KIND, const int PACK, struct kql_block *ring,
                           const struct ln_rowset *rrs)
{
    /* ring: super-block b in ring[b & 1], b + 1 unpacked into the other a part per lane step,
     * and the prefetches ask for the whole share of the panel ahead */
    const size_t pfs = ring ? LN_R * kql_bytes(KIND) / 8 : KQL_PF_RUN(KIND);
    const int bias = KQL_BIAS(KIND);
    __m512 acc[LN_T][LN_S][8], accm[LN_T][LN_S][4];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
    {
        UNROLL for (int k = 0; k < 8; k++) acc[t][s][k] = _mm512_setzero_ps();
        UNROLL for (int k = 0; k < 4; k++) accm[t][s][k] = _mm512_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const struct kql_block *pb = ring ? &ring[b & 1] : &p[b];
        const struct elm_block_q8_k *v[LN_T];
        __m512 d[LN_T][LN_S], dm[LN_T][LN_S];
        int32_t corr[LN_T][64] __attribute__((aligned(64)));
        int32_t bsp[LN_T][4]; /* Q4_K/Q5_K: pairs of the 32-element activation sums */
        /* Q4_K, Q5_K: runs 2j, 2j + 1 of the activations paired (kql_act_pairs) */
        int32_t ap[LN_T][4][2][8] __attribute__((aligned(32)));
        UNROLL for (int t = 0; t < NT; t++)
        {
            v[t] = (const struct elm_block_q8_k *)(a + (size_t)t * as) + b;
            const __m512 da = _mm512_set1_ps(v[t]->d);
            UNROLL for (int s = 0; s < LN_S; s++)
            {
                d[t][s] = _mm512_mul_ps(da, pb->d[s]);
                dm[t][s] = _mm512_mul_ps(da, pb->ndmin[s]); /* -(d_a * d_min) */
            }
            if (bias) {
                /* -bias * (sum of each 4 activations), 64 per super-block */
                UNROLL for (int c = 0; c < 4; c++) _mm512_store_si512(
                    &corr[t][16 * c],
                    _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                         _mm512_set1_epi8((char)bias),
                                                         _mm512_loadu_si512(v[t]->qs + 64 * c))));
            }
            if (KQL_PAIRS(KIND))
                kql_act_pairs(v[t]->qs, ap[t]);
            /* dword k: bsums 4k + 4k+1 and 4k+2 + 4k+3 as int16 (wrapping, as the reference's
             * int16 pairs), one horizontal add: written per k, GCC made it ~40 xmm
             * instructions per token (docs/kernels-perf.md) */
            if (KIND == 4 || KIND == 5)
                _mm_storeu_si128(
                    (__m128i *)bsp[t],
                    _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)v[t]->bsums),
                                   _mm_loadu_si128((const __m128i *)(v[t]->bsums + 8))));
        }
        /* the minimum terms */
        if (KIND == 2) {
            UNROLL for (int k = 0; k < 8; k++) UNROLL for (int t = 0; t < NT; t++)
            {
                const __m512i bs = _mm512_set1_epi32((int32_t)load_u32(&v[t]->bsums[2 * k]));
                UNROLL for (int s = 0; s < LN_S; s++) acc[t][s][k] =
                    _mm512_fmadd_ps(dm[t][s],
                                    _mm512_cvtepi32_ps(_mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                                                           pb->mn[s][k], bs)),
                                    acc[t][s][k]);
            }
        } else if (KIND == 4 || KIND == 5) {
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
            {
                if (KIND == 4) {
                    UNROLL for (int k = 0; k < 4; k++) accm[t][s][k] = _mm512_fmadd_ps(
                        dm[t][s],
                        _mm512_cvtepi32_ps(_mm512_dpwssd_epi32(_mm512_setzero_si512(), pb->mn[s][k],
                                                               _mm512_set1_epi32(bsp[t][k]))),
                        accm[t][s][k]);
                } else {
                    /* one integer, (m0 + m1) + (m2 + m3): exact in any order */
                    __m512i m = _mm512_setzero_si512();
                    UNROLL for (int k = 0; k < 4; k++) m =
                        _mm512_dpwssd_epi32(m, pb->mn[s][k], _mm512_set1_epi32(bsp[t][k]));
                    accm[t][s][0] = _mm512_fmadd_ps(dm[t][s], _mm512_cvtepi32_ps(m), accm[t][s][0]);
                }
            }
        }
        /* k rolled and r unrolled: unrolled k with a rolled r loop made GCC rotate the 16
         * L[t][s] through fresh registers, a copy per product (docs/kernels-perf.md); the
         * accumulators live in memory either way (8 tokens x 2 x 8 lanes) */
        _Pragma("GCC unroll 1") for (int k = 0; k < 8; k++)
        {
            /* an eighth of the run's part of the next panel's share of this super-block, so
             * that the prefetches spread over the arithmetic instead of queueing behind each
             * other */
            if (pf)
                prefetch_span(pf + ((size_t)b * 8 + k) * pfs, pfs);
            if (ring && b + 1 < nb)
                kql_ring_part(&ring[(b + 1) & 1], rrs, b + 1, k);
            __m512i L[LN_T][LN_S]; /* run 0 starts them with vpmaddwd: no zero copied per chain */
            if (KQL_PAIRS(KIND)) {
                UNROLL for (int j = 0; j < 4; j++)
                {
                    __m512i lo[LN_S], hi[LN_S];
                    UNROLL for (int s = 0; s < LN_S; s++)
                        kql_weight_pairs(pb, s, j, k, PACK, &lo[s], &hi[s]);
                    UNROLL for (int t = 0; t < NT; t++)
                    {
                        const __m512i alo = _mm512_set1_epi32(ap[t][j][0][k]);
                        const __m512i ahi = _mm512_set1_epi32(ap[t][j][1][k]);
                        UNROLL for (int s = 0; s < LN_S; s++)
                        {
                            const __m512i D2 = _mm512_add_epi16(_mm512_maddubs_epi16(lo[s], alo),
                                                                _mm512_maddubs_epi16(hi[s], ahi));
                            L[t][s] = kql_scaled(L[t][s], D2, pb->sc[s][KQL_PAIR_SC(j)], j);
                        }
                    }
                }
            } else {
                UNROLL for (int r = 0; r < 8; r++)
                {
                    __m512i wq[LN_S];
                    UNROLL for (int s = 0; s < LN_S; s++) wq[s] =
                        _mm512_load_si512(&pb->q[s][r][k]);
                    const int g = kql_group(r, k);
                    UNROLL for (int t = 0; t < NT; t++)
                    {
                        const __m512i av =
                            _mm512_set1_epi32((int32_t)load_u32(v[t]->qs + 32 * r + 4 * k));
                        if (bias) {
                            const __m512i c0 = _mm512_set1_epi32(corr[t][8 * r + k]);
                            UNROLL for (int s = 0; s < LN_S; s++) L[t][s] = kql_scaled(
                                L[t][s], _mm512_dpbusd_epi32(c0, wq[s], av), pb->sc[s][g], r);
                        } else {
                            UNROLL for (int s = 0; s < LN_S; s++) L[t][s] = kql_scaled(
                                L[t][s], _mm512_maddubs_epi16(wq[s], av), pb->sc[s][g], r);
                        }
                    }
                }
            }
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++) acc[t][s][k] =
                _mm512_fmadd_ps(d[t][s], _mm512_cvtepi32_ps(L[t][s]), acc[t][s][k]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
    {
        __m512 r = ln_hsum8(acc[t][s]);
        if (KIND == 4) /* the four minimum lanes fold as a 128-bit register */
            r = _mm512_add_ps(r, _mm512_add_ps(_mm512_add_ps(accm[t][s][0], accm[t][s][2]),
                                               _mm512_add_ps(accm[t][s][1], accm[t][s][3])));
        else if (KIND == 5)
            r = _mm512_add_ps(r, accm[t][s][0]);
        ln_store(y + t * ys, nr, s, r);
    }
}

ALWAYS_INLINE void kql_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                            int nt, float *y, int64_t ys, int stream, const int KIND,
                            elm_tile_fn shared, ln_unpack_fn unpack)
{
    const int64_t nb = n / ELM_QK_K;
    const uint8_t *p = NULL;
    /* the rows of the panel after next, into L2, so that its weights come from memory
     * (batched decode) while this panel's unpack and arithmetic run and its own unpack finds
     * them near; a whole run more between a line's prefetch and its unpack than with the next
     * panel (measured a little faster, docs/kernels-perf.md). matmul.c's thread claims 64 rows
     * (two panels) at a time from a contiguous share, so the panel after next is mostly its
     * own. The unpack asks for its part first (ELM_TILE_PF_UNPACK), the run for the rest (with
     * the ring below, the run for all of it). */
    const uint8_t *pf = stream & ELM_TILE_STREAM ? (const uint8_t *)w + 2 * LN_R * ws : NULL;
    /* One token tile on this panel (batched decode: nothing reuses it): Q4_K's weights stay
     * nibble pairs, split by the run, which halves the unpack's weight stores (64 of its ~78 zmm
     * stores per 16 rows x super-block: docs/kernels-perf.md, k4k15), and the panel comes a
     * super-block at a time into a ring of two, the next one a part per lane step of this one's
     * run (kql_ring_part), so that the weights' loads overlap the arithmetic instead of taking
     * turns with it (the 8-token pass 2-6 % faster). With more token tiles each would split the
     * pairs again, so those unpack the panel whole, one weight a byte. */
    const int pack = KIND == 4 && (stream & ELM_TILE_STREAM) && !(stream & ELM_TILE_MORE);
    if (nt >= LN_MIN_T && nr <= LN_R) {
        struct ln_scratch *ls = pack ? ln_scratch_get() : NULL;
        if (ls) {
            /* the ring in the panel buffer, which then holds no panel */
            elm_panel_forget(&ls->key);
            struct kql_block *ring = (struct kql_block *)ls->panel;
            struct ln_rowset rrs[LN_S];
            UNROLL for (int sp = 0; sp < LN_S; sp++) ln_rows(&rrs[sp], w, ws, nr, sp, kql_bytes(4));
            for (int c = 0; c < 8; c++)
                kql_ring_part(&ring[0], rrs, 0, c);
#define RUNR(T) kql_run(NULL, nb, a, as, y, ys, nr, pf, T, 4, 1, ring, rrs)
            ELM_TILE_FOR_T(nt, RUNR);
#undef RUNR
            return;
        }
        if (!pack)
            p = ln_panel(100 + KIND, w, ws, nr, nb, sizeof(struct kql_block), stream, unpack, pf);
    }
    if (p == NULL) {
        elm_tile_in_panels(shared, KQ_R, KQ_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    const struct kql_block *pb = (const struct kql_block *)p;
    if (pf)
        pf += (size_t)nb * ELM_TILE_PF_UNPACK(LN_R * kql_bytes(KIND));
#define RUN(T) kql_run(pb, nb, a, as, y, ys, nr, pf, T, KIND, 0, NULL, NULL)
    ELM_TILE_FOR_T(nt, RUN);
#undef RUN
}

#define DEFINE_KQL(K, shared)                                                                      \
    static void kql_unpack_##K(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,    \
                               const uint8_t *pf)                                                  \
    {                                                                                              \
        kql_unpack(panel, w, ws, nr, nb, pf, K);                                                   \
    }                                                                                              \
    static void q##K##_k_tile_lanes(int64_t n, const void *w, size_t ws, int nr, const void *a,    \
                                    size_t as, int nt, float *y, int64_t ys, int stream)           \
    {                                                                                              \
        kql_tile(n, w, ws, nr, a, as, nt, y, ys, stream, K, shared, kql_unpack_##K);               \
    }

DEFINE_KQL(2, q2_k_tile)
DEFINE_KQL(3, q3_k_tile)
DEFINE_KQL(4, q4_k_tile)
DEFINE_KQL(5, q5_k_tile)
DEFINE_KQL(6, q6_k_tile)

#endif
