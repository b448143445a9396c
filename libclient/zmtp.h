/* zmtp.h — libelmclient's control connection: the client end of a ZeroMQ DEALER socket,
 * spoken directly over one unix-socket connection (ZMTP 3.0, NULL mechanism).
 *
 * Why not libzmq: a new program's first token pays for everything a connection costs, and
 * libzmq's cost is mostly not the wire. Its context starts two threads, its handshake hops
 * between them and the caller several times before HELLO can leave, and it pulls libstdc++,
 * libsodium, libpgm, libnorm and Kerberos into every client process. The control channel needs
 * none of that: one peer (elmd's ROUTER), one-frame messages, one call at a time. So the
 * greeting and READY go out with connect(), the first message (HELLO) as soon as the daemon's
 * greeting and READY are in: connecting and HELLO cost two round trips and no thread hop.
 *
 * What is checked: the peer's greeting (signature, version 3 or later, NULL mechanism), that its
 * first command is READY naming a ROUTER, every frame's length against the caller's bound, and
 * no multi-part messages. Any framing error breaks the connection for good (ELM_EPROTO): a
 * byte stream cannot be resynchronised. Not thread-safe; client.c calls it under its lock.
 */
#ifndef ELM_LIBCLIENT_ZMTP_H
#define ELM_LIBCLIENT_ZMTP_H

#include <stdbool.h>
#include <stddef.h>

struct elm_zmtp {
    int fd;          /* the connected unix socket, -1 when closed */
    bool greeted;    /* the peer's greeting and READY have been read */
    int broken;      /* sticky: ELM_EPROTO after a framing error, ELM_EDAEMON after EOF */
    size_t off, len; /* unread bytes of buf are [off, len) */
    unsigned char buf[4096];
};

/* Connects to the socket at path and sends our greeting and READY. Returns 0, ELM_EDAEMON
 * when nobody listens there (no socket, refused, not a socket), -EACCES when it is not ours to
 * use, or another -errno. */
int elm_zmtp_connect(struct elm_zmtp *z, const char *path);
/* Sends frame as a one-part message, waiting up to timeout_ms for room (and, the first time,
 * for the peer's greeting). Returns 0, -ETIMEDOUT, ELM_EDAEMON (the peer closed), ELM_EPROTO
 * for a bad greeting, or the sticky error. */
int elm_zmtp_send(struct elm_zmtp *z, const void *frame, size_t len, int timeout_ms);
/* Receives the next message into buf (cap bytes). Waits up to wait_ms for it to begin (-EAGAIN
 * when it does not, -EINTR when a signal came), then up to timeout_ms for the rest. Returns
 * its length, ELM_EDAEMON when the peer closed, or ELM_EPROTO (sticky) for a multi-part
 * message or one larger than cap. Call after a send. */
int elm_zmtp_recv(struct elm_zmtp *z, void *buf, size_t cap, int wait_ms, int timeout_ms);
/* Closes the connection; safe to call twice. */
void elm_zmtp_close(struct elm_zmtp *z);

#endif
