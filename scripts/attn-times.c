/* attn-times.c — one decode job of attention's two group kernels, timed apart: kv_dots_group
 * over every page, then kv_mix_group, for the 8 query heads of one KV head (tinyllama's shape:
 * head_dim 64, F16 cache, pages of 32 positions with one head's rows together, as
 * engine/kv_impl.h lays them out). The pages sit in one buffer, so after the first of 50 runs
 * they come from the caches: the best time is the kernels' own cost, without the memory a pass
 * over a long context waits on (compare elm-bench profile --pos N --chunk 1). Prints the best
 * microseconds of each; ELM_KERNEL picks the variant. Build (from the repository root, after
 * scripts/build.sh release):
 *   gcc -O2 -pthread -I. scripts/attn-times.c build/release/kernels/libelm_kernels.a \
 *       build/release/common/libelm_common.a -lm -o /tmp/attn-times && /tmp/attn-times 2000
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

enum { G = 8, HD = 64, PAGE = 32, ROW = HD * 2 /* bytes of one head's F16 row */, REPS = 50 };

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
    const int n = argc == 2 ? atoi(argv[1]) : 0;
    if (n < 1 || n > 1 << 20) {
        fprintf(stderr, "usage: attn-times POSITIONS\n");
        return 2;
    }
    const struct elm_kernels *k = elm_kernels_active();
    if (!k->kv_mix_group[ELM_TYPE_F16] || !k->kv_dots_group[ELM_TYPE_F16]) {
        fprintf(stderr, "attn-times: the %s kernels have no group kernels\n", k->name);
        return 1;
    }
    const int np = (n + PAGE - 1) / PAGE;
    unsigned char *mem = malloc((size_t)np * PAGE * ROW);
    const void **pages = malloc((size_t)np * sizeof *pages);
    float *w = malloc((size_t)G * n * sizeof *w), *s = malloc((size_t)G * n * sizeof *s);
    float *lanes = malloc((size_t)G * 16 * HD * sizeof *lanes);
    uint16_t q[G * HD];
    if (!mem || !pages || !w || !s || !lanes)
        return 1;
    for (size_t i = 0; i < (size_t)np * PAGE * ROW / 2; i++) /* F16 values in [0.5, 1) */
        ((uint16_t *)mem)[i] = (uint16_t)(0x3800 | (i * 2654435761u >> 22));
    for (int i = 0; i < G * HD; i++)
        q[i] = (uint16_t)(0x3800 | (i * 40503u >> 6 & 0x3ff));
    for (int p = 0; p < np; p++)
        pages[p] = mem + (size_t)p * PAGE * ROW;
    for (int i = 0; i < G * n; i++)
        w[i] = 1.0f / (float)n;
    double dots = 1e30, mix = 1e30;
    for (int r = 0; r < REPS; r++) {
        double t0 = now_us();
        for (int p = 0; p < np; p++) {
            const int run = n - p * PAGE < PAGE ? n - p * PAGE : PAGE;
            k->kv_dots_group[ELM_TYPE_F16](G, HD, run, s + p * PAGE, n, pages[p], ROW, q, HD * 2);
        }
        double t1 = now_us();
        memset(lanes, 0, (size_t)G * 16 * HD * sizeof *lanes);
        double t2 = now_us();
        k->kv_mix_group[ELM_TYPE_F16](G, n, HD, lanes, w, n, pages, PAGE, ROW);
        double t3 = now_us();
        dots = t1 - t0 < dots ? t1 - t0 : dots;
        mix = t3 - t2 < mix ? t3 - t2 : mix;
    }
    printf("%s, %d positions: kv_dots_group %.1f us, kv_mix_group %.1f us (best of %d)\n", k->name,
           n, dots, mix, REPS);
    return 0;
}
