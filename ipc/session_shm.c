/* session_shm.c — session region layout (init/attach) and the record encoders and decoders.
 *
 * Decoders are the trust boundary between a client and the daemon: every length is checked
 * against what remains of the payload before it is used, every count against its bound, every
 * value against its range, and the payload must be consumed exactly. They read with memcpy, so
 * the payload needs no alignment. Host byte order is little endian (ring.h asserts it), so the
 * fixed structs are their own wire format.
 */
#include <errno.h>
#include <string.h>

#include "common/sampling.h"
#include "elm/status.h"
#include "ipc/session_shm.h"

#define RING_HDR_BYTES ((uint64_t)sizeof(struct elm_ring_hdr))
#define LINE_UP(x)     (((uint64_t)(x) + ELM_RING_CACHELINE - 1) & ~(uint64_t)(ELM_RING_CACHELINE - 1))

/* ---------------------------------------------------------------------------------------------
 * Region layout
 */

/* The layout, computed from the capacities alone. */
static int layout(uint32_t req_cap, uint32_t evt_cap, struct elm_session_shm *h)
{
    if (!elm_ring_capacity_is_valid(req_cap) || !elm_ring_capacity_is_valid(evt_cap))
        return -EINVAL;
    memset(h, 0, sizeof *h);
    h->magic = ELM_SESSION_SHM_MAGIC;
    h->layout_version = ELM_SESSION_SHM_VERSION;
    h->header_size = sizeof *h;
    h->req_capacity = req_cap;
    h->evt_capacity = evt_cap;
    /* each ring header starts a line of its own (ring.h: no false sharing with the session
     * header or with the end of the request ring's data, which may be shorter than a line) */
    h->req_offset = LINE_UP(sizeof *h);
    h->evt_offset = LINE_UP(h->req_offset + RING_HDR_BYTES + req_cap);
    h->total_size = h->evt_offset + RING_HDR_BYTES + evt_cap; /* < 2^31 + 2^11: no overflow */
    h->ring_version = ELM_RING_VERSION;
    return 0;
}

int elm_session_shm_size(uint32_t req_cap, uint32_t evt_cap, size_t *out)
{
    struct elm_session_shm h;
    int rc = layout(req_cap, evt_cap, &h);
    if (rc < 0)
        return rc;
    *out = (size_t)h.total_size;
    return 0;
}

int elm_session_shm_init(void *base, size_t size, uint32_t req_cap, uint32_t evt_cap)
{
    struct elm_session_shm h;
    if (!base || ((uintptr_t)base & (ELM_RING_CACHELINE - 1)))
        return -EINVAL;
    int rc = layout(req_cap, evt_cap, &h);
    if (rc < 0)
        return rc;
    if (size != h.total_size)
        return -EINVAL;
    unsigned char *b = base;
    memcpy(b, &h, sizeof h);
    rc = elm_ring_init((struct elm_ring_hdr *)(b + h.req_offset), req_cap);
    if (rc == 0)
        rc = elm_ring_init((struct elm_ring_hdr *)(b + h.evt_offset), evt_cap);
    return rc;
}

void elm_session_shm_beat(void *base)
{
    __atomic_fetch_add(&((struct elm_session_shm *)base)->heartbeat, 1, __ATOMIC_RELAXED);
}

uint32_t elm_session_shm_heartbeat(const void *base)
{
    return __atomic_load_n(&((const struct elm_session_shm *)base)->heartbeat, __ATOMIC_RELAXED);
}

int elm_session_shm_attach(void *base, size_t size, uint32_t req_cap, uint32_t evt_cap,
                           enum elm_session_side side, struct elm_session_rings *out)
{
    struct elm_session_shm want, got;
    if (!base || !out || ((uintptr_t)base & (ELM_RING_CACHELINE - 1)))
        return -EINVAL;
    if (side != ELM_SESSION_DAEMON && side != ELM_SESSION_CLIENT)
        return -EINVAL;
    int rc = layout(req_cap, evt_cap, &want);
    if (rc < 0)
        return rc;
    if (size != want.total_size)
        return -EINVAL;
    /* One copy of the shared header, compared as a whole: the expected layout is ours. */
    memcpy(&got, base, sizeof got);
    got.heartbeat = 0; /* the one field that moves: any value is valid */
    if (memcmp(&got, &want, sizeof got) != 0)
        return ELM_ERING;

