/* elmd_main.c — elmd's start-up and exit: configuration, `-t`, daemonizing with a readiness pipe,
 * the runtime directory, the threads, and the orderly tear-down after a drain.
 *
 * Background mode forks twice (setsid in between, so the daemon is no session leader and can
 * never acquire a terminal), points stdin/stdout/stderr at /dev/null and logs to syslog. The
 * original process waits on a pipe and exits only when the daemon reports ready — the control
 * socket listening and the start-up model (if any) loaded — or with the daemon's error message
 * and status 1, so `elmd --model X && elmctl generate ...` works. Under systemd (Type=notify)
 * READY=1 goes to $NOTIFY_SOCKET as well.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/control.h"
#include "daemon/elmd.h"
#include "daemon/lifecycle.h"
#include "elm/status.h"
#include "ipc/endpoint.h"
#include "ipc/shm.h"

static int g_ready_fd = -1; /* write end of the readiness pipe, background mode only */

/* ---- readiness --------------------------------------------------------------------------------
 */

static void sd_notify_ready(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || (path[0] != '/' && path[0] != '@') ||
        strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = 0; /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    static const char msg[] = "READY=1";
    if (sendto(fd, msg, sizeof msg - 1, 0, (struct sockaddr *)&sa,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) < 0)
        elm_debug("sd_notify: %s", strerror(errno));
    close(fd);
}

/* Tells the waiting parent (if any) how start-up went: "K" or "E<message>". */
static void tell_parent(int rc, const char *msg)
{
    if (g_ready_fd < 0)
        return;
    char buf[700];
    int n = snprintf(buf, sizeof buf, "%c%s", rc ? 'E' : 'K', rc && msg ? msg : "");
    if (write(g_ready_fd, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1)) < 0)
        elm_debug("readiness pipe: %s", strerror(errno));
    close(g_ready_fd);
    g_ready_fd = -1;
}

static void on_ready(struct elmd *d, int rc, const char *msg)
{
    if (rc == 0) {
        elm_info("ready (pid %ld, %s)", (long)getpid(), d->rd.dir);
        sd_notify_ready();
    }
    tell_parent(rc, msg);
}

/* A start-up failure: log it, tell the parent, exit 1. */
static void __attribute__((noreturn, format(printf, 1, 2))) fatal(const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_ready_fd >= 0) { /* background: the log is syslog; the waiting parent prints it */
        elm_err("%s", msg);
        tell_parent(1, msg);
    } else {
        fprintf(stderr, "elmd: %s\n", msg);
    }
    exit(1);
}

/* Returns in the daemon; the original process exits with the daemon's start-up status. */
static void daemonize(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        fatal("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        fatal("fork: %s", strerror(errno));
    if (pid > 0) {
        close(p[1]);
        char buf[700];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 && (n = read(p[0], buf + got, sizeof buf - 1 - got)) != 0) {
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            got += (size_t)n;
        }
        buf[got] = 0;
        waitpid(pid, NULL, 0);
        if (got && buf[0] == 'K')
            _exit(0);
        fprintf(stderr, "elmd: %s\n",
                got > 1 ? buf + 1 : "the daemon exited during start-up (see the system log)");
        _exit(1);
    }
    close(p[0]);
    if (setsid() < 0)
        fatal("setsid: %s", strerror(errno));
    pid = fork();
    if (pid < 0)
        fatal("fork: %s", strerror(errno));
    if (pid > 0)
        _exit(0);
    g_ready_fd = p[1];
    if (chdir("/") < 0)
        fatal("chdir /: %s", strerror(errno));
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
        fatal("/dev/null: %s", strerror(errno));
    if (fd > 2)
        close(fd);
}

/* ---- -t -----------------------------------------------------------------------------------------
 */

static int test_config(const struct elmd_config *c)
{
    char dir[PATH_MAX];
    if (c->runtime_dir[0])
        snprintf(dir, sizeof dir, "%s", c->runtime_dir);
    else
        elm_rundir_default(dir, sizeof dir);
    printf("elmd: configuration %s%s%sOK (runtime dir %s)\n", c->config_path[0] ? "file " : "",
           c->config_path, c->config_path[0] ? " " : "", dir);
    if (!c->model[0]) {
        printf("elmd: no model configured\n");
        return 0;
    }
    struct elm_model_params mp = {.n_threads = 1, .kernel = c->kernel[0] ? c->kernel : NULL};
    struct elm_model *m;
    char err[512];
    int rc = elm_model_load(c->model, &mp, &m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "elmd: model %s: %s\n", c->model, err);
        return 1;
    }
    printf("elmd: model %s OK: %s, %d layers, %d embd, vocab %d, context %d\n", c->model,
           elm_arch_name(m->hp.arch), m->hp.n_layer, m->hp.n_embd,
           m->hp.n_vocab, m->hp.n_ctx_train);
    /* The KV pool as a load would make it (lifecycle.c): a kv_type the model cannot use fails
     * here rather than at the load. */
    int32_t ctx = elm_model_ctx_default(m, c->ctx);
    int64_t tokens =
        c->kv_pool_tokens ? c->kv_pool_tokens : elmd_kv_pool_default(c->max_sessions, ctx);
    rc = elm_kv_type_check(m, c->kv_type, err, sizeof err);
    if (rc)
        fprintf(stderr, "elmd: kv_type %s: %s\n", elmd_kv_type_name(c->kv_type), err);
    else
        printf("elmd: KV pool of %lld positions (%lld pages), %s\n",
               (long long)(elm_kv_pages_for(tokens) * ELM_KV_PAGE),
               (long long)elm_kv_pages_for(tokens), elmd_kv_type_name(c->kv_type));
    elm_model_destroy(&m);
    return rc ? 1 : 0;
}

