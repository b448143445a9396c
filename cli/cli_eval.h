/* cli_eval.h — what elmctl's evaluation commands share (cli_eval.c): their common options,
 * loading a model for in-process evaluation, and a text file's tokens as llama-perplexity
 * makes them. perplexity and kld are in cmd_eval.c, imatrix and distill-data in cmd_calib.c. */
#ifndef ELM_CLI_EVAL_H
#define ELM_CLI_EVAL_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/eval.h"

struct eval_opts {
    long ctx;    /* tokens per chunk */
    long chunks; /* at most this many chunks; -1: every complete one */
    long threads;
    const char *kernel;
    enum elm_type kv_type;
    enum elm_order order; /* --order: llama.cpp's AVX-512 (default) or AVX2 summation order */
};

/* The getopt_long lines of the shared options and their short codes (>= 0x100). */
enum { EV_CTX = 0x100, EV_CHUNKS, EV_THREADS, EV_KERNEL, EV_KV_TYPE, EV_ORDER };
#define EVAL_LONG_OPTS                                                                             \
    {"ctx", required_argument, 0, EV_CTX}, {"chunks", required_argument, 0, EV_CHUNKS},            \
        {"threads", required_argument, 0, EV_THREADS},                                             \
        {"kernel", required_argument, 0, EV_KERNEL}, {"order", required_argument, 0, EV_ORDER},    \
    {                                                                                              \
        "kv-type", required_argument, 0, EV_KV_TYPE                                                \
    }
#define EVAL_HELP                                                                                  \
    "  --ctx N               tokens per chunk (default 512)\n"                                     \
    "  --chunks N            evaluate at most N chunks (default: every complete one)\n"            \
    "  --threads N           compute threads (default: CPU count)\n"                               \
    "  --kv-type f16|f32|q8_0  KV cache precision (default f16, as llama.cpp's)\n"                 \
    "  --kernel NAME         force a kernel variant (ref, avx2, avx512, neon, ...)\n"              \
    "  --order avx512|avx2   sum softmax, SiLU and attention as llama.cpp built for that ISA\n"    \
    "                        does (default avx512; same bits on every machine)\n"

void eval_opts_default(struct eval_opts *o, long ctx);
/* Handles one of the shared options: 1 when c was one (and valid), 0 when not, -1 after a usage
 * error was reported. */
int eval_opt(struct eval_opts *o, int c, const char *arg);

/* Loads path for evaluation; 0 or the exit code after reporting. */
int eval_load(const char *path, const struct eval_opts *o, struct elm_model **m);
/* The tokens of a text file (elm_eval_tokenize); 0 or the exit code after reporting. */
int eval_tokens(const struct elm_model *m, const char *path, int32_t **ids, int32_t *n);
/* How many chunks of o->ctx tokens n_tok tokens give (at most o->chunks); 0 or the exit code
 * after reporting too few tokens (llama.cpp asks for 2 * ctx). */
int eval_chunks(const struct eval_opts *o, int32_t n_tok, int32_t *n_chunk);
/* A runner for o->ctx with o->kv_type; 0 or the exit code after reporting. */
int eval_runner(const struct elm_model *m, const struct eval_opts *o, int32_t n_ctx,
                struct elm_eval **e);

#endif
