/* tile-times.c — one matrix of TYPE (ROWS x COLS) times NTOK tokens through elm_matmul, 40 times,
 * for scripts/tile-times.sh: prints the best time in microseconds (the variant: ELM_KERNEL; one
 * thread). For kernels whose instructions callgrind cannot count (AVX-512). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/pool.h"
#include "kernels/kernels.h"
int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    const int type = elm_type_from_name(argv[1]);
    const int64_t rows = atoll(argv[2]), cols = atoll(argv[3]), nt = atoll(argv[4]);
    const struct elm_type_info *ti = type < 0 ? NULL : elm_type_get((uint32_t)type);
    if (ti == NULL || rows < 1 || nt < 1 || cols < 1 || cols % ti->block != 0)
        return 2;
    const struct elm_kernels *k = elm_kernels_active();
    const size_t wb = elm_row_bytes(type, cols), ab = elm_row_bytes(ti->dot_type, cols);
    float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)(rows * nt) * sizeof *y);
    unsigned char *w = malloc(wb * (size_t)rows), *a = malloc(ab * nt);
    srand(1);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        elm_quantize_row(type, x, w + (size_t)r * wb, cols);
    }
    for (int64_t t = 0; t < nt; t++) {
        for (int64_t i = 0; i < cols; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        k->from_float[ti->dot_type](x, a + t * ab, cols);
    }
    elm_pool_set_threads(1);
    double best = 1e30;
    for (int rep = 0; rep < 40; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        elm_matmul(k, type, ELM_LAYOUT_ROWS, w, cols, rows, a, ab, nt, y, rows);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
        if (us < best)
            best = us;
    }
    printf("%.1f\n", best);
    return 0;
}
