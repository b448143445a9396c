/* internal.h — what libclient's two halves share: the client handle (client.c, the control
 * channel) and the calls session.c makes on it to open and close sessions. Not installed.
 */
#ifndef ELM_LIBCLIENT_INTERNAL_H
#define ELM_LIBCLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "elm/client.h"
#include "ipc/proto.h"

/* How long a control call waits for its reply (except LOAD, which waits while the daemon
 * lives): the daemon answers control messages between forward passes, so seconds mean it is
 * stuck. HELLO has its own bound: a socket that accepts (checked first) but whose owner does
 * not answer within it counts as no daemon; generous, because a loaded machine can delay a
 * healthy daemon by a second or more. */
#define ELM_CLIENT_CALL_TIMEOUT_MS    10000
#define ELM_CLIENT_CONNECT_TIMEOUT_MS 5000
/* Longest sleep between two checks that the daemon process is still alive. */
#define ELM_CLIENT_LIVENESS_MS 200

struct elm_client {
    pthread_mutex_t lock; /* serialises control calls; guards refs */
    int refs;             /* the caller's reference + one per open session */
    void *zctx;           /* ZeroMQ context and the control socket (DEALER) */
    void *sock;
    uint8_t version;          /* negotiated protocol version */
    uint32_t next_req_id;     /* of control requests, to pair replies with requests */
    long daemon_pid;          /* from HELLO; 0 if unknown */
    uid_t daemon_uid;         /* owner of the socket: the owner every session region must have */
    int pidfd;                /* the daemon's pidfd, -1 when unavailable */
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

#endif
