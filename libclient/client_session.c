/* client_session.c — the data plane of libelmclient: a session's shared region, the PROMPT and
 * CANCEL records the client produces, and the TOKEN/DONE/ERROR records it consumes.
 *
 * The daemon is trusted less than fully. The region is fetched from the daemon's region socket
 * (whose peer must run as the control socket's owner) and checked when it is mapped (a sealed
 * memory file of the announced size, and its layout: ipc/region.h, shm.h, session_shm.h);
 * every event is popped into a private buffer and decoded there, and must fit the conversation
 * (events only while a request runs, DONE/ERROR carrying that request's id). Anything else
 * makes the session unusable (a sticky error), never a read out of bounds. While it waits for
 * events the client sleeps on the ring's futex in short slices and checks between them that the
 * daemon process still exists, so a daemon that dies mid-stream is reported (ELM_EDAEMON)
 * instead of waited for forever.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sampling.h"
#include "common/trace.h"
#include "ipc/fields.h"
#include "ipc/region.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
#include "libclient/internal.h"

_Static_assert(ELM_REQUEST_MAX_STOP == ELM_REC_MAX_STOP, "stop strings per request");
_Static_assert(ELM_REQUEST_MAX_STOP_LEN == ELM_REC_MAX_STOP_LEN, "stop string length");
_Static_assert((int)ELM_FINISH_EOS == ELM_DONE_EOS && (int)ELM_FINISH_LENGTH == ELM_DONE_LENGTH &&
                   (int)ELM_FINISH_STOP == ELM_DONE_STOP &&
                   (int)ELM_FINISH_CANCEL == ELM_DONE_CANCEL && ELM_DONE_LAST == ELM_DONE_CANCEL,
               "public finish reasons are the wire's");

/* Bytes a PROMPT needs besides its text: the fixed part and the stop strings at their
 * largest, plus the ring's record header. Used to size the request ring. */
#define PROMPT_OVERHEAD                                                                            \
    (sizeof(struct elm_rec_prompt) + ELM_REC_MAX_STOP * (4 + ELM_REC_MAX_STOP_LEN) +               \
     ELM_RING_REC_HDR)
#define DEFAULT_MAX_PROMPT (1u << 20)
#define CLOSE_TIMEOUT_MS   2000

bool session_daemon_alive(struct elm_session *s, struct session_beat *w, bool say)
{
    if (!client_daemon_alive(s->c))
        return false;
    uint32_t b = elm_session_shm_heartbeat(s->shm.base);
    int64_t now = client_now_ms();
    if (b != w->beat) {
        w->beat = b;
        w->since_ms = now;
        return true;
    }
    int stall = atomic_load(&s->c->stall_ms);
    if (stall == 0 || now - w->since_ms < stall)
        return true;
    if (say)
        snprintf(s->msg, sizeof s->msg,
                 "elmd (pid %ld) made no progress for %d ms: stopped or stalled "
                 "(ELM_STALL_TIMEOUT_MS)",
                 s->c->daemon_pid, stall);
    return false;
}

/* Marks the session unusable with code, and returns it. */
int session_set_broken(struct elm_session *s, int code)
{
    s->broken = code;
    atomic_store(&s->running_id, 0);
    return code;
}

/* ---------------------------------------------------------------------------------------------
 * Opening and closing
 */

/* Request ring capacity for prompts of up to max_prompt bytes: the next power of two. */
static int req_capacity(uint32_t max_prompt, uint32_t *cap)
{
    uint64_t need = (uint64_t)(max_prompt ? max_prompt : DEFAULT_MAX_PROMPT) + PROMPT_OVERHEAD;
    uint64_t c = ELM_RING_MIN_CAPACITY;
    while (c < need)
        c <<= 1;
    if (c > ELM_RING_MAX_CAPACITY)
        return -EINVAL;
    *cap = (uint32_t)c;
    return 0;
}

static int get_u32(const struct elm_proto_view *v, uint16_t tag, uint32_t *out)
{
    uint64_t x;
    int rc = elm_proto_get_u64(v, tag, &x);
    if (rc == 0 && x > UINT32_MAX)
        rc = ELM_EPROTO;
    if (rc == 0)
        *out = (uint32_t)x;
    return rc;
}

