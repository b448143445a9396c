/* avx2-ports.c — which execution ports the AVX2 matmul's ymm instructions share on this CPU, for
 * docs/kernels-perf.md's AVX2 floor (issue 18). The VM exposes no hardware counters, so each
 * test runs a loop of a set of ymm instructions written once per destination ymm0..ymm9 from
 * sources that never change, and converts its thread CPU time to cycles with a chain of
 * dependent `imul`s (3 cycles each on every Intel core since Sandy Bridge). No chain limits the
 * rate: a rewritten register is renamed, and the only instruction that reads its destination,
 * the fma, has 10 independent chains against a latency of 4. Cycles per instruction alone give
 * the port count (0.50 = two ports, 0.33 = three); a mix's cycles per set (one of each of its
 * instructions) against the sum of its parts' show whether they share ports. Best of REPS runs,
 * so that a loaded machine mostly costs repetitions (a busy sibling hyperthread on the host, if
 * the VM has one, would still show as a slower rate). Build: gcc -O2 scripts/avx2-ports.c -o
 * /tmp/ports. usage: ports [REPS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <xmmintrin.h>

#define ITERS 2000000L

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* One instruction with destination ymmR; "S" is the rest of its operands. */
#define I(OP, S, R) OP " " S ", %%ymm" #R "\n\t"
/* A set of instructions written once per destination register ymm0..ymm9. */
#define R10(SET) SET(0) SET(1) SET(2) SET(3) SET(4) SET(5) SET(6) SET(7) SET(8) SET(9)

/* The loop around BODY; ymm12..15 hold sources (small integers or floats), rsi a 64-byte buffer
 * for the memory-operand broadcasts. */
