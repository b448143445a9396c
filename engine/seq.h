/* seq.h — one generation stream: a sequence's tokens, its KV cache, its sampler, and the text
 * it has produced, with stop strings held back until they can no longer match.
 *
 * A sequence does not run the model itself. Each step it *plans* the batch items it needs (a
 * chunk of its prompt, or its last sampled token), someone runs elm_model_forward() over the
 * items of one or many sequences, and the sequence *advances*: it samples from its logits and
 * reports a token, its text and whether it is done. The in-process generator (elm_seq_run) and
 * the daemon's scheduler share this code, so both produce the same output for the same request.
 */
#ifndef ELM_SEQ_H
#define ELM_SEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"

enum elm_stop_reason {
    ELM_STOP_NONE = 0, /* still running */
    ELM_STOP_EOS,      /* the model produced an end-of-generation token */
    ELM_STOP_LENGTH,   /* n_predict tokens, or the context is full */
    ELM_STOP_STRING,   /* a stop string appeared (it is not part of the output) */
    ELM_STOP_CANCEL,   /* cancelled by the caller */
    ELM_STOP_ERROR,    /* the forward pass failed */
};
const char *elm_stop_reason_name(enum elm_stop_reason r); /* "eos", "length", "stop"... */

#define ELM_MAX_STOP 8 /* stop strings per request */

struct elm_gen_params {
    struct elm_sampling sampling;
    int32_t n_predict;  /* < 0: until EOS or the context is full */
    int n_stop;         /* <= ELM_MAX_STOP */
    const char *stop[ELM_MAX_STOP]; /* copied by elm_seq_start */
};
void elm_gen_params_default(struct elm_gen_params *p);

struct elm_seq;

/* A sequence of up to n_ctx tokens with its own KV cache of kv_type (F32, F16 or Q8_0; see
 * elm_kv_pool_create for the errors), every position backed from the start. Caller owns *out. */
int elm_seq_create(const struct elm_model *m, int32_t n_ctx, enum elm_type kv_type,
                   struct elm_seq **out);
/* A sequence whose cache takes pages from pool (borrowed: it must outlive the sequence) and
 * holds none yet: elm_seq_start reserves what a request needs, elm_seq_release gives it back.
 * Caller owns *out. */
int elm_seq_create_pooled(const struct elm_model *m, struct elm_kv_pool *pool, int32_t n_ctx,
                          struct elm_seq **out);
/* NULL-safe, nulls *s; a pooled sequence's pages go back to its pool. */
void elm_seq_destroy(struct elm_seq **s);

/* Starts a request. The KV entries of the longest common prefix with the sequence's previous
 * tokens are kept (multi-turn chat does not recompute its history). A pooled sequence first
 * makes sure it holds pages for the n prompt positions (taking the missing ones, giving back
 * any beyond), before touching anything else; the generated tokens' pages come one by one
 * (elm_seq_grow).
 * Errors: ELM_ECONTEXT when the prompt does not fit, -EINVAL for bad parameters or an empty
 * prompt, ELM_ETOKEN, -ENOMEM, and -ENOSPC when the pool has too few free pages. On any error
 * the sequence is unchanged: its previous tokens and their K/V stay reusable. */
int elm_seq_start(struct elm_seq *s, const int32_t *prompt, int32_t n,
                  const struct elm_gen_params *p);

/* After a request (a running one is ended as cancelled). keep_history: gives back the pages
 * past the positions whose K/V are valid, so the conversation stays reusable by the next
 * start at the cost of those pages. !keep_history: gives back every page and forgets the
 * tokens, so the next start recomputes from scratch. A standalone sequence (elm_seq_create)
 * keeps its cache either way; !keep_history still forgets the tokens. */
void elm_seq_release(struct elm_seq *s, bool keep_history);

/* Pages of the pool this sequence holds (a standalone sequence: those of its own cache). */
int64_t elm_seq_pages(const struct elm_seq *s);

/* Pooled sequences take their pages as they grow, between passes: elm_seq_pages_short says
 * how many pages the next plan of at most n tokens lacks, elm_seq_grow takes them (0, or
 * -ENOSPC with nothing taken). A standalone sequence never lacks any. */
int64_t elm_seq_pages_short(const struct elm_seq *s, int n);
int elm_seq_grow(struct elm_seq *s, int n);

/* Preemption: forgets the running request's K/V and gives every page of a pooled sequence
 * back, keeping its tokens, sampler and held-back text, so that it can resume later: its next
 * plans evaluate all its tokens again from position 0 (elm_seq_n_pending of them, in prompt
 * chunks) and, every pass being batch-invariant, it then samples exactly the tokens it would
 * have without the interruption. Returns the tokens whose K/V were dropped. Not between a plan
 * and its advance. */
int32_t elm_seq_preempt(struct elm_seq *s);

/* Tokens of the running request whose K/V are not in the cache: the next plans evaluate them
 * (the prompt not yet evaluated, or everything after a preemption, or the last sampled token). */
int32_t elm_seq_n_pending(const struct elm_seq *s);

/* Batch items this sequence needs in the next pass, at most max (>= 1): a prompt chunk or one
 * decode token. Returns the count (0 when done). */
int elm_seq_plan(struct elm_seq *s, int max, struct elm_batch_item *items);

struct elm_seq_out {
    int32_t token;       /* sampled token, or -1 when this step produced none (prompt chunk) */
    const char *text;    /* text released by this step (may be empty); valid until next call */
    size_t text_len;
    enum elm_stop_reason done;
};

/* After a forward pass that ran the n items from the last plan (rc is its result). */
void elm_seq_advance(struct elm_seq *s, int n, int rc, struct elm_seq_out *out);

/* Ends the request now with ELM_STOP_CANCEL (the next advance/plan sees it). */
void elm_seq_cancel(struct elm_seq *s);

/* Counters of the current request. */
int32_t elm_seq_n_prompt(const struct elm_seq *s);
int32_t elm_seq_n_generated(const struct elm_seq *s);
int32_t elm_seq_n_reused(const struct elm_seq *s); /* prompt tokens whose KV was kept */
int32_t elm_seq_n_ctx(const struct elm_seq *s);
enum elm_stop_reason elm_seq_done(const struct elm_seq *s);
/* The logits the last sample was drawn from (n_vocab floats, before any penalty). */
const float *elm_seq_logits(const struct elm_seq *s);

/* Runs a whole request in this thread: plans, takes a pooled sequence's pages (-ENOSPC when
 * the pool runs out: the request ends with ELM_STOP_ERROR), forwards in chunks of the work's
 * n_batch, and calls on_token for every step that produced a token or text. on_token returning
 * non-zero cancels. Returns the forward error, if any, else 0. */
typedef int (*elm_on_token)(void *user, const struct elm_seq_out *out);
int elm_seq_run(struct elm_seq *s, struct elm_work *w, elm_on_token on_token, void *user);

/* Tokenizes a user prompt as every front end does: BOS per the vocab, control-token text kept
 * as plain text unless parse_special. *out is malloc'ed (caller frees). */
int elm_prompt_tokenize(const struct elm_model *m, const char *text, size_t len,
                        bool parse_special, int32_t **out, int32_t *n);

#endif
