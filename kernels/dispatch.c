/* dispatch.c — the table of kernel variants and the choice of one for this process.
 *
 * "ref" (the portable scalar kernels in kernels/ref/) is always present and complete. SIMD
 * variants register below; a variant may leave entries NULL (types it does not accelerate), and
 * those holes are filled from ref once, the first time any variant is asked for, so callers
 * never see NULL where ref has a kernel. A variant is offered only when it was built in AND the
 * CPU (and the OS, for the wider register state) supports the instructions it was compiled for.
 *
 * The choice is made once (pthread_once): ELM_KERNEL=<name> (ref, avx2, avx512 on x86-64; ref,
 * neon, dotprod, i8mm on ARM64) forces a variant; an unknown or unsupported name prints a
 * warning and falls back to the best variant the CPU runs. x86 probes CPUID (and XCR0 for the
 * register state); ARM64 asks the kernel (getauxval(AT_HWCAP/AT_HWCAP2)), because the ID
 * registers are not readable from user space on every kernel.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define ELM_X86 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#define ELM_ARM64 1
/* bits of AT_HWCAP / AT_HWCAP2 (linux/arch/arm64/include/uapi/asm/hwcap.h), for old headers */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1UL << 13)
#endif
#endif

/* ---- the reference table ----------------------------------------------------------------- */

const struct elm_kernels elm_kernels_ref = {
    .name = "ref",
    .to_float =
        {
            [ELM_TYPE_F32] = elm_ref_f32_to_float,
            [ELM_TYPE_F16] = elm_ref_f16_to_float,
            [ELM_TYPE_BF16] = elm_ref_bf16_to_float,
            [ELM_TYPE_Q4_0] = elm_ref_q4_0_to_float,
            [ELM_TYPE_Q4_1] = elm_ref_q4_1_to_float,
            [ELM_TYPE_Q5_0] = elm_ref_q5_0_to_float,
            [ELM_TYPE_Q5_1] = elm_ref_q5_1_to_float,
            [ELM_TYPE_Q8_0] = elm_ref_q8_0_to_float,
            [ELM_TYPE_Q8_1] = elm_ref_q8_1_to_float,
            [ELM_TYPE_Q2_K] = elm_ref_q2_k_to_float,
            [ELM_TYPE_Q3_K] = elm_ref_q3_k_to_float,
            [ELM_TYPE_Q4_K] = elm_ref_q4_k_to_float,
            [ELM_TYPE_Q5_K] = elm_ref_q5_k_to_float,
            [ELM_TYPE_Q6_K] = elm_ref_q6_k_to_float,
            [ELM_TYPE_Q8_K] = elm_ref_q8_k_to_float,
            [ELM_TYPE_IQ4_NL] = elm_ref_iq4_nl_to_float,
            [ELM_TYPE_IQ4_XS] = elm_ref_iq4_xs_to_float,
        },
    .from_float =
        {
            [ELM_TYPE_F32] = elm_ref_f32_from_float,
            [ELM_TYPE_F16] = elm_ref_f16_from_float,
            [ELM_TYPE_BF16] = elm_ref_bf16_from_float,
            [ELM_TYPE_Q4_0] = elm_ref_q4_0_from_float,
            [ELM_TYPE_Q4_1] = elm_ref_q4_1_from_float,
            [ELM_TYPE_Q5_0] = elm_ref_q5_0_from_float,
            [ELM_TYPE_Q5_1] = elm_ref_q5_1_from_float,
            [ELM_TYPE_Q8_0] = elm_ref_q8_0_from_float, /* activation rounding, see kernels.h */
            [ELM_TYPE_Q8_1] = elm_ref_q8_1_from_float,
            [ELM_TYPE_Q2_K] = elm_ref_q2_k_from_float,
            [ELM_TYPE_Q3_K] = elm_ref_q3_k_from_float,
            [ELM_TYPE_Q4_K] = elm_ref_q4_k_from_float,
            [ELM_TYPE_Q5_K] = elm_ref_q5_k_from_float,
            [ELM_TYPE_Q6_K] = elm_ref_q6_k_from_float,
            [ELM_TYPE_Q8_K] = elm_ref_q8_k_from_float,
            [ELM_TYPE_IQ4_NL] = elm_ref_iq4_nl_from_float,
            [ELM_TYPE_IQ4_XS] = elm_ref_iq4_xs_from_float,
        },
    .vec_dot =
        {
            [ELM_TYPE_F32] = elm_ref_f32_vec_dot,
            [ELM_TYPE_F16] = elm_ref_f16_vec_dot,
            [ELM_TYPE_BF16] = elm_ref_bf16_vec_dot,
            [ELM_TYPE_Q4_0] = elm_ref_q4_0_vec_dot,
            [ELM_TYPE_Q4_1] = elm_ref_q4_1_vec_dot,
            [ELM_TYPE_Q5_0] = elm_ref_q5_0_vec_dot,
            [ELM_TYPE_Q5_1] = elm_ref_q5_1_vec_dot,
            [ELM_TYPE_Q8_0] = elm_ref_q8_0_vec_dot,
            [ELM_TYPE_Q2_K] = elm_ref_q2_k_vec_dot,
            [ELM_TYPE_Q3_K] = elm_ref_q3_k_vec_dot,
            [ELM_TYPE_Q4_K] = elm_ref_q4_k_vec_dot,
            [ELM_TYPE_Q5_K] = elm_ref_q5_k_vec_dot,
            [ELM_TYPE_Q6_K] = elm_ref_q6_k_vec_dot,
            [ELM_TYPE_IQ4_NL] = elm_ref_iq4_nl_vec_dot,
            [ELM_TYPE_IQ4_XS] = elm_ref_iq4_xs_vec_dot,
        },
    .rmsnorm = elm_ref_rmsnorm,
    .rope_table = elm_ref_rope_table,
    .rope = elm_ref_rope,
    .softmax = elm_ref_softmax,
    .silu_mul = elm_ref_silu_mul,
    .kv_dot = {[ELM_TYPE_F32] = elm_ref_kv_dot_f32,
               [ELM_TYPE_F16] = elm_ref_kv_dot_f16,
               [ELM_TYPE_Q8_0] = elm_ref_q8_0_vec_dot},
    .kv_mix = {[ELM_TYPE_F32] = elm_ref_kv_mix_f32,
               [ELM_TYPE_F16] = elm_ref_kv_mix_f16,
               [ELM_TYPE_Q8_0] = elm_ref_kv_mix_q8_0},
    .kv_fold = elm_ref_kv_fold,
};

