/* zmtp.c — see zmtp.h. The wire (ZMTP 3.0, rfc.zeromq.org/spec/23):
 *
 *   greeting  64 bytes: 0xFF, 8 bytes padding, 0x7F, version 3.0, mechanism "NULL" padded to 20
 *             bytes, as-server 0, 31 zero bytes of filler
 *   frame     flags (bit 0 MORE, bit 1 LONG, bit 2 COMMAND; the rest 0), then the size: 1 byte,
 *             or 8 bytes big-endian when LONG; then the body
 *   READY     a command whose body is 5 "READY" and properties: name (1-byte length), value
 *             (4-byte big-endian length); ours says Socket-Type DEALER
 *
 * A ROUTER peer adds and strips the routing frame on its side, so between a DEALER and it every
 * control message is exactly one frame each way.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/trace.h"
#include "elm/status.h"
#include "libclient/zmtp.h"

#define GREETING_LEN  64
#define F_MORE        0x01
#define F_LONG        0x02
#define F_COMMAND     0x04
#define MAX_COMMAND   1024 /* the peer's READY: a socket type and a few properties */
#define SEND_SETUP_MS 1000 /* greeting + READY into an empty socket buffer */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t l = deadline - now_ms();
    return l <= 0 ? 0 : l > INT32_MAX ? INT32_MAX : (int)l;
}

/* Waits until fd is ready for events or the deadline passes: 1, 0 (timed out), -EINTR. */
static int wait_fd(int fd, short events, int ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, ms);
    return n < 0 ? -errno : n;
}

