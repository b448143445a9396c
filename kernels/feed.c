/* feed.c — the process's enum elm_feed (kernels.h): how the avx512 Q4_0 tile gives its
 * multiply-adds the activation dwords, or whether it hands 16-token tiles to AMX. Its own file,
 * below dispatch.c: the tile reads it, and dispatch.c's table holds the tile. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#define ELM_X86 1
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic int feed; /* an enum elm_feed; read by the tiles of every pool thread */
static bool amx;         /* the probe found AMX usable by this process */

#ifdef ELM_X86
/* AMX-TILE and AMX-INT8 in CPUID, and the kernel's leave to use the tile data: Linux keeps its
 * 8 KiB of state off until a process asks (arch_prctl ARCH_REQ_XCOMP_PERM, 5.16 and later; an
 * older kernel, or one that does not enable the state, refuses), and the first tile instruction
 * of a process that did not ask is killed by SIGILL. The leave is for the whole process. */
static bool amx_probe(void)
{
    enum { REQ_XCOMP_PERM = 0x1023, GET_XCOMP_PERM = 0x1022, XTILEDATA = 18 };
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)))
        return false;
    unsigned long long perm = 0;
    return syscall(SYS_arch_prctl, REQ_XCOMP_PERM, XTILEDATA) == 0 &&
           syscall(SYS_arch_prctl, GET_XCOMP_PERM, &perm) == 0 && (perm >> XTILEDATA & 1);
}
#endif

/* AMX where it is usable: a 16-token tile there takes about half the time of two 8-token
 * vector runs (s26, docs/kernels-perf.md). Otherwise by vendor: only AMD's cores shuffle beside
 * their multiply-adds (Zen 5: s24); Intel's share port 5 between the two (s25). A vendor not
 * measured gets the loads: they cost Zen 5 about 4 % of the 8-token run, where the split cost
 * this Xeon 13-20 %. */
static void probe(void)
{
    enum elm_feed f = ELM_FEED_LOADS;
#ifdef ELM_X86
    unsigned a, b, c, d;
    amx = amx_probe();
    if (amx)
        f = ELM_FEED_AMX;
    /* the vendor string in ebx, edx, ecx: "Auth" "enti" "cAMD" */
    else if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 && d == 0x69746e65 &&
             c == 0x444d4163)
        f = ELM_FEED_SPLIT;
#endif
    atomic_store_explicit(&feed, f, memory_order_relaxed);
}

enum elm_feed elm_kernels_feed(void)
{
    pthread_once(&once, probe);
    return (enum elm_feed)atomic_load_explicit(&feed, memory_order_relaxed);
}

int elm_kernels_set_feed(enum elm_feed f)
{
    pthread_once(&once, probe); /* else a later probe would undo it */
    if (f != ELM_FEED_SPLIT && f != ELM_FEED_LOADS && !(f == ELM_FEED_AMX && amx))
        return -ENOTSUP;
    atomic_store_explicit(&feed, f, memory_order_relaxed);
    return 0;
}

const char *elm_kernels_matrix_unit(const struct elm_kernels *k)
{
    return k && !strcmp(k->name, "avx512") && elm_kernels_feed() == ELM_FEED_AMX ? "AMX" : "";
}
