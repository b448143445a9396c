/* test_client_fake.c — libelmclient against a scripted daemon that lives in a thread of this
 * process: a ZeroMQ ROUTER socket speaking ipc/proto.h, and the daemon's ends of each session's
 * rings, which the test drives by hand. This reaches what a real daemon never does on purpose:
 * a socket nobody listens on, a peer that breaks ZMTP's framing, a version the client does not
 * speak, a region of the wrong size, records that lie about their lengths or belong to another
 * request, a ring whose counters are garbage, a daemon process that dies mid-stream. Each must end
 * in the documented error code, quickly, without reading out of bounds (the ASan build checks that
 * part).
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "elm/client.h"
#include "ipc/endpoint.h"
#include "ipc/proto.h"
#include "ipc/schema.h"
#include "ipc/region.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
#include "tests/common/elm_test.h"

/* ---------------------------------------------------------------------------------------------
 * The scripted daemon
 */

enum hello_mode { HELLO_OK, HELLO_REFUSE, HELLO_BAD_VERSION };
enum open_mode { OPEN_OK, OPEN_BAD_SIZE };

struct fake {
    char dir[64];
    void *zctx, *router;
    pthread_t th;
    atomic_bool stop;
    enum hello_mode hello;
    enum open_mode open;
    atomic_long pid; /* reported in HELLO; set by the test while the fake runs */
    /* the last session opened: the daemon's side. Each session's ring views get their own slot,
     * written once by the fake's thread and then used only by the test's: the test learns of a
     * session through libzmq, an ordering ThreadSanitizer cannot see, so the views are published
     * by n_open instead (release there, acquire in cur()). */
    struct elm_shm shm; /* shm.fd is handed to whoever asks the region socket */
    int region_fd;      /* the region socket's listener */
    char region_path[96];
    struct elm_session_rings rings[16];
    atomic_int n_open, n_close;
};

static void reply(struct fake *f, zmq_msg_t *id, struct elm_proto_buf *b)
{
    const void *frame;
    size_t len;
    assert_int_equal(elm_proto_finish(b, &frame, &len), 0);
    zmq_send(f->router, zmq_msg_data(id), zmq_msg_size(id), ZMQ_SNDMORE);
    zmq_send(f->router, frame, len, 0);
}

static void open_session(struct fake *f, const struct elm_proto_msg *req, struct elm_proto_buf *b)
{
    uint64_t req_cap = ELM_SESSION_DEFAULT_REQ_CAPACITY, evt_cap = 4096;
    size_t size;
    elm_proto_get_u64(&req->body, ELM_TAG_REQ_RING_SIZE, &req_cap);
    elm_shm_close(&f->shm);
    assert_int_equal(elm_session_shm_size((uint32_t)req_cap, (uint32_t)evt_cap, &size), 0);
    assert_int_equal(elm_shm_create(&f->shm, size), 0);
    assert_int_equal(elm_session_shm_init(f->shm.base, size, (uint32_t)req_cap, (uint32_t)evt_cap),
                     0);
    int k = atomic_load(&f->n_open);
    assert_true(k < (int)(sizeof f->rings / sizeof f->rings[0]));
    assert_int_equal(elm_session_shm_attach(f->shm.base, size, (uint32_t)req_cap, (uint32_t)evt_cap,
                                            ELM_SESSION_DAEMON, &f->rings[k]),
                     0);
    atomic_fetch_add(&f->n_open, 1);
    elm_proto_begin_reply(b, req, 0, NULL);
    elm_proto_put_u64(b, ELM_TAG_SESSION_ID, (uint64_t)atomic_load(&f->n_open));
    elm_proto_put_str(b, ELM_TAG_REGION_SOCKET, f->region_path);
    static const uint8_t token[ELM_REGION_TOKEN_LEN] = {1, 2, 3};
    elm_proto_put_bytes(b, ELM_TAG_REGION_TOKEN, token, sizeof token);
    elm_proto_put_u64(b, ELM_TAG_SHM_SIZE, f->open == OPEN_BAD_SIZE ? size + 4096 : size);
    elm_proto_put_u64(b, ELM_TAG_REQ_RING_SIZE, req_cap);
    elm_proto_put_u64(b, ELM_TAG_EVT_RING_SIZE, evt_cap);
    elm_proto_put_u64(b, ELM_TAG_N_CTX, 256);
}

