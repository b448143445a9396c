/* cli_util.c — what every elmctl subcommand shares: the global options, error reports (text on
 * stderr, and JSON on stdout under --json), checked number parsing and reading the text a
 * command works on. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "elm/status.h"

const char *cli_runtime_dir;
bool cli_json;

static int report(int code, const char *fmt, va_list ap)
{
    char msg[4096];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "elmctl: %s\n", msg);
    if (cli_json) {
        json_t *j = json_object();
        cli_json_set_text(j, "error", 5, msg, strlen(msg));
        json_object_set_new(j, "exit_code", json_integer(code));
        cli_json_print(j);
    }
    return code;
}

int cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int code = report(CLI_FAIL, fmt, ap);
    va_end(ap);
    return code;
}

int cli_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int code = report(CLI_USAGE, fmt, ap);
    va_end(ap);
    return code;
}

bool cli_names_file(const char *msg, const char *path)
{
    size_t pl = strlen(path);
    return !strncmp(msg, path, pl) && msg[pl] == ':';
}

int cli_fail_file(const char *path, int rc, const char *err)
{
    if (!err[0])
        return cli_fail("%s: %s", path, elm_strerror(rc));
    if (cli_names_file(err, path))
        return cli_fail("%s", err);
    return cli_fail("%s: %s", path, err);
}

int cli_bad_option(char **argv)
{
    return cli_usage("%s: unknown option or missing value for '%s' (see '%s --help')", argv[0],
                     argv[optind - 1], argv[0]);
}

bool cli_int(const char *opt, const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        cli_usage("%s expects an integer in [%ld, %ld], got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

bool cli_float(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max) {
        cli_usage("%s expects a number in [%g, %g], got '%s'", opt, min, max, s);
        return false;
    }
    *out = v;
    return true;
}

/* Reads all of fd into a malloc'ed NUL-terminated buffer; 0 or -errno. */
static int read_all(int fd, char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return -e;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                return -ENOMEM;
            }
            buf = nb;
        }
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

static int read_file(const char *path, char **text, size_t *len)
{
    if (!strcmp(path, "-")) {
        int rc = read_all(0, text, len);
        return rc ? cli_fail("cannot read stdin: %s", strerror(-rc)) : 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cli_fail("%s: %s", path, strerror(errno));
    int rc = read_all(fd, text, len);
    close(fd);
    return rc ? cli_fail("%s: %s", path, strerror(-rc)) : 0;
}

int cli_read_text(const char *file, int argc, char **argv, char **text, size_t *len, bool *given)
{
    *given = true;
    if (argc > 1)
        return cli_usage("one text argument at most (quote it), got %d", argc);
    if (file && argc)
        return cli_usage("give the text as an argument or with -f FILE, not both");
    if (file)
        return read_file(file, text, len);
    if (argc && strcmp(argv[0], "-")) {
        *len = strlen(argv[0]);
        *text = strdup(argv[0]);
        return *text ? 0 : cli_fail("out of memory");
    }
    /* stdin counts when it is open and not a terminal: a program started with fd 0 closed gets
     * the empty text, as with a terminal */
    if (argc || (!isatty(0) && fcntl(0, F_GETFD) != -1))
        return read_file("-", text, len);
    *given = false;
    *len = 0;
    *text = strdup("");
    return *text ? 0 : cli_fail("out of memory");
}

const char *cli_find_program(const char *env, const char *name, const char *build_rel, char *buf,
                             size_t cap)
{
    const char *e = getenv(env);
    if (e && *e)
        return e;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        const char *dir = dirname(self);
        const char *rel[] = {name, build_rel};
        for (size_t i = 0; i < sizeof rel / sizeof *rel; i++) {
            snprintf(buf, cap, "%s/%s", dir, rel[i]);
            if (access(buf, X_OK) == 0)
                return buf;
        }
    }
    return name;
}