/* What OPEN_SESSION's reply announces. */
struct announce {
    uint64_t id;
    char region_socket[ELM_PROTO_MAX_STR + 1];
    uint8_t token[ELM_REGION_TOKEN_LEN];
    uint64_t shm_size;
    uint32_t req_cap, evt_cap, n_ctx;
};

/* Reads and checks the reply: the ring sizes must be valid capacities and the region exactly
 * the size of a session with those rings. The reply is input from another process. */
static int read_announce(const struct elm_proto_view *b, struct announce *a)
{
    size_t want;
    const void *token;
    uint32_t token_len;
    if (elm_proto_get_u64(b, ELM_TAG_SESSION_ID, &a->id) ||
        elm_proto_copy_str(b, ELM_TAG_REGION_SOCKET, a->region_socket, sizeof a->region_socket) <
            0 ||
        elm_proto_get_bytes(b, ELM_TAG_REGION_TOKEN, &token, &token_len) ||
        token_len != ELM_REGION_TOKEN_LEN ||
        elm_proto_get_u64(b, ELM_TAG_SHM_SIZE, &a->shm_size) ||
        get_u32(b, ELM_TAG_REQ_RING_SIZE, &a->req_cap) ||
        get_u32(b, ELM_TAG_EVT_RING_SIZE, &a->evt_cap))
        return ELM_EPROTO;
    a->n_ctx = 0;
    if (get_u32(b, ELM_TAG_N_CTX, &a->n_ctx) == ELM_EPROTO)
        return ELM_EPROTO;
    memcpy(a->token, token, ELM_REGION_TOKEN_LEN);
    if (a->region_socket[0] != '/' || elm_session_shm_size(a->req_cap, a->evt_cap, &want) < 0 ||
        want != a->shm_size)
        return ELM_EPROTO;
    return 0;
}

/* Tells the daemon the session is over. Best effort: the daemon also frees sessions whose
 * client died, so a failure here leaks nothing for long. */
static void send_close(struct elm_client *c, uint64_t id)
{
    int rc;
    struct elm_proto_buf *b = ctl_begin(c, ELM_CMD_CLOSE_SESSION, &rc);
    if (!b)
        return;
    struct elm_proto_msg rep;
    struct elm_session_req req = {.session_id = id};
    if (elm_fields_put(b, &elm_fields_session_req, &req, 0) == 0)
        ctl_call(c, &rep, CLOSE_TIMEOUT_MS);
    ctl_end(c);
}

/* Fetches the region the daemon announced (its descriptor, over the region socket), maps and
 * attaches it. */
static int map_region(struct elm_session *s, const struct announce *a, uid_t owner)
{
    int fd;
    int rc = elm_region_fetch(a->region_socket, owner, a->id, a->token,
                              ELM_CLIENT_CALL_TIMEOUT_MS, &fd);
    elm_trace("c_region");
    if (rc == 0)
        rc = elm_shm_adopt(&s->shm, fd, (size_t)a->shm_size);
    if (rc < 0)
        return rc == -EINVAL ? ELM_EPROTO : rc;
    rc = elm_session_shm_attach(s->shm.base, s->shm.size, a->req_cap, a->evt_cap,
                                ELM_SESSION_CLIENT, &s->r);
    if (rc < 0) {
        elm_shm_close(&s->shm);
        return rc == -EINVAL ? ELM_ERING : rc;
    }
    s->beat = (struct session_beat){elm_session_shm_heartbeat(s->shm.base), client_now_ms()};
    return 0;
}

