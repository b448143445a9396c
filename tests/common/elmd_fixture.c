/* elmd_fixture.c — see elmd_fixture.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/region.h"
#include "ipc/schema.h"
#include "tests/common/elmd_fixture.h"

int64_t td_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void td_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

int td_time_scale(void)
{
    const char *e = getenv("ELM_TEST_TIME_SCALE");
    const int v = e ? atoi(e) : 1;
    return v >= 1 && v <= 100 ? v : 1;
}

int64_t td_deadline(int timeout_ms)
{
    return td_now_ms() + (int64_t)timeout_ms * td_time_scale();
}

void td_alarm(unsigned seconds)
{
    alarm(seconds * (unsigned)td_time_scale());
}

/* ---- the daemon process --------------------------------------------------------------------- */

const char *td_elmd_path(void)
{
    static char p[4096];
    snprintf(p, sizeof p, "%s/daemon/elmd", elm_test_build_dir());
    return p;
}

int td_mkbase(struct td *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->base, sizeof t->base, "/tmp/elmd-test-XXXXXX");
    if (!mkdtemp(t->base))
        return -errno;
    snprintf(t->dir, sizeof t->dir, "%s/run", t->base);
    snprintf(t->log, sizeof t->log, "%s/elmd.log", t->base);
    return 0;
}

pid_t td_exec(const struct td *t, const char *const *args)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(t->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    /* under user-mode emulation (scripts/test-arm64.sh) the emulator runs elmd: the host
     * kernel cannot exec a foreign binary without binfmt_misc */
    const char *emu = getenv("ELM_TEST_EMULATOR");
    const char *argv[33] = {0};
    int a = 0;
    if (emu && *emu)
        argv[a++] = emu;
    argv[a++] = td_elmd_path();
    for (int i = 0; args[i] && i < 30; i++)
        argv[a++] = args[i];
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

int td_wait(pid_t pid, int timeout_ms)
{
    if (pid <= 0) /* a failed fork: waitpid(-1) would reap any child */
        return -1;
    int64_t end = td_deadline(timeout_ms);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0 || td_now_ms() > end)
            return -1;
        td_sleep_ms(10);
    }
}

void td_dump_log(const struct td *t)
{
    /* fputs, not print_message: cmocka formats into a small fixed buffer */
    char *s = elm_test_read_file(t->log, NULL);
    fflush(stdout);
    fprintf(stderr, "---- elmd log (%s) ----\n", t->log);
    if (s)
        fputs(s, stderr);
    fputs("---- end ----\n", stderr);
    free(s);
}

int td_cleanup(struct td *t)
{
    int rc = 0;
    if (t->pid > 0) {
        kill(t->pid, SIGTERM);
        if (td_wait(t->pid, 15000) == -1) {
            kill(t->pid, SIGKILL);
            td_wait(t->pid, 5000);
        }
        t->pid = 0;
    }
    char *log = t->log[0] ? elm_test_read_file(t->log, NULL) : NULL;
    if (log && (strstr(log, "ERROR: AddressSanitizer") || strstr(log, "ERROR: LeakSanitizer") ||
                strstr(log, "runtime error:"))) {
        fprintf(stderr, "elmd reported a sanitizer error:\n");
        td_dump_log(t);
        rc = -1;
    }
    free(log);
    if (t->base[0]) {
        char cmd[160];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->base);
        if (system(cmd) != 0)
            print_message("cannot remove %s\n", t->base);
    }
    return rc;
}

/* ---- a raw control connection --------------------------------------------------------------- */

int tc_open_path(struct tc *c, const char *dir)
{
    memset(c, 0, sizeof *c);
    char ep[256];
    snprintf(ep, sizeof ep, "ipc://%s/control", dir);
    int zero = 0;
    c->ctx = zmq_ctx_new();
    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    elm_proto_buf_init(&c->out);
    return zmq_connect(c->sock, ep) < 0 ? -zmq_errno() : 0;
}

void tc_close(struct tc *c)
{
    if (c->sock)
        zmq_close(c->sock);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    elm_proto_buf_fini(&c->out);
    memset(c, 0, sizeof *c);
}

int tc_send_raw(struct tc *c, const void *p, size_t n)
{
    return zmq_send(c->sock, p, n, 0) < 0 ? -zmq_errno() : 0;
}

