/* neon.c — the "neon" kernel variant: ARMv8.0-A Advanced SIMD, which every ARM64 core has
 * (Cortex-A53/A72: Raspberry Pi 3 and 4, Jetson Nano).
 *
 * The kernels are written once in the headers of this folder and compiled here for the
 * baseline; dotprod.c and i8mm.c compile the same source with their extensions (simd.h says
 * why). Every kernel gives the reference's bits. */
#include "kernels/arm/float.h"
#include "kernels/arm/ops.h"
#include "kernels/arm/q_k.h"
#include "kernels/arm/q_legacy.h"
#include "kernels/arm/tile.h"

#define ELM_VARIANT_NAME  "neon"
#define ELM_VARIANT_TABLE elm_kernels_neon
#define ELM_VARIANT_TILES elm_tiles_neon
#include "kernels/arm/table.h"