int elm_session_open_params(elm_client *c, const struct elm_session_params *p, elm_session **out)
{
    struct elm_session_params dp = {0};
    uint32_t req_cap;
    if (!c || !out)
        return -EINVAL;
    if (!p)
        p = &dp;
    int rc = req_capacity(p->max_prompt_bytes, &req_cap);
    if (rc < 0)
        return rc;
    struct elm_session *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    pthread_mutex_init(&s->prod_lock, NULL);

    struct announce a;
    struct elm_proto_msg rep;
    struct elm_open_req req = {.n_ctx = p->n_ctx, .req_ring_size = req_cap, .pid = (long)getpid()};
    snprintf(req.client_name, sizeof req.client_name, "%s", program_invocation_short_name);
    if ((p->model && strlen(p->model) >= sizeof req.model) ||
        (p->keep_alive && strlen(p->keep_alive) >= sizeof req.keep_alive)) {
        rc = -ENAMETOOLONG; /* a cut name would name another model */
        goto fail;
    }
    snprintf(req.model, sizeof req.model, "%s", p->model ? p->model : "");
    snprintf(req.keep_alive, sizeof req.keep_alive, "%s", p->keep_alive ? p->keep_alive : "");
    struct elm_proto_buf *b = ctl_begin(c, ELM_CMD_OPEN_SESSION, &rc);
    if (!b)
        goto fail;
    elm_fields_put(b, &elm_fields_open_req, &req, 0);
    rc = ctl_call(c, &rep, ELM_CLIENT_CALL_TIMEOUT_MS);
    elm_trace("c_open_reply");
    /* From here the daemon holds a session for us: any failure must tell it to free it. */
    bool opened = rc == 0;
    a.id = 0;
    if (rc == 0)
        rc = read_announce(&rep.body, &a);
    ctl_end(c);
    if (rc < 0 && !opened)
        goto fail;
    if (rc < 0)
        goto fail_close;
    /* A larger request ring than asked for is fine; a smaller one would refuse prompts of the
     * size the caller was promised (max_prompt_bytes). */
    if (a.req_cap < req_cap) {
        rc = ELM_EPROTO;
        goto fail_close;
    }
    rc = map_region(s, &a, c->daemon_uid);
    if (rc < 0)
        goto fail_close;
    elm_trace("c_session");
    s->id = a.id;
    s->n_ctx = a.n_ctx;
    client_ref(c);
    s->c = c;
    *out = s;
    return 0;

fail_close:
    send_close(c, a.id);
fail:
    pthread_mutex_destroy(&s->prod_lock);
    free(s);
    return rc;
}

int elm_session_open(elm_client *c, elm_session **out)
{
    return elm_session_open_params(c, NULL, out);
}

void elm_session_close(elm_session **ps)
{
    if (!ps || !*ps)
        return;
    struct elm_session *s = *ps;
    /* Closing our producer end tells a daemon that watches the ring that nothing more comes;
     * CLOSE_SESSION then frees the session (and cancels a running request) at once. */
    elm_ring_close(&s->r.req);
    send_close(s->c, s->id);
    elm_shm_close(&s->shm);
    client_unref(s->c);
    pthread_mutex_destroy(&s->prod_lock);
    free(s);
    *ps = NULL;
}

uint64_t elm_session_id(const elm_session *s)
{
    return s ? s->id : 0;
}