static void answer(struct fake *f, zmq_msg_t *id, const struct elm_proto_msg *req)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    switch (req->hdr.cmd) {
    case ELM_CMD_HELLO:
        if (f->hello == HELLO_REFUSE) {
            elm_proto_begin_reply(&b, req, ELM_EPROTO, "this daemon speaks version 9 only");
            break;
        }
        elm_proto_begin_reply(&b, req, 0, NULL);
        elm_proto_put_u64(&b, ELM_TAG_VERSION,
                          f->hello == HELLO_BAD_VERSION ? 9 : ELM_PROTO_VERSION_MAX);
        elm_proto_put_u64(&b, ELM_TAG_PID, (uint64_t)f->pid);
        elm_proto_put_str(&b, ELM_TAG_DAEMON_VERSION, "0.1.0-fake");
        break;
    case ELM_CMD_OPEN_SESSION:
        open_session(f, req, &b);
        break;
    case ELM_CMD_CLOSE_SESSION:
        atomic_fetch_add(&f->n_close, 1);
        elm_proto_begin_reply(&b, req, 0, NULL);
        break;
    case ELM_CMD_STATUS:
        elm_proto_begin_reply(&b, req, 0, NULL);
        elm_proto_put_u64(&b, ELM_TAG_UPTIME_NS, 5000000000ull);
        elm_proto_put_u64(&b, ELM_TAG_N_SESSIONS, 2);
        elm_proto_put_str(&b, ELM_TAG_PATH, "/models/x.gguf");
        elm_proto_put_u64(&b, ELM_TAG_N_CTX, 512);
        break;
    case ELM_CMD_SESSIONS:
        elm_proto_begin_reply(&b, req, 0, NULL);
        for (int i = 1; i <= 3; i++) {
            elm_proto_group_begin(&b, ELM_TAG_SESSION);
            elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, (uint64_t)i);
            elm_proto_put_u64(&b, ELM_TAG_STATE, i == 2 ? 2 : 1);
            elm_proto_put_str(&b, ELM_TAG_CLIENT_NAME,
                              "a-client-with-a-very-long-name-that-"
                              "does-not-fit-sixty-four-bytes-at-all");
            elm_proto_group_end(&b);
        }
        break;
    case ELM_CMD_LOAD:
        elm_proto_begin_reply(&b, req, -ENOENT, "cannot open the model");
        break;
    default:
        elm_proto_begin_reply(&b, req, -ENOSYS, NULL);
        break;
    }
    reply(f, id, &b);
    elm_proto_buf_fini(&b);
}

