/* client.c — the control half of libelmclient: finding and connecting to the daemon's socket,
 * version negotiation, and the control calls (status, load, unload, sessions, stats, shutdown).
 *
 * The control channel is one connection to the daemon's ZeroMQ socket per client, spoken as a
 * DEALER by libclient/zmtp.c (no libzmq: see zmtp.h for why), carrying the codec of
 * ipc/proto.h: one frame per message, each request carrying an id that its reply echoes, so a
 * reply that arrives after its call timed out is recognised and dropped rather than taken for
 * the answer to the next call. Connecting fails fast when no daemon is there (connect() is
 * refused, or HELLO's reply does not come within a few seconds). Replies are waited for in
 * short slices, checking between them that the daemon process still exists (a pidfd), so a
 * dead daemon is reported as ELM_EDAEMON within a fraction of a second; a closed connection
 * says so at once.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/trace.h"
#include "ipc/endpoint.h"
#include "ipc/fields.h"
#include "ipc/schema.h"
#include "libclient/internal.h"

_Static_assert((int)ELM_SESSION_IDLE == ELM_SESSION_STATE_IDLE &&
                   (int)ELM_SESSION_RUNNING == ELM_SESSION_STATE_RUNNING &&
                   (int)ELM_SESSION_CLOSING == ELM_SESSION_STATE_CLOSING,
               "public session states are the wire's");

const char *elm_version(void)
{
    return ELM_VERSION_STRING;
}

/* ---------------------------------------------------------------------------------------------
 * Finding the daemon
 */