int elm_quantize_row(enum elm_type type, const float *src, void *dst, int64_t n)
{
    return elm_quantize_row_imatrix(type, src, dst, n, NULL);
}

int elm_quantize_row_imatrix(enum elm_type type, const float *src, void *dst, int64_t n,
                             const float *imatrix)
{
    const struct elm_type_info *ti = elm_type_get((uint32_t)type);
    if (ti == NULL || !ti->is_weight || n < 0 || n % ti->block != 0)
        return -EINVAL;
    /* ggml's quantize_* take the *_impl path with weights, the *_ref path without */
    void (*weighted)(const float *, void *, int64_t, const float *) = NULL;
    switch (type) {
    case ELM_TYPE_Q4_0:
        weighted = elm_ref_q4_0_quantize_imatrix;
        break;
    case ELM_TYPE_Q4_1:
        weighted = elm_ref_q4_1_quantize_imatrix;
        break;
    case ELM_TYPE_Q5_0:
        weighted = elm_ref_q5_0_quantize_imatrix;
        break;
    case ELM_TYPE_Q5_1:
        weighted = elm_ref_q5_1_quantize_imatrix;
        break;
    case ELM_TYPE_Q2_K:
        weighted = elm_ref_q2_k_quantize_imatrix;
        break;
    case ELM_TYPE_Q3_K:
        weighted = elm_ref_q3_k_quantize_imatrix;
        break;
    case ELM_TYPE_Q4_K:
        weighted = elm_ref_q4_k_quantize_imatrix;
        break;
    case ELM_TYPE_Q5_K:
        weighted = elm_ref_q5_k_quantize_imatrix;
        break;
    case ELM_TYPE_Q6_K:
        weighted = elm_ref_q6_k_quantize_imatrix;
        break;
    case ELM_TYPE_IQ4_NL:
        weighted = elm_ref_iq4_nl_quantize;
        break;
    case ELM_TYPE_IQ4_XS:
        weighted = elm_ref_iq4_xs_quantize;
        break;
    default:
        break;
    }
    if (imatrix != NULL && weighted != NULL)
        weighted(src, dst, n, imatrix);
    else if (type == ELM_TYPE_Q8_0)
        elm_ref_q8_0_quantize_weights(src, dst, n);
    else
        elm_kernels_ref.from_float[type](src, dst, n);
    return 0;
}