int tc_recv_raw(struct tc *c, int timeout_ms)
{
    zmq_pollitem_t it = {.socket = c->sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return -ETIMEDOUT;
    int n = zmq_recv(c->sock, c->in, sizeof c->in, ZMQ_DONTWAIT);
    c->in_len = n;
    return n < 0 ? -zmq_errno() : n > (int)sizeof c->in ? -EMSGSIZE : n;
}

struct elm_proto_buf *tc_begin(struct tc *c, uint16_t cmd)
{
    elm_proto_begin(&c->out, ELM_PROTO_VERSION_MAX, cmd, 0, ++c->next_id);
    return &c->out;
}

int tc_call(struct tc *c, int timeout_ms)
{
    const void *f;
    size_t n;
    int rc = elm_proto_finish(&c->out, &f, &n);
    if (rc < 0)
        return rc;
    uint32_t id = c->next_id;
    if ((rc = tc_send_raw(c, f, n)) < 0)
        return rc;
    int64_t end = td_deadline(timeout_ms);
    for (;;) {
        int left = (int)(end - td_now_ms());
        int len = tc_recv_raw(c, left > 0 ? left : 0);
        if (len < 0)
            return len;
        if (elm_proto_decode(c->in, (size_t)len, &c->rep, NULL) < 0)
            return ELM_EPROTO;
        if (c->rep.hdr.req_id == id)
            return c->rep.status;
    }
}

int tc_simple(struct tc *c, uint16_t cmd)
{
    tc_begin(c, cmd);
    return tc_call(c, 10000);
}

uint64_t tc_u64(const struct tc *c, uint16_t tag)
{
    uint64_t v = UINT64_MAX;
    elm_proto_get_u64(&c->rep.body, tag, &v);
    return v;
}

double tc_f64(const struct tc *c, uint16_t tag)
{
    double v = -1;
    elm_proto_get_f64(&c->rep.body, tag, &v);
    return v;
}

const char *tc_str(const struct tc *c, uint16_t tag)
{
    static char buf[4][ELM_PROTO_MAX_STR + 1];
    static unsigned next;
    char *b = buf[next++ % 4];
    if (elm_proto_copy_str(&c->rep.body, tag, b, ELM_PROTO_MAX_STR + 1) < 0)
        return "";
    return b;
}

/* ---- starting and stopping ------------------------------------------------------------------ */

int td_start(struct td *t, const char *model, const char *const *extra)
{
    int rc = t->base[0] ? 0 : td_mkbase(t);
    if (rc)
        return rc;
    const char *args[32] = {"--foreground", "--runtime-dir", t->dir, "--log-level", "debug"};
    int n = 5;
    if (model) {
        args[n++] = "--model";
        args[n++] = model;
    }
    for (int i = 0; extra && extra[i] && n < 30; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    t->pid = td_exec(t, args);
    int64_t end = td_deadline(30000);
    while (td_now_ms() < end) {
        if (waitpid(t->pid, NULL, WNOHANG) == t->pid) {
            t->pid = 0;
            return -ECHILD;
        }
        char sock[200];
        snprintf(sock, sizeof sock, "%s/control", t->dir);
        if (access(sock, F_OK) == 0) {
            struct tc c;
            tc_open_path(&c, t->dir);
            rc = tc_simple(&c, ELM_CMD_STATUS);
            bool ok = rc == 0 && (!model || tc_str(&c, ELM_TAG_PATH)[0]);
            tc_close(&c);
            if (ok)
                return 0;
        }
        td_sleep_ms(20);
    }
    return -ETIMEDOUT;
}

int td_stop(struct td *t, int sig, int timeout_ms)
{
    if (t->pid <= 0)
        return -1;
    kill(t->pid, sig);
    int st = td_wait(t->pid, timeout_ms);
    if (st != -1)
        t->pid = 0;
    return st;
}

/* ---- sessions through shared memory --------------------------------------------------------- */

int tc_fetch_region(struct tc *c, int *fd)
{
    char path[ELM_PROTO_MAX_STR + 1];
    const void *token;
    uint32_t len;
    if (elm_proto_copy_str(&c->rep.body, ELM_TAG_REGION_SOCKET, path, sizeof path) ||
        elm_proto_get_bytes(&c->rep.body, ELM_TAG_REGION_TOKEN, &token, &len) ||
        len != ELM_REGION_TOKEN_LEN)
        return ELM_EPROTO;
    return elm_region_fetch(path, geteuid(), tc_u64(c, ELM_TAG_SESSION_ID), token, 10000, fd);
}

int ts_open_evt(struct tc *c, struct ts *s, long pid, uint32_t n_ctx, uint32_t evt_ring)
{
    memset(s, 0, sizeof *s);
    struct elm_proto_buf *b = tc_begin(c, ELM_CMD_OPEN_SESSION);
    if (pid)
        elm_proto_put_u64(b, ELM_TAG_PID, (uint64_t)pid);
    if (n_ctx)
        elm_proto_put_u64(b, ELM_TAG_N_CTX, n_ctx);
    if (evt_ring)
        elm_proto_put_u64(b, ELM_TAG_EVT_RING_SIZE, evt_ring);
    elm_proto_put_str(b, ELM_TAG_CLIENT_NAME, "elmd-test");
    int rc = tc_call(c, 10000);
    if (rc)
        return rc;
    int fd;
    s->id = tc_u64(c, ELM_TAG_SESSION_ID);
    s->n_ctx = (uint32_t)tc_u64(c, ELM_TAG_N_CTX);
    uint32_t rq = (uint32_t)tc_u64(c, ELM_TAG_REQ_RING_SIZE),
             ev = (uint32_t)tc_u64(c, ELM_TAG_EVT_RING_SIZE);
    if ((rc = tc_fetch_region(c, &fd)) ||
        (rc = elm_shm_adopt(&s->shm, fd, (size_t)tc_u64(c, ELM_TAG_SHM_SIZE))))
        return rc;
    return elm_session_shm_attach(s->shm.base, s->shm.size, rq, ev, ELM_SESSION_CLIENT, &s->r);
}

int ts_open(struct tc *c, struct ts *s, long pid, uint32_t n_ctx)
{
    return ts_open_evt(c, s, pid, n_ctx, 0);
}

int ts_close(struct tc *c, struct ts *s)
{
    int rc = 0;
    if (c) {
        elm_proto_put_u64(tc_begin(c, ELM_CMD_CLOSE_SESSION), ELM_TAG_SESSION_ID, s->id);
        rc = tc_call(c, 10000);
    }
    elm_shm_close(&s->shm);
    return rc;
}

int ts_prompt_flags(struct ts *s, uint32_t req_id, const char *text, uint32_t n_predict, float temp,
                    uint64_t seed, uint32_t flags)
{
    struct elm_prompt_msg m = {.hdr = {.req_id = req_id,
                                       .flags = flags,
                                       .n_predict = n_predict,
                                       .top_k = 40,
                                       .temp = temp,
                                       .top_p = 0.95f,
                                       .min_p = 0.05f,
                                       .repeat_penalty = 1.0f,
                                       .repeat_last_n = 64,
                                       .seed = seed,
                                       .prompt_len = (uint32_t)strlen(text)},
                               .text = text};
    return elm_rec_prompt_push(&s->r.req, &m);
}

int ts_prompt(struct ts *s, uint32_t req_id, const char *text, uint32_t n_predict, float temp,
              uint64_t seed)
{
    return ts_prompt_flags(s, req_id, text, n_predict, temp, seed, ELM_PROMPT_F_ADD_BOS);
}

int ts_next(struct ts *s, struct ts_result *res, int timeout_ms, uint32_t *start_pos)
{
    static unsigned char buf[2048];
    int64_t end = td_deadline(timeout_ms);
    for (;;) {
        uint32_t pos = s->r.evt.pos;
        struct elm_ring_rec rec;
        int rc = elm_ring_pop(&s->r.evt, &rec, buf, sizeof buf);
        if (rc == -EAGAIN) {
            int left = (int)(end - td_now_ms());
            if (left <= 0)
                return -ETIMEDOUT;
            rc = elm_ring_wait_data(&s->r.evt, left);
            if (rc < 0 && rc != -EINTR && rc != -ETIMEDOUT)
                return rc;
            continue;
        }
        if (rc < 0)
            return rc;
        if (start_pos)
            *start_pos = pos;
        if (rec.type == ELM_REC_TOKEN) {
            struct elm_token_msg t;
            if ((rc = elm_rec_token_decode(buf, rec.len, &t)))
                return rc;
            if (res->n_ids < 2048)
                res->ids[res->n_ids++] = t.id;
            if (res->text_len + t.piece_len < sizeof res->text) {
                memcpy(res->text + res->text_len, t.piece, t.piece_len);
                res->text_len += t.piece_len;
            }
            return 0;
        }
        if (rec.type == ELM_REC_DONE) {
            res->done = true;
            rc = elm_rec_done_decode(buf, rec.len, &res->dn);
            res->req_id = res->dn.req_id;
            return rc ? rc : 1;
        }
        if (rec.type == ELM_REC_ERROR) {
            struct elm_error_msg e;
            if ((rc = elm_rec_error_decode(buf, rec.len, &e)))
                return rc;
            res->error = true;
            res->err_code = e.code;
            res->req_id = e.req_id;
            snprintf(res->err_msg, sizeof res->err_msg, "%.*s", (int)e.msg_len, e.msg);
            return 1;
        }
        return ELM_EPROTO;
    }
}

int ts_collect(struct ts *s, struct ts_result *res, int timeout_ms)
{
    memset(res, 0, sizeof *res);
    int64_t end = td_deadline(timeout_ms);
    for (;;) {
        int left = (int)(end - td_now_ms());
        int rc = ts_next(s, res, left > 0 ? left : 0, NULL);
        if (rc == 1)
            return 0;
        if (rc == -ETIMEDOUT && getenv("ELMD_TEST_HOLD")) { /* debugging: attach to the daemon */
            fprintf(stderr, "HOLD\n");
            sleep(120);
        }
        if (rc)
            return rc;
    }
}

/* ---- the reference: the engine in this process ------------------------------------------- */

void local_greedy_ids(const struct elm_model *m, const int32_t *ids, int32_t n_ids, int n,
                      struct ts_result *out)
{
    struct elm_seq *s;
    struct elm_work *w;
    assert_int_equal(elm_seq_create(m, 2048, ELM_TYPE_F16, &s), 0);
    assert_int_equal(elm_work_create(m, 64, 2048, &w), 0);
    struct elm_gen_params gp;
    elm_gen_params_default(&gp);
    gp.sampling.temp = 0;
    gp.n_predict = n;
    assert_int_equal(elm_seq_start(s, ids, n_ids, &gp), 0);
    memset(out, 0, sizeof *out);
    out->done = true;
    struct elm_batch_item items[64];
    for (;;) {
        int k = elm_seq_plan(s, 64, items);
        if (!k)
            break;
        int rc = elm_model_forward(m, w, items, k);
        struct elm_seq_out o;
        elm_seq_advance(s, k, rc, &o);
        if (o.token >= 0)
            out->ids[out->n_ids++] = o.token;
        memcpy(out->text + out->text_len, o.text, o.text_len);
        out->text_len += o.text_len;
        if (o.done)
            break;
    }
    elm_work_destroy(&w);
    elm_seq_destroy(&s);
}

struct elm_model *local_model(const char *model)
{
    char err[256];
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *m;
    if (elm_model_load(model, &mp, &m, err, sizeof err))
        fail_msg("load %s: %s", model, err);
    return m;
}

void local_greedy(const char *model, const char *prompt, int n, struct ts_result *out)
{
    struct elm_model *m = local_model(model);
    int32_t *ids, n_ids;
    assert_int_equal(elm_prompt_tokenize(m, prompt, strlen(prompt), false, &ids, &n_ids), 0);
    local_greedy_ids(m, ids, n_ids, n, out);
    free(ids);
    elm_model_destroy(&m);
}

void assert_same(const struct ts_result *got, const struct ts_result *want)
{
    assert_true(got->done);
    assert_int_equal(got->n_ids, want->n_ids);
    assert_memory_equal(got->ids, want->ids, (size_t)want->n_ids * sizeof *want->ids);
    assert_int_equal(got->text_len, want->text_len);
    assert_memory_equal(got->text, want->text, want->text_len);
}

/* ---- the daemon tests' fixture: a daemon on TD_MODEL and a control connection -------------- */

/* Starts the daemon of f on TD_MODEL with extra arguments and connects to it. */
static int fx_launch(struct fx *f, const char *const *extra)
{
    if (td_start(&f->t, elm_test_model_path(TD_MODEL), extra)) {
        td_dump_log(&f->t);
        return -1;
    }
    tc_open_path(&f->c, f->t.dir);
    return 0;
}

int fx_start(void **state, const char *const *extra)
{
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    if (!elm_test_model_path(TD_MODEL)) {
        print_message("SKIP: model %s/%s not found (set ELM_MODELS_DIR)\n", elm_test_models_dir(),
                      TD_MODEL);
        return 0;
    }
    return fx_launch(f, extra);
}

int fx_start_conf(void **state, const char *conf_text)
{
    if (!elm_test_model_path(TD_MODEL))
        return fx_start(state, NULL); /* its skip */
    struct fx *f = calloc(1, sizeof *f);
    *state = f;
    char conf[200];
    if (td_mkbase(&f->t)) /* the directory td_start uses, made first to hold the file */
        return -1;
    snprintf(conf, sizeof conf, "%s/elmd.conf", f->t.base);
    FILE *fp = fopen(conf, "w");
    if (!fp || fputs(conf_text, fp) < 0 || fclose(fp))
        return -1;
    const char *extra[] = {"--config", conf, NULL};
    return fx_launch(f, extra);
}

int fx_teardown(void **state)
{
    struct fx *f = *state;
    tc_close(&f->c);
    if (getenv("ELMD_TEST_LOG"))
        td_dump_log(&f->t);
    int rc = td_cleanup(&f->t);
    free(f);
    return rc;
}

uint64_t stat_u64(struct tc *c, uint16_t tag)
{
    assert_int_equal(tc_simple(c, ELM_CMD_STATS), 0);
    return tc_u64(c, tag);
}
