/* internal.h — what libclient's two halves share: the client handle (client.c, the control
 * channel) and the calls session.c makes on it to open and close sessions. Not installed.
 */
#ifndef ELM_LIBCLIENT_INTERNAL_H
#define ELM_LIBCLIENT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "elm/client.h"
#include "ipc/proto.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
#include "libclient/zmtp.h"

/* How long a control call waits for its reply (except LOAD, which waits while the daemon
 * lives): the daemon answers control messages between forward passes, so seconds mean it is
 * stuck. HELLO has its own bound: a socket that accepts but whose owner does not answer within
 * it counts as no daemon; generous, because a loaded machine can delay a healthy daemon by a
 * second or more. The connect timeout also bounds a send waiting for room. */
#define ELM_CLIENT_CALL_TIMEOUT_MS    10000
#define ELM_CLIENT_CONNECT_TIMEOUT_MS 5000
/* Longest sleep between two checks that the daemon process is still alive. */
#define ELM_CLIENT_LIVENESS_MS 200
/* How long a session waits for a heartbeat before it calls the daemon stalled (ELM_EDAEMON):
 * elm_client_set_stall_timeout, else $ELM_STALL_TIMEOUT_MS, else this. */
#define ELM_CLIENT_STALL_TIMEOUT_MS 30000

struct elm_client {
    pthread_mutex_t lock; /* serialises control calls; guards refs */
    int refs;             /* the caller's reference + one per open session */
    struct elm_zmtp z;    /* the control connection (a DEALER to elmd's ROUTER) */
    uint8_t version;          /* negotiated protocol version */
    uint32_t next_req_id;     /* of control requests, to pair replies with requests */
    long daemon_pid;          /* from HELLO; 0 if unknown */
    uid_t daemon_uid;         /* owner of the socket: the owner every session region must have */
    int pidfd;                /* the daemon's pidfd, -1 when unavailable */
    _Atomic int stall_ms;     /* no heartbeat for this long: the daemon is stalled; 0: never */
    bool gone;                /* shut down or found dead: calls fail with ELM_EDAEMON */
    struct elm_proto_buf out; /* the request being built */
    unsigned char *in;        /* the last reply frame (malloc'ed, ELM_PROTO_MAX_FRAME bytes) */
    char message[ELM_PROTO_MAX_STR + 1]; /* the daemon's MESSAGE of the last failed call */
};

/* A control call in three steps, so callers can add fields and read the reply in place:
 * ctl_begin locks c and starts a request for cmd (returns the builder, or NULL with *rc set
 * when the client is unusable); ctl_call sends it and waits up to timeout_ms (< 0: while the
 * daemon lives) for the reply, which stays valid until ctl_end; ctl_end unlocks. ctl_call
 * returns the reply's STATUS when negative (the daemon's MESSAGE is kept in c->message). */
struct elm_proto_buf *ctl_begin(struct elm_client *c, uint16_t cmd, int *rc);
int ctl_call(struct elm_client *c, struct elm_proto_msg *rep, int timeout_ms);
void ctl_end(struct elm_client *c);

/* True while the daemon process exists (or when that cannot be known). Any thread. */
bool client_daemon_alive(struct elm_client *c);

/* Monotonic milliseconds, for deadlines. */
static inline int64_t client_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reference counting: a session keeps its client alive. */
void client_ref(struct elm_client *c);
void client_unref(struct elm_client *c);

/* ---- a session (client_session.c; client_embed.c sends EMBED requests on it) ---- */

/* The largest valid event payload is an ERROR with a full message; a bigger record is a
 * protocol violation, detected by elm_ring_pop's -EMSGSIZE without copying it. */
#define EVT_BUF (sizeof(struct elm_rec_error) + ELM_REC_MAX_ERROR_MSG)

/* The daemon's heartbeat in a session's region as last seen to change, and when (ms). */
struct session_beat {
    uint32_t beat;
    int64_t since_ms;
};

struct elm_session {
    struct elm_client *c; /* a reference: the control channel for close */
    uint64_t id;
    uint32_t n_ctx;
    struct elm_shm shm;
    struct elm_session_rings r;
    pthread_mutex_t prod_lock;   /* submit and cancel (any thread) both produce into r.req */
    _Atomic uint32_t running_id; /* the running request's id, 0 when none (read by cancel) */
    uint32_t last_id;            /* the last request id used */
    int broken;                  /* sticky: ELM_ERING, ELM_EPROTO, ELM_ESESSION, ELM_EDAEMON */
    struct session_beat beat;    /* the reading thread's watch of the daemon's heartbeat */
    unsigned char rec[EVT_BUF];  /* private copy of the last event; decoded from here */
    char text[ELM_REC_MAX_PIECE + 1];
    char msg[ELM_REC_MAX_ERROR_MSG + 1];
};

/* After a wait that timed out: false when the daemon is dead, or alive but its heartbeat has
 * not moved since w saw it change for the client's stall timeout (a stopped or wedged daemon;
 * with say, s->msg tells so). Updates w. */
bool session_daemon_alive(struct elm_session *s, struct session_beat *w, bool say);

/* Marks the session unusable with code, and returns it. */
int session_set_broken(struct elm_session *s, int code);
/* Pushes a request record with push(), waiting for space while the daemon lives. Called with
 * prod_lock held. */
int session_push_waiting(struct elm_session *s, uint32_t size,
                         int (*push)(struct elm_session *s, const void *arg), const void *arg);
/* The error to return for a ring that refused our record (the session may be broken then). */
int session_push_error(struct elm_session *s, int rc);
/* Pops the next event record into buf (cap bytes), waiting up to timeout_ms (< 0: while the
 * daemon lives). Returns 0, -ETIMEDOUT, -EINTR, or a sticky error (ELM_EPROTO for a record
 * larger than cap, ELM_ESESSION, ELM_EDAEMON, ELM_ERING). */
int session_pop(struct elm_session *s, void *buf, uint32_t cap, struct elm_ring_rec *rec,
                int timeout_ms);

#endif