/* ---- tear-down
 * ------------------------------------------------------------------------------------ */

static void stop_engine(struct elmd *d)
{
    if (!d->engine_started)
        return;
    pthread_mutex_lock(&d->lock);
    d->eng_stop = true;
    pthread_mutex_unlock(&d->lock);
    elmd_engine_wake(d);
    pthread_join(d->engine, NULL);
    d->engine_started = false;
    /* The engine is gone: whatever it left is ours to free. */
    while (d->reaped) {
        struct elmd_session *s = d->reaped;
        d->reaped = s->qnext;
        for (struct elmd_session **p = &d->sessions; *p; p = &(*p)->next)
            if (*p == s) {
                *p = s->next;
                break;
            }
        elmd_session_destroy(&s);
    }
    while (d->sessions) {
        struct elmd_session *s = d->sessions;
        d->sessions = s->next;
        elmd_session_destroy(&s);
    }
    for (int i = 0; i < d->n_models; i++)
        elmd_model_destroy(&d->models[i]);
    for (int i = 0; i < d->n_retired; i++)
        elmd_model_destroy(&d->retired[i]);
    d->n_models = d->n_retired = 0;
}

/* Every client connection costs a descriptor, and libzmq aborts the whole daemon when accepting
 * one fails with EMFILE (issue 17: about 1,100 connections under systemd's soft limit of 1024).
 * The hard limit is ours to take; whatever it is, the soft one is no reason to die sooner. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
        return;
    rlim_t old = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        elm_warn("cannot raise the open-file limit from %llu to %llu: %s", (unsigned long long)old,
                 (unsigned long long)rl.rlim_max, strerror(errno));
    else
        elm_debug("open-file limit raised from %llu to %llu", (unsigned long long)old,
                  (unsigned long long)rl.rlim_max);
}

int main(int argc, char **argv)
{
    static struct elmd d; /* large (paths); static keeps it off the stack */
    char err[640];
    d.argc = argc;
    d.argv = argv;
    d.sig_fd = d.wake_fd = d.region_fd = -1;
    d.rd.lock_fd = -1;
    int rc = elmd_config_from_args(&d.cfg, argc, argv, err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc) {
        fprintf(stderr, "elmd: %s\n", err);
        return 1;
    }
    if (d.cfg.test_only)
        return test_config(&d.cfg);

    bool use_syslog = d.cfg.use_syslog || !d.cfg.foreground;
    elm_log_setup((enum elm_log_level)d.cfg.log_level, use_syslog, "elmd");
    d.cfg.use_syslog = use_syslog;
    if (!d.cfg.foreground)
        daemonize();
    raise_nofile();
    /* Everything we create (socket, pid file, lock file) is ours alone unless stated. */
    umask(077);
    d.start_ns = elmd_now_ns();

    char dir[PATH_MAX];
    if (d.cfg.runtime_dir[0])
        snprintf(dir, sizeof dir, "%s", d.cfg.runtime_dir);
    else if (elm_rundir_default(dir, sizeof dir) < 0)
        fatal("the default runtime directory path is too long");
    if ((rc = elmd_rundir_open(&d.rd, dir, d.cfg.group, err, sizeof err)))
        fatal("%s", err);
    if ((rc = elmd_rundir_write_pid(&d.rd)))
        fatal("cannot write the pid file: %s", strerror(-rc));
    if (elmd_stats_init(&d.st) || pthread_mutex_init(&d.lock, NULL))
        fatal("out of memory");
    elmd_publish_knobs(&d);
    if ((rc = elmd_control_open(&d, err, sizeof err)))
        fatal("%s", err);
    if ((rc = pthread_create(&d.engine, NULL, elmd_engine_main, &d)))
        fatal("cannot start the engine thread: %s", strerror(rc));
    d.engine_started = true;
    struct elmd_load_args la = {.path = d.cfg.model};
    if (d.cfg.model[0] && (rc = elmd_start_load(&d, &la, err, sizeof err)))
        fatal("%s", err);

    int code = elmd_control_run(&d, on_ready);

    stop_engine(&d);
    elmd_control_close(&d);
    elmd_rundir_close(&d.rd);
    elmd_stats_fini(&d.st);
    pthread_mutex_destroy(&d.lock);
    elm_info("exiting with status %d", code);
    return code;
}
