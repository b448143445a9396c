/* config.c — parsing elmd's config file and command line (see config.h).
 *
 * The file is "key = value" lines; '#' starts a comment line; blank lines are ignored; values
 * run to the end of the line (trailing blanks dropped), so paths may contain spaces. Unknown
 * keys and bad values are errors naming the file and line: a typo must not silently leave a
 * default in force.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/config.h"
#include "elm/status.h"
#include "elm/version.h"
#include "kernels/kernels.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return ELM_EFORMAT;
}

void elmd_config_defaults(struct elmd_config *c)
{
    memset(c, 0, sizeof *c);
    c->log_level = ELM_LOG_INFO;
    c->max_sessions = 16;
    c->kv_type = ELM_TYPE_F16;
    c->max_queued = 16;
    c->queue_timeout_ms = 30000;
    c->prefill_chunk = 64;
    c->step_ms = 100;
    c->hugepages = ELM_HUGE_AUTO;
    c->wait = elm_pool_wait(); /* ELM_WAIT, else auto */
    c->mlock = true;
    c->direct_io = true;
    c->io_depth = 32;
    c->io_chunk_kib = 2048;
    c->drain_ms = 3000;
    c->handover_ms = 5000;
    c->max_connections = 512;
    c->keep_alive_ms = -1; /* unlike ollama (5m): a model someone loaded stays until unloaded */
}

int64_t elmd_kv_pool_default(int max_sessions, int32_t ctx)
{
    int64_t quarter = (int64_t)max_sessions * ctx / 4, four = 4 * (int64_t)ctx;
    return quarter > four ? quarter : four;
}

const char *elmd_kv_type_name(enum elm_type t)
{
    return t == ELM_TYPE_F32 ? "f32" : t == ELM_TYPE_Q8_0 ? "q8_0" : "f16";
}

/* ---- values ------------------------------------------------------------------------------ */

int elmd_parse_keep_alive(const char *v, int64_t *ms)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || errno)
        return -EINVAL;
    if (x < 0 && !*end) {
        *ms = -1;
        return 0;
    }
    double total = 0;
    for (;;) {
        if (x < 0)
            return -EINVAL;
        double unit = 1000; /* a bare number is seconds, as ollama reads it */
        if (!strncmp(end, "ms", 2))
            unit = 1, end += 2;
        else if (*end == 's')
            end++;
        else if (*end == 'm')
            unit = 60000, end++;
        else if (*end == 'h')
            unit = 3600000, end++;
        else if (*end)
            return -EINVAL;
        total += x * unit;
        if (!*end)
            break;
        const char *start = end;
        x = strtod(start, &end);
        if (end == start || errno)
            return -EINVAL;
    }
    if (total > 365.0 * 24 * 3600000)
        return -EINVAL; /* a year: longer is "forever", say -1 */
    *ms = (int64_t)total;
    return 0;
}

uint64_t elmd_resident_default(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || size <= 0)
        return UINT64_MAX; /* unknown: no budget */
    return (uint64_t)pages * (uint64_t)size / 4 * 3;
}

/* A byte count with an optional binary suffix: "8G", "512M", "1073741824". */
static int parse_bytes(const char *v, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*v == '-')
        return -EINVAL;
    unsigned long long x = strtoull(v, &end, 10);
    if (end == v || errno)
        return -EINVAL;
    int shift = !*end                ? 0
                : strchr("kK", *end) ? 10
                : strchr("mM", *end) ? 20
                : strchr("gG", *end) ? 30
                : strchr("tT", *end) ? 40
                                     : -1;
    if (shift < 0 || (*end && end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B")))
        return -EINVAL;
    if (x > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)x << shift;
    return 0;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"1", "yes", "true", "on"}, *no[] = {"0", "no", "false", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i]))
            return *out = true, 0;
        if (!strcasecmp(v, no[i]))
            return *out = false, 0;
    }
    return -1;
}

/* Paths are made absolute at parse time: in the background the daemon runs in "/". */
static int copy_path(char *dst, size_t cap, const char *v)
{
    char cwd[PATH_MAX];
    if (!v[0] || v[0] == '/' || !getcwd(cwd, sizeof cwd))
        return snprintf(dst, cap, "%s", v) >= (int)cap ? -1 : 0;
    return snprintf(dst, cap, "%s/%s", cwd, v) >= (int)cap ? -1 : 0;
}

static int copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

