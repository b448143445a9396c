/* reply.c — receiving a request with its envelope and sending a reply (reply.h). */
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/reply.h"
#include "elm/status.h"
#include "ipc/schema.h"

/* Who is on the other end of an ipc connection. libzmq (4.3, Debian 12) reads SO_PEERCRED when
 * it accepts a unix-socket connection and appends ":uid:gid:pid" to the message property
 * "Peer-Address" (TCP peers get the address alone). The kernel wrote those numbers, not the
 * client; only the part before them (the peer's bound name, which a hand-made client could
 * choose and fill with colons) is the client's, so the fields are read from the end. Why not
 * ZMQ_SRCFD + getsockopt: that option is deprecated, and the descriptor may already belong to a
 * newer connection when a queued message is read; ZAP would need a handler thread for the same
 * numbers. */
static bool peer_cred(const char *a, long *uid, long *pid)
{
    long v[3];
    const char *end = a ? a + strlen(a) : NULL;
    for (int i = 2; end && i >= 0; i--) {
        const char *c = end;
        while (c > a && c[-1] >= '0' && c[-1] <= '9')
            c--;
        if (c == end || c == a || c[-1] != ':' || end - c > 10)
            return false;
        v[i] = strtol(c, NULL, 10);
        end = c - 1;
    }
    if (!end)
        return false;
    *uid = v[0];
    *pid = v[2];
    return *pid > 0; /* 0: the opener is outside our pid namespace */
}

bool elmd_recv(void *sock, struct elmd_peer *p, zmq_msg_t *payload, bool *has_payload, bool *bad)
{
    *p = (struct elmd_peer){.sock = sock};
    *has_payload = *bad = false;
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&part);
        return false;
    }
    p->id_len = zmq_msg_size(&part) < sizeof p->id ? zmq_msg_size(&part) : 0;
    memcpy(p->id, zmq_msg_data(&part), p->id_len);
    bool more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    while (more) {
        zmq_msg_t next;
        zmq_msg_init(&next);
        if (zmq_msg_recv(&next, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&next);
            break;
        }
        more = zmq_msg_more(&next);
        if (*has_payload) { /* the previous part was envelope, not payload */
            size_t n = zmq_msg_size(payload);
            if (p->n_env < ELMD_MAX_ENVELOPE && n <= ELMD_MAX_ENV_LEN) {
                memcpy(p->env[p->n_env], zmq_msg_data(payload), n);
                p->env_len[p->n_env++] = n;
            } else {
                *bad = true;
            }
            zmq_msg_close(payload);
        }
        *payload = next;
        *has_payload = true;
    }
    *bad = *bad || !p->id_len;
    /* From the payload: a ROUTER's routing-id part lacks the metadata when zmq_poll() fetched
     * the message ahead (libzmq 4.3's router_t::xhas_in), the parts that came over the wire
     * always carry it. */
    if (*has_payload)
        p->has_cred = peer_cred(zmq_msg_gets(payload, "Peer-Address"), &p->uid, &p->pid);
    return true;
}

void elmd_reply(struct elmd *d, const struct elmd_peer *p, struct elm_proto_buf *b)
{
    const void *frame;
    size_t len;
    int rc = elm_proto_finish(b, &frame, &len);
    if (rc < 0) { /* a bug of ours: say so rather than send nothing */
        elm_err("control: cannot build a reply: %s", elm_strerror(rc));
        return;
    }
    bool ok = zmq_send(p->sock, p->id, p->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
    for (int i = 0; ok && i < p->n_env; i++)
        ok = zmq_send(p->sock, p->env[i], p->env_len[i], ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
    ok = ok && zmq_send(p->sock, frame, len, ZMQ_DONTWAIT) >= 0;
    if (!ok) {
        elm_debug("control: reply dropped: %s", zmq_strerror(zmq_errno()));
        pthread_mutex_lock(&d->lock);
        d->st.c.n_dropped++;
        pthread_mutex_unlock(&d->lock);
    }
}
