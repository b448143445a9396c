/* reply.h — the plumbing between the control sockets and the command handlers: who a request
 * came from (routing id and envelope), receiving one request, sending one reply, and requests
 * answered later. What a reply says is commands.c's business; when to read is control.c's.
 *
 * Replies are sent with ZMQ_DONTWAIT under ZMQ_ROUTER_MANDATORY: a peer that vanished or
 * stopped reading costs a dropped reply (counted), never a blocked daemon.
 */
#ifndef ELMD_REPLY_H
#define ELMD_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <zmq.h>

#include "daemon/elmd.h"
#include "ipc/proto.h"

#define ELMD_MAX_ENVELOPE 2  /* frames between the routing id and the payload (REQ: one) */
#define ELMD_MAX_ENV_LEN  64 /* bytes of each */

/* A peer to answer: the ROUTER socket it came on, its routing id and its envelope. Copied, so
 * a reply can be sent long after the request (LOAD). has_cred: the kernel's credentials of the
 * connecting process (SO_PEERCRED, taken by libzmq at accept) are in uid and pid; false on TCP. */
struct elmd_peer {
    void *sock;
    bool has_cred;
    long uid, pid;
    unsigned char id[256];
    size_t id_len;
    unsigned char env[ELMD_MAX_ENVELOPE][ELMD_MAX_ENV_LEN];
    size_t env_len[ELMD_MAX_ENVELOPE];
    int n_env;
};

/* A request answered later: LOAD (when the new model serves) or UNLOAD (when the old one is
 * gone). On d->load_waiters. */
struct elmd_pending {
    struct elmd_pending *next;
    struct elmd_peer peer;
    struct elm_proto_msg req; /* header only: the body is gone */
};

/* Receives one message from sock without waiting. Returns false when none is there. Else true,
 * with the sender in *p and, when *has_payload, the last frame in *payload (the caller closes
 * it). *has_payload is false for a message with nothing after the routing id (nothing to
 * answer); *bad is true when it cannot be a request (no routing id, too many or too long
 * envelope frames): answer it as malformed. The parts of one message arrive together, so
 * receiving them never waits. */
bool elmd_recv(void *sock, struct elmd_peer *p, zmq_msg_t *payload, bool *has_payload, bool *bad);

/* Sends the frame built in b to p (non-blocking); counts it as dropped if it cannot go now. */
void elmd_reply(struct elmd *d, const struct elmd_peer *p, struct elm_proto_buf *b);

#endif