uint32_t elm_session_n_ctx(const elm_session *s)
{
    return s ? s->n_ctx : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Requests
 */

_Static_assert(ELM_REQUEST_SEED_RANDOM == ELM_SEED_RANDOM, "one 'random seed' value");

void elm_request_init(struct elm_request *r)
{
    if (!r)
        return;
    struct elm_sampling d;
    elm_sampling_default(&d);
    memset(r, 0, sizeof *r);
    r->prompt = "";
    r->n_predict = -1;
    r->temp = d.temp;
    r->top_k = d.top_k;
    r->top_p = d.top_p;
    r->min_p = d.min_p;
    r->repeat_penalty = d.repeat_penalty;
    r->repeat_last_n = d.repeat_last_n;
    r->seed = d.seed;
}

#define REQUEST_FLAGS (ELM_REQUEST_NO_BOS | ELM_REQUEST_SPECIAL | ELM_REQUEST_KEEP_CONTEXT)

/* Translates a public request to the wire's PROMPT; -EINVAL for values the daemon would reject
 * (checked here so the caller learns which call was wrong, not a later event). */
static int to_prompt(const struct elm_request *r, const char *text, size_t len, uint32_t req_id,
                     struct elm_prompt_msg *m)
{
    struct elm_sampling sp = {.temp = r->temp,
                              .top_k = r->top_k,
                              .top_p = r->top_p,
                              .min_p = r->min_p,
                              .repeat_penalty = r->repeat_penalty,
                              .repeat_last_n = r->repeat_last_n,
                              .seed = r->seed};
    if (!text || (r->flags & ~(uint32_t)REQUEST_FLAGS) || r->n_stop < 0 ||
        r->n_stop > ELM_REQUEST_MAX_STOP || elm_sampling_check(&sp))
        return -EINVAL;
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    memset(m, 0, sizeof *m);
    struct elm_rec_prompt *h = &m->hdr;
    h->req_id = req_id;
    h->flags = (r->flags & ELM_REQUEST_NO_BOS ? 0 : ELM_PROMPT_F_ADD_BOS) |
               (r->flags & ELM_REQUEST_SPECIAL ? ELM_PROMPT_F_PARSE_SPECIAL : 0) |
               (r->flags & ELM_REQUEST_KEEP_CONTEXT ? ELM_PROMPT_F_KEEP_CONTEXT : 0);
    /* On the wire 0 means "no limit". */
    h->n_predict = r->n_predict < 0 ? 0 : (uint32_t)r->n_predict;
    h->top_k = r->top_k;
    h->temp = r->temp;
    h->top_p = r->top_p;
    h->min_p = r->min_p;
    h->repeat_penalty = r->repeat_penalty;
    h->repeat_last_n = (uint32_t)r->repeat_last_n;
    h->n_stop = (uint32_t)r->n_stop;
    h->seed = r->seed;
    h->prompt_len = (uint32_t)len;
    m->text = text;
    for (int i = 0; i < r->n_stop; i++) {
        size_t sl = r->stop[i] ? strlen(r->stop[i]) : 0;
        if (sl == 0 || sl > ELM_REQUEST_MAX_STOP_LEN)
            return -EINVAL;
        m->stop[i] = r->stop[i];
        m->stop_len[i] = (uint32_t)sl;
    }
    return 0;
}

/* Pushes a request record with push(), waiting for space while the daemon lives. Called with
 * prod_lock held. */
int session_push_waiting(struct elm_session *s, uint32_t size,
                         int (*push)(struct elm_session *s, const void *arg), const void *arg)
{
    /* Its own watch: the reading thread owns s->beat and s->msg. */
    struct session_beat w = {elm_session_shm_heartbeat(s->shm.base), client_now_ms()};
    for (;;) {
        int rc = push(s, arg);
        if (rc != -EAGAIN)
            return rc;
        rc = elm_ring_wait_space(&s->r.req, size, ELM_CLIENT_LIVENESS_MS);
        if (rc == -ETIMEDOUT && !session_daemon_alive(s, &w, false))
            return ELM_EDAEMON;
        if (rc < 0 && rc != -ETIMEDOUT && rc != -EINTR)
            return rc;
    }
}

static int push_prompt(struct elm_session *s, const void *m)
{
    return elm_rec_prompt_push(&s->r.req, m);
}

static int push_cancel(struct elm_session *s, const void *id)
{
    return elm_rec_cancel_push(&s->r.req, *(const uint32_t *)id);
}

/* A ring that refuses our record: closed by the daemon (the session is gone), or broken. */
int session_push_error(struct elm_session *s, int rc)
{
    if (rc == -EPIPE)
        return session_set_broken(s, ELM_ESESSION);
    if (rc == ELM_ERING || rc == ELM_EDAEMON)
        return session_set_broken(s, rc);
    return rc;
}

/* Sends the PROMPT m (its req_id set here). */
static int submit(elm_session *s, struct elm_prompt_msg *m)
{
    uint32_t size;
    uint32_t id = s->last_id + 1 ? s->last_id + 1 : 1;
    m->hdr.req_id = id;
    int rc = elm_rec_prompt_size(m, &size);
    if (rc < 0)
        return rc;
    if (size > elm_ring_max_payload(&s->r.req))
        return -EMSGSIZE;
    pthread_mutex_lock(&s->prod_lock);
    rc = session_push_waiting(s, size, push_prompt, m);
    if (rc == 0) {
        s->last_id = id;
        atomic_store(&s->running_id, id);
    }
    pthread_mutex_unlock(&s->prod_lock);
    return rc < 0 ? session_push_error(s, rc) : 0;
}

int elm_session_submit(elm_session *s, const struct elm_request *r)
{
    struct elm_prompt_msg m;
    if (!s || !r || !r->prompt)
        return -EINVAL;
    if (s->broken)
        return s->broken;
    if (atomic_load(&s->running_id))
        return -EINPROGRESS;
    int rc = to_prompt(r, r->prompt, strlen(r->prompt), 0, &m);
    return rc < 0 ? rc : submit(s, &m);
}

int elm_session_submit_chat(elm_session *s, const struct elm_request *r,
                            const struct elm_chat_message *msgs, int n)
{
    if (!s || !r || !msgs || n <= 0 || n > ELM_REC_MAX_MESSAGES || r->flags)
        return -EINVAL;
    if (s->broken)
        return s->broken;
    if (atomic_load(&s->running_id))
        return -EINPROGRESS;
    struct elm_rec_message *rm = malloc((size_t)n * sizeof *rm);
    if (!rm)
        return -ENOMEM;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        size_t rl = msgs[i].role ? strlen(msgs[i].role) : 0,
               cl = msgs[i].content ? strlen(msgs[i].content) : 0;
        if (!msgs[i].content || rl > ELM_REC_MAX_ROLE_LEN || cl > UINT32_MAX)
            rc = -EINVAL;
        rm[i] = (struct elm_rec_message){msgs[i].role, msgs[i].content, (uint32_t)rl, (uint32_t)cl};
    }
    uint32_t size = 0;
    char *buf = NULL;
    if (!rc)
        rc = elm_rec_messages_size(rm, (uint32_t)n, &size);
    if (!rc && !(buf = malloc(size)))
        rc = -ENOMEM;
    if (!rc)
        rc = elm_rec_messages_encode(rm, (uint32_t)n, buf, size);
    struct elm_prompt_msg m;
    if (!rc)
        rc = to_prompt(r, buf, size, 0, &m);
    if (!rc) {
        m.hdr.flags = ELM_PROMPT_F_MESSAGES; /* BOS and special tokens: the daemon's rule */
        rc = submit(s, &m);
    }
    free(buf);
    free(rm);
    return rc;
}

