/* simd.h — building blocks shared by the AVX2 and AVX-512 kernel variants.
 *
 * The kernels of both variants are written once, in the headers of kernels/avx2/ (simd.h,
 * q_legacy.h, q_k.h, float.h, ops.h; table.h collects them), and compiled twice:
 * kernels/avx2/avx2.c includes them under -mavx2 -mfma -mf16c -mbmi2, kernels/avx512/avx512.c under
 * the AVX-512 flags. Every kernel must give the reference's bits (kernels/ref, docs/kernels.md), so
 * the float part is the same in both: 8 float lanes per output, one fused multiply-add per block,
 * the same folds. What the ISA changes is only the exact integer part (VNNI's vpdpbusd/vpdpwssd
 * instead of vpmaddubsw + vpmaddwd, which give the same integers) and the register budget (32
 * registers allow larger matmul tiles). The choice is made here, once, by the compiler's feature
 * macros, so that no function body needs an #if.
 *
 * Everything here is static inline: each including translation unit gets its own copy, compiled
 * for its own ISA, and nothing leaks between variants.
 */
#ifndef ELM_SIMD_H
#define ELM_SIMD_H

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define ELM_SIMD_VNNI 1
#endif

/* GCC at -O2 does not fully unroll the small constant-trip loops of the tile kernels on its
 * own; unrolled, their arrays of vectors become registers. */
#define UNROLL _Pragma("GCC unroll 16")

/* ---- scalars --------------------------------------------------------------------------------- */

/* fp16 -> float with the F16C instruction: exact, like elm_fp16_to_f32 (NaN payloads aside). */
ALWAYS_INLINE float h2f(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* float -> fp16, round to nearest even: elm_f32_to_fp16 for every non-NaN value. */
ALWAYS_INLINE uint16_t f2h(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

ALWAYS_INLINE uint16_t load_u16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

ALWAYS_INLINE uint32_t load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

ALWAYS_INLINE uint64_t load_u64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- float folds, in the reference's order (ref.h) ------------------------------------------- */

/* elm_hsum8: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)) */
ALWAYS_INLINE float hsum8_ps(__m256 a)
{
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* elm_hsum16 of lanes 0..7 in lo and 8..15 in hi */
ALWAYS_INLINE float hsum16_ps(__m256 lo, __m256 hi)
{
    return hsum8_ps(_mm256_add_ps(lo, hi));
}

/* Four lanes folded as a 128-bit register: (a0+a2) + (a1+a3). */
ALWAYS_INLINE float hsum4_ps(__m128 r)
{
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

/* ---- exact integer sums ---------------------------------------------------------------------- */

/* Sum of the 8 int32 lanes (exact: any order). */
ALWAYS_INLINE int32_t hsum_epi32(__m256i v)
{
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

/* Within each 128-bit half, lane j of the result = the sum of the four lanes of vj's half:
 * [v0 v1 v2 v3 | v0 v1 v2 v3] (half sums). Unpacks and adds rather than vphaddd, which issues
 * at one per two cycles on Zen 4 against two per cycle for an unpack. */
ALWAYS_INLINE __m256i hsum4x4_epi32(__m256i v0, __m256i v1, __m256i v2, __m256i v3)
{
    /* s01 = [v0_02 v1_02 v0_13 v1_13], s23 the same for v2, v3 (x_ij = x_i + x_j) */
    const __m256i s01 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(v0, v1), _mm256_unpackhi_epi32(v0, v1));
    const __m256i s23 =
        _mm256_add_epi32(_mm256_unpacklo_epi32(v2, v3), _mm256_unpackhi_epi32(v2, v3));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(s01, s23), _mm256_unpackhi_epi64(s01, s23));
}

/* Lane j of the result = the sum of the 8 lanes of v[j]: eight horizontal sums at once. */
ALWAYS_INLINE __m256i hsum8x8_epi32(__m256i v0, __m256i v1, __m256i v2, __m256i v3, __m256i v4,
                                    __m256i v5, __m256i v6, __m256i v7)
{
    /* g0 = [v0..v3 low-half sums | v0..v3 high-half sums], g1 the same for v4..v7 */
    const __m256i g0 = hsum4x4_epi32(v0, v1, v2, v3), g1 = hsum4x4_epi32(v4, v5, v6, v7);
    return _mm256_add_epi32(_mm256_permute2x128_si256(g0, g1, 0x20),
                            _mm256_permute2x128_si256(g0, g1, 0x31));
}

/* dot4(acc, u, s): acc + in each int32 lane the sum of the 4 products u[4l..4l+3] * s[4l..4l+3]
 * (u unsigned, s signed bytes). With VNNI one vpdpbusd; without, vpmaddubsw + vpmaddwd, which
 * is exact only while no pair of products leaves int16: |u| * |s| * 2 <= 32767. Every caller
 * stays inside that (the largest is Q8_0's sign trick, 128 * 127 * 2). */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE __m256i dot4(__m256i acc, __m256i u, __m256i s)
{
    return _mm256_dpbusd_epi32(acc, u, s);
}

/* acc + p[2l] * c[2l] + p[2l+1] * c[2l+1] for int16 p and c (vpdpwssd, no saturation) */
ALWAYS_INLINE __m256i madd_acc(__m256i acc, __m256i p, __m256i c)
{
    return _mm256_dpwssd_epi32(acc, p, c);
}
#else
ALWAYS_INLINE __m256i dot4(__m256i acc, __m256i u, __m256i s)
{
    const __m256i p = _mm256_maddubs_epi16(u, s);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

ALWAYS_INLINE __m256i madd_acc(__m256i acc, __m256i p, __m256i c)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, c));
}
#endif

/* Makes the compiler hold v in a register: a vector loaded once for several uses, which gcc
 * would otherwise fold into each use as a memory operand (a load each, where loads bind). */
#define IN_REGISTER(v) __asm__("" : "+x"(v))

/* The opposite, for a small table just stored: its elements are then read as broadcast loads
 * (a load port each). Seeing the store, gcc would otherwise keep the table in registers and
 * extract each element with shuffles (the port the loads were to spare). p is laundered: a
 * pointer the compiler cannot relate to the table, which it must therefore write first. */
#define IN_MEMORY(p) __asm__("" : "+r"(p) : : "memory")

/* The one-token kernels' scales of their rows (q_k.h, q_legacy.h): the fp16 at p[r] + off of
 * rows r < nr (nr <= 8) as int16 r of a vector, the others 0. From an array, because clang
 * wants the lane index of _mm_insert_epi16 constant before it unrolls a loop (gcc makes the
 * same vpinsrw of either). */
ALWAYS_INLINE __m128i f16_rows(const uint8_t *const p[], size_t off, int nr)
{
    int16_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    UNROLL for (int r = 0; r < nr; r++) h[r] = (int16_t)load_u16(p[r] + off);
    return _mm_setr_epi16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]);
}