/* ---- SIMD variants: REGISTRATION ------------------------------------------------------------
 * To add a variant: define `const struct elm_kernels elm_kernels_<isa>` in kernels/<isa>/,
 * declare it here, and add its row to `variants` of its architecture (best first). Its `isa`
 * names the CPU check below that must pass before it is offered. (Weak symbols would avoid this
 * edit, but a weak reference does not pull an object out of a static library, so the table
 * would silently vanish from every binary.) Each architecture builds only its own variants
 * (CMakeLists.txt), hence one list per architecture. */
enum isa { ISA_NONE, ISA_AVX2, ISA_AVX512, ISA_NEON, ISA_DOTPROD, ISA_I8MM };

#ifdef ELM_X86
extern const struct elm_kernels elm_kernels_avx512; /* kernels/avx512/avx512.c */
extern const struct elm_kernels elm_kernels_avx2;   /* kernels/avx2/avx2.c */
#endif
#ifdef ELM_ARM64
extern const struct elm_kernels elm_kernels_i8mm;    /* kernels/arm/i8mm.c */
extern const struct elm_kernels elm_kernels_dotprod; /* kernels/arm/dotprod.c */
extern const struct elm_kernels elm_kernels_neon;    /* kernels/arm/neon.c */
#endif

static const struct variant {
    const char *name;
    enum isa isa;
    const struct elm_kernels *table; /* as built: may have holes */
} variants[] = {
/* clang-format off */
#ifdef ELM_X86
    {"avx512", ISA_AVX512, &elm_kernels_avx512},
    {"avx2", ISA_AVX2, &elm_kernels_avx2},
#endif
#ifdef ELM_ARM64
    {"i8mm", ISA_I8MM, &elm_kernels_i8mm},
    {"dotprod", ISA_DOTPROD, &elm_kernels_dotprod},
    {"neon", ISA_NEON, &elm_kernels_neon},
#endif
    {"ref", ISA_NONE, &elm_kernels_ref}, /* last: always runs */
    /* clang-format on */
};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

/* ---- CPU probe --------------------------------------------------------------------------- */

#ifdef ELM_X86
/* XCR0 via xgetbv, valid only when CPUID reports OSXSAVE. Written as bytes so that this file
 * needs no -mxsave. */
static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static bool probe_isa(enum isa isa)
{
    unsigned a, b, c, d;
    if (isa == ISA_NONE)
        return true;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return false;
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28);
    const bool fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave || !avx || !fma || !f16c)
        return false;
    /* the OS must save the YMM state (XCR0 bits 1 and 2), else AVX instructions fault */
    const uint64_t xcr0 = read_xcr0();
    if ((xcr0 & 0x6) != 0x6)
        return false;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return false;
    const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
    if (!avx2 || !bmi2)
        return false;
    if (isa == ISA_AVX2)
        return true;
    /* AVX-512 also needs the opmask and both ZMM halves saved (XCR0 bits 5, 6, 7) */
    const bool f = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    const bool vnni = c & (1u << 11);
    return f && dq && bw && vl && vnni && (xcr0 & 0xe0) == 0xe0;
}
#elif defined(ELM_ARM64)
/* ARMv8.0-A makes Advanced SIMD mandatory, but a kernel may still hide it (HWCAP_ASIMD);
 * i8mm kernels also use sdot, so they need both bits. */