int elm_client_default_runtime_dir(char *buf, size_t cap)
{
    /* The override both elmctl and we honour, then the daemon's own rule. */
    const char *env = getenv("ELM_RUNTIME_DIR");
    if (!env || !*env)
        return elm_rundir_default(buf, cap);
    int n = snprintf(buf, cap, "%s", env);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Liveness and references
 */

bool client_daemon_alive(struct elm_client *c)
{
    if (c->pidfd >= 0) {
        /* A pidfd becomes readable when the process exits, and cannot be fooled by pid
         * reuse. */
        struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
        return poll(&p, 1, 0) == 0;
    }
    return c->daemon_pid <= 0 || kill((pid_t)c->daemon_pid, 0) == 0 || errno == EPERM;
}

static void client_destroy(struct elm_client *c)
{
    elm_zmtp_close(&c->z);
    if (c->pidfd >= 0)
        close(c->pidfd);
    elm_proto_buf_fini(&c->out);
    free(c->in);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void client_ref(struct elm_client *c)
{
    pthread_mutex_lock(&c->lock);
    c->refs++;
    pthread_mutex_unlock(&c->lock);
}

void client_unref(struct elm_client *c)
{
    pthread_mutex_lock(&c->lock);
    bool last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (last)
        client_destroy(c);
}

void elm_client_close(elm_client **pc)
{
    if (!pc || !*pc)
        return;
    client_unref(*pc);
    *pc = NULL;
}

const char *elm_client_last_message(const elm_client *c)
{
    return c ? c->message : "";
}

unsigned elm_client_protocol_version(const elm_client *c)
{
    return c ? c->version : 0;
}

int elm_client_set_stall_timeout(elm_client *c, int timeout_ms)
{
    if (!c || timeout_ms < 0)
        return -EINVAL;
    atomic_store(&c->stall_ms, timeout_ms);
    return 0;
}

long elm_client_daemon_pid(const elm_client *c)
{
    return c ? c->daemon_pid : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Control calls
 */

struct elm_proto_buf *ctl_begin(struct elm_client *c, uint16_t cmd, int *rc)
{
    pthread_mutex_lock(&c->lock);
    c->message[0] = 0;
    /* One poll() per call: a dead daemon fails the call now, not after the send timeout. */
    if (!c->gone && !client_daemon_alive(c))
        c->gone = true;
    if (c->gone) {
        *rc = ELM_EDAEMON;
        pthread_mutex_unlock(&c->lock);
        return NULL;
    }
    c->next_req_id = c->next_req_id + 1 ? c->next_req_id + 1 : 1;
    *rc = elm_proto_begin(&c->out, c->version, cmd, 0, c->next_req_id);
    if (*rc < 0) {
        pthread_mutex_unlock(&c->lock);
        return NULL;
    }
    return &c->out;
}

void ctl_end(struct elm_client *c)
{
    pthread_mutex_unlock(&c->lock);
}

/* Receives one frame into c->in. Returns its length, -EAGAIN when nothing came within
 * wait_ms, -EINTR, ELM_EDAEMON when the daemon closed the connection, or ELM_EPROTO (for good:
 * the stream cannot be resynchronised) for a frame of several parts or over the size limit. */
static int recv_frame(struct elm_client *c, int wait_ms)
{
    int len = elm_zmtp_recv(&c->z, c->in, ELM_PROTO_MAX_FRAME, wait_ms, ELM_CLIENT_CALL_TIMEOUT_MS);
    if (len == ELM_EDAEMON)
        c->gone = true;
    return len;
}

int ctl_call(struct elm_client *c, struct elm_proto_msg *rep, int timeout_ms)
{
    const void *frame;
    size_t flen;
    struct elm_proto_hdr sent;
    int rc = elm_proto_finish(&c->out, &frame, &flen);
    if (rc < 0)
        return rc;
    elm_proto_decode_header(frame, flen, &sent);
    /* A daemon that takes nothing for seconds is as good as none. */
    rc = elm_zmtp_send(&c->z, frame, flen, ELM_CLIENT_CONNECT_TIMEOUT_MS);
    if (rc == -ETIMEDOUT || rc == ELM_EDAEMON) {
        if (rc == ELM_EDAEMON || !client_daemon_alive(c))
            c->gone = true;
        return ELM_EDAEMON;
    }
    if (rc < 0)
        return rc;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : client_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline == INT64_MAX ? ELM_CLIENT_LIVENESS_MS : deadline - client_now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        int len =
            recv_frame(c, (int)(left < ELM_CLIENT_LIVENESS_MS ? left : ELM_CLIENT_LIVENESS_MS));
        if (len == -EAGAIN && !client_daemon_alive(c)) {
            c->gone = true;
            return ELM_EDAEMON;
        }
        if (len == -EAGAIN || len == -EINTR)
            continue;
        if (len < 0)
            return len;
        const char *why;
        if (elm_proto_decode(c->in, (size_t)len, rep, &why) < 0)
            return ELM_EPROTO;
        if (rep->hdr.req_id != sent.req_id)
            continue; /* the late answer to a call that timed out */
        if (!(rep->hdr.flags & ELM_PROTO_F_REPLY) ||
            (rep->hdr.cmd != sent.cmd && rep->hdr.cmd != ELM_CMD_ERROR))
            return ELM_EPROTO;
        if (rep->status < 0)
            elm_proto_copy_str(&rep->body, ELM_TAG_MESSAGE, c->message, sizeof c->message);
        if (rep->hdr.cmd == ELM_CMD_ERROR && rep->status >= 0)
            return ELM_EPROTO;
        return rep->status < 0 ? rep->status : 0;
    }
}

/* A call without fields, or whose fields the caller does not need. */
static int simple_call(struct elm_client *c, uint16_t cmd)
{
    int rc;
    struct elm_proto_msg rep;
    if (!c)
        return -EINVAL;
    if (ctl_begin(c, cmd, &rc)) {
        rc = ctl_call(c, &rep, ELM_CLIENT_CALL_TIMEOUT_MS);
        ctl_end(c);
    }
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Connecting
 */

/* HELLO: offers our version range and learns the daemon's choice and pid. */
static int hello(struct elm_client *c)
{
    int rc;
    struct elm_proto_msg rep;
    struct elm_hello_req req = {
        .version_min = ELM_PROTO_VERSION_MIN,
        .version_max = ELM_PROTO_VERSION_MAX,
        .pid = (uint64_t)getpid(),
    };
    snprintf(req.client_name, sizeof req.client_name, "%s", program_invocation_short_name);
    struct elm_proto_buf *b = ctl_begin(c, ELM_CMD_HELLO, &rc);
    if (!b)
        return rc;
    elm_fields_put(b, &elm_fields_hello_req, &req, 0);
    rc = ctl_call(c, &rep, ELM_CLIENT_CONNECT_TIMEOUT_MS);
    uint64_t v = 0, pid = 0;
    if (rc == 0 && (elm_proto_get_u64(&rep.body, ELM_TAG_VERSION, &v) < 0 ||
                    !elm_proto_version_is_supported(v)))
        rc = ELM_EPROTO;
    if (rc == 0 && elm_proto_get_u64(&rep.body, ELM_TAG_PID, &pid) == 0 && pid <= INT_MAX)
        c->daemon_pid = (long)pid;
    ctl_end(c);
    if (rc == -ETIMEDOUT)
        return ELM_EDAEMON; /* something holds the socket but does not answer */
    if (rc < 0)
        return rc;
    c->version = (uint8_t)v;
    return 0;
}

int elm_client_connect(const char *runtime_dir, elm_client **out)
{
    char dir[PATH_MAX], path[PATH_MAX + sizeof "/" ELM_CONTROL_SOCKET];
    if (!out)
        return -EINVAL;
    elm_trace("c_connect");
    int rc = 0;
    if (runtime_dir)
        rc = snprintf(dir, sizeof dir, "%s", runtime_dir) >= (int)sizeof dir ? -ENAMETOOLONG : 0;
    else
        rc = elm_client_default_runtime_dir(dir, sizeof dir);
    if (rc < 0)
        return rc;
    snprintf(path, sizeof path, "%s/" ELM_CONTROL_SOCKET, dir);
    if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return -ENAMETOOLONG;
    struct elm_client *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    /* Our greeting leaves with the connection; the daemon's is read with HELLO's reply. */
    if ((rc = elm_zmtp_connect(&c->z, path)) < 0) {
        free(c);
        /* elmd renamed its socket away at max_connections: it is there, but full */
        struct stat fst;
        char full[sizeof path + sizeof ELM_CONTROL_FULL_SUFFIX];
        snprintf(full, sizeof full, "%s" ELM_CONTROL_FULL_SUFFIX, path);
        bool full_now = rc == ELM_EDAEMON && lstat(full, &fst) == 0 && S_ISSOCK(fst.st_mode);
        return full_now ? ELM_EBUSY : rc;
    }
    /* The daemon may be another user's that shares its socket with our group: its regions
     * then belong to it, and to nobody else. */
    struct stat sst;
    if (stat(path, &sst) < 0) {
        rc = -errno;
        elm_zmtp_close(&c->z);
        free(c);
        return rc;
    }
    pthread_mutex_init(&c->lock, NULL);
    c->refs = 1;
    c->pidfd = -1;
    c->stall_ms = ELM_CLIENT_STALL_TIMEOUT_MS;
    const char *env = getenv("ELM_STALL_TIMEOUT_MS");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == 0 && v >= 0 && v <= INT32_MAX)
            c->stall_ms = (int)v;
    }
    c->daemon_uid = sst.st_uid;
    /* HELLO's layout is frozen, so any daemon reads it; its version byte is informational and
     * carries our highest (docs/protocol.md, 1.7). */
    c->version = ELM_PROTO_VERSION_MAX;
    elm_proto_buf_init(&c->out);
    c->in = malloc(ELM_PROTO_MAX_FRAME);
    if (!c->in) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = hello(c)) < 0)
        goto fail;
    if (c->daemon_pid > 0) {
        long fd = syscall(SYS_pidfd_open, (pid_t)c->daemon_pid, 0);
        c->pidfd = fd < 0 ? -1 : (int)fd; /* old kernels: kill(pid, 0) instead */
    }
    *out = c;
    return 0;
