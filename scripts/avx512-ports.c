/* avx512-ports.c — which zmm instructions issue beside vpdpbusd on this CPU, for the AVX-512
 * tiles' floors in docs/kernels-perf.md ("Zen 5, 8 tokens: the scale gather, the broadcasts,
 * the pairs and the rows"). The method is scripts/avx2-ports.c's (read that first): a loop of a
 * set of instructions written once per destination zmm0..zmm9 from sources that never change,
 * thread CPU time converted to cycles by a chain of dependent `imul`s (3 cycles each), best of
 * REPS runs. Cycles per set alone give the issue rate (0.50 = two a cycle); a pair with
 * vpdpbusd against the vpdpbusd alone shows whether they share pipes. The gathers read one
 * address (index zero) and take a fresh all-ones mask each. The last row is vpdpbusd's latency:
 * one chain through zmm0. Needs AVX-512 VNNI. Build: gcc -O2 scripts/avx512-ports.c -o
 * /tmp/ports512. usage: ports512 [REPS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* the mask registers in the clobber lists need the compiler to know AVX-512 */
#pragma GCC target("avx512f")

#define ITERS 2000000L

static double cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

#define R10(SET) SET(0) SET(1) SET(2) SET(3) SET(4) SET(5) SET(6) SET(7) SET(8) SET(9)

/* The loop around BODY; zmm14, zmm15 hold small bytes, zmm12 zeros (the gathers' index), rsi a
 * 64-byte buffer for the memory operands, k1 a blend mask. */
#define LOOP(NAME, BODY)                                                                           \
    static void NAME(long n, const int *buf)                                                       \
    {                                                                                              \
        __asm__ volatile("vpternlogd $0xff, %%zmm15, %%zmm15, %%zmm15\n\t"                         \
                         "vpabsb %%zmm15, %%zmm15\n\t"                                             \
                         "vmovdqa64 %%zmm15, %%zmm14\n\t"                                          \
                         "vpxord %%zmm12, %%zmm12, %%zmm12\n\t"                                    \
                         "movl $0xaaaa, %%eax\n\tkmovw %%eax, %%k1\n\t"                            \
                         "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"                                       \
                         "vmovdqa64 %%zmm0, %%zmm1\n\tvmovdqa64 %%zmm0, %%zmm2\n\t"                \
                         "vmovdqa64 %%zmm0, %%zmm3\n\tvmovdqa64 %%zmm0, %%zmm4\n\t"                \
                         "vmovdqa64 %%zmm0, %%zmm5\n\tvmovdqa64 %%zmm0, %%zmm6\n\t"                \
                         "vmovdqa64 %%zmm0, %%zmm7\n\tvmovdqa64 %%zmm0, %%zmm8\n\t"                \
                         "vmovdqa64 %%zmm0, %%zmm9\n\t"                                            \
                         "1:\n\t" BODY "dec %0\n\tjnz 1b\n\tvzeroupper"                            \
                         : "+r"(n)                                                                 \
                         : "S"(buf)                                                                \
                         : "rax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",  \
                           "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",   \
                           "k1", "k2", "memory", "cc");                                            \
    }

/* One instruction with destination zmmR (DP accumulates into it) */
#define DP(R)     "vpdpbusd %%zmm14, %%zmm15, %%zmm" #R "\n\t"
#define DPM(R)    "vpdpbusd (%%rsi)%{1to16%}, %%zmm15, %%zmm" #R "\n\t"
#define UNPCK(R)  "vpunpckldq %%zmm14, %%zmm15, %%zmm" #R "\n\t"
#define PSHUFD(R) "vpshufd $0x55, %%zmm15, %%zmm" #R "\n\t"
#define SRLW(R)   "vpsrlw $4, %%zmm15, %%zmm" #R "\n\t"
#define PERMD(R)  "vpermd %%zmm14, %%zmm15, %%zmm" #R "\n\t"
#define INSERT(R) "vinserti32x4 $1, %%xmm14, %%zmm15, %%zmm" #R "\n\t"
#define BLENDW(R) "vpblendmw %%zmm14, %%zmm15, %%zmm" #R "%{%%k1%}\n\t"
#define BCASTD(R) "vpbroadcastd 4(%%rsi), %%zmm" #R "\n\t"
#define BCASTQ(R) "vpbroadcastq 8(%%rsi), %%zmm" #R "\n\t"
#define BCAST4(R) "vbroadcasti32x4 16(%%rsi), %%zmm" #R "\n\t"
#define GATHER(R) "kxnorw %%k0, %%k0, %%k2\n\tvpgatherdd (%%rsi,%%zmm12,1), %%zmm" #R "%{%%k2%}\n\t"
/* The same beside a vpdpbusd into zmmR: their results go to zmm13, which nothing reads. */
#define TO13(I)     I(13)
#define P_UNPCK(R)  DP(R) TO13(UNPCK)
#define P_PSHUFD(R) DP(R) TO13(PSHUFD)
#define P_SRLW(R)   DP(R) TO13(SRLW)
#define P_PERMD(R)  DP(R) TO13(PERMD)
#define P_INSERT(R) DP(R) TO13(INSERT)
#define P_BLENDW(R) DP(R) TO13(BLENDW)
#define P_BCASTD(R) DP(R) TO13(BCASTD)
#define P_BCASTQ(R) DP(R) TO13(BCASTQ)
#define P_BCAST4(R) DP(R) TO13(BCAST4)
/* a qword broadcast split by two vpshufd, beside two vpdpbusd: q40w_step's pattern */
#define P_Q2(R)                                                                                    \
    DP(R) DP(R) TO13(BCASTQ) "vpshufd $0, %%zmm13, %%zmm11\n\tvpshufd $0x55, %%zmm13, %%zmm10\n\t"
