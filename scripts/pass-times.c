/* pass-times.c — the matmuls of one tinyllama-1.1b pass of TYPE through elm_matmul, for
 * scripts/pass-times.sh: 22 layers of distinct weights (q, k, v, o, gate, up, down; so that they
 * stream from memory as in a real pass, not from the 260 MB-class L3 of a server part) and the
 * 32000-row output matrix, NTOK tokens, one thread (the variant: ELM_KERNEL). Prints the best of
 * REPS passes in milliseconds of process CPU time, which a loaded machine disturbs far less than
 * wall-clock time (it still shares the caches and memory). usage: pass-times TYPE NTOK REPS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pool.h"
#include "kernels/kernels.h"

#define LAYERS 22

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* rows x cols of a quantized matrix, random weights in -0.5..0.5 (rows past 512 repeat) */
static unsigned char *matrix(int type, int64_t rows, int64_t cols, float *x)
{
    const size_t rb = elm_row_bytes(type, cols);
    unsigned char *w = malloc(rb * (size_t)rows);
    if (w == NULL)
        exit(1);
    for (int64_t r = 0; r < rows; r++) {
        if (r >= 512) {
            memcpy(w + (size_t)r * rb, w + (size_t)(r % 512) * rb, rb);
            continue;
        }
        for (int64_t i = 0; i < cols; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        elm_quantize_row(type, x, w + (size_t)r * rb, cols);
    }
    return w;
}

int main(int argc, char **argv)
{
    static const int64_t shape[7][2] = {{2048, 2048}, {256, 2048},  {256, 2048}, {2048, 2048},
                                        {5632, 2048}, {5632, 2048}, {2048, 5632}};
    if (argc != 4)
        return 2;
    const int type = elm_type_from_name(argv[1]);
    const int64_t nt = atoll(argv[2]);
    const int reps = atoi(argv[3]);
    const struct elm_type_info *ti = type < 0 ? NULL : elm_type_get((uint32_t)type);
    if (ti == NULL || ti->block <= 0 || 2048 % ti->block != 0 || nt < 1 || nt > 512 || reps < 1)
        return 2;
    const struct elm_kernels *k = elm_kernels_active();
    float *x = malloc(5632 * sizeof *x), *y = malloc((size_t)(32000 * nt) * sizeof *y);
    const size_t ab = elm_row_bytes(ti->dot_type, 5632);
    unsigned char *a = malloc(ab * (size_t)nt), *w[LAYERS][7];
    if (x == NULL || y == NULL || a == NULL)
        return 1;
    srand(1);
    for (int m = 0; m < 7; m++) {
        w[0][m] = matrix(type, shape[m][0], shape[m][1], x);
        const size_t bytes = elm_row_bytes(type, shape[m][1]) * (size_t)shape[m][0];
        for (int l = 1; l < LAYERS; l++) {
            if ((w[l][m] = malloc(bytes)) == NULL)
                return 1;
            memcpy(w[l][m], w[0][m], bytes);
        }
    }
    unsigned char *out = matrix(type, 32000, 2048, x);
    for (int64_t t = 0; t < nt; t++) {
        for (int i = 0; i < 5632; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        k->from_float[ti->dot_type](x, a + (size_t)t * ab, 5632);
    }
    elm_pool_set_threads(1);
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        const double t0 = cpu_ms();
        for (int l = 0; l < LAYERS; l++)
            for (int m = 0; m < 7; m++)
                elm_matmul(k, type, ELM_LAYOUT_ROWS, w[l][m], shape[m][1], shape[m][0], a,
                           elm_row_bytes(ti->dot_type, shape[m][1]), nt, y, shape[m][0]);
        elm_matmul(k, type, ELM_LAYOUT_ROWS, out, 2048, 32000, a, elm_row_bytes(ti->dot_type, 2048),
                   nt, y, 32000);
        const double ms = cpu_ms() - t0;
        best = ms < best ? ms : best;
    }
    printf("%.1f\n", best);
    return 0;
}