/* Hands the current region to whoever asks (elmd checks the asker; the fake only serves). */
static void serve_region(struct fake *f)
{
    int conn, rc;
    uint64_t id;
    uint8_t token[ELM_REGION_TOKEN_LEN];
    pid_t pid;
    uid_t uid;
    if (elm_region_accept(f->region_fd, &conn) < 0)
        return;
    for (int i = 0; i < 1000 && (rc = elm_region_read_request(conn, &id, token, &pid, &uid)) ==
                                    -EAGAIN;
         i++)
        usleep(1000);
    if (rc == 0)
        elm_region_reply(conn, 0, f->shm.fd);
    close(conn);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    static unsigned char frame[ELM_PROTO_MAX_FRAME];
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t it[2] = {{.socket = f->router, .events = ZMQ_POLLIN},
                                {.fd = f->region_fd, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, 20) <= 0)
            continue;
        if (it[1].revents & ZMQ_POLLIN)
            serve_region(f);
        if (!(it[0].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_t id;
        zmq_msg_init(&id);
        zmq_msg_recv(&id, f->router, 0);
        int n = zmq_recv(f->router, frame, sizeof frame, 0);
        struct elm_proto_msg req;
        if (n > 0 && elm_proto_decode(frame, (size_t)n, &req, NULL) == 0)
            answer(f, &id, &req);
        zmq_msg_close(&id);
    }
    return NULL;
}

static struct fake *fake_start(enum hello_mode hm, enum open_mode om)
{
    struct fake *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/elm-fake-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->hello = hm;
    f->open = om;
    f->pid = getpid();
    f->zctx = zmq_ctx_new();
    f->router = zmq_socket(f->zctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->router, ZMQ_LINGER, &zero, sizeof zero);
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/control", f->dir);
    assert_int_equal(zmq_bind(f->router, ep), 0);
    snprintf(f->region_path, sizeof f->region_path, "%s/" ELM_REGION_SOCKET, f->dir);
    assert_int_equal(elm_region_listen(f->region_path, &f->region_fd), 0);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
    zmq_close(f->router);
    zmq_ctx_term(f->zctx);
    close(f->region_fd);
    elm_shm_close(&f->shm);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

/* ---------------------------------------------------------------------------------------------
 * Connecting
 */

static void test_no_daemon_fails_fast(void **state)
{
    char dir[] = "/tmp/elm-none-XXXXXX", path[100];
    assert_non_null(mkdtemp(dir));
    elm_client *c = NULL;
    /* Refused, not waited for: how fast is not asserted (a shared CPU makes any latency bound
     * flaky); main()'s alarm catches a hang. */
    assert_int_equal(elm_client_connect(dir, &c), ELM_EDAEMON); /* no socket at all */
    assert_null(c);

    /* A socket left by a daemon that died: it exists, but nobody accepts on it. */
    snprintf(path, sizeof path, "%s/control", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_int_equal(elm_client_connect(dir, &c), ELM_EDAEMON); /* refused (ECONNREFUSED) */
    assert_null(c);
    unlink(path);

    /* Something that is not a socket. */
    FILE *fp = fopen(path, "w");
    fclose(fp);
    assert_int_equal(elm_client_connect(dir, &c), ELM_EDAEMON);
    unlink(path);
    rmdir(dir);
}

static void test_version_negotiation(void **state)
{
    struct fake *f = fake_start(HELLO_REFUSE, OPEN_OK);
    elm_client *c = NULL;
    assert_int_equal(elm_client_connect(f->dir, &c), ELM_EPROTO);
    fake_stop(f);
    f = fake_start(HELLO_BAD_VERSION, OPEN_OK);
    assert_int_equal(elm_client_connect(f->dir, &c), ELM_EPROTO);
    fake_stop(f);
    f = fake_start(HELLO_OK, OPEN_OK);
    assert_int_equal(elm_client_connect(f->dir, &c), 0);
    assert_int_equal(elm_client_protocol_version(c), ELM_PROTO_VERSION_MAX);
    assert_int_equal(elm_client_daemon_pid(c), getpid());
    elm_client_close(&c);
    assert_null(c);
    elm_client_close(&c); /* NULL-safe */
    fake_stop(f);
}

static void test_control_calls(void **state)
{
    struct fake *f = fake_start(HELLO_OK, OPEN_OK);
    elm_client *c;
    assert_int_equal(elm_client_connect(f->dir, &c), 0);
    struct elm_daemon_status st;
    assert_int_equal(elm_client_status(c, &st), 0);
    assert_true(st.model_loaded);
    assert_string_equal(st.model_path, "/models/x.gguf");
    assert_int_equal(st.n_sessions, 2);
    assert_int_equal(st.n_ctx, 512);
    assert_int_equal(st.pid, getpid());
    struct elm_session_info *list = NULL;
    size_t n = 0;
    assert_int_equal(elm_client_sessions(c, &list, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[1].id, 2);
    assert_int_equal(list[1].state, ELM_SESSION_RUNNING);
    assert_int_equal(strlen(list[0].client_name), sizeof list[0].client_name - 1); /* cut */
    free(list);
    /* A refusal carries the daemon's message; the out-parameter is left alone. */
    struct elm_load_result lr = {.n_ctx = 77};
    assert_int_equal(elm_client_load(c, "/", 0, 0, &lr), -ENOENT);
    assert_string_equal(elm_client_last_message(c), "cannot open the model");
    assert_int_equal(lr.n_ctx, 77);
    assert_int_equal(elm_client_load(c, "/nonexistent/model.gguf", 0, 0, NULL), -ENOENT);
    elm_client_close(&c);
    fake_stop(f);
}

static void test_bad_announcement(void **state)
{
    struct fake *f = fake_start(HELLO_OK, OPEN_BAD_SIZE);
    elm_client *c;
    elm_session *s = NULL;
    assert_int_equal(elm_client_connect(f->dir, &c), 0);
    assert_int_equal(elm_session_open(c, &s), ELM_EPROTO);
    assert_null(s);
    assert_int_equal(atomic_load(&f->n_close), 1); /* the daemon was told to free it */
    elm_client_close(&c);
    fake_stop(f);
}

/* ---------------------------------------------------------------------------------------------
 * Streams
 */

/* The daemon's side of the last session opened (see struct fake). */
static struct elm_session_rings *cur(struct fake *f)
{
    int n = atomic_load(&f->n_open);
    assert_true(n > 0);
    return &f->rings[n - 1];
}

/* Pops the next request record from the client; returns its type. */
static int daemon_pop(struct fake *f, void *buf, uint32_t cap, uint32_t *len)
{
    struct elm_ring_rec rec;
    assert_int_equal(elm_ring_wait_data(&cur(f)->req, 5000), 0);
    assert_int_equal(elm_ring_pop(&cur(f)->req, &rec, buf, cap), 0);
    *len = rec.len;
    return rec.type;
}

static uint32_t daemon_take_prompt(struct fake *f, struct elm_prompt_msg *m, void *buf)
{
    uint32_t len;
    assert_int_equal(daemon_pop(f, buf, 4096, &len), ELM_REC_PROMPT);
    assert_int_equal(elm_rec_prompt_decode(buf, len, m), 0);
    return m->hdr.req_id;
}

struct collected {
    char text[256];
    int n_tokens;
    int reason;
};

static int collect(void *user, const struct elm_event *ev)
{
    struct collected *c = user;
    if (ev->type == ELM_EVENT_TOKEN) {
        strncat(c->text, ev->text, sizeof c->text - strlen(c->text) - 1);
        c->n_tokens++;
    } else if (ev->type == ELM_EVENT_DONE) {
        c->reason = ev->reason;
    }
    return 0;
}

struct gen_job {
    elm_session *s;
    struct elm_request req;
    struct collected got;
    int rc;
};

static void *gen_thread(void *arg)
{
    struct gen_job *j = arg;
    j->rc = elm_session_generate(j->s, &j->req, collect, &j->got);
    return NULL;
}

static void test_stream(void **state)
{
    struct fake *f = fake_start(HELLO_OK, OPEN_OK);
    elm_client *c;
    elm_session *s;
    static unsigned char buf[4096];
    struct elm_prompt_msg m;
    assert_int_equal(elm_client_connect(f->dir, &c), 0);
    assert_int_equal(elm_session_open(c, &s), 0);
    elm_client_close(&c); /* the session keeps the connection */
    assert_int_equal(elm_session_n_ctx(s), 256);
    assert_int_equal(elm_session_id(s), 1);

    struct elm_request r;
    elm_request_init(&r);
    r.prompt = "Once upon";
    r.temp = 0;
    r.n_predict = 3;
    r.n_stop = 1;
    r.stop[0] = "END";
    struct elm_event ev;
    assert_int_equal(elm_session_next(s, &ev, 0), -ENOMSG);
    assert_int_equal(elm_session_submit(s, &r), 0);
    assert_int_equal(elm_session_submit(s, &r), -EINPROGRESS);
    uint32_t id = daemon_take_prompt(f, &m, buf);
    assert_int_equal(m.hdr.flags, ELM_PROMPT_F_ADD_BOS);
    assert_int_equal(m.hdr.n_predict, 3);
    assert_int_equal(m.hdr.top_k, 40);
    assert_true(m.hdr.temp == 0.0f);
    assert_true(m.hdr.seed == UINT64_MAX);
    assert_int_equal(m.hdr.prompt_len, 9);
    assert_memory_equal(m.text, "Once upon", 9);
    assert_int_equal(m.hdr.n_stop, 1);
    assert_memory_equal(m.stop[0], "END", 3);

    assert_int_equal(elm_session_next(s, &ev, 0), -ETIMEDOUT);
    assert_int_equal(elm_rec_token_push(&cur(f)->evt, 261, " a", 2), 0);
    assert_int_equal(elm_rec_token_push(&cur(f)->evt, 378, " time", 5), 0);
    struct elm_rec_done d = {.req_id = id, .reason = ELM_DONE_LENGTH, .n_prompt = 3, .n_gen = 2};
    assert_int_equal(elm_rec_done_push(&cur(f)->evt, &d), 0);
    assert_int_equal(elm_session_next(s, &ev, 1000), 0);
    assert_int_equal(ev.type, ELM_EVENT_TOKEN);
    assert_int_equal(ev.token, 261);
    assert_string_equal(ev.text, " a");
    assert_int_equal(elm_session_next(s, &ev, 1000), 0);
    assert_string_equal(ev.text, " time");
    assert_int_equal(elm_session_next(s, &ev, 1000), 0);
    assert_int_equal(ev.type, ELM_EVENT_DONE);
    assert_int_equal(ev.reason, ELM_FINISH_LENGTH);
    assert_int_equal(ev.n_gen, 2);
    assert_int_equal(elm_session_next(s, &ev, 0), -ENOMSG);

    /* The callback form, with the daemon answering from another thread's point of view. */
    struct gen_job j = {.s = s, .req = r};
    j.req.flags = ELM_REQUEST_NO_BOS | ELM_REQUEST_SPECIAL;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, gen_thread, &j), 0);
    id = daemon_take_prompt(f, &m, buf);
    assert_int_equal(m.hdr.flags, ELM_PROMPT_F_PARSE_SPECIAL);
    elm_rec_token_push(&cur(f)->evt, 1, "x", 1);
    /* Cancel from this thread while the other waits: the daemon sees a CANCEL for the id. */
    usleep(20000);
    uint32_t len, cid;
    assert_int_equal(elm_session_cancel(s), 0);
    assert_int_equal(daemon_pop(f, buf, sizeof buf, &len), ELM_REC_CANCEL);
    assert_int_equal(elm_rec_cancel_decode(buf, len, &cid), 0);
    assert_int_equal(cid, id);
    d = (struct elm_rec_done){.req_id = id, .reason = ELM_DONE_CANCEL};
    elm_rec_done_push(&cur(f)->evt, &d);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, 0);
    assert_string_equal(j.got.text, "x");
    assert_int_equal(j.got.reason, ELM_FINISH_CANCEL);

    /* An ERROR ends the request with its code and message. */
    r.flags = 0;
    assert_int_equal(elm_session_submit(s, &r), 0);
    id = daemon_take_prompt(f, &m, buf);
    elm_rec_error_push(&cur(f)->evt, id, ELM_ECONTEXT, "the prompt has 900 tokens");
    assert_int_equal(elm_session_next(s, &ev, 1000), 0);
    assert_int_equal(ev.type, ELM_EVENT_ERROR);
    assert_int_equal(ev.error, ELM_ECONTEXT);
    assert_string_equal(ev.message, "the prompt has 900 tokens");

    /* Invalid requests are refused before anything is sent. */
    r.top_p = 2;
    assert_int_equal(elm_session_submit(s, &r), -EINVAL);
    r.top_p = 0.9f;
    r.stop[0] = "";
    assert_int_equal(elm_session_submit(s, &r), -EINVAL);
    r.n_stop = 0;
    r.temp = -1;
    assert_int_equal(elm_session_submit(s, &r), -EINVAL);
    elm_session_close(&s);
    assert_null(s);
    elm_session_close(&s);
    assert_int_equal(atomic_load(&f->n_close), 1);
    fake_stop(f);
}

/* The kinds of lies a daemon can tell on the event ring. */
enum lie { LIE_TYPE, LIE_TOKEN_LEN, LIE_DONE_ID, LIE_ERROR_CODE, LIE_HUGE, LIE_HEAD, LIE_COUNT };

static void tell_lie(struct fake *f, enum lie lie, uint32_t id)
{
    static unsigned char big[3000];
    struct elm_rec_token t = {.id = 5, .piece_len = 200}; /* but only 3 bytes follow */
    unsigned char tok[sizeof t + 3];
    memcpy(tok, &t, sizeof t);
    struct elm_rec_done d = {.req_id = id + 1, .reason = ELM_DONE_EOS};
    struct elm_rec_error e = {.req_id = id, .code = 5};
    switch (lie) {
    case LIE_TYPE:
        elm_ring_push(&cur(f)->evt, 99, "x", 1);
        break;
    case LIE_TOKEN_LEN:
        elm_ring_push(&cur(f)->evt, ELM_REC_TOKEN, tok, sizeof tok);
        break;
    case LIE_DONE_ID:
        elm_rec_done_push(&cur(f)->evt, &d);
        break;
    case LIE_ERROR_CODE:
        elm_ring_push(&cur(f)->evt, ELM_REC_ERROR, &e, sizeof e);
        break;
    case LIE_HUGE:
        elm_ring_push(&cur(f)->evt, ELM_REC_TOKEN, big, sizeof big);
        break;
    case LIE_HEAD: /* a head that is not 8-aligned and far past anything written */
        atomic_store(&cur(f)->evt.hdr->head, 0x7fff0003u);
        atomic_fetch_add(&cur(f)->evt.hdr->data_seq, 1);
        break;
    default:
        break;
    }
}

static void test_hostile_events(void **state)
{
    struct fake *f = fake_start(HELLO_OK, OPEN_OK);
    elm_client *c;
    static unsigned char buf[4096];
    assert_int_equal(elm_client_connect(f->dir, &c), 0);
    for (int lie = 0; lie < LIE_COUNT; lie++) {
        elm_session *s;
        struct elm_prompt_msg m;
        struct elm_request r;
        struct elm_event ev;
        elm_request_init(&r);
        assert_int_equal(elm_session_open(c, &s), 0);
        assert_int_equal(elm_session_submit(s, &r), 0);
        uint32_t id = daemon_take_prompt(f, &m, buf);
        tell_lie(f, (enum lie)lie, id);
        int want = lie == LIE_HEAD ? ELM_ERING : ELM_EPROTO;
        assert_int_equal(elm_session_next(s, &ev, 2000), want);
        /* Sticky: the session stays unusable. */
        assert_int_equal(elm_session_next(s, &ev, 0), want);
        assert_int_equal(elm_session_submit(s, &r), want);
        elm_session_close(&s);
    }
    elm_client_close(&c);
    fake_stop(f);
}

static void test_daemon_death_mid_stream(void **state)
{
    struct fake *f = fake_start(HELLO_OK, OPEN_OK);
    pid_t child = fork();
    assert_true(child >= 0); /* never kill(-1) below */
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves nothing behind */
        pause();
        _exit(0);
    }
    f->pid = child; /* the "daemon" process the client will watch */
    elm_client *c;
    elm_session *s;
    static unsigned char buf[4096];
    struct elm_prompt_msg m;
    struct elm_request r;
    struct elm_event ev;
    elm_request_init(&r);
    assert_int_equal(elm_client_connect(f->dir, &c), 0);
    assert_int_equal(elm_session_open(c, &s), 0);
    assert_int_equal(elm_session_submit(s, &r), 0);
    daemon_take_prompt(f, &m, buf);
    elm_rec_token_push(&cur(f)->evt, 7, "y", 1);
    assert_int_equal(elm_session_next(s, &ev, -1), 0);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    /* The death is noticed (ELM_EDAEMON), not waited out: with a bound far past anything but a
     * hang, a client that only timed out would return -ETIMEDOUT. */
    assert_int_equal(elm_session_next(s, &ev, 60000), ELM_EDAEMON);
    /* Control calls to a dead daemon fail too (the daemon's pid is gone), and closing returns;
     * main()'s alarm catches a hang. */
    struct elm_daemon_status st;
    assert_int_equal(elm_client_status(c, &st), ELM_EDAEMON);
    elm_session_close(&s);
    elm_client_close(&c);
    assert_null(s);
    assert_null(c);
    fake_stop(f);
}

