/* imatrix.h — importance matrices: per-column statistics of every matmul's input over
 * calibration text, in llama.cpp's legacy imatrix file format (the one llama-quantize reads at
 * the llama.cpp build the evalref files come from; docs/compression.md).
 *
 * One entry per weight matrix, named like its GGUF tensor ("blk.0.attn_q.weight"): ncall (how
 * many matmul calls contributed: one per chunk) and nval floats, one per input column, stored as
 * llama-imatrix stores them: sum(x_j^2) / count_j * ncall. A quantizer uses values / ncall (the
 * mean squared activation of each column) as its weights: elm_imatrix_weights.
 *
 * Writing (elm_imatrix_write) and reading (elm_imatrix_read) are both here, so the collector
 * (`elmctl imatrix`) and the quantizer (`elmctl quantize --imatrix`) share one definition of the
 * layout. The accumulator (elm_imatrix_acc_*) turns observed activations into those values.
 */
#ifndef ELM_IMATRIX_H
#define ELM_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

struct elm_imatrix_entry {
    char *name;    /* GGUF tensor name, NUL-terminated */
    int32_t ncall; /* matmul calls that contributed (> 0 when read) */
    int32_t nval;  /* input columns (the weight's ne0; x n_expert for MoE) */
    float *values; /* [nval] as stored: sum(x^2) / count * ncall */
};

struct elm_imatrix {
    struct elm_imatrix_entry *entries; /* [n_entries], owned */
    int32_t n_entries;
    int32_t last_call; /* chunks the matrix was computed on; 0 when the file does not say */
    char *dataset;     /* the calibration file's name as given, or NULL when the file has none */
};

/* Reads an imatrix file. Every count and length is checked against the file's size. Caller owns
 * *out (elm_imatrix_destroy). Returns 0, -errno, -ENOMEM, or ELM_EFORMAT with a message in err. */
int elm_imatrix_read(const char *path, struct elm_imatrix **out, char *err, size_t errlen);

/* Writes im to path (replaced atomically: a temporary file renamed over it). Entries are written
 * in their array order; readers look entries up by name. Returns 0, -EINVAL (an entry without
 * values, a name longer than INT32_MAX), -errno. */
int elm_imatrix_write(const char *path, const struct elm_imatrix *im);

/* The entry named name, or NULL. */
const struct elm_imatrix_entry *elm_imatrix_find(const struct elm_imatrix *im, const char *name);

/* The importance weights llama-quantize derives from an entry: out[j] = values[j] / ncall in
 * float (values unchanged when ncall <= 0). out has nval floats. */
void elm_imatrix_weights(const struct elm_imatrix_entry *e, float *out);

void elm_imatrix_destroy(struct elm_imatrix **im); /* NULL-safe, nulls *im */

/* ---- accumulation (the collector) ----------------------------------------------------------- */

/* Sums of squared activations per column of named matmul inputs, in float and in the order the
 * rows arrive, as llama-imatrix sums them. */
struct elm_imatrix_acc;

int elm_imatrix_acc_create(struct elm_imatrix_acc **out);
void elm_imatrix_acc_destroy(struct elm_imatrix_acc **a); /* NULL-safe, nulls *a */

/* One matmul call over n rows of ncols floats (row t at x + t * ncols) for the weight named name:
 * ncall += 1, sums[j] += x[t][j]^2 row by row. Returns 0, -EINVAL (ncols differs from the
 * entry's earlier calls, or a non-finite sum: llama-imatrix stops on it too), -ENOMEM. */
int elm_imatrix_acc_add(struct elm_imatrix_acc *a, const char *name, const float *x, int64_t ncols,
                        int n);

/* The matrix so far, entries in the order they were first seen, values as stored in the file.
 * last_call is the largest ncall; dataset is copied (may be NULL). Caller owns *out. */
int elm_imatrix_acc_get(const struct elm_imatrix_acc *a, const char *dataset,
                        struct elm_imatrix **out);

#endif
