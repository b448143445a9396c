/* tile-times.c — one matrix of TYPE (ROWS x COLS) times NTOK tokens through elm_matmul, 40 times,
 * for scripts/tile-times.sh: prints the best time in microseconds (the variant: ELM_KERNEL; one
 * thread). For kernels whose instructions callgrind cannot count (AVX-512).
 *
 *   tile-times TYPE ROWS COLS NTOK [COPIES THREADS]
 *
 * PACK=1 in the environment packs the weights as elm's loader does (elm_matmul_layout). With
 * COPIES, that many copies of the matrix are multiplied in turn, so the weights come from memory
 * as in decode: it prints the best time per matrix, the weights' GB/s, and the GB/s of a plain
 * read of the same copies by the same number of threads (the roofline of that moment). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pool.h"
#include "kernels/kernels.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The plain read: each thread xors its share of the copies' words together, four at a time. */
static uint64_t sink;

static double read_time(const unsigned char *all, size_t span, size_t bytes, int64_t copies,
                        int threads)
{
    double best = 1e30;
    for (int rep = 0; rep < 10; rep++) {
        uint64_t s = 0;
        const double t0 = now();
#pragma omp parallel for num_threads(threads) reduction(^ : s)
        for (int64_t m = 0; m < copies; m++) {
            const uint64_t *p = (const uint64_t *)(all + (size_t)m * span);
            uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
            for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
                x0 ^= p[i];
                x1 ^= p[i + 1];
                x2 ^= p[i + 2];
                x3 ^= p[i + 3];
            }
            s ^= x0 ^ x1 ^ x2 ^ x3;
        }
        const double dt = now() - t0;
        sink ^= s;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 7)
        return 2;
    const int type = elm_type_from_name(argv[1]);
    const int64_t rows = atoll(argv[2]), cols = atoll(argv[3]), nt = atoll(argv[4]);
    const int64_t copies = argc == 7 ? atoll(argv[5]) : 1;
    const int threads = argc == 7 ? atoi(argv[6]) : 1;
    const struct elm_type_info *ti = type < 0 ? NULL : elm_type_get((uint32_t)type);
    if (ti == NULL || rows < 1 || nt < 1 || cols < 1 || cols % ti->block != 0 || copies < 1 ||
        threads < 1)
        return 2;
    const struct elm_kernels *k = elm_kernels_active();
    const size_t wb = elm_row_bytes(type, cols), ab = elm_row_bytes(ti->dot_type, cols);
    const size_t bytes = wb * (size_t)rows, span = (bytes + 4095) / 4096 * 4096;
    float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)(rows * nt) * sizeof *y);
    unsigned char *w = malloc(bytes), *a = malloc(ab * nt);
    unsigned char *all = aligned_alloc(4096, span * (size_t)copies);
    if (!x || !y || !w || !a || !all)
        return 3;
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
    const enum elm_layout layout = getenv("PACK") ? elm_matmul_layout(k, type) : ELM_LAYOUT_ROWS;
    for (int64_t m = 0; m < copies; m++) {
        unsigned char *c = all + (size_t)m * span;
        if (layout == ELM_LAYOUT_ROWS)
            memcpy(c, w, bytes);
        else if (elm_pack_weights(layout, type, c, w, cols, rows) != 0)
            return 3;
    }
    elm_pool_set_threads(threads);
    double best = 1e30;
    for (int rep = 0; rep < (copies > 1 ? 10 : 40); rep++) {
        const double t0 = now();
        for (int64_t m = 0; m < copies; m++)
            elm_matmul(k, type, layout, all + (size_t)m * span, cols, rows, a, ab, nt, y, rows);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    if (copies == 1) {
        printf("%.1f\n", best * 1e6);
        return 0;
    }
    const double plain = read_time(all, span, bytes, copies, threads);
    printf("%.1f us a matrix, %.1f GB/s; plain read %.1f GB/s\n", best / copies * 1e6,
           (double)bytes * copies / best / 1e9, (double)bytes * copies / plain / 1e9);
    return 0;
}
