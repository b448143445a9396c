/* elmd_session.c — creating and freeing a session: its sealed region (ipc/shm + session_shm) and
 * the pidfd that tells control when its client exits. (Its sequence, with its pages of the KV
 * pool, is the engine's to build and destroy: see elmd.h.)
 *
 * Both run on the control thread: create before the engine adopts the session, destroy after
 * the engine has reaped it (see elmd.h), so nothing here needs the lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/elmd.h"
#include "elm/status.h"

uint64_t elmd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int32_t elmd_ctx_cap(const struct elmd_model *m, int32_t default_ctx)
{
    /* Bounded: a client asking for a 128k context on a long-context model would take
     * gigabytes of KV cache per session. */
    int32_t train = m->m->hp.n_ctx_train > 32768 ? 32768 : m->m->hp.n_ctx_train;
    return train > default_ctx ? train : default_ctx;
}

int elmd_session_create(struct elmd *d, struct elmd_model *m, int32_t n_ctx, uint32_t req_cap,
                        uint32_t evt_cap, long pid, const char *name, struct elmd_session **out,
                        char *err, size_t errlen)
{
    size_t size;
    int rc = elm_session_shm_size(req_cap, evt_cap, &size);
    if (rc < 0) {
        snprintf(err, errlen, "invalid ring sizes %u/%u", req_cap, evt_cap);
        return rc;
    }
    struct elmd_session *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->d = d;
    s->pidfd = -1;
    s->pid = pid;
    s->req_cap = req_cap;
    s->evt_cap = evt_cap;
    s->n_ctx = n_ctx;
    s->dm = m;
    s->model = m->m;
    s->state = ELM_SESSION_STATE_IDLE;
    s->opened_ns = elmd_now_ns();
    s->shm.fd = -1;
    s->handover_by_ns = s->opened_ns + (uint64_t)d->cfg.handover_ms * 1000000u;
    snprintf(s->client_name, sizeof s->client_name, "%s", name ? name : "");
    if ((rc = elmd_lat_init(&s->ttft, 256)) || (rc = elmd_lat_init(&s->itl, 1024))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* The pidfd becomes readable when the client exits, however it exits (kill -9 included):
     * that is how a dead client's session is freed within one poll round. */
    if (pid > 0) {
        s->pidfd = pidfd_open((pid_t)pid, 0);
        if (s->pidfd < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot watch client pid %ld: %s", pid, strerror(errno));
            goto fail;
        }
    }
    /* Sealed memory of our making: its size is fixed whatever the client does with it. */
    if ((rc = elm_shm_create(&s->shm, size)) || (rc = elm_region_token_new(s->token))) {
        snprintf(err, errlen, "cannot create the session region: %s", elm_strerror(rc));
        goto fail;
    }
    if ((rc = elm_session_shm_init(s->shm.base, s->shm.size, req_cap, evt_cap)) ||
        (rc = elm_session_shm_attach(s->shm.base, s->shm.size, req_cap, evt_cap, ELM_SESSION_DAEMON,
                                     &s->rings))) {
        snprintf(err, errlen, "cannot initialise the session region: %s", elm_strerror(rc));
        goto fail;
    }
    s->pool = m->kv_pool; /* the engine builds the sequence on it when it adopts the session */
    *out = s;
    return 0;

fail:
    elmd_session_destroy(&s);
    return rc;
}

void elmd_session_free_queue(struct elmd_session *s)
{
    while (s->queue) {
        struct elmd_prompt *p = s->queue;
        s->queue = p->next;
        free(p->buf);
        free(p);
    }
    s->n_queued = 0;
}

void elmd_session_destroy(struct elmd_session **ps)
{
    if (!ps || !*ps)
        return;
    struct elmd_session *s = *ps;
    elm_seq_destroy(&s->seq);
    if (s->shm.base) {
        /* Tell a client that still has it mapped that nobody serves it any more. */
        elm_ring_close(&s->rings.evt);
        elm_ring_close(&s->rings.req);
        elm_shm_close(&s->shm);
    }
    if (s->pidfd >= 0)
        close(s->pidfd);
    elmd_session_free_queue(s);
    free(s->history);
    elmd_lat_fini(&s->ttft);
    elmd_lat_fini(&s->itl);
    free(s);
    *ps = NULL;
}
