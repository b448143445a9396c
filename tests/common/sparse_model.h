/* sparse_model.h — a model file that declares a huge tensor no architecture uses, stored as a
 * hole: the attack of issue 17 item 8 (an 80 KB file that became gigabytes of pinned memory). */
#ifndef ELM_TEST_SPARSE_MODEL_H
#define ELM_TEST_SPARSE_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* Writes dst: every key and tensor of the model src, then "unused.weight", F32, of
 * unused_bytes (a multiple of 4) which the file holds as a hole (ftruncate). 0 or an error with
 * a message in err. */
int elm_test_write_sparse(const char *src, const char *dst, uint64_t unused_bytes, char *err,
                          size_t errlen);

#endif