/* eight vpdpbusd and one 16-lane gather */
#define P_GATHER(R) DP(R) DP(R) DP(R) DP(R) DP(R) DP(R) DP(R) DP(R) TO13(GATHER)

LOOP(t_dp, R10(DP))
LOOP(t_dpm, R10(DPM))
LOOP(t_unpck, R10(UNPCK))
LOOP(t_pshufd, R10(PSHUFD))
LOOP(t_srlw, R10(SRLW))
LOOP(t_permd, R10(PERMD))
LOOP(t_insert, R10(INSERT))
LOOP(t_blendw, R10(BLENDW))
LOOP(t_bcastd, R10(BCASTD))
LOOP(t_bcastq, R10(BCASTQ))
LOOP(t_bcast4, R10(BCAST4))
LOOP(t_gather, R10(GATHER))
LOOP(p_unpck, R10(P_UNPCK))
LOOP(p_pshufd, R10(P_PSHUFD))
LOOP(p_srlw, R10(P_SRLW))
LOOP(p_permd, R10(P_PERMD))
LOOP(p_insert, R10(P_INSERT))
LOOP(p_blendw, R10(P_BLENDW))
LOOP(p_bcastd, R10(P_BCASTD))
LOOP(p_bcastq, R10(P_BCASTQ))
LOOP(p_bcast4, R10(P_BCAST4))
LOOP(p_q2, R10(P_Q2))
LOOP(p_gather, R10(P_GATHER))
/* latency: ten vpdpbusd in one chain */
LOOP(l_dp, DP(0) DP(0) DP(0) DP(0) DP(0) DP(0) DP(0) DP(0) DP(0) DP(0))

static void chain(long n)
{
    long x = 1;
    __asm__ volatile("1:\n\timul %%rax, %%rax\n\timul %%rax, %%rax\n\timul %%rax, %%rax\n\t"
                     "imul %%rax, %%rax\n\tdec %0\n\tjnz 1b"
                     : "+r"(n), "+a"(x)
                     :
                     : "cc");
}

static int buf[16] __attribute__((aligned(64)));

static double best(void (*f)(long, const int *), int reps)
{
    double b = 1e300;
    for (int r = 0; r < reps; r++) {
        const double t0 = cpu_ns();
        f(ITERS, buf);
        const double t = cpu_ns() - t0;
        b = t < b ? t : b;
    }
    return b;
}

int main(int argc, char **argv)
{
    const int reps = argc > 1 ? atoi(argv[1]) : 7;
    double c = 1e300;
    for (int r = 0; r < reps; r++) {
        const double t0 = cpu_ns();
        chain(ITERS);
        const double t = cpu_ns() - t0;
        c = t < c ? t : c;
    }
    const double ns_per_cycle = c / (ITERS * 12.0);
    static const struct {
        const char *name;
        void (*f)(long, const int *);
    } tests[] = {
        {"vpdpbusd", t_dp},
        {"vpdpbusd {1to16}", t_dpm},
        {"vpunpckldq", t_unpck},
        {"vpshufd", t_pshufd},
        {"vpsrlw", t_srlw},
        {"vpermd", t_permd},
        {"vinserti32x4 (register)", t_insert},
        {"vpblendmw", t_blendw},
        {"vpbroadcastd m32", t_bcastd},
        {"vpbroadcastq m64", t_bcastq},
        {"vbroadcasti32x4 m128", t_bcast4},
        {"vpgatherdd (16 lanes)", t_gather},
        {"vpdpbusd + vpunpckldq", p_unpck},
        {"vpdpbusd + vpshufd", p_pshufd},
        {"vpdpbusd + vpsrlw", p_srlw},
        {"vpdpbusd + vpermd", p_permd},
        {"vpdpbusd + vinserti32x4", p_insert},
        {"vpdpbusd + vpblendmw", p_blendw},
        {"vpdpbusd + vpbroadcastd m32", p_bcastd},
        {"vpdpbusd + vpbroadcastq m64", p_bcastq},
        {"vpdpbusd + vbroadcasti32x4 m128", p_bcast4},
        {"2 vpdpbusd + vpbroadcastq + 2 vpshufd", p_q2},
        {"8 vpdpbusd + vpgatherdd", p_gather},
    };
    printf("cycles per set (one of each instruction), best of %d:\n", reps);
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        printf("  %-40s %6.2f\n", tests[i].name,
               best(tests[i].f, reps) / ns_per_cycle / (ITERS * 10.0));
    printf("  %-40s %6.2f\n", "vpdpbusd latency", best(l_dp, reps) / ns_per_cycle / (ITERS * 10.0));
    return 0;
}