static void test_other_user_refused(void **state)
{
    if (geteuid() != 0) {
        print_message("SKIP: needs root to become another user\n");
        skip();
    }
    struct fake *f = fake_start(HELLO_OK, OPEN_OK);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        elm_client *c = NULL;
        if (setresgid(54321, 54321, 54321) || setresuid(54321, 54321, 54321))
            _exit(3);
        _exit(elm_client_connect(f->dir, &c) == -EACCES && !c ? 0 : 1);
    }
    int st;
    waitpid(child, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    fake_stop(f);
}

/* ---------------------------------------------------------------------------------------------
 * The wire under the codec (libclient/zmtp.c): a peer that speaks ZMTP badly
 */

/* A raw listener that answers the first connection with script (len bytes), then holds it open
 * until the client closes it; with hangup, closes it right after accepting. */
struct raw_peer {
    int lfd;
    const unsigned char *script;
    size_t len;
    bool hangup;
};

static void *raw_main(void *arg)
{
    struct raw_peer *p = arg;
    int c = accept(p->lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    unsigned char buf[512];
    if (!p->hangup && write(c, p->script, p->len) == (ssize_t)p->len)
        while (read(c, buf, sizeof buf) > 0)
            ;
    close(c);
    return NULL;
}

/* elm_client_connect's result against such a peer. */
static int raw_connect(const unsigned char *script, size_t len, bool hangup)
{
    char dir[] = "/tmp/elm-raw-XXXXXX", path[100];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/control", dir);
    struct raw_peer p = {
        .lfd = socket(AF_UNIX, SOCK_STREAM, 0), .script = script, .len = len, .hangup = hangup};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(p.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(p.lfd, 4), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, raw_main, &p), 0);
    elm_client *c = NULL;
    int rc = elm_client_connect(dir, &c);
    if (rc == 0)
        elm_client_close(&c);
    pthread_join(th, NULL);
    close(p.lfd);
    unlink(path);
    rmdir(dir);
    return rc;
}

