/* elmd_fixture.h — helpers of the elmd integration tests (tests/integration/test_elmd_*.c): start
 * a real elmd (fork/exec of build/daemon/elmd --foreground in a fresh mkdtemp directory), talk to
 * it with raw ZeroMQ frames built by ipc/proto.h, and drive sessions through their shared memory
 * with ipc/session_shm.h — the daemon's own wire, without the client library in between.
 *
 * Everything waits with a deadline: a daemon that hangs makes a test fail, not the suite stall.
 * The daemon child gets PR_SET_PDEATHSIG, so a crashed test never leaves one behind. The
 * deadlines only catch hangs; no test asserts how long anything took.
 */
#ifndef ELM_TEST_ELMD_FIXTURE_H
#define ELM_TEST_ELMD_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "elm/status.h"
#include "engine/seq.h"
#include "ipc/proto.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
#include "tests/common/elm_test.h"

#define TD_MODEL "stories260K.gguf"

/* CLOCK_MONOTONIC in milliseconds: for wait bounds, never for assertions. */
int64_t td_now_ms(void);

void td_sleep_ms(int ms);

/* Hang bounds under an emulator or a sanitizer: ELM_TEST_TIME_SCALE (an integer >= 1, default
 * 1; the arm64 pass sets it, scripts/test-arm64.sh, and a sanitized build's ctest, tests/
 * CMakeLists.txt) multiplies every wait bound of this fixture and the tests' alarms, because
 * qemu-user or ASan runs the daemon and the test's own reference engine several times slower
 * than the bounds were chosen for. Bounds only: no test asserts a duration. */
int td_time_scale(void);
/* td_now_ms() + timeout_ms, scaled. */
int64_t td_deadline(int timeout_ms);
/* alarm(seconds, scaled). */
void td_alarm(unsigned seconds);

/* ---- the daemon process --------------------------------------------------------------------- */

struct td {
    pid_t pid;
    char base[64]; /* mkdtemp directory, removed by td_cleanup */
    char dir[128]; /* runtime dir: <base>/run */
    char log[128]; /* the daemon's stderr */
};

/* build/daemon/elmd (ELM_BUILD_DIR). Static buffer. */
const char *td_elmd_path(void);

/* Clears t and makes its fresh mkdtemp directory. Returns 0 or -errno. */
int td_mkbase(struct td *t);

/* Runs elmd with args (NULL-terminated, after argv[0]); its output goes to t->log. */
pid_t td_exec(const struct td *t, const char *const *args);

/* Waits up to timeout_ms for pid to exit. Returns its wait status, or -1 on timeout. */
int td_wait(pid_t pid, int timeout_ms);

/* Prints the daemon's log to stderr. */
void td_dump_log(const struct td *t);

/* Stops the daemon (SIGTERM: its exit path runs, and under ASan its leak check) and removes
 * the directory. Returns -1 when the daemon's log has a sanitizer report (the log is printed),
 * so a teardown can fail the test: the daemon's own errors are not the test's stderr. */
int td_cleanup(struct td *t);

/* ---- a raw control connection --------------------------------------------------------------- */

struct tc {
    void *ctx, *sock;
    uint32_t next_id;
    struct elm_proto_buf out;
    unsigned char in[ELM_PROTO_MAX_FRAME];
    int in_len;
    struct elm_proto_msg rep;
};

/* A DEALER socket connected to <dir>/control. Returns 0 or -errno. */
int tc_open_path(struct tc *c, const char *dir);

void tc_close(struct tc *c);

int tc_send_raw(struct tc *c, const void *p, size_t n);

/* Receives one frame into c->in; returns its length, or -ETIMEDOUT. */
int tc_recv_raw(struct tc *c, int timeout_ms);

struct elm_proto_buf *tc_begin(struct tc *c, uint16_t cmd);

/* Sends the request built in c->out and waits for its reply (decoded into c->rep). Returns the
 * reply's status, or a transport/decoding error. */
int tc_call(struct tc *c, int timeout_ms);

/* A request without fields; its reply's status. */
int tc_simple(struct tc *c, uint16_t cmd);

/* Fields of the last reply: UINT64_MAX / -1 when absent. */
uint64_t tc_u64(const struct tc *c, uint16_t tag);

double tc_f64(const struct tc *c, uint16_t tag);

/* A str field of the last reply ("" when absent), in one of 4 rotating static buffers. */
const char *tc_str(const struct tc *c, uint16_t tag);

