/* i8mm.c — the "i8mm" kernel variant: ARMv8.6-A's int8 matrix multiply (SMMLA) on top of
 * dotprod (Cortex-A510/A710/X2 and later, Neoverse V1/N2, Apple M2 under Linux).
 *
 * Compiled from the same source as the dotprod variant with -march=armv8.6-a+dotprod+i8mm.
 * SMMLA computes 2x2 dot products of 8-byte halves: useful where two weight rows meet two
 * tokens (a matmul tile) and where the reference sums whole 8-element groups; the single-row
 * kernels here keep sdot, whose 4-element lanes are the reference's. dispatch.c offers this
 * variant only when HWCAP2_I8MM and HWCAP_ASIMDDP say the CPU has both. */
#include "kernels/arm/float.h"
#include "kernels/arm/ops.h"
#include "kernels/arm/q_k.h"
#include "kernels/arm/q_legacy.h"
#include "kernels/arm/tile.h"

#define ELM_VARIANT_NAME  "i8mm"
#define ELM_VARIANT_TABLE elm_kernels_i8mm
#define ELM_VARIANT_TILES elm_tiles_i8mm
#include "kernels/arm/table.h"