/* ZMTP 3 greeting (NULL mechanism) + READY from a ROUTER, then what follows. */
static size_t greeting(unsigned char *out, const char *type, const unsigned char *tail, size_t n)
{
    unsigned char g[64] = {0xFF, [9] = 0x7F, [10] = 3, [11] = 1, [12] = 'N', 'U', 'L', 'L'};
    size_t tl = strlen(type), k = 0;
    memcpy(out, g, sizeof g);
    k = sizeof g;
    out[k++] = 0x04;
    out[k++] = (unsigned char)(1 + 5 + 1 + 11 + 4 + tl);
    memcpy(out + k, "\5READY\13Socket-Type\0\0\0", 21);
    k += 21;
    out[k++] = (unsigned char)tl;
    memcpy(out + k, type, tl);
    k += tl;
    if (n) /* tail may be NULL when there is none: memcpy's arguments must not be */
        memcpy(out + k, tail, n);
    return k + n;
}

/* Every violation ends the connection with the documented code, never a hang or a read past
 * what the peer sent (ASan). */
static void test_hostile_wire(void **state)
{
    unsigned char s[512], junk[64];
    /* First the script done right, so each case below fails for its own reason: HELLO's reply
     * (the client's first request has id 1) in one short frame. */
    struct elm_proto_buf b;
    struct elm_proto_msg req = {
        .hdr = {.version = ELM_PROTO_VERSION_MAX, .cmd = ELM_CMD_HELLO, .req_id = 1}};
    const void *frame;
    size_t flen;
    unsigned char ok[2 + 255];
    elm_proto_buf_init(&b);
    elm_proto_begin_reply(&b, &req, 0, NULL);
    elm_proto_put_u64(&b, ELM_TAG_VERSION, ELM_PROTO_VERSION_MAX);
    assert_int_equal(elm_proto_finish(&b, &frame, &flen), 0);
    assert_true(flen <= 255);
    ok[0] = 0;
    ok[1] = (unsigned char)flen;
    memcpy(ok + 2, frame, flen);
    elm_proto_buf_fini(&b);
    assert_int_equal(raw_connect(s, greeting(s, "ROUTER", ok, 2 + flen), false), 0);

    memset(junk, 'x', sizeof junk); /* e.g. an HTTP server on the path: not a ZMTP greeting */
    assert_int_equal(raw_connect(junk, sizeof junk, false), ELM_EPROTO);
    assert_int_equal(raw_connect(NULL, 0, true), ELM_EDAEMON); /* accepts, then hangs up */
    /* a socket type a DEALER cannot talk to */
    assert_int_equal(raw_connect(s, greeting(s, "PUB", NULL, 0), false), ELM_EPROTO);
    /* HELLO's reply: in two parts; longer than any frame (2^40 bytes announced); reserved
     * flag bits set */
    static const unsigned char more[] = {0x01, 2, 'a', 'b', 0x00, 0};
    static const unsigned char huge[] = {0x02, 0, 0, 1, 0, 0, 0, 0, 0};
    static const unsigned char flags[] = {0x80, 2, 'a', 'b'};
    assert_int_equal(raw_connect(s, greeting(s, "ROUTER", more, sizeof more), false), ELM_EPROTO);
    assert_int_equal(raw_connect(s, greeting(s, "ROUTER", huge, sizeof huge), false), ELM_EPROTO);
    assert_int_equal(raw_connect(s, greeting(s, "ROUTER", flags, sizeof flags), false), ELM_EPROTO);
    /* a well-framed reply that is not one: the codec's turn (ipc/proto.c) */
    static const unsigned char bad[] = {0x00, 4, 'E', 'L', 'M', 9};
    assert_int_equal(raw_connect(s, greeting(s, "ROUTER", bad, sizeof bad), false), ELM_EPROTO);
}

