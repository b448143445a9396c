/* avx512.c — the "avx512" kernel variant: AVX-512 F/BW/VL/DQ with VNNI (Ice Lake, Zen 4 and
 * later), plus AVX2/FMA/F16C.
 *
 * The same kernel source as the avx2 variant (the headers of kernels/avx2/), compiled with this
 * file's flags: the integer dot products become VNNI instructions (vpdpbusd, vpdpwssd), the 32
 * vector registers allow larger matmul tiles, and the float arithmetic stays the reference's, lane
 * for lane (simd.h). dispatch.c offers this variant only when the CPU and OS support all of it.
 * AMX (-mamx-tile -mamx-int8) is compiled in too, but runs only where kernels/feed.c finds it
 * usable: one Q4_0 tile, q4_0_amx.h. */
#include "kernels/avx2/float.h"
#include "kernels/avx2/iq4.h"
#include "kernels/avx2/kv_group.h"
#include "kernels/avx2/ops.h"
#include "kernels/avx2/q_k.h"
#include "kernels/avx2/q_legacy.h"
#include "kernels/avx512/iq4_tile.h"
#include "kernels/avx512/q4_0_amx.h"
#include "kernels/avx512/q_k_tile.h"
#include "kernels/avx512/q_legacy_tile.h"

/* Q4_0 prefill: the one-output-per-lane tile (q4_0_tile.h) replaces the shared tile in this
 * variant's table, with its own panel shape (it falls back to the shared tile itself), and
 * weights packed at load time (ELM_LAYOUT_X8) a tile of their own (q40w_tile_x8); tiles of 16
 * tokens go to AMX where the process may use it, else to two of the vector tile's 8
 * (q4_0_amx.h) */
#define TILE_Q4_0                                                                                  \
    {                                                                                              \
        .vec_dot = q4_0_vec_dot, .tile = q40a_tile, .rows = Q40W_R, .toks = Q40A_T,                \
        .rows_gemv = Q40_R_GEMV, .tile_x8 = q40a_tile_x8                                           \
    }

/* Q8_0, Q5_0, Q4_1, Q5_1 prefill: one output per lane too (q_legacy_tile.h, lanes.h), in their
 * panel shape */
#define TILE_Q8_0 TILE(q8_0_tile_lanes, q8_0_vec_dot, LN_R, LN_T, LEG_R_GEMV)
#define TILE_Q5_0 TILE(q5_0_tile_lanes, q5_0_vec_dot, LN_R, LN_T, LEG_R_GEMV)
#define TILE_Q4_1 TILE(q4_1_tile_lanes, q4_1_vec_dot, LN_R, LN_T, LEG_R_GEMV)
#define TILE_Q5_1 TILE(q5_1_tile_lanes, q5_1_vec_dot, LN_R, LN_T, LEG_R_GEMV)
/* IQ4_NL and IQ4_XS prefill: one output per lane too (iq4_tile.h) */
#define TILE_IQ4_NL TILE(iq4_nl_tile_lanes, iq4_nl_vec_dot, LN_R, LN_T, LEG_R_GEMV)
#define TILE_IQ4_XS TILE(iq4_xs_tile_lanes, iq4_xs_vec_dot, LN_R, LN_T, LEG_R_GEMV)
/* and the K-quants (q_k_tile.h) */
#define TILE_Q2_K TILE(q2_k_tile_lanes, q2_k_vec_dot, LN_R, LN_T, KQ_R_GEMV)
#define TILE_Q3_K TILE(q3_k_tile_lanes, q3_k_vec_dot, LN_R, LN_T, KQ_R_GEMV)
#define TILE_Q4_K TILE(q4_k_tile_lanes, q4_k_vec_dot, LN_R, LN_T, KQ_R_GEMV)
#define TILE_Q5_K TILE(q5_k_tile_lanes, q5_k_vec_dot, LN_R, LN_T, KQ_R_GEMV)
#define TILE_Q6_K TILE(q6_k_tile_lanes, q6_k_vec_dot, LN_R, LN_T, KQ_R_GEMV)

#define ELM_VARIANT_NAME  "avx512"
#define ELM_VARIANT_TABLE elm_kernels_avx512
#define ELM_VARIANT_TILES elm_tiles_avx512
#include "kernels/avx2/table.h"
