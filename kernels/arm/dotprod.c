/* dotprod.c — the "dotprod" kernel variant: ARMv8.2-A with the dot-product extension (SDOT/UDOT:
 * Cortex-A55/A76 and later, Raspberry Pi 5, Jetson Orin, RK3588, most phones since 2019).
 *
 * The same kernel source as the neon variant (the headers of this folder), compiled with
 * -march=armv8.2-a+dotprod: each reference lane's four byte products become one sdot lane
 * (simd.h). dispatch.c offers this variant only when HWCAP_ASIMDDP says the CPU has it. */
#include "kernels/arm/float.h"
#include "kernels/arm/ops.h"
#include "kernels/arm/q_k.h"
#include "kernels/arm/q_legacy.h"
#include "kernels/arm/tile.h"

#define ELM_VARIANT_NAME  "dotprod"
#define ELM_VARIANT_TABLE elm_kernels_dotprod
#define ELM_VARIANT_TILES elm_tiles_dotprod
#include "kernels/arm/table.h"
