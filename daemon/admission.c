/* admission.c — fitting a request into the KV pool (see admission.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/log.h"
#include "daemon/admission.h"
#include "engine/kv.h"

void elmd_wait_free(struct elmd_wait *w)
{
    if (!w)
        return;
    if (w->p) {
        free(w->p->buf);
        free(w->p);
    }
    free(w->toks);
    free(w);
}

int64_t elmd_wait_need(const struct elmd_session *s, const struct elmd_wait *w)
{
    /* What elm_seq_start takes (engine/seq.h): the prompt's positions. */
    int64_t need = elm_kv_pages_for(w->n) - elm_seq_pages(s->seq);
    return need > 0 ? need : 0;
}

int64_t elmd_request_pages(const struct elmd_session *s, const struct elmd_wait *w)
{
    int64_t gen = w->gp.n_predict < 0 ? s->n_ctx : w->gp.n_predict;
    int64_t target = (int64_t)w->n + gen < s->n_ctx ? (int64_t)w->n + gen : s->n_ctx;
    return elm_kv_pages_for(target);
}

/* A session whose pages may be taken: of the same model's pool, it runs nothing (a waiting request
 * has not started either; a preempted one holds nothing), and it holds some. */
static bool reclaimable(const struct elmd_session *v, const struct elmd_session *s)
{
    return v != s && v->pool == s->pool && v->seq && !v->cur.active && elm_seq_pages(v->seq) > 0;
}

/* Frees pages of idle sessions, least recently used first, until need pages are free; takes
 * nothing unless that is enough (another session's history is worth keeping when it would not
 * let this request run anyway). Returns 0 or -ENOSPC. */
static int make_room(struct elmd_session *const *act, int n_act, struct elmd_session *s,
                     int64_t need, int *n_reclaimed)
{
    int64_t avail = elm_kv_pool_free_pages(s->pool);
    if (avail >= need)
        return 0;
    for (int k = 0; k < n_act; k++)
        if (reclaimable(act[k], s))
            avail += elm_seq_pages(act[k]->seq);
    if (avail < need)
        return -ENOSPC;
    while (elm_kv_pool_free_pages(s->pool) < need) {
        struct elmd_session *lru = NULL;
        for (int k = 0; k < n_act; k++)
            if (reclaimable(act[k], s) && (!lru || act[k]->last_used_ns < lru->last_used_ns))
                lru = act[k];
        elm_debug("session %llu: its %lld KV pages go to session %llu; its next turn recomputes",
                  (unsigned long long)lru->id, (long long)elm_seq_pages(lru->seq),
                  (unsigned long long)s->id);
        elm_seq_release(lru->seq, false);
        (*n_reclaimed)++;
    }
    return 0;
}

int elmd_admit(struct elmd_session *const *act, int n_act, struct elmd_session *s,
               struct elmd_wait *w, int *n_reclaimed)
{
    int rc = elm_seq_start(s->seq, w->toks, w->n, &w->gp);
    if (rc != -ENOSPC)
        return rc;
    int64_t need = elmd_wait_need(s, w);
    if ((rc = make_room(act, n_act, s, need, n_reclaimed)) == 0)
        rc = elm_seq_start(s->seq, w->toks, w->n, &w->gp);
    if (rc == -ENOSPC) {
        w->need_pages = elmd_wait_need(s, w);
        w->free_pages = elm_kv_pool_free_pages(s->pool);
    }
    return rc;
}

int elmd_resume(struct elmd_session *const *act, int n_act, struct elmd_session *s,
                int *n_reclaimed)
{
    int rc = make_room(act, n_act, s, elm_seq_pages_short(s->seq, INT32_MAX), n_reclaimed);
    return rc ? rc : elm_seq_grow(s->seq, INT32_MAX);
}