static bool probe_isa(enum isa isa)
{
    const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    const bool asimd = hw & HWCAP_ASIMD, dp = hw & HWCAP_ASIMDDP, i8mm = hw2 & HWCAP2_I8MM;
    switch (isa) {
    case ISA_NONE:
        return true;
    case ISA_NEON:
        return asimd;
    case ISA_DOTPROD:
        return asimd && dp;
    case ISA_I8MM:
        return asimd && dp && i8mm;
    default:
        return false;
    }
}
#else
static bool probe_isa(enum isa isa)
{
    return isa == ISA_NONE;
}
#endif

/* ---- one-time initialisation ------------------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static struct elm_kernels filled[N_VARIANTS]; /* variants with holes filled from ref */
static bool usable[N_VARIANTS];               /* built in and runnable on this CPU */
static const struct elm_kernels *active;

static void fill_holes(struct elm_kernels *k)
{
    for (int t = 0; t < ELM_TYPE_COUNT; t++) {
        if (k->to_float[t] == NULL)
            k->to_float[t] = elm_kernels_ref.to_float[t];
        if (k->from_float[t] == NULL)
            k->from_float[t] = elm_kernels_ref.from_float[t];
        if (k->vec_dot[t] == NULL)
            k->vec_dot[t] = elm_kernels_ref.vec_dot[t];
        if (k->kv_dot[t] == NULL)
            k->kv_dot[t] = elm_kernels_ref.kv_dot[t];
        if (k->kv_mix[t] == NULL)
            k->kv_mix[t] = elm_kernels_ref.kv_mix[t];
    }
    if (k->rmsnorm == NULL)
        k->rmsnorm = elm_kernels_ref.rmsnorm;
    if (k->rope_table == NULL)
        k->rope_table = elm_kernels_ref.rope_table;
    if (k->rope == NULL)
        k->rope = elm_kernels_ref.rope;
    if (k->softmax == NULL)
        k->softmax = elm_kernels_ref.softmax;
    if (k->kv_fold == NULL)
        k->kv_fold = elm_kernels_ref.kv_fold;
    if (k->silu_mul == NULL)
        k->silu_mul = elm_kernels_ref.silu_mul;
}

static int find_variant(const char *name)
{
    for (size_t i = 0; i < N_VARIANTS; i++)
        if (strcmp(variants[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void init(void)
{
    for (size_t i = 0; i < N_VARIANTS; i++) {
        filled[i] = *variants[i].table;
        fill_holes(&filled[i]);
        usable[i] = probe_isa(variants[i].isa);
    }
    /* the best usable variant: the list is ordered best first and ends with ref */
    size_t best = N_VARIANTS - 1;
    for (size_t i = 0; i < N_VARIANTS; i++) {
        if (usable[i]) {
            best = i;
            break;
        }
    }
    active = &filled[best];

    const char *want = getenv("ELM_KERNEL");
    if (want != NULL && *want != '\0') {
        int i = find_variant(want);
        if (i >= 0 && usable[i])
            active = &filled[i];
        else
            elm_warn("ELM_KERNEL=%s: %s; using \"%s\"", want,
                     i < 0 ? "not a kernel variant built into elm" : "not supported by this CPU",
                     active->name);
    }
}

const struct elm_kernels *elm_kernels_get(const char *name)
{
    pthread_once(&init_once, init);
    if (name == NULL)
        return NULL;
    int i = find_variant(name);
    return i >= 0 && usable[i] ? &filled[i] : NULL;
}

const struct elm_kernels *elm_kernels_active(void)
{
    pthread_once(&init_once, init);
    return active;
}

bool elm_kernels_cpu_has(const char *name)
{
    if (name == NULL)
        return false;
    int i = find_variant(name);
    return i >= 0 && probe_isa(variants[i].isa);
}

const char *elm_kernels_variant(size_t i)
{
    return i < N_VARIANTS ? variants[i].name : NULL;
}