fail:
    client_destroy(c);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Status, load, unload, sessions, stats, shutdown
 */

/* Every reply that fills a public struct is read through its field table (ipc/fields.c), which
 * checks each value's type and bounds: ELM_EPROTO when one is off. */

int elm_client_status(elm_client *c, struct elm_daemon_status *out)
{
    int rc;
    struct elm_proto_msg rep;
    if (!c || !out)
        return -EINVAL;
    if (!ctl_begin(c, ELM_CMD_STATUS, &rc))
        return rc;
    struct elm_daemon_status st = {0};
    rc = ctl_call(c, &rep, ELM_CLIENT_CALL_TIMEOUT_MS);
    if (rc == 0)
        rc = elm_fields_get(&rep.body, &elm_fields_status, &st);
    ctl_end(c);
    if (rc < 0)
        return rc;
    if (!st.pid)
        st.pid = c->daemon_pid; /* as HELLO said */
    st.model_loaded = st.model_path[0] != 0;
    st.loading = st.loading_path[0] != 0;
    *out = st;
    return 0;
}

/* Copies an optional string into a request's buffer whole, or fails: a cut name would name
 * another model. */
static int copy_whole(char *dst, size_t cap, const char *src)
{
    if (src && strlen(src) >= cap)
        return -ENAMETOOLONG;
    snprintf(dst, cap, "%s", src ? src : "");
    return 0;
}

