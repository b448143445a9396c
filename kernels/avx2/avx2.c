/* avx2.c — the "avx2" kernel variant: AVX2, FMA and F16C (Haswell and later, Zen).
 *
 * The kernels are written once in the headers of this folder and compiled here with this
 * file's flags (-mavx2 -mfma -mf16c -mbmi2); kernels/avx512/avx512.c compiles the same source
 * for AVX-512. simd.h says why; every kernel gives the reference's bits. */
#include "kernels/avx2/float.h"
#include "kernels/avx2/iq4.h"
#include "kernels/avx2/kv_group.h"
#include "kernels/avx2/ops.h"
#include "kernels/avx2/q4_0_wide.h"
#include "kernels/avx2/q4_0_x8.h"
#include "kernels/avx2/k_wide.h"
#include "kernels/avx2/q8_0_wide.h"
#include "kernels/avx2/q_k.h"
#include "kernels/avx2/q_legacy.h"

/* Q4_0 prefill: the one-output-per-lane tile (q4_0_wide.h) replaces the shared tile in this
 * variant's table, with its own panel shape; it falls back to the shared tile itself (one
 * token, a matmul's first token tile, rows too long). */
#undef Q40_R
#undef Q40_T
#define Q40_R     Q40V_R
#define Q40_T     Q40V_T
#define q4_0_tile q4_0_tile_wide
/* and weights packed at load time (ELM_LAYOUT_X8) have a tile of their own (q4_0_x8.h) */
#define TILE_Q4_0                                                                                  \
    {                                                                                              \
        .vec_dot = q4_0_vec_dot, .tile = q4_0_tile_wide, .rows = Q40V_R, .toks = Q40V_T,           \
        .rows_gemv = Q40_R_GEMV, .tile_x8 = q4_0_tile_x8                                           \
    }

/* Q8_0, Q5_0, Q4_1, Q5_1, IQ4_NL and IQ4_XS prefill: one output per lane too (q8_0_wide.h), in
 * their own panel */
#define TILE_Q8_0   TILE(q8_0_tile_wide, q8_0_vec_dot, Q80V_R, Q80V_T, LEG_R_GEMV)
#define TILE_Q5_0   TILE(q5_0_tile_wide, q5_0_vec_dot, Q80V_R, Q80V_T, LEG_R_GEMV)
#define TILE_Q4_1   TILE(q4_1_tile_wide, q4_1_vec_dot, Q80V_R, Q80V_T, LEG_R_GEMV)
#define TILE_Q5_1   TILE(q5_1_tile_wide, q5_1_vec_dot, Q80V_R, Q80V_T, LEG_R_GEMV)
#define TILE_IQ4_NL TILE(iq4_nl_tile_wide, iq4_nl_vec_dot, Q80V_R, Q80V_T, LEG_R_GEMV)
#define TILE_IQ4_XS TILE(iq4_xs_tile_wide, iq4_xs_vec_dot, Q80V_R, Q80V_T, LEG_R_GEMV)
/* Q4_K and Q6_K prefill: the shared arithmetic, runs paired, over a panel unpacked once per
 * token chunk (k_wide.h) */
#define TILE_Q4_K TILE(q4_k_tile_wide, q4_k_vec_dot, KW_R, KW_T, KQ_R_GEMV)
#define TILE_Q6_K TILE(q6_k_tile_wide, q6_k_vec_dot, KW_R, KW_T, KQ_R_GEMV)

#define ELM_VARIANT_NAME  "avx2"
#define ELM_VARIANT_TABLE elm_kernels_avx2
#define ELM_VARIANT_TILES elm_tiles_avx2
#include "kernels/avx2/table.h"