/* A kernel variant built into elm for this architecture (kernels/dispatch.c's list). */
static bool kernel_is_known(const char *v)
{
    for (size_t i = 0; elm_kernels_variant(i); i++)
        if (!strcmp(v, elm_kernels_variant(i)))
            return true;
    return false;
}

/* Only loopback TCP: the control protocol has no authentication, so anything reachable from
 * another host would hand the model (and every session) to the network. */
static bool endpoint_is_valid(const char *v)
{
    static const char pfx[] = "tcp://127.0.0.1:";
    if (strncmp(v, pfx, sizeof pfx - 1) != 0)
        return false;
    long port;
    return parse_int(v + sizeof pfx - 1, 1, 65535, &port) == 0;
}

int elmd_config_set(struct elmd_config *c, const char *key, const char *v, char *err, size_t errlen)
{
    long x;
    int bad = 0;
    if (!strcmp(key, "model")) {
        bad = copy_path(c->model, sizeof c->model, v);
    } else if (!strcmp(key, "runtime_dir")) {
        bad = copy_path(c->runtime_dir, sizeof c->runtime_dir, v);
    } else if (!strcmp(key, "endpoint")) {
        bad = copy_str(c->endpoint, sizeof c->endpoint, v) || (v[0] && !endpoint_is_valid(v));
    } else if (!strcmp(key, "group")) {
        bad = copy_str(c->group, sizeof c->group, v);
    } else if (!strcmp(key, "kernel")) {
        bad = copy_str(c->kernel, sizeof c->kernel, v) || (v[0] && !kernel_is_known(v));
    } else if (!strcmp(key, "threads")) {
        bad = parse_int(v, 0, 1024, &x) || (c->threads = (int)x, 0);
    } else if (!strcmp(key, "log_level")) {
        bad = (x = elm_log_level_parse(v)) < 0 || (c->log_level = (int)x, 0);
    } else if (!strcmp(key, "syslog")) {
        bad = parse_bool(v, &c->use_syslog);
    } else if (!strcmp(key, "ctx")) {
        bad = parse_int(v, 0, 1 << 20, &x) || (c->ctx = (int32_t)x, 0);
    } else if (!strcmp(key, "max_sessions")) {
        bad = parse_int(v, 1, ELMD_MAX_SESSIONS_LIMIT, &x) || (c->max_sessions = (int)x, 0);
    } else if (!strcmp(key, "kv_type")) {
        if (!strcasecmp(v, "f16"))
            c->kv_type = ELM_TYPE_F16;
        else if (!strcasecmp(v, "f32"))
            c->kv_type = ELM_TYPE_F32;
        else if (!strcasecmp(v, "q8_0"))
            c->kv_type = ELM_TYPE_Q8_0;
        else
            bad = 1;
    } else if (!strcmp(key, "kv_pool_tokens")) {
        bad = parse_int(v, 0, 1L << 24, &x) || (c->kv_pool_tokens = x, 0);
    } else if (!strcmp(key, "max_queued")) {
        /* a session waits with one request at most, so more than the sessions cannot queue */
        bad = parse_int(v, 0, ELMD_MAX_SESSIONS_LIMIT, &x) || (c->max_queued = (int)x, 0);
    } else if (!strcmp(key, "queue_timeout_ms")) {
        bad = parse_int(v, 0, 3600000, &x) || (c->queue_timeout_ms = (int)x, 0);
    } else if (!strcmp(key, "prefill_chunk")) {
        bad = parse_int(v, 1, 4096, &x) || (c->prefill_chunk = (int)x, 0);
    } else if (!strcmp(key, "step_ms")) {
        bad = parse_int(v, 0, 60000, &x) || (c->step_ms = (int)x, 0);
    } else if (!strcmp(key, "hugepages")) {
        static const char *names[] = {"auto", "hugetlb", "thp", "off"};
        bad = 1;
        for (int i = 0; i < 4; i++)
            if (!strcasecmp(v, names[i]))
                c->hugepages = (enum elm_huge)i, bad = 0;
    } else if (!strcmp(key, "wait")) {
        bad = elm_pool_wait_parse(v, &c->wait) != 0;
    } else if (!strcmp(key, "mlock")) {
        bad = parse_bool(v, &c->mlock);
    } else if (!strcmp(key, "direct_io")) {
        bad = parse_bool(v, &c->direct_io);
    } else if (!strcmp(key, "io_depth")) {
        bad = parse_int(v, 1, 256, &x) || (c->io_depth = (int)x, 0);
    } else if (!strcmp(key, "io_chunk_kib")) {
        /* a multiple of 4 KiB keeps every O_DIRECT read aligned */
        bad = parse_int(v, 4, 65536, &x) || x % 4 || (c->io_chunk_kib = (int)x, 0);
    } else if (!strcmp(key, "drain_ms")) {
        bad = parse_int(v, 0, 3600000, &x) || (c->drain_ms = (int)x, 0);
    } else if (!strcmp(key, "max_connections")) {
        bad = parse_int(v, 4, 1000000, &x) || (c->max_connections = (int)x, 0);
    } else if (!strcmp(key, "max_threads")) {
        bad = parse_int(v, 0, 4096, &x) || (c->max_threads = (int)x, 0);
    } else if (!strcmp(key, "max_ctx")) {
        bad = parse_int(v, 0, 1 << 20, &x) || (c->max_ctx = (int32_t)x, 0);
    } else if (!strcmp(key, "max_kv_mib")) {
        bad = parse_int(v, 0, 1L << 30, &x) || (c->max_kv_mib = x, 0);
    } else if (!strcmp(key, "handover_ms")) {
        bad = parse_int(v, 100, 600000, &x) || (c->handover_ms = (int)x, 0);
    } else if (!strcmp(key, "keep_alive")) {
        bad = elmd_parse_keep_alive(v, &c->keep_alive_ms) != 0;
    } else if (!strcmp(key, "max_resident_bytes")) {
        bad = parse_bytes(v, &c->max_resident_bytes) != 0;
    } else {
        return fail(err, errlen, "unknown key '%s'", key);
    }
    if (bad)
        return fail(err, errlen, "invalid value '%s' for '%s'", v, key);
    return 0;
}