/* ---------------------------------------------------------------------------------------------
 * The shared library's surface
 */

/* The source tree, from the build tree's cache. */
static bool source_dir(char *buf, size_t cap)
{
    char path[4096], line[4096];
    snprintf(path, sizeof path, "%s/CMakeCache.txt", elm_test_build_dir());
    FILE *f = fopen(path, "r");
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f))
        if (!strncmp(line, "CMAKE_HOME_DIRECTORY:INTERNAL=", 30)) {
            line[strcspn(line, "\n")] = 0;
            snprintf(buf, cap, "%s", line + 30);
            found = true;
        }
    if (f)
        fclose(f);
    return found;
}

/* libelmclient.so exports exactly the functions its public headers name (elm.map lists them
 * one by one, so a new function must be added there, and internals never leak out). */
static void test_exports(void **state)
{
    char src[4096], path[8192], line[512], cmd[8300];
    snprintf(path, sizeof path, "%s/libclient/libelmclient.so", elm_test_build_dir());
    if (!source_dir(src, sizeof src) || access(path, R_OK) != 0) {
        print_message("SKIP: no shared library or source tree to compare\n");
        skip();
    }
    /* Space-separated, with a space first, so " name " matches whole names only. */
    static char exported[8192] = " ", declared[8192] = " ";
    snprintf(cmd, sizeof cmd, "nm -D --defined-only --format=posix %s", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    while (fgets(line, sizeof line, p)) {
        char name[256], type;
        if (sscanf(line, "%255[^@ ]%*s %c", name, &type) == 2 && type == 'T')
            strcat(strcat(exported, name), " ");
    }
    pclose(p);
    regex_t re;
    assert_int_equal(regcomp(&re, "elm_[a-z0-9_]+\\(", REG_EXTENDED), 0);
    /* version.h is generated into the build tree (CMake configure_file). */
    const char *headers[] = {"client.h", "status.h", "version.h"};
    const char *dirs[] = {src, src, elm_test_build_dir()};
    int n_declared = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/include/elm/%s", dirs[i], headers[i]);
        char *text = elm_test_read_file(path, NULL);
        assert_non_null(text);
        regmatch_t m;
        for (const char *t = text; regexec(&re, t, 1, &m, 0) == 0; t += m.rm_eo) {
            char name[256];
            snprintf(name, sizeof name, " %.*s ", (int)(m.rm_eo - m.rm_so - 1), t + m.rm_so);
            if (strstr(declared, name))
                continue;
            strcat(declared, name + 1);
            n_declared++;
            if (!strstr(exported, name))
                fail_msg("%s is declared in elm/%s but not exported", name, headers[i]);
        }
        free(text);
    }
    regfree(&re);
    for (char *e = strtok(exported, " "); e; e = strtok(NULL, " ")) {
        snprintf(line, sizeof line, " %s ", e);
        if (!strstr(declared, line))
            fail_msg("libelmclient.so exports %s, which no public header declares", e);
    }
    print_message("%d public functions, all exported, nothing else\n", n_declared);
}