int elm_session_cancel(elm_session *s)
{
    if (!s)
        return -EINVAL;
    pthread_mutex_lock(&s->prod_lock);
    /* Read under the lock: a submit in flight either published its id before we read it, or
     * has not pushed its PROMPT yet (and a CANCEL for the previous id is harmless). */
    uint32_t id = atomic_load(&s->running_id);
    int rc = id ? session_push_waiting(s, sizeof(struct elm_rec_cancel), push_cancel, &id) : 0;
    pthread_mutex_unlock(&s->prod_lock);
    /* A closed ring means the daemon already ended the session: nothing left to cancel. */
    return rc == -EPIPE ? 0 : rc;
}

/* ---------------------------------------------------------------------------------------------
 * Events
 */

const char *elm_finish_reason_name(int reason)
{
    static const char *names[] = {NULL, "eos", "length", "stop", "cancel"};
    return reason > 0 && reason <= ELM_FINISH_CANCEL ? names[reason] : "unknown";
}

/* Decodes the record just popped into *ev. Ends the request on DONE/ERROR. */
static int deliver(struct elm_session *s, const struct elm_ring_rec *rec, struct elm_event *ev)
{
    uint32_t running = atomic_load(&s->running_id);
    struct elm_event e = {.type = 0, .text = "", .message = ""};
    switch (rec->type) {
    case ELM_REC_TOKEN: {
        struct elm_token_msg t;
        if (elm_rec_token_decode(s->rec, rec->len, &t) < 0)
            return session_set_broken(s, ELM_EPROTO);
        memcpy(s->text, t.piece, t.piece_len);
        s->text[t.piece_len] = 0;
        e.type = ELM_EVENT_TOKEN;
        e.token = t.id;
        e.text = s->text;
        e.text_len = t.piece_len;
        break;
    }
    case ELM_REC_DONE: {
        struct elm_rec_done d;
        if (elm_rec_done_decode(s->rec, rec->len, &d) < 0 || d.req_id != running)
            return session_set_broken(s, ELM_EPROTO);
        e.type = ELM_EVENT_DONE;
        e.reason = (int)d.reason;
        e.n_prompt = d.n_prompt;
        e.n_gen = d.n_gen;
        e.t_first_ns = d.t_first_ns;
        e.t_total_ns = d.t_total_ns;
        break;
    }
    case ELM_REC_ERROR: {
        struct elm_error_msg em;
        if (elm_rec_error_decode(s->rec, rec->len, &em) < 0 || em.req_id != running)
            return session_set_broken(s, ELM_EPROTO);
        memcpy(s->msg, em.msg, em.msg_len);
        s->msg[em.msg_len] = 0;
        e.type = ELM_EVENT_ERROR;
        e.error = em.code;
        e.message = s->msg;
        break;
    }
    default:
        return session_set_broken(s, ELM_EPROTO);
    }
    if (e.type != ELM_EVENT_TOKEN)
        atomic_store(&s->running_id, 0);
    *ev = e;
    return 0;
}

