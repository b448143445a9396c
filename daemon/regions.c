/* regions.c — handing session regions over (see regions.h and ipc/region.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/regions.h"
#include "elm/status.h"
#include "ipc/region.h"

int elmd_regions_open(struct elmd *d, char *err, size_t errlen)
{
    d->n_region_conns = 0;
    int rc = elm_region_listen(d->rd.region_path, &d->region_fd);
    if (rc < 0) {
        d->region_fd = -1;
        snprintf(err, errlen, "cannot listen on %s: %s", d->rd.region_path, strerror(-rc));
    }
    return rc;
}

void elmd_regions_close(struct elmd *d)
{
    for (int i = 0; i < d->n_region_conns; i++)
        close(d->region_conns[i].fd);
    d->n_region_conns = 0;
    if (d->region_fd >= 0)
        close(d->region_fd);
    d->region_fd = -1;
}

int elmd_regions_poll_items(struct elmd *d, zmq_pollitem_t *it, int cap)
{
    int n = 0;
    if (d->region_fd >= 0 && n < cap && elmd_now_ns() >= d->region_pause_ns)
        it[n++] = (zmq_pollitem_t){.fd = d->region_fd, .events = ZMQ_POLLIN};
    for (int i = 0; i < d->n_region_conns && n < cap; i++)
        it[n++] = (zmq_pollitem_t){.fd = d->region_conns[i].fd, .events = ZMQ_POLLIN};
    return n;
}

static struct elmd_session *find(struct elmd *d, uint64_t id)
{
    for (struct elmd_session *s = d->sessions; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/* The answer to one request: 0 with the session's descriptor handed over, or why not. */
static int answer(struct elmd *d, int conn, uint64_t id, const uint8_t *token, pid_t pid)
{
    struct elmd_session *s = find(d, id);
    int rc = 0;
    /* The same answer for a wrong owner and a wrong token: it tells a stranger nothing. */
    if (!s || s->close_req)
        rc = ELM_ESESSION;
    else if ((long)pid != s->pid || !elm_region_token_equal(token, s->token))
        rc = -EPERM;
    else if (s->shm.fd < 0)
        rc = -EALREADY; /* handed over once already, or not fetched in time */
    int sent = elm_region_reply(conn, rc, rc == 0 ? s->shm.fd : -1);
    if (rc == 0 && sent == 0) {
        /* The client holds it now; ours would only let a later request get it again. */
        elm_shm_drop_fd(&s->shm);
        elm_debug("session %llu: region handed to pid %ld", (unsigned long long)id, (long)pid);
    } else if (rc < 0) {
        elm_info("region of session %llu refused to pid %ld: %s", (unsigned long long)id, (long)pid,
                 elm_strerror(rc));
    }
    return rc;
}

static void drop_conn(struct elmd *d, int i)
{
    close(d->region_conns[i].fd);
    d->region_conns[i] = d->region_conns[--d->n_region_conns];
}

/* A listener whose accept fails stays readable: it rests a while instead of spinning the
 * control thread (out of descriptors, a client retries its fetch within its timeout). */
#define PAUSE_NS 100000000u

static void accept_all(struct elmd *d, uint64_t now_ns, uint64_t *next_ns)
{
    int fd, rc;
    if (now_ns < d->region_pause_ns) {
        if (d->region_pause_ns < *next_ns)
            *next_ns = d->region_pause_ns;
        return;
    }
    while (d->region_fd >= 0 && (rc = elm_region_accept(d->region_fd, &fd)) != -EAGAIN) {
        if (rc < 0) {
            elm_warn("region socket: accept: %s", strerror(-rc));
            d->region_pause_ns = now_ns + PAUSE_NS;
            if (d->region_pause_ns < *next_ns)
                *next_ns = d->region_pause_ns;
            return;
        }
        if (d->n_region_conns == ELMD_REGION_CONNS) {
            int oldest = 0;
            for (int i = 1; i < d->n_region_conns; i++)
                if (d->region_conns[i].deadline_ns < d->region_conns[oldest].deadline_ns)
                    oldest = i;
            drop_conn(d, oldest);
        }
        d->region_conns[d->n_region_conns++] =
            (struct elmd_region_conn){fd, now_ns + (uint64_t)ELMD_REGION_CONN_MS * 1000000u};
    }
}

void elmd_regions_serve(struct elmd *d, uint64_t now_ns, uint64_t *next_ns)
{
    accept_all(d, now_ns, next_ns);
    for (int i = 0; i < d->n_region_conns;) {
        struct elmd_region_conn *c = &d->region_conns[i];
        uint64_t id;
        uint8_t token[ELM_REGION_TOKEN_LEN];
        pid_t pid;
        uid_t uid;
        int rc = elm_region_read_request(c->fd, &id, token, &pid, &uid);
        if (rc == -EAGAIN && now_ns < c->deadline_ns) {
            if (c->deadline_ns < *next_ns)
                *next_ns = c->deadline_ns;
            i++;
            continue;
        }
        if (rc == 0)
            answer(d, c->fd, id, token, pid);
        else if (rc == ELM_EPROTO)
            elm_region_reply(c->fd, ELM_EPROTO, -1);
        drop_conn(d, i); /* one request per connection */
    }
}

void elmd_regions_expire(struct elmd *d, uint64_t now_ns, uint64_t *next_ns)
{
    for (struct elmd_session *s = d->sessions; s; s = s->next) {
        if (s->shm.fd < 0)
            continue;
        if (now_ns >= s->handover_by_ns) {
            elm_info("session %llu: its client did not fetch the region in time",
                     (unsigned long long)s->id);
            elm_shm_drop_fd(&s->shm);
        } else if (s->handover_by_ns < *next_ns) {
            *next_ns = s->handover_by_ns;
        }
    }
}