int elm_client_load(elm_client *c, const char *path, uint32_t n_ctx, uint32_t n_threads,
                    struct elm_load_result *out)
{
    return elm_client_load_as(c, path, NULL, NULL, n_ctx, n_threads, out);
}

int elm_client_load_as(elm_client *c, const char *path, const char *name, const char *keep_alive,
                       uint32_t n_ctx, uint32_t n_threads, struct elm_load_result *out)
{
    char abs[PATH_MAX];
    int rc;
    struct elm_proto_msg rep;
    if (!c || !path)
        return -EINVAL;
    /* The daemon resolves paths against its own working directory, not ours. */
    if (!realpath(path, abs))
        return -errno;
    struct elm_load_req *req = calloc(1, sizeof *req); /* 4 KiB of path */
    if (!req)
        return -ENOMEM;
    if (strlen(abs) >= sizeof req->path) {
        free(req);
        return -ENAMETOOLONG; /* sent whole or not at all: a cut path names another file */
    }
    strcpy(req->path, abs);
    req->n_ctx = n_ctx;
    req->n_threads = n_threads;
    if ((rc = copy_whole(req->name, sizeof req->name, name)) ||
        (rc = copy_whole(req->keep_alive, sizeof req->keep_alive, keep_alive))) {
        free(req);
        return rc;
    }
    struct elm_proto_buf *b = ctl_begin(c, ELM_CMD_LOAD, &rc);
    if (b)
        elm_fields_put(b, &elm_fields_load_req, req, 0);
    free(req);
    if (!b)
        return rc;
    struct elm_load_result r = {0};
    rc = ctl_call(c, &rep, -1);
    if (rc == 0)
        rc = elm_fields_get(&rep.body, &elm_fields_load, &r);
    ctl_end(c);
    if (rc == 0 && out)
        *out = r;
    return rc;
}

int elm_client_unload(elm_client *c)
{
    return simple_call(c, ELM_CMD_UNLOAD);
}

