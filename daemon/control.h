/* control.h — what the control loop (control.c) and the command handlers (commands.c) share:
 * where a reply goes, replies that wait for a load to finish, and the handlers' entry point.
 */
#ifndef ELMD_CONTROL_H
#define ELMD_CONTROL_H

#include <stddef.h>

#include "elmd.h"
#include "ipc/proto.h"

#define ELMD_MAX_ENVELOPE 2  /* frames between the routing id and the payload (REQ: one) */
#define ELMD_MAX_ENV_LEN  64 /* bytes of each */

/* A peer to answer: the ROUTER socket it came on, its routing id and its envelope. Copied, so
 * a reply can be sent long after the request (LOAD). */
struct elmd_peer {
    void *sock;
    unsigned char id[256];
    size_t id_len;
    unsigned char env[ELMD_MAX_ENVELOPE][ELMD_MAX_ENV_LEN];
    size_t env_len[ELMD_MAX_ENVELOPE];
    int n_env;
};

/* A request answered later: LOAD (when the new model serves) or UNLOAD (when the old one is
 * gone). */
struct elmd_pending {
    struct elmd_pending *next;
    struct elmd_peer peer;
    struct elm_proto_msg req; /* header only: the body is gone */
};

/* Sends the frame built in b to p (non-blocking); counts it as dropped if it cannot go now. */
void elmd_reply(struct elmd *d, const struct elmd_peer *p, struct elm_proto_buf *b);

/* Decodes and answers one control frame. */
void elmd_handle_frame(struct elmd *d, const struct elmd_peer *p, const void *frame, size_t len);

/* Answers the pending requests of command cmd (0: all) with status rc (and, for a successful
 * LOAD, the model's fields). */
void elmd_answer_pending(struct elmd *d, uint16_t cmd, int rc, const char *msg);

/* Starts draining: no new sessions, prompts or loads; running requests may finish. */
void elmd_begin_drain(struct elmd *d, const char *why);

/* Asks the engine to close every session with code/msg (model swap, unload, shutdown). */
void elmd_close_all_sessions(struct elmd *d, int code, const char *msg);

#endif
