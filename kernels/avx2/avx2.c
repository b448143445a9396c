/* avx2.c — the "avx2" kernel variant: AVX2, FMA and F16C (Haswell and later, Zen).
 *
 * The kernels are written once in the headers of this folder and compiled here with this
 * file's flags (-mavx2 -mfma -mf16c -mbmi2); kernels/avx512/avx512.c compiles the same source
 * for AVX-512. simd.h says why; every kernel gives the reference's bits. */
#include "kernels/avx2/float.h"
#include "kernels/avx2/iq4.h"
#include "kernels/avx2/ops.h"
#include "kernels/avx2/q_k.h"
#include "kernels/avx2/q_legacy.h"

#define ELM_VARIANT_NAME  "avx2"
#define ELM_VARIANT_TABLE elm_kernels_avx2
#define ELM_VARIANT_TILES elm_tiles_avx2
#include "kernels/avx2/table.h"