    unsigned char *b = base;
    bool daemon = side == ELM_SESSION_DAEMON;
    struct elm_session_rings v;
    rc = elm_ring_attach(&v.req, (struct elm_ring_hdr *)(b + want.req_offset), req_cap,
                         daemon ? ELM_RING_CONSUMER : ELM_RING_PRODUCER);
    if (rc == 0)
        rc = elm_ring_attach(&v.evt, (struct elm_ring_hdr *)(b + want.evt_offset), evt_cap,
                             daemon ? ELM_RING_PRODUCER : ELM_RING_CONSUMER);
    if (rc < 0)
        return rc;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Record types
 */

bool elm_rec_is_request(uint16_t type)
{
    return type == ELM_REC_PROMPT || type == ELM_REC_CANCEL || type == ELM_REC_EMBED;
}

bool elm_rec_is_event(uint16_t type)
{
    return type == ELM_REC_TOKEN || type == ELM_REC_DONE || type == ELM_REC_ERROR ||
           type == ELM_REC_VECTOR;
}

const char *elm_rec_type_name(uint16_t type)
{
    // clang-format off
    switch (type) {
    case ELM_REC_PROMPT: return "prompt";
    case ELM_REC_CANCEL: return "cancel";
    case ELM_REC_TOKEN: return "token";
    case ELM_REC_DONE: return "done";
    case ELM_REC_ERROR: return "error";
    case ELM_REC_EMBED: return "embed";
    case ELM_REC_VECTOR: return "vector";
    default: return "unknown";
    }
    // clang-format on
}

/* ---------------------------------------------------------------------------------------------
 * PROMPT
 */

/* The fixed fields' ranges, shared by the encoder (-EINVAL) and decoder (ELM_EPROTO); the
 * sampling fields' are common/sampling.h's, as everywhere. */
static bool prompt_hdr_is_valid(const struct elm_rec_prompt *h)
{
    /* Any count is a valid look-back (the scheduler bounds it), so a large one maps to a
     * large one rather than wrapping negative. */
    struct elm_sampling sp = {
        .temp = h->temp,
        .top_k = h->top_k,
        .top_p = h->top_p,
        .min_p = h->min_p,
        .repeat_penalty = h->repeat_penalty,
        .repeat_last_n = h->repeat_last_n > INT32_MAX ? INT32_MAX : (int32_t)h->repeat_last_n,
        .seed = h->seed};
    const uint32_t conv = ELM_PROMPT_F_MESSAGES | ELM_PROMPT_F_KEEP_CONTEXT;
    return (h->flags & ~ELM_PROMPT_F_KNOWN) == 0 && (h->flags & conv) != conv &&
           h->n_stop <= ELM_REC_MAX_STOP &&
           h->reserved == 0 && elm_sampling_check(&sp) == 0;
}

/* Describes m as iovecs (fixed part, text, then length + bytes per stop string). lens holds
 * the stop lengths in wire form. Returns the number of segments or -EINVAL. */
static int prompt_iov(const struct elm_prompt_msg *m, uint32_t lens[ELM_REC_MAX_STOP],
                      struct iovec iov[2 + 2 * ELM_REC_MAX_STOP], uint32_t *total)
{
    if (!m || !prompt_hdr_is_valid(&m->hdr) || (m->hdr.prompt_len && !m->text))
        return -EINVAL;
    uint64_t sum = sizeof m->hdr + (uint64_t)m->hdr.prompt_len;
    int n = 0;
    iov[n++] = (struct iovec){(void *)&m->hdr, sizeof m->hdr};
    iov[n++] = (struct iovec){(void *)m->text, m->hdr.prompt_len};
    for (uint32_t i = 0; i < m->hdr.n_stop; i++) {
        if (m->stop_len[i] == 0 || m->stop_len[i] > ELM_REC_MAX_STOP_LEN || !m->stop[i])
            return -EINVAL;
        lens[i] = m->stop_len[i];
        iov[n++] = (struct iovec){&lens[i], sizeof lens[i]};
        iov[n++] = (struct iovec){(void *)m->stop[i], m->stop_len[i]};
        sum += sizeof lens[i] + m->stop_len[i];
    }
    if (sum > UINT32_MAX)
        return -EINVAL;
    *total = (uint32_t)sum;
    return n;
}

int elm_rec_prompt_size(const struct elm_prompt_msg *m, uint32_t *out)
{
    uint32_t lens[ELM_REC_MAX_STOP], total;
    struct iovec iov[2 + 2 * ELM_REC_MAX_STOP];
    int n = prompt_iov(m, lens, iov, &total);
    if (n < 0)
        return n;
    *out = total;
    return 0;
}

int elm_rec_prompt_push(struct elm_ring *r, const struct elm_prompt_msg *m)
{
    uint32_t lens[ELM_REC_MAX_STOP], total;
    struct iovec iov[2 + 2 * ELM_REC_MAX_STOP];
    int n = prompt_iov(m, lens, iov, &total);
    if (n < 0)
        return n;
    return elm_ring_pushv(r, ELM_REC_PROMPT, 0, iov, n);
}

int elm_rec_prompt_encode(const struct elm_prompt_msg *m, void *buf, uint32_t cap, uint32_t *len)
{
    uint32_t lens[ELM_REC_MAX_STOP], total;
    struct iovec iov[2 + 2 * ELM_REC_MAX_STOP];
    int n = prompt_iov(m, lens, iov, &total);
    if (n < 0)
        return n;
    if (!buf || total > cap)
        return buf ? -EMSGSIZE : -EINVAL;
    unsigned char *o = buf;
    for (int i = 0; i < n; i++) {
        if (iov[i].iov_len)
            memcpy(o, iov[i].iov_base, iov[i].iov_len);
        o += iov[i].iov_len;
    }
    *len = total;
    return 0;
}

int elm_rec_prompt_decode(const void *p, uint32_t len, struct elm_prompt_msg *out)
{
    const unsigned char *b = p;
    struct elm_prompt_msg m;
    if (!p || len < sizeof m.hdr)
        return ELM_EPROTO;
    memcpy(&m.hdr, b, sizeof m.hdr);
    if (!prompt_hdr_is_valid(&m.hdr))
        return ELM_EPROTO;
    uint32_t off = sizeof m.hdr;
    if (m.hdr.prompt_len > len - off)
        return ELM_EPROTO;
    m.text = (const char *)b + off;
    off += m.hdr.prompt_len;
    for (uint32_t i = 0; i < m.hdr.n_stop; i++) {
        uint32_t sl;
        if (len - off < sizeof sl)
            return ELM_EPROTO;
        memcpy(&sl, b + off, sizeof sl);
        off += sizeof sl;
        if (sl == 0 || sl > ELM_REC_MAX_STOP_LEN || sl > len - off)
            return ELM_EPROTO;
        m.stop[i] = (const char *)b + off;
        m.stop_len[i] = sl;
        off += sl;
    }
    if (off != len)
        return ELM_EPROTO; /* trailing bytes: a different layout than the one we speak */
    uint32_t n_msg;
    if ((m.hdr.flags & ELM_PROMPT_F_MESSAGES) &&
        elm_rec_messages_decode(m.text, m.hdr.prompt_len, NULL, 0, &n_msg))
        return ELM_EPROTO;
    for (uint32_t i = m.hdr.n_stop; i < ELM_REC_MAX_STOP; i++) {
        m.stop[i] = NULL;
        m.stop_len[i] = 0;
    }
    *out = m;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Messages
 */

int elm_rec_messages_size(const struct elm_rec_message *m, uint32_t n, uint32_t *out)
{
    if (!m || n == 0 || n > ELM_REC_MAX_MESSAGES)
        return -EINVAL;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (m[i].role_len == 0 || m[i].role_len > ELM_REC_MAX_ROLE_LEN || !m[i].role ||
            (m[i].content_len && !m[i].content))
            return -EINVAL;
        sum += 2 * sizeof(uint32_t) + (uint64_t)m[i].role_len + m[i].content_len;
    }
    if (sum > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)sum;
    return 0;
}

int elm_rec_messages_encode(const struct elm_rec_message *m, uint32_t n, void *buf, uint32_t cap)
{
    uint32_t size;
    int rc = elm_rec_messages_size(m, n, &size);
    if (rc)
        return rc;
    if (!buf || size > cap)
        return buf ? -EMSGSIZE : -EINVAL;
    unsigned char *o = buf;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(o, &m[i].role_len, sizeof m[i].role_len);
        memcpy(o + 4, m[i].role, m[i].role_len);
        o += 4 + m[i].role_len;
        memcpy(o, &m[i].content_len, sizeof m[i].content_len);
        if (m[i].content_len)
            memcpy(o + 4, m[i].content, m[i].content_len);
        o += 4 + m[i].content_len;
    }
    return 0;
}