int session_pop(struct elm_session *s, void *buf, uint32_t cap, struct elm_ring_rec *rec,
                int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : client_now_ms() + timeout_ms;
    for (;;) {
        int rc = elm_ring_pop(&s->r.evt, rec, buf, cap);
        if (rc == 0)
            return 0;
        if (rc == -EMSGSIZE)
            return session_set_broken(s, ELM_EPROTO); /* bigger than any valid event */
        if (rc == -EPIPE)
            /* the daemon closed it, request unfinished */
            return session_set_broken(s, ELM_ESESSION);
        if (rc != -EAGAIN)
            return rc == ELM_ERING ? session_set_broken(s, rc) : rc;
        int64_t left = deadline == INT64_MAX ? ELM_CLIENT_LIVENESS_MS : deadline - client_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        rc = elm_ring_wait_data(
            &s->r.evt, (int)(left < ELM_CLIENT_LIVENESS_MS ? left : ELM_CLIENT_LIVENESS_MS));
        if (rc == -ETIMEDOUT && !session_daemon_alive(s, &s->beat, true))
            return session_set_broken(s, ELM_EDAEMON);
        if (rc == -EINTR)
            return -EINTR;
        if (rc == ELM_ERING)
            return session_set_broken(s, rc);
        /* 0, -ETIMEDOUT or -EPIPE: pop again (it drains what remains before reporting EPIPE). */
    }
}

int elm_session_next(elm_session *s, struct elm_event *ev, int timeout_ms)
{
    if (!s || !ev)
        return -EINVAL;
    if (s->broken)
        return s->broken;
    if (!atomic_load(&s->running_id))
        return -ENOMSG;
    struct elm_ring_rec rec;
    int rc = session_pop(s, s->rec, sizeof s->rec, &rec, timeout_ms);
    return rc ? rc : deliver(s, &rec, ev);
}

/* Reads the events of the request just submitted (rc: the submit's result) into fn. */
static int drain(elm_session *s, int rc, elm_event_fn fn, void *user)
{
    bool cancelled = false;
    while (rc == 0) {
        struct elm_event ev;
        rc = elm_session_next(s, &ev, -1);
        if (rc == -EINTR) {
            rc = 0;
            continue;
        }
        if (rc < 0)
            break;
        if (fn && fn(user, &ev) && !cancelled && ev.type == ELM_EVENT_TOKEN) {
            cancelled = true;
            rc = elm_session_cancel(s);
        }
        if (ev.type == ELM_EVENT_DONE)
            return 0;
        if (ev.type == ELM_EVENT_ERROR)
            return ev.error;
    }
    return rc;
}

int elm_session_generate(elm_session *s, const struct elm_request *r, elm_event_fn fn, void *user)
{
    return drain(s, elm_session_submit(s, r), fn, user);
}

int elm_session_chat(elm_session *s, const struct elm_request *r,
                     const struct elm_chat_message *msgs, int n, elm_event_fn fn, void *user)
{
    return drain(s, elm_session_submit_chat(s, r, msgs, n), fn, user);
}
