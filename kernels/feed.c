/* feed.c — the process's enum elm_feed (kernels.h): how the avx512 Q4_0 tile gives its
 * multiply-adds the activation dwords. Its own file, below dispatch.c: the tile reads it, and
 * dispatch.c's table holds the tile. */
#include <pthread.h>
#include <stdatomic.h>

#include "kernels/kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Atomic int feed; /* an enum elm_feed; read by the tiles of every pool thread */

/* Only AMD's cores shuffle beside their multiply-adds (Zen 5: measured in docs/kernels-perf.md,
 * s24); Intel's share port 5 between the two (s25). A vendor not measured gets the loads: they
 * cost Zen 5 about 4 % of the 8-token run, where the split cost this Xeon 13-20 %. */
static void probe(void)
{
    enum elm_feed f = ELM_FEED_LOADS;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    /* the vendor string in ebx, edx, ecx: "Auth" "enti" "cAMD" */
    if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163)
        f = ELM_FEED_SPLIT;
#endif
    atomic_store_explicit(&feed, f, memory_order_relaxed);
}

enum elm_feed elm_kernels_feed(void)
{
    pthread_once(&once, probe);
    return (enum elm_feed)atomic_load_explicit(&feed, memory_order_relaxed);
}

void elm_kernels_set_feed(enum elm_feed f)
{
    pthread_once(&once, probe); /* else a later probe would undo it */
    atomic_store_explicit(&feed, f, memory_order_relaxed);
}
