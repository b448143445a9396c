/* insn-model.c — one matrix × one token through elm_matmul, `reps` times, for
 * scripts/insn-model.sh, which counts the instructions the emulator executes for 1 and for 3
 * repetitions: the difference is two matmuls' worth, free of the set-up (random data, weight
 * quantization) that the count of one run would include.
 * usage: insn-model TYPE ROWS COLS REPS   (the variant: ELM_KERNEL; one thread) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/pool.h"
#include "kernels/kernels.h"

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    const int type = elm_type_from_name(argv[1]);
    const int64_t rows = atoll(argv[2]), cols = atoll(argv[3]);
    const int reps = atoi(argv[4]);
    const struct elm_type_info *ti = type < 0 ? NULL : elm_type_get((uint32_t)type);
    if (ti == NULL || cols % ti->block != 0)
        return 2;
    const struct elm_kernels *k = elm_kernels_active();
    const size_t wb = elm_row_bytes(type, cols), ab = elm_row_bytes(ti->dot_type, cols);
    float *x = malloc((size_t)cols * sizeof *x), *y = malloc((size_t)rows * sizeof *y);
    unsigned char *w = malloc(wb * (size_t)rows), *a = malloc(ab);
    if (!x || !y || !w || !a)
        return 1;
    srand(1);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t i = 0; i < cols; i++)
            x[i] = (float)rand() / RAND_MAX - 0.5f;
        elm_quantize_row(type, x, w + (size_t)r * wb, cols);
    }
    k->from_float[ti->dot_type](x, a, cols);
    elm_pool_set_threads(1);
    for (int i = 0; i < reps; i++)
        elm_matmul(k, type, ELM_LAYOUT_ROWS, w, cols, rows, a, ab, 1, y, rows);
    fprintf(stderr, "%s %s %lldx%lld: y[0] %g\n", k->name, argv[1], (long long)rows,
            (long long)cols, (double)y[0]);
    return 0;
}