#define LOOP(NAME, SET)                                                                            \
    static void NAME(long n, const int *buf)                                                       \
    {                                                                                              \
        __asm__ volatile("vpcmpeqd %%ymm15, %%ymm15, %%ymm15\n\t"                                  \
                         "vpabsb %%ymm15, %%ymm15\n\t"                                             \
                         "vmovdqa %%ymm15, %%ymm14\n\t"                                            \
                         "vcvtdq2ps %%ymm15, %%ymm13\n\t"                                          \
                         "vmovaps %%ymm13, %%ymm12\n\t"                                            \
                         "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"                                     \
                         "vxorps %%ymm0, %%ymm0, %%ymm0\n\t"                                       \
                         "vmovaps %%ymm0, %%ymm1\n\tvmovaps %%ymm0, %%ymm2\n\t"                    \
                         "vmovaps %%ymm0, %%ymm3\n\tvmovaps %%ymm0, %%ymm4\n\t"                    \
                         "vmovaps %%ymm0, %%ymm5\n\tvmovaps %%ymm0, %%ymm6\n\t"                    \
                         "vmovaps %%ymm0, %%ymm7\n\tvmovaps %%ymm0, %%ymm8\n\t"                    \
                         "vmovaps %%ymm0, %%ymm9\n\t"                                              \
                         "1:\n\t" R10(SET) "dec %0\n\tjnz 1b\n\tvzeroupper"                        \
                         : "+r"(n)                                                                 \
                         : "S"(buf)                                                                \
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", \
                           "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory", \
                           "cc");                                                                  \
    }

#define MADDUBS(R) I("vpmaddubsw", "%%ymm14, %%ymm15", R)
#define MADDWD(R)  I("vpmaddwd", "%%ymm14, %%ymm15", R)
#define ADDW(R)    I("vpaddw", "%%ymm14, %%ymm15", R)
#define ADDD(R)    I("vpaddd", "%%ymm14, %%ymm15", R)
#define CVT(R)     I("vcvtdq2ps", "%%ymm15", R)
#define MUL(R)     I("vmulps", "%%ymm12, %%ymm13", R)
#define FMA(R)     I("vfmadd231ps", "%%ymm12, %%ymm13", R)
#define BCAST(R)   I("vpbroadcastd", "(%%rsi)", R)
#define LOAD(R)    I("vmovdqa", "(%%rsi)", R)
#define MADDWDM(R) I("vpmaddwd", "(%%rsi), %%ymm14", R)
#define SIGN(R)    I("vpsignb", "%%ymm14, %%ymm15", R)
#define SRLW(R)    I("vpsrlw", "$4, %%ymm15", R)
#define AND(R)     I("vpand", "%%ymm14, %%ymm15", R)
#define SHUFB(R)   I("vpshufb", "%%ymm14, %%ymm15", R)
#define INSERT(R)  I("vinserti128", "$1, %%xmm14, %%ymm15", R)
#define PINSRW(R)  "vpinsrw $1, (%%rsi), %%xmm15, %%xmm" #R "\n\t"
/* the mask is consumed by the gather, so each one is preceded by its reset */
#define GATHER(R)                                                                                  \
    "vpcmpeqd %%ymm10, %%ymm10, %%ymm10\n\tvpgatherdd %%ymm10, (%%rsi,%%ymm11,4), %%ymm" #R "\n\t"
#define X7(M, R) M(R) M(R) M(R) M(R) M(R) M(R) M(R)
#define X8(M, R) X7(M, R) M(R)

#define S_MADDUBS_MADDWD(R)      MADDUBS(R) MADDWD(R)
#define S_MADDUBS_ADDW(R)        MADDUBS(R) ADDW(R)
#define S_MADDUBS_ADDW_ADDD(R)   MADDUBS(R) ADDW(R) ADDD(R)
#define S_MADDUBS_FMA(R)         MADDUBS(R) FMA(R)
#define S_CVT_FMA(R)             CVT(R) FMA(R)
#define S_CVT_MUL_FMA(R)         CVT(R) MUL(R) FMA(R)
#define S_MADDUBS_CVT_FMA(R)     MADDUBS(R) CVT(R) FMA(R)
#define S_MADDUBS_MADDWD_ADDD(R) MADDUBS(R) MADDWD(R) ADDD(R)
#define S_MADDUBS_BCAST(R)       MADDUBS(R) BCAST(R)
#define S_MADDUBS_SHUFB(R)       MADDUBS(R) SHUFB(R)
#define S_MADDUBS_INSERT(R)      MADDUBS(R) INSERT(R)
/* Q4_0's run per token, 8 rows and block (q4_0_wide.h): 8 vpmaddubsw, 7 vpaddw, a vpmaddwd, the
 * -8 correction's vpaddd, the d_w * d_a vmulps, a convert, an fma, 8 activation broadcasts. */
#define S_Q4_0(R) X8(MADDUBS, R) X7(ADDW, R) MADDWD(R) ADDD(R) MUL(R) CVT(R) FMA(R) X8(BCAST, R)
/* Q4_K's 1 row x 1 token per super-block (q_k.h): per run of 32 a vpmaddubsw, a vpmaddwd by the
 * run's scale and a vpaddd; once a convert, an fma and the d product; the minimum lanes (shared
 * by two tokens: half a vpmaddwd, convert, fma and product, rounded up). */
#define S_Q4_K(R)                                                                                  \
    X8(MADDUBS, R)                                                                                 \
    X8(MADDWD, R) MADDWD(R) X8(ADDD, R) CVT(R) CVT(R) FMA(R) FMA(R) MUL(R) MUL(R) X8(BCAST, R)
/* Q6_K's per row, token and super-block: 8 runs as Q4_K's, the -32 corrections from c32 (4
 * vpmaddwd by the paired scales, 4 vpaddd), a convert, an fma and the product. */
#define S_Q6_K(R)                                                                                  \
    X8(MADDUBS, R)                                                                                 \
    X8(MADDWD, R)                                                                                  \
    MADDWD(R)                                                                                      \
    MADDWD(R)                                                                                      \
    MADDWD(R)                                                                                      \
    MADDWD(R) X8(ADDD, R) ADDD(R) ADDD(R) ADDD(R) ADDD(R) CVT(R) FMA(R) MUL(R) X8(BCAST, R)

/* The Q8_0 lane tile per token, 8 rows and block (q8_0_wide.h): 8 lanes of two vpmaddwd, a
 * vpaddd, a convert and an fma; the weights as memory operands. One token at a time (16 weight
 * operands, 16 broadcasts, the scale load and broadcast, one d product) and two at a time, per
 * token (each weight vector loaded once for both: 8 loads, the d products made per half). */
#define Q8_LANE(R)       MADDWDM(R) MADDWDM(R) ADDD(R) CVT(R) FMA(R) BCAST(R) BCAST(R)
#define S_Q8_0_ONE(R)    X8(Q8_LANE, R) LOAD(R) BCAST(R) MUL(R)
#define Q8_LANE2(R)      MADDWD(R) MADDWD(R) ADDD(R) CVT(R) FMA(R) BCAST(R) BCAST(R)
#define S_Q8_0_TWO(R)    X8(Q8_LANE2, R) X8(LOAD, R) LOAD(R) BCAST(R) BCAST(R) MUL(R) MUL(R)
#define S_LOAD_BCAST(R)  LOAD(R) BCAST(R)
#define S_MADDWDM_FMA(R) MADDWDM(R) FMA(R)

LOOP(t_maddubs, MADDUBS)
LOOP(t_maddwd, MADDWD)
LOOP(t_addw, ADDW)
LOOP(t_addd, ADDD)
LOOP(t_cvt, CVT)
LOOP(t_mul, MUL)
LOOP(t_fma, FMA)
LOOP(t_bcast, BCAST)
LOOP(t_load, LOAD)
LOOP(t_maddwdm, MADDWDM)
LOOP(t_load_bcast, S_LOAD_BCAST)
LOOP(t_maddwdm_fma, S_MADDWDM_FMA)
LOOP(t_q8_0_one, S_Q8_0_ONE)
LOOP(t_q8_0_two, S_Q8_0_TWO)
LOOP(t_sign, SIGN)
LOOP(t_srlw, SRLW)
LOOP(t_and, AND)
LOOP(t_shufb, SHUFB)
LOOP(t_insert, INSERT)
LOOP(t_pinsrw, PINSRW)
LOOP(t_gather, GATHER)
LOOP(t_maddubs_maddwd, S_MADDUBS_MADDWD)
LOOP(t_maddubs_addw, S_MADDUBS_ADDW)
LOOP(t_maddubs_addw_addd, S_MADDUBS_ADDW_ADDD)
LOOP(t_maddubs_fma, S_MADDUBS_FMA)
LOOP(t_cvt_fma, S_CVT_FMA)
LOOP(t_cvt_mul_fma, S_CVT_MUL_FMA)
LOOP(t_maddubs_cvt_fma, S_MADDUBS_CVT_FMA)
LOOP(t_maddubs_maddwd_addd, S_MADDUBS_MADDWD_ADDD)
LOOP(t_maddubs_bcast, S_MADDUBS_BCAST)
LOOP(t_maddubs_shufb, S_MADDUBS_SHUFB)
LOOP(t_maddubs_insert, S_MADDUBS_INSERT)
LOOP(t_q4_0, S_Q4_0)
LOOP(t_q4_k, S_Q4_K)
LOOP(t_q6_k, S_Q6_K)

/* 3-cycle imul chain, 10 per iteration: the clock. */
static void t_imul(long n, const int *buf)
{
    (void)buf;
    long x = 1;
    __asm__ volatile("1:\n\t"
                     "imul %1, %1\n\timul %1, %1\n\timul %1, %1\n\timul %1, %1\n\timul %1, %1\n\t"
                     "imul %1, %1\n\timul %1, %1\n\timul %1, %1\n\timul %1, %1\n\timul %1, %1\n\t"
                     "dec %0\n\tjnz 1b"
                     : "+r"(n), "+r"(x)
                     :
                     : "cc");
}

static double best_ns(void (*f)(long, const int *), int reps, const int *buf)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        const double t0 = cpu_ns();
        f(ITERS, buf);
        const double t = cpu_ns() - t0;
        if (t < best)
            best = t;
    }
    return best / ITERS;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        void (*f)(long, const int *);
        int n; /* instructions per iteration (all ymm ones, broadcasts included) */
    } tests[] = {
        {"vpmaddubsw", t_maddubs, 10},
        {"vpmaddwd", t_maddwd, 10},
        {"vpaddw", t_addw, 10},
        {"vpaddd", t_addd, 10},
        {"vcvtdq2ps", t_cvt, 10},
        {"vmulps", t_mul, 10},
        {"vfmadd231ps", t_fma, 10},
        {"vpbroadcastd (mem)", t_bcast, 10},
        {"vmovdqa (mem)", t_load, 10},
        {"vpmaddwd (mem)", t_maddwdm, 10},
        {"vmovdqa+bcast (mem)", t_load_bcast, 20},
        {"vpmaddwd (mem)+fma", t_maddwdm_fma, 20},
        {"vpsignb", t_sign, 10},
        {"vpsrlw imm", t_srlw, 10},
        {"vpand", t_and, 10},
        {"vpshufb", t_shufb, 10},
        {"vinserti128", t_insert, 10},
        {"vpinsrw (mem)", t_pinsrw, 10},
        {"vpgatherdd (+ mask reset)", t_gather, 10},
        {"maddubsw+maddwd", t_maddubs_maddwd, 20},
        {"maddubsw+paddw", t_maddubs_addw, 20},
        {"maddubsw+paddw+paddd", t_maddubs_addw_addd, 30},
        {"maddubsw+fma", t_maddubs_fma, 20},
        {"cvt+fma", t_cvt_fma, 20},
        {"cvt+mul+fma", t_cvt_mul_fma, 30},
        {"maddubsw+cvt+fma", t_maddubs_cvt_fma, 30},
        {"maddubsw+maddwd+paddd", t_maddubs_maddwd_addd, 30},
        {"maddubsw+bcast(mem)", t_maddubs_bcast, 20},
        {"maddubsw+pshufb", t_maddubs_shufb, 20},
        {"maddubsw+vinserti128", t_maddubs_insert, 20},
        {"q4_0 token x 8 rows x block", t_q4_0, 280},
        {"q4_k row x token x sblock", t_q4_k, 410},
        {"q6_k row x token x sblock", t_q6_k, 470},
        {"q8_0 token x 8 rows x block", t_q8_0_one, 590},
        {"q8_0 two tokens, per token", t_q8_0_two, 690},
    };
    const int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1)
        return 2;
    /* the integer results land in registers the fma then adds to: as floats they are
     * denormals, whose microcode assist (~100 cycles) would swamp the port figures */
    _mm_setcsr(_mm_getcsr() | 0x8040);
    static int buf[16] __attribute__((aligned(64))) = {0x01010101};
    const double cyc = best_ns(t_imul, reps, buf) / 30.0;
    printf("clock: %.3f ns a cycle (%.2f GHz), best of %d\n", cyc, 1.0 / cyc, reps);
    printf("%-28s %10s %10s\n", "test", "cyc/insn", "cyc/set");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        const double c = best_ns(tests[i].f, reps, buf) / cyc;
        printf("%-28s %10.3f %10.2f\n", tests[i].name, c / tests[i].n, c / 10);
    }
    return 0;
}