/* ---- the file ----------------------------------------------------------------------------- */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

int elmd_config_load_file(struct elmd_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char line[PATH_MAX + 64], msg[256];
    int rc = 0, no = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = fail(err, errlen, "%s:%d: line too long", path, no);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = fail(err, errlen, "%s:%d: expected 'key = value'", path, no);
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        if (elmd_config_set(c, key, val, msg, sizeof msg))
            rc = fail(err, errlen, "%s:%d: %s", path, no, msg);
    }
    if (!rc && ferror(f))
        rc = fail(err, errlen, "%s: read error", path);
    fclose(f);
    if (!rc)
        snprintf(c->config_path, sizeof c->config_path, "%s", path);
    return rc;
}

/* ---- the command line --------------------------------------------------------------------- */

void elmd_config_usage(FILE *f)
{
    fprintf(f,
            "usage: elmd [options]\n"
            "Serves a GGUF model to local programs (see docs/daemon.md).\n"
            "  -m, --model FILE        model to load at start-up\n"
            "  -c, --config FILE       config file (default $XDG_CONFIG_HOME/elm/elmd.conf)\n"
            "  -f, --foreground        stay in the foreground, log to stderr\n"
            "  -t, --test-config       check the configuration and the model file, then exit\n"
            "      --threads N         compute threads (default: every CPU)\n"
            "      --runtime-dir DIR   socket, lock and pid file (default $XDG_RUNTIME_DIR/elm)\n"
            "      --log-level L       error, warn, info (default) or debug\n"
            "      --syslog            log to syslog (the default when in the background)\n"
            "      --ctx N             context tokens per session (default: model's, <= 4096)\n"
            "      --max-sessions N    concurrent sessions (default 16, at most %d)\n"
            "      --kv-type T         KV cache type: f16 (default), f32 or q8_0\n"
            "      --kv-pool-tokens N  KV positions shared by all sessions (default: see docs)\n"
            "      --max-queued N      requests that may wait for KV memory (default 16)\n"
            "      --queue-timeout-ms N  how long they may wait (default 30000; 0: refuse)\n"
            "      --prefill-chunk N   prompt tokens per session per step (default 64)\n"
            "      --step-ms N         prompt tokens per step fit N ms (default 100; 0: no limit)\n"
            "      --endpoint URL      also listen on tcp://127.0.0.1:PORT (read-only)\n"
            "      --keep-alive D      unload a model idle for D (5m, 30s, 0; default -1: never)\n"
            "      --max-resident-bytes N  memory for all models' weights and KV (8G; default:\n"
            "                          3/4 of the machine's memory)\n"
            "  -h, --help              this text\n"
            "  -V, --version           print the version\n",
            ELMD_MAX_SESSIONS_LIMIT);
}

