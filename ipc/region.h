/* region.h — handing a session's region (a sealed memfd, ipc/shm.h) from elmd to the process
 * that opened the session, over a unix socket, since ZeroMQ cannot carry descriptors.
 *
 * The socket is "<runtime dir>/regions" (ELM_REGION_SOCKET), SOCK_SEQPACKET, with the control
 * socket's mode (0600, 0660 with a group). The OPEN_SESSION reply gives its path
 * (ELM_TAG_REGION_SOCKET) and a random token (ELM_TAG_REGION_TOKEN). Then, one packet each way:
 *
 *   request (client -> daemon, ELM_REGION_REQ_LEN bytes): u64 LE session id, the 16-byte token
 *   reply   (daemon -> client, ELM_REGION_REP_LEN bytes): i32 LE status (0 or -errno / ELM_E*),
 *           u32 0; with status 0 and only then, exactly one descriptor rides along (SCM_RIGHTS)
 *
 * The daemon hands a region over only to the session's opener (the connection's SO_PEERCRED
 * pid equals the one the control socket saw), with the right token, and only once; it then
 * closes its copy of the descriptor. The client checks that the socket's peer runs as the uid
 * it expects the daemon to run as, and what the descriptor is (elm_shm_adopt).
 */
#ifndef ELM_IPC_REGION_H
#define ELM_IPC_REGION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define ELM_REGION_SOCKET    "regions" /* in the runtime directory, beside ELM_CONTROL_SOCKET */
#define ELM_REGION_TOKEN_LEN 16
#define ELM_REGION_REQ_LEN   (8 + ELM_REGION_TOKEN_LEN)
#define ELM_REGION_REP_LEN   8

/* A fresh random token (getrandom). Returns 0 or -errno. */
int elm_region_token_new(uint8_t token[ELM_REGION_TOKEN_LEN]);
/* Compares in time independent of where they differ. */
bool elm_region_token_equal(const uint8_t *a, const uint8_t *b);

/* Daemon: a non-blocking, close-on-exec listening socket bound at path (an old socket file
 * there is replaced; the caller holds the runtime directory's lock). The caller sets its mode.
 * Returns 0 or -errno. */
int elm_region_listen(const char *path, int *out);

/* Daemon: accepts one connection (non-blocking, close-on-exec). Returns 0, -EAGAIN or -errno. */
int elm_region_accept(int lfd, int *out);

/* Daemon: reads the request of connection conn without blocking, and the peer's credentials.
 * Returns 0; -EAGAIN when it has not arrived yet; ELM_EPROTO for a packet of another size;
 * -ECONNRESET when the peer closed; or -errno. */
int elm_region_read_request(int conn, uint64_t *id, uint8_t token[ELM_REGION_TOKEN_LEN], pid_t *pid,
                            uid_t *uid);

/* Daemon: sends the reply, with fd when status is 0. Returns 0 or -errno. */
int elm_region_reply(int conn, int status, int fd);

/* Client: connects to path, checks the peer runs as owner (-EACCES), asks for session id's
 * region and waits up to timeout_ms for the answer. Returns 0 with the descriptor in *fd
 * (close-on-exec), the daemon's status (< 0), ELM_EPROTO for a malformed reply, -ETIMEDOUT, or
 * -errno. */
int elm_region_fetch(const char *path, uid_t owner, uint64_t id,
                     const uint8_t token[ELM_REGION_TOKEN_LEN], int timeout_ms, int *fd);

#endif