int elm_client_unload_model(elm_client *c, const char *name)
{
    struct elm_unload_req req = {0};
    struct elm_proto_msg rep;
    int rc;
    if (!c || !name || !name[0])
        return -EINVAL;
    if ((rc = copy_whole(req.name, sizeof req.name, name)))
        return rc;
    struct elm_proto_buf *b = ctl_begin(c, ELM_CMD_UNLOAD, &rc);
    if (!b)
        return rc;
    elm_fields_put(b, &elm_fields_unload_req, &req, 0);
    rc = ctl_call(c, &rep, ELM_CLIENT_CALL_TIMEOUT_MS);
    ctl_end(c);
    return rc;
}

int elm_client_sessions(elm_client *c, struct elm_session_info **out, size_t *n)
{
    int rc;
    struct elm_proto_msg rep;
    if (!c || !out || !n)
        return -EINVAL;
    if (!ctl_begin(c, ELM_CMD_SESSIONS, &rc))
        return rc;
    struct elm_session_info *list = NULL;
    size_t count = 0;
    rc = ctl_call(c, &rep, ELM_CLIENT_CALL_TIMEOUT_MS);
    struct elm_proto_view g;
    uint32_t cur = 0;
    /* Count first, then fill: the frame bounds the count, so this allocation is bounded. */
    while (rc == 0 && elm_proto_next_group(&rep.body, ELM_TAG_SESSION, &cur, &g) == 0)
        count++;
    if (rc == 0 && count && !(list = calloc(count, sizeof *list)))
        rc = -ENOMEM;
    cur = 0;
    for (size_t i = 0; rc == 0 && i < count; i++)
        if (elm_proto_next_group(&rep.body, ELM_TAG_SESSION, &cur, &g) ||
            elm_fields_get(&g, &elm_fields_session, &list[i]))
            rc = ELM_EPROTO;
    ctl_end(c);
    if (rc < 0) {
        free(list);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}

int elm_client_stats(elm_client *c, struct elm_daemon_stats *out)
{
    int rc;
    struct elm_proto_msg rep;
    if (!c || !out)
        return -EINVAL;
    if (!ctl_begin(c, ELM_CMD_STATS, &rc))
        return rc;
    struct elm_daemon_stats st = {0};
    rc = ctl_call(c, &rep, ELM_CLIENT_CALL_TIMEOUT_MS);
    if (rc == 0)
        rc = elm_fields_get(&rep.body, &elm_fields_stats, &st);
    ctl_end(c);
    if (rc < 0)
        return rc;
    *out = st;
    return 0;
}

int elm_client_shutdown(elm_client *c, int timeout_ms)
{
    int rc = simple_call(c, ELM_CMD_SHUTDOWN);
    /* A daemon with nothing to drain may close the connection and exit before its reply leaves
     * the socket: gone is what we asked for. The connection can end while the process is still
     * exiting, so a live daemon is waited for below; it is an error only if it stays. */
    if (rc == ELM_EDAEMON && !client_daemon_alive(c))
        return 0;
    if (rc < 0 && !(rc == ELM_EDAEMON && c->daemon_pid > 0))
        return rc;
    pthread_mutex_lock(&c->lock);
    c->gone = true; /* whatever happens next, this daemon takes no more calls */
    pthread_mutex_unlock(&c->lock);
    if (c->daemon_pid <= 0)
        return 0; /* it did not say who it is: nothing to wait for */
    /* Without a reply, the request may not have arrived: no waiting forever then. */
    if (rc == ELM_EDAEMON && (timeout_ms < 0 || timeout_ms > ELM_CLIENT_CALL_TIMEOUT_MS))
        timeout_ms = ELM_CLIENT_CALL_TIMEOUT_MS;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : client_now_ms() + timeout_ms;
    while (client_daemon_alive(c)) {
        if (client_now_ms() >= deadline)
            return rc == ELM_EDAEMON ? rc : -ETIMEDOUT;
        if (c->pidfd >= 0) {
            struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
            poll(&p, 1, ELM_CLIENT_LIVENESS_MS);
        } else {
            usleep(20 * 1000);
        }
    }
    return 0;
}
