/* admission.h — fitting a request into the model's KV pool (engine thread only).
 *
 * Pages are taken as a request grows: elm_seq_start takes those of its prompt, and each step
 * the scheduler takes those its planned tokens reach (elm_seq_grow; plan.h's elmd_plan_memory
 * decides, when the pool is short, whom to take them from: idle sessions' history, then the
 * most recently admitted running request, preempted). Here: starting a request, and resuming a
 * preempted one. When the pool is short for that, sessions that are not running give their
 * pages back, least recently used first (elm_seq_release(s, false): their next turn evaluates
 * its history again — time, not correctness), and only when that makes enough room. Running
 * requests are never taken from here. When even that is not enough, the request waits
 * (scheduler.c: one FIFO, oldest first). A request that could need more pages than the whole
 * pool holds — min(n_ctx, prompt + n_predict) positions, the whole context without n_predict —
 * is refused before it starts: alone, it could never finish.
 */
#ifndef ELMD_ADMISSION_H
#define ELMD_ADMISSION_H

#include <stdint.h>

#include "daemon/elmd.h"

/* A request ready to start: every token of the sequence (kept history + new prompt) and its
 * parameters. Heap-allocated and never copied: gp.stop points into stops. */
struct elmd_wait {
    struct elmd_prompt *p; /* the PROMPT it came from (owned) */
    int32_t *toks;         /* [n] owned */
    int32_t n;
    struct elm_gen_params gp;
    char stops[ELM_REC_MAX_STOP][ELM_REC_MAX_STOP_LEN + 1];
    uint64_t since_ns;  /* when it began to wait (FIFO order; 0 while not waiting) */
    int64_t need_pages; /* pages it lacked at its last try, and the pool's free pages then */
    int64_t free_pages;
    int ahead; /* requests before it in the FIFO then (they are served first) */
};

void elmd_wait_free(struct elmd_wait *w);

/* Pages of the pool w's prompt needs to start, beyond those its sequence holds already. */
int64_t elmd_wait_need(const struct elmd_session *s, const struct elmd_wait *w);

/* Pages w's request holds at most, when it runs to its limit: min(n_ctx, n + n_predict)
 * positions (the whole context when n_predict is unlimited). */
int64_t elmd_request_pages(const struct elmd_session *s, const struct elmd_wait *w);

/* Starts w on s (elm_seq_start), taking back the pages of sessions in act[0..n_act) that run no
 * request — least recently used first, and only when that makes enough room — if the pool is
 * short. Returns 0; -ENOSPC when the request cannot start now (w->need_pages and
 * w->free_pages say why); or elm_seq_start's other errors. *n_reclaimed counts the sessions
 * whose pages were taken. */
int elmd_admit(struct elmd_session *const *act, int n_act, struct elmd_session *s,
               struct elmd_wait *w, int *n_reclaimed);

/* Gives preempted s the pages to evaluate all its tokens again, the same way. Returns 0 or
 * -ENOSPC (nothing taken). */
int elmd_resume(struct elmd_session *const *act, int n_act, struct elmd_session *s,
                int *n_reclaimed);

#endif