/* The default config file, when it exists. */
static bool default_config_path(char *buf, size_t cap)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
    if (xdg && *xdg == '/')
        snprintf(buf, cap, "%s/elm/elmd.conf", xdg);
    else if (home && *home == '/')
        snprintf(buf, cap, "%s/.config/elm/elmd.conf", home);
    else
        return false;
    return access(buf, F_OK) == 0;
}

int elmd_config_from_args(struct elmd_config *c, int argc, char **argv, char *err, size_t errlen)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},
        {"config", required_argument, 0, 'c'},
        {"foreground", no_argument, 0, 'f'},
        {"test-config", no_argument, 0, 't'},
        {"threads", required_argument, 0, 1},
        {"runtime-dir", required_argument, 0, 2},
        {"log-level", required_argument, 0, 3},
        {"syslog", no_argument, 0, 4},
        {"ctx", required_argument, 0, 5},
        {"max-sessions", required_argument, 0, 6},
        {"kv-type", required_argument, 0, 7},
        {"prefill-chunk", required_argument, 0, 8},
        {"endpoint", required_argument, 0, 9},
        {"kv-pool-tokens", required_argument, 0, 10},
        {"max-queued", required_argument, 0, 11},
        {"queue-timeout-ms", required_argument, 0, 12},
        {"step-ms", required_argument, 0, 13},
        {"keep-alive", required_argument, 0, 14},
        {"max-resident-bytes", required_argument, 0, 15},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    static const char *keys[] = {NULL,
                                 "threads",
                                 "runtime_dir",
                                 "log_level",
                                 "syslog",
                                 "ctx",
                                 "max_sessions",
                                 "kv_type",
                                 "prefill_chunk",
                                 "endpoint",
                                 "kv_pool_tokens",
                                 "max_queued",
                                 "queue_timeout_ms",
                                 "step_ms",
                                 "keep_alive",
                                 "max_resident_bytes"};
    elmd_config_defaults(c);

    /* First pass: only --config, --help and --version, so the file is applied before the
     * other options override it, whatever their order. */
    const char *cfg = NULL;
    int o;
    optind = 0; /* glibc: full re-initialisation, so SIGHUP can parse argv again */
    opterr = 0;
    while ((o = getopt_long(argc, argv, "m:c:ftVh", opts, NULL)) != -1) {
        if (o == 'c')
            cfg = optarg;
        else if (o == 'h')
            return elmd_config_usage(stdout), 1;
        else if (o == 'V')
            return printf("elmd %s\n", ELM_VERSION_STRING), 1;
        else if (o == '?')
            return fail(err, errlen, "unknown or incomplete option '%s' (see --help)",
                        argv[optind - 1]);
    }
    if (optind < argc)
        return fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
    char def[PATH_MAX];
    if (!cfg && default_config_path(def, sizeof def))
        cfg = def;
    if (cfg) {
        int rc = elmd_config_load_file(c, cfg, err, errlen);
        if (rc)
            return rc;
    }

    optind = 0;
    char msg[256];
    while ((o = getopt_long(argc, argv, "m:c:ftVh", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case 'm':
            rc = elmd_config_set(c, "model", optarg, msg, sizeof msg);
            break;
        case 'f':
            c->foreground = true;
            break;
        case 't':
            c->test_only = true;
            break;
        case 4:
            c->use_syslog = true;
            break;
        case 'c':
            break;
        default:
            if (o >= 1 && o < (int)(sizeof keys / sizeof *keys))
                rc = elmd_config_set(c, keys[o], optarg, msg, sizeof msg);
            break;
        }
        if (rc)
            return fail(err, errlen, "%s", msg);
    }
    return 0;
}

/* ---- SIGHUP ------------------------------------------------------------------------------- */

int elmd_config_reload(const struct elmd_config *cur, int argc, char **argv,
                       struct elmd_config *next, bool *restart_only, char *err, size_t errlen)
{
    int rc = elmd_config_from_args(next, argc, argv, err, errlen);
    if (rc)
        return rc;
    *restart_only = strcmp(next->runtime_dir, cur->runtime_dir) ||
                    strcmp(next->endpoint, cur->endpoint) || strcmp(next->group, cur->group);
    snprintf(next->runtime_dir, sizeof next->runtime_dir, "%s", cur->runtime_dir);
    snprintf(next->endpoint, sizeof next->endpoint, "%s", cur->endpoint);
    snprintf(next->group, sizeof next->group, "%s", cur->group);
    next->foreground = cur->foreground;
    next->use_syslog = cur->use_syslog; /* where logs go is decided once, at start-up */
    return 0;
}