/* Writes every byte of iov, waiting for room until deadline. */
static int send_all(struct elm_zmtp *z, struct iovec *iov, int n_iov, int64_t deadline)
{
    while (n_iov > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n_iov};
        ssize_t w = sendmsg(z->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EAGAIN) {
            int r = wait_fd(z->fd, POLLOUT, left_ms(deadline));
            if (r == 0)
                return -ETIMEDOUT;
            continue; /* EINTR too: a send is finished, not abandoned half-way */
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return z->broken = errno == EPIPE || errno == ECONNRESET ? ELM_EDAEMON : -errno;
        while (n_iov > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n_iov--;
        }
        if (n_iov > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Reads more bytes into buf, waiting until deadline. 0, -ETIMEDOUT, or ELM_EDAEMON at EOF. */
static int fill(struct elm_zmtp *z, int64_t deadline)
{
    if (z->off == z->len)
        z->off = z->len = 0;
    for (;;) {
        ssize_t r = recv(z->fd, z->buf + z->len, sizeof z->buf - z->len, MSG_DONTWAIT);
        if (r > 0) {
            z->len += (size_t)r;
            return 0;
        }
        if (r == 0)
            return z->broken = ELM_EDAEMON;
        if (errno == ECONNRESET)
            return z->broken = ELM_EDAEMON;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        int w = wait_fd(z->fd, POLLIN, left_ms(deadline));
        if (w == 0)
            return -ETIMEDOUT;
    }
}

/* Copies the next n bytes of the stream to dst (NULL: skips them). A stream cut short
 * mid-frame cannot be resynchronised: a timeout here breaks the connection. */
static int take(struct elm_zmtp *z, void *dst, size_t n, int64_t deadline)
{
    unsigned char *d = dst;
    while (n > 0) {
        if (z->off == z->len) {
            int rc = fill(z, deadline);
            if (rc == -ETIMEDOUT)
                return z->broken = ELM_EPROTO;
            if (rc < 0)
                return rc;
        }
        size_t k = z->len - z->off < n ? z->len - z->off : n;
        if (d) {
            memcpy(d, z->buf + z->off, k);
            d += k;
        }
        z->off += k;
        n -= k;
    }
    return 0;
}

/* Reads one frame's flags and size. */
static int frame_header(struct elm_zmtp *z, uint8_t *flags, uint64_t *size, int64_t deadline)
{
    unsigned char b[8];
    int rc = take(z, flags, 1, deadline);
    if (rc == 0 && (*flags & ~(F_MORE | F_LONG | F_COMMAND)))
        rc = z->broken = ELM_EPROTO;
    if (rc == 0)
        rc = take(z, b, *flags & F_LONG ? 8 : 1, deadline);
    if (rc < 0)
        return rc;
    *size = 0;
    for (int i = 0; i < (*flags & F_LONG ? 8 : 1); i++)
        *size = *size << 8 | b[i];
    return 0;
}

/* True when the READY body names a socket type a DEALER may talk to. */
static bool ready_is_router(const unsigned char *p, size_t n)
{
    if (n < 6 || p[0] != 5 || memcmp(p + 1, "READY", 5))
        return false;
    bool router = false;
    for (size_t i = 6; i < n;) {
        size_t nl = p[i];
        if (n - i < 1 + nl + 4)
            return false;
        const unsigned char *name = p + i + 1, *v = name + nl;
        uint32_t vl = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
        if (n - i - 1 - nl - 4 < vl)
            return false;
        if (nl == 11 && !strncasecmp((const char *)name, "Socket-Type", 11))
            router = vl == 6 && !memcmp(v + 4, "ROUTER", 6);
        i += 1 + nl + 4 + vl;
    }
    return router;
}

/* The peer's greeting and its READY, read once before the first message. */
static int read_greeting(struct elm_zmtp *z, int64_t deadline)
{
    unsigned char g[GREETING_LEN], cmd[MAX_COMMAND];
    uint8_t flags;
    uint64_t size;
    int rc = take(z, g, sizeof g, deadline);
    if (rc < 0)
        return rc;
    /* Bit 0 of the signature's last byte set: ZMTP 2 or later; then version 3+, NULL */
    if (g[0] != 0xFF || !(g[9] & 1) || g[10] < 3 || memcmp(g + 12, "NULL", 5))
        return z->broken = ELM_EPROTO;
    if ((rc = frame_header(z, &flags, &size, deadline)) < 0)
        return rc;
    if (!(flags & F_COMMAND) || size > sizeof cmd)
        return z->broken = ELM_EPROTO;
    if ((rc = take(z, cmd, (size_t)size, deadline)) < 0)
        return rc;
    if (!ready_is_router(cmd, (size_t)size))
        return z->broken = ELM_EPROTO;
    z->greeted = true;
    return 0;
}

int elm_zmtp_connect(struct elm_zmtp *z, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    *z = (struct elm_zmtp){.fd = -1};
    if (strlen(path) >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int rc = -errno;
        close(fd);
        /* no socket, not a socket, or one a dead daemon left (nobody accepts): no daemon */
        if (rc == -ENOENT || rc == -ENOTDIR || rc == -ECONNREFUSED)
            return ELM_EDAEMON;
        return rc == -EPERM ? -EACCES : rc;
    }
    z->fd = fd;
    /* the body: 5 "READY", then the property "Socket-Type" = "DEALER" (6 bytes) */
    static const char ready[] = "\4\34\5READY\13Socket-Type\0\0\0\6"
                                "DEALER";
    _Static_assert(sizeof ready - 1 == 30, "READY is 2 bytes of header and 28 of body");
    unsigned char g[GREETING_LEN] = {
        0xFF, [9] = 0x7F, [10] = 3, [11] = 0, [12] = 'N', 'U', 'L', 'L'};
    struct iovec iov[] = {{g, sizeof g}, {(void *)ready, sizeof ready - 1}};
    int rc = send_all(z, iov, 2, now_ms() + SEND_SETUP_MS);
    if (rc < 0)
        elm_zmtp_close(z);
    return rc == -ETIMEDOUT ? ELM_EDAEMON : rc;
}

int elm_zmtp_send(struct elm_zmtp *z, const void *frame, size_t len, int timeout_ms)
{
    if (z->broken)
        return z->broken;
    int64_t deadline = now_ms() + timeout_ms;
    /* libzmq (4.3) drops a connection whose first message arrives in the same read as the
     * greeting's end (seen about one time in two): the first message waits for the peer's
     * READY, which costs a round trip without a thread hop. */
    if (!z->greeted) {
        int r = z->off < z->len ? 1 : wait_fd(z->fd, POLLIN, left_ms(deadline));
        if (r == 0)
            return -ETIMEDOUT;
        int rc = r < 0 ? r : read_greeting(z, deadline);
        if (rc < 0)
            return rc;
        elm_trace("c_greeted");
    }
    unsigned char h[9];
    size_t hl;
    if (len <= 255) {
        h[0] = 0;
        h[1] = (unsigned char)len;
        hl = 2;
    } else {
        h[0] = F_LONG;
        for (int i = 0; i < 8; i++)
            h[1 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        hl = 9;
    }
    struct iovec iov[] = {{h, hl}, {(void *)frame, len}};
    int rc = send_all(z, iov, 2, deadline);
    /* Part of a frame may have gone: what follows would be read as its rest. */
    if (rc == -ETIMEDOUT)
        z->broken = ELM_EDAEMON;
    return rc;
}

int elm_zmtp_recv(struct elm_zmtp *z, void *buf, size_t cap, int wait_ms, int timeout_ms)
{
    if (z->broken)
        return z->broken;
    if (z->off == z->len) {
        int r = wait_fd(z->fd, POLLIN, wait_ms);
        if (r == 0)
            return -EAGAIN;
        if (r < 0)
            return r;
    }
    int64_t deadline = now_ms() + timeout_ms;
    int rc = z->greeted ? 0 : read_greeting(z, deadline); /* a receive before any send */
    for (;;) {
        uint8_t flags;
        uint64_t size;
        if (rc == 0)
            rc = frame_header(z, &flags, &size, deadline);
        if (rc < 0)
            return rc;
        if (flags & F_COMMAND) { /* a PING or the like: nothing the control channel uses */
            if (size > MAX_COMMAND)
                return z->broken = ELM_EPROTO;
            if ((rc = take(z, NULL, (size_t)size, deadline)) < 0)
                return rc;
            continue;
        }
        if ((flags & F_MORE) || size > cap)
            return z->broken = ELM_EPROTO;
        if ((rc = take(z, buf, (size_t)size, deadline)) < 0)
            return rc;
        return (int)size;
    }
}

void elm_zmtp_close(struct elm_zmtp *z)
{
    if (z->fd >= 0)
        close(z->fd);
    z->fd = -1;
}