/* Restores one environment variable to a saved value (NULL: unset). */
static void env_restore(const char *name, const char *saved)
{
    if (saved)
        setenv(name, saved, 1);
    else
        unsetenv(name);
}

/* Where a client looks: $ELM_RUNTIME_DIR, else exactly where elmd puts itself (one rule,
 * ipc/endpoint.h, for both). */
static void test_default_runtime_dir(void **state)
{
    char *env = getenv("ELM_RUNTIME_DIR"), *xdg = getenv("XDG_RUNTIME_DIR");
    env = env ? strdup(env) : NULL;
    xdg = xdg ? strdup(xdg) : NULL;
    char a[PATH_MAX], b[PATH_MAX];

    setenv("ELM_RUNTIME_DIR", "/some/where", 1);
    assert_int_equal(elm_client_default_runtime_dir(a, sizeof a), 0);
    assert_string_equal(a, "/some/where");
    assert_int_equal(elm_client_default_runtime_dir(a, 5), -ENAMETOOLONG);

    unsetenv("ELM_RUNTIME_DIR");
    setenv("XDG_RUNTIME_DIR", "/xdg", 1);
    assert_int_equal(elm_client_default_runtime_dir(a, sizeof a), 0);
    assert_string_equal(a, "/xdg/elm");
    assert_int_equal(elm_rundir_default(b, sizeof b), 0);
    assert_string_equal(a, b);

    setenv("XDG_RUNTIME_DIR", "relative", 1); /* not absolute: ignored */
    assert_int_equal(elm_client_default_runtime_dir(a, sizeof a), 0);
    assert_int_equal(elm_rundir_default(b, sizeof b), 0);
    assert_string_equal(a, b);
    char run[64], tmp[64];
    snprintf(run, sizeof run, "/run/user/%u/elm", (unsigned)geteuid());
    snprintf(tmp, sizeof tmp, "/tmp/elm-%u", (unsigned)geteuid());
    assert_true(!strcmp(a, run) || !strcmp(a, tmp));
    assert_int_equal(elm_client_default_runtime_dir(a, 5), -ENAMETOOLONG);

    env_restore("ELM_RUNTIME_DIR", env);
    env_restore("XDG_RUNTIME_DIR", xdg);
    free(env);
    free(xdg);
}

int main(void)
{
    alarm(120); /* the whole file; each wait inside has its own, shorter bound */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_daemon_fails_fast),
        cmocka_unit_test(test_version_negotiation),
        cmocka_unit_test(test_control_calls),
        cmocka_unit_test(test_bad_announcement),
        cmocka_unit_test(test_stream),
        cmocka_unit_test(test_hostile_events),
        cmocka_unit_test(test_daemon_death_mid_stream),
        cmocka_unit_test(test_other_user_refused),
        cmocka_unit_test(test_hostile_wire),
        cmocka_unit_test(test_exports),
        cmocka_unit_test(test_default_runtime_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