int elm_rec_messages_decode(const void *p, uint32_t len, struct elm_rec_message *out,
                            uint32_t cap, uint32_t *n)
{
    const unsigned char *b = p;
    uint32_t off = 0, k = 0;
    if (!p && len)
        return ELM_EPROTO;
    while (off < len) {
        struct elm_rec_message msg;
        if (k == ELM_REC_MAX_MESSAGES || len - off < 4)
            return ELM_EPROTO;
        memcpy(&msg.role_len, b + off, 4);
        off += 4;
        if (msg.role_len == 0 || msg.role_len > ELM_REC_MAX_ROLE_LEN || msg.role_len > len - off)
            return ELM_EPROTO;
        msg.role = (const char *)b + off;
        off += msg.role_len;
        if (len - off < 4)
            return ELM_EPROTO;
        memcpy(&msg.content_len, b + off, 4);
        off += 4;
        if (msg.content_len > len - off)
            return ELM_EPROTO;
        msg.content = (const char *)b + off;
        off += msg.content_len;
        if (k < cap)
            out[k] = msg;
        k++;
    }
    if (k == 0)
        return ELM_EPROTO;
    *n = k;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * CANCEL
 */

int elm_rec_cancel_push(struct elm_ring *r, uint32_t req_id)
{
    struct elm_rec_cancel c = {.req_id = req_id};
    return elm_ring_push(r, ELM_REC_CANCEL, &c, sizeof c);
}

int elm_rec_cancel_decode(const void *p, uint32_t len, uint32_t *req_id)
{
    struct elm_rec_cancel c;
    if (!p || len != sizeof c)
        return ELM_EPROTO;
    memcpy(&c, p, sizeof c);
    if (c.reserved != 0)
        return ELM_EPROTO;
    *req_id = c.req_id;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * TOKEN
 */

int elm_rec_token_push(struct elm_ring *r, int32_t id, const void *piece, uint32_t piece_len)
{
    if (id < 0 || piece_len > ELM_REC_MAX_PIECE || (piece_len && !piece))
        return -EINVAL;
    struct elm_rec_token t = {.id = id, .piece_len = piece_len};
    struct iovec iov[2] = {{&t, sizeof t}, {(void *)piece, piece_len}};
    return elm_ring_pushv(r, ELM_REC_TOKEN, 0, iov, 2);
}

int elm_rec_token_decode(const void *p, uint32_t len, struct elm_token_msg *out)
{
    struct elm_rec_token t;
    if (!p || len < sizeof t)
        return ELM_EPROTO;
    memcpy(&t, p, sizeof t);
    if (t.id < 0 || t.piece_len > ELM_REC_MAX_PIECE || t.piece_len != len - sizeof t)
        return ELM_EPROTO;
    out->id = t.id;
    out->piece_len = t.piece_len;
    out->piece = (const char *)p + sizeof t;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * DONE
 */

static bool done_is_valid(const struct elm_rec_done *d)
{
    return d->reason >= ELM_DONE_EOS && d->reason <= ELM_DONE_LAST;
}

int elm_rec_done_push(struct elm_ring *r, const struct elm_rec_done *d)
{
    if (!d || !done_is_valid(d))
        return -EINVAL;
    return elm_ring_push(r, ELM_REC_DONE, d, sizeof *d);
}

int elm_rec_done_decode(const void *p, uint32_t len, struct elm_rec_done *out)
{
    struct elm_rec_done d;
    if (!p || len != sizeof d)
        return ELM_EPROTO;
    memcpy(&d, p, sizeof d);
    if (!done_is_valid(&d))
        return ELM_EPROTO;
    *out = d;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * ERROR
 */

int elm_rec_error_push(struct elm_ring *r, uint32_t req_id, int code, const char *msg)
{
    if (code >= 0)
        return -EINVAL;
    size_t n = msg ? strnlen(msg, ELM_REC_MAX_ERROR_MSG) : 0;
    struct elm_rec_error e = {.req_id = req_id, .code = code, .msg_len = (uint32_t)n};
    struct iovec iov[2] = {{&e, sizeof e}, {(void *)msg, n}};
    return elm_ring_pushv(r, ELM_REC_ERROR, 0, iov, 2);
}

int elm_rec_error_decode(const void *p, uint32_t len, struct elm_error_msg *out)
{
    struct elm_rec_error e;
    if (!p || len < sizeof e)
        return ELM_EPROTO;
    memcpy(&e, p, sizeof e);
    if (e.code >= 0 || e.reserved != 0 || e.msg_len > ELM_REC_MAX_ERROR_MSG ||
        e.msg_len != len - sizeof e)
        return ELM_EPROTO;
    out->req_id = e.req_id;
    out->code = e.code;
    out->msg_len = e.msg_len;
    out->msg = (const char *)p + sizeof e;
    return 0;
}
