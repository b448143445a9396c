/* events.c — the engine thread's event plumbing, shared by every kind of request (prompts in
 * scheduler.c, embeddings in embed.c): publishing a session's counters when a request ends, and
 * pushing to its event ring, where a failed push ends the session.
 */
#include <string.h>

#include "common/log.h"
#include "daemon/elmd.h"
#include "daemon/engine_thread.h"
#include "elm/status.h"

void elmd_flush_stats(struct elmd *d, struct elmd_session *s)
{
    s->n_requests += s->step.req;
    s->n_prompt_tokens += s->step.prompt_tok;
    s->n_gen_tokens += s->step.tok;
    d->st.c.n_requests += s->step.req;
    d->st.c.n_errors += s->step.err;
    d->st.c.n_prompt_tokens += s->step.prompt_tok;
    d->st.c.n_prompt_reused += s->step.prompt_reused;
    d->st.c.n_gen_tokens += s->step.tok;
    d->st.c.prompt_ns += s->step.prompt_ns;
    d->st.c.gen_ns += s->step.gen_ns;
    d->st.c.n_ring_errors += s->step.ring_err;
    d->st.c.n_busy += s->step.busy;
    d->st.c.n_kv_reclaimed += s->step.reclaimed;
    d->st.c.n_preemptions += s->step.preempted;
    d->st.c.n_recomputed += s->step.recomputed;
    if (s->dm) {
        s->dm->counts.n_requests += s->step.req;
        s->dm->counts.n_prompt_tokens += s->step.prompt_tok;
        s->dm->counts.n_gen_tokens += s->step.tok;
        s->dm->counts.gen_ns += s->step.gen_ns;
        s->dm->counts.n_preemptions += s->step.preempted;
    }
    if (s->step.has_ttft) {
        elmd_lat_add(&s->ttft, s->step.ttft_ns);
        elmd_lat_add(&d->st.ttft, s->step.ttft_ns);
    }
    if (s->step.has_itl) {
        elmd_lat_add(&s->itl, s->step.itl_ns);
        elmd_lat_add(&d->st.itl, s->step.itl_ns);
    }
    memset(&s->step, 0, sizeof s->step);
}

/* Before a request's last record goes out: whoever reads it and then asks for `stats` must
 * find the request counted. */
void elmd_flush_now(struct elmd_session *s)
{
    pthread_mutex_lock(&s->d->lock);
    elmd_flush_stats(s->d, s);
    if (!s->dead) /* the request has ended (cur.active is false by now) */
        s->state = s->queue || s->wait ? ELM_SESSION_STATE_RUNNING : ELM_SESSION_STATE_IDLE;
    pthread_mutex_unlock(&s->d->lock);
}

/* A push can only fail when the client broke or closed its ring (room was checked): the session
 * is then beyond help. */
void elmd_check_push(struct elmd_session *s, int rc)
{
    if (rc < 0 && !s->dead) {
        elm_info("session %llu: cannot send events (%s): closing it", (unsigned long long)s->id,
                 elm_strerror(rc));
        s->dead = true;
        s->reap_code = rc;
    }
}

void elmd_push_error(struct elmd_session *s, uint32_t req_id, int code, const char *msg)
{
    if (!s->dead)
        elmd_check_push(s, elm_rec_error_push(&s->rings.evt, req_id, code, msg));
}
