/* region.c — the region handover socket (see region.h for the exchange and its checks). */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "elm/status.h"
#include "ipc/le.h"
#include "ipc/region.h"

int elm_region_token_new(uint8_t token[ELM_REGION_TOKEN_LEN])
{
    size_t got = 0;
    while (got < ELM_REGION_TOKEN_LEN) {
        ssize_t n = getrandom(token + got, ELM_REGION_TOKEN_LEN - got, 0);
        if (n < 0 && errno != EINTR)
            return -errno;
        if (n > 0)
            got += (size_t)n;
    }
    return 0;
}

bool elm_region_token_equal(const uint8_t *a, const uint8_t *b)
{
    uint8_t diff = 0;
    for (int i = 0; i < ELM_REGION_TOKEN_LEN; i++)
        diff |= (uint8_t)(a[i] ^ b[i]);
    return diff == 0;
}

static int fill_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof a->sun_path)
        return -ENAMETOOLONG;
    memcpy(a->sun_path, path, n);
    return 0;
}

int elm_region_listen(const char *path, int *out)
{
    struct sockaddr_un a;
    int rc = fill_addr(&a, path);
    if (rc < 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int elm_region_accept(int lfd, int *out)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    *out = fd;
    return 0;
}

int elm_region_read_request(int conn, uint64_t *id, uint8_t token[ELM_REGION_TOKEN_LEN], pid_t *pid,
                            uid_t *uid)
{
    unsigned char buf[ELM_REGION_REQ_LEN + 1];
    /* No descriptors are accepted from clients: a control message would only be truncated
     * (there is no room for one), never installed here. */
    ssize_t n = recv(conn, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    if (n == 0)
        return -ECONNRESET;
    if (n != ELM_REGION_REQ_LEN)
        return ELM_EPROTO;
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return -errno;
    *id = elm_rd64(buf);
    memcpy(token, buf + 8, ELM_REGION_TOKEN_LEN);
    *pid = cr.pid;
    *uid = cr.uid;
    return 0;
}

int elm_region_reply(int conn, int status, int fd)
{
    unsigned char buf[ELM_REGION_REP_LEN] = {0};
    uint32_t st = (uint32_t)status;
    memcpy(buf, &st, sizeof st); /* little endian: proto.h asserts the host is */
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    if (status == 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.b;
        mh.msg_controllen = sizeof ctl.b;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    /* One small packet into an empty socket buffer: it never blocks. */
    return sendmsg(conn, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof buf ? 0 : -errno;
}

/* Closes every descriptor a control message carried; returns the first (or -1) when it was
 * the only one. */
static int take_fd(struct msghdr *mh)
{
    int got = -1, count = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (count++ == 0)
                got = fd;
            else
                close(fd);
        }
    }
    if (count > 1 && got >= 0) {
        close(got);
        got = -1;
    }
    return count == 1 ? got : -1;
}

static int recv_reply(int s, int timeout_ms, int *fd)
{
    struct pollfd p = {.fd = s, .events = POLLIN};
    int r;
    while ((r = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    unsigned char buf[ELM_REGION_REP_LEN + 1];
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    ssize_t n = recvmsg(s, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -errno;
    int got = take_fd(&mh);
    int32_t st = (int32_t)elm_rd32(buf);
    int rc = 0;
    if (n != ELM_REGION_REP_LEN || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || st > 0 ||
        elm_rd32(buf + 4) != 0 || (st == 0) != (got >= 0))
        rc = ELM_EPROTO;
    else if (st < 0)
        rc = st;
    if (rc < 0) {
        if (got >= 0)
            close(got);
        return rc;
    }
    *fd = got;
    return 0;
}

int elm_region_fetch(const char *path, uid_t owner, uint64_t id,
                     const uint8_t token[ELM_REGION_TOKEN_LEN], int timeout_ms, int *fd)
{
    struct sockaddr_un a;
    int rc = fill_addr(&a, path);
    if (rc < 0)
        return rc;
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ucred cr;
    socklen_t len = sizeof cr;
    unsigned char req[ELM_REGION_REQ_LEN];
    memcpy(req, &id, sizeof id); /* little endian */
    memcpy(req + 8, token, ELM_REGION_TOKEN_LEN);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        rc = -errno;
    else if (cr.uid != owner) /* someone else's socket at that path: not our daemon */
        rc = -EACCES;
    else if (send(s, req, sizeof req, MSG_NOSIGNAL) != (ssize_t)sizeof req)
        rc = -errno;
    else
        rc = recv_reply(s, timeout_ms, fd);
    close(s);
    return rc;
}