/* ---- starting and stopping ------------------------------------------------------------------ */

/* Starts elmd --foreground --runtime-dir <dir> [--model model] extra... (in a new directory
 * unless td_mkbase made one already) and waits until its STATUS reports the model (or, without
 * one, until it answers). */
int td_start(struct td *t, const char *model, const char *const *extra);

/* Sends sig and waits for the exit; returns the wait status or -1. */
int td_stop(struct td *t, int sig, int timeout_ms);

/* ---- sessions through shared memory --------------------------------------------------------- */

struct ts {
    uint64_t id;
    uint32_t n_ctx;
    struct elm_shm shm;
    struct elm_session_rings r;
};

/* Fetches the region descriptor OPEN_SESSION's reply (the last one c received) announced, as
 * this process (ipc/region.h). Returns 0 with *fd, or the daemon's refusal / -errno. */
int tc_fetch_region(struct tc *c, int *fd);

/* Opens a session and maps its region; evt_ring: the event ring size to ask for (0: the
 * default). */
int ts_open_evt(struct tc *c, struct ts *s, long pid, uint32_t n_ctx, uint32_t evt_ring);

int ts_open(struct tc *c, struct ts *s, long pid, uint32_t n_ctx);

int ts_close(struct tc *c, struct ts *s);

/* Pushes a PROMPT with these flags (enum elm_prompt_flags); greedy when temp == 0. */
int ts_prompt_flags(struct ts *s, uint32_t req_id, const char *text, uint32_t n_predict, float temp,
                    uint64_t seed, uint32_t flags);

/* Pushes a PROMPT: greedy when temp == 0, BOS per the vocabulary. */
int ts_prompt(struct ts *s, uint32_t req_id, const char *text, uint32_t n_predict, float temp,
              uint64_t seed);

struct ts_result {
    int32_t ids[2048];
    int n_ids;
    char text[16384];
    size_t text_len;
    bool done, error;
    struct elm_rec_done dn;
    int err_code;
    char err_msg[256];
    uint32_t req_id;
};

/* Reads one event of s (waiting up to timeout_ms) into res; returns 1 when the request ended,
 * 0 when a token came, or an error. start_pos, when not NULL, gets the ring position the
 * record started at (the consumer's counter before the pop). */
int ts_next(struct ts *s, struct ts_result *res, int timeout_ms, uint32_t *start_pos);

/* Reads events until DONE or ERROR. Returns 0, -ETIMEDOUT, -EPIPE (session closed) or a
 * decoding error. */
int ts_collect(struct ts *s, struct ts_result *res, int timeout_ms);

/* ---- the reference: the engine in this process ------------------------------------------- */

/* Greedy continuation of the token sequence ids[0..n_ids) by n tokens from the engine in this
 * process, on a fresh sequence: what the daemon must produce for that sequence. */
void local_greedy_ids(const struct elm_model *m, const int32_t *ids, int32_t n_ids, int n,
                      struct ts_result *out);

struct elm_model *local_model(const char *model);

/* Greedy tokens of prompt from the engine in this process, as the daemon must produce them. */
void local_greedy(const char *model, const char *prompt, int n, struct ts_result *out);

void assert_same(const struct ts_result *got, const struct ts_result *want);

/* ---- the daemon tests' fixture: a daemon on TD_MODEL and a control connection -------------- */

struct fx {
    struct td t;
    struct tc c;
};

/* cmocka setup body: *state gets a fixture; without the model its daemon is not started (the
 * tests then skip with REQUIRE_DAEMON). extra: elmd options, NULL-terminated. */
int fx_start(void **state, const char *const *extra);

/* The same with a configuration file holding conf_text (elmd --config). */
int fx_start_conf(void **state, const char *conf_text);

/* cmocka teardown body: stops the daemon (see td_cleanup) and frees the fixture. */
int fx_teardown(void **state);

/* In a test of a fx_start fixture: skips, with the reason, when its daemon was not started. */
#define REQUIRE_DAEMON(f)                                                                          \
    do {                                                                                           \
        if (!(f)->t.pid) {                                                                         \
            print_message("SKIP: no elmd to test: model %s/%s not found\n", elm_test_models_dir(), \
                          TD_MODEL);                                                               \
            skip();                                                                                \
        }                                                                                          \
    } while (0)

/* One counter of STATS. */
uint64_t stat_u64(struct tc *c, uint16_t tag);

#endif