/* ... times the token's scale da: the products, float by float as the reference makes them,
 * go to dv, and the pointer returned reads lane i back as a broadcast load (IN_MEMORY), not a
 * shuffle. */
ALWAYS_INLINE const float *f16_times(__m128i h, float da, float dv[8])
{
    _mm256_store_ps(dv, _mm256_mul_ps(_mm256_set1_ps(da), _mm256_cvtph_ps(h)));
    const float *dq = dv;
    IN_MEMORY(dq);
    return dq;
}

/* Keeps an int32 accumulator a chain in one register. Without VNNI each step is a vpmaddwd then
 * a vpaddd, and the compiler (integer addition being associative) turns a tile's chains into
 * trees whose pending products spill to the stack: callgrind showed the avx2 K-quant tiles
 * storing and reloading every vpmaddwd result. With VNNI the step is one instruction. */
#ifdef ELM_SIMD_VNNI
#define KEEP_CHAIN(v) ((void)0)
#else
#define KEEP_CHAIN(v) IN_REGISTER(v)
#endif

/* 32 bytes, one per bit of x: 0xff where the bit is set, else 0 (byte j <- bit j). */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE __m256i bytes_from_bits(uint32_t x)
{
    return _mm256_movm_epi8(x);
}
#else
ALWAYS_INLINE __m256i bytes_from_bits(uint32_t x)
{
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}
#endif

/* Bits [from, from + width) of every byte of v moved to bits [to, to + width), the others
 * cleared: one 16-bit shift and a mask. Exact for every byte field: a left shift by s = to - from
 * carries a byte's top s bits into the next byte's bits below s <= to, a right shift by s =
 * from - to the next byte's low s bits into bits at or above 8 - s >= to + width, both outside
 * the mask. (Q5_K's fifth bit, Q6_K's top two, Q3_K's third: one shift where a shift down, a
 * mask and a shift back took two.) */
ALWAYS_INLINE __m256i bits_move(__m256i v, int from, int to, int width)
{
    const __m256i s =
        to >= from ? _mm256_slli_epi16(v, to - from) : _mm256_srli_epi16(v, from - to);
    return _mm256_and_si256(s, _mm256_set1_epi8((char)(((1 << width) - 1) << to)));
}

/* 16 packed nibbles -> 32 bytes: low nibbles (elements 0..15) then high nibbles (16..31). */
ALWAYS_INLINE __m256i unpack_nibbles16(const uint8_t *qs)
{
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

/* Asks for bytes [p, p + len) to be brought into L2 (len a compile-time constant in every
 * caller, so the loop unrolls). Not into L1: on Intel a prefetch into L1 holds one of its few
 * line-fill buffers until the line comes, so streaming weights prefetched that way reached
 * 78-84 % of a plain read at one token, against 90-93 % into L2 (docs/kernels-perf.md, s25); the
 * zmm tiles' panels are more than L1 holds beside what their runs read anyway. */
ALWAYS_INLINE void prefetch_span(const uint8_t *p, size_t len)
{
    UNROLL for (size_t o = 0; o < len; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T1);
}

ALWAYS_INLINE __m256i loadu256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Eight fp16 values at p, p + stride, ... (only the first n; the rest 0), as floats. The halves
 * are packed in general-purpose registers (shifts and ors run on the integer units, which the
 * kernels leave idle) so that only two vector instructions are spent on them. */
ALWAYS_INLINE __m256 load_h8_strided(const uint8_t *p, size_t stride, int n)
{
    uint64_t q[2] = {0, 0};
    UNROLL for (int i = 0; i < 8; i++) if (i < n) q[i / 4] |=
        (uint64_t)load_u16(p + (size_t)i * stride) << (16 * (i % 4));
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)q[1], (long long)q[0]));
}

#endif
