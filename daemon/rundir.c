/* rundir.c — creating and checking the runtime directory, the lock and the pid file
 * (see rundir.h for the rules and why).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/log.h"
#include "daemon/rundir.h"
#include "elm/status.h"
#include "ipc/endpoint.h"
#include "ipc/region.h"

#define LOCK_NAME "elmd.lock"

/* Creates dir if needed and checks owner and mode on the opened directory itself, so that a
 * rename between check and use cannot substitute another one. */
static int check_dir(struct elmd_rundir *r, char *err, size_t errlen)
{
    mode_t want = r->have_group ? 02750 : 0700;
    bool created = mkdir(r->dir, want) == 0;
    if (!created && errno != EEXIST)
        return elm_errf(err, errlen, -errno, "cannot create %s: %s", r->dir, strerror(errno));
    int fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return elm_errf(err, errlen, -errno, "cannot open %s: %s%s", r->dir, strerror(errno),
                    errno == ELOOP || errno == ENOTDIR ? " (not a plain directory)" : "");
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = elm_errf(err, errlen, -errno, "cannot stat %s: %s", r->dir, strerror(errno));
        goto out;
    }
    if (st.st_uid != geteuid()) {
        rc = elm_errf(err, errlen, -EPERM, "%s is owned by uid %u, not by us (uid %u): refusing it",
                  r->dir, (unsigned)st.st_uid, (unsigned)geteuid());
        goto out;
    }
    if (r->have_group && st.st_gid != r->gid && fchown(fd, (uid_t)-1, r->gid) < 0) {
        rc = elm_errf(err, errlen, -errno, "cannot give %s to group %u: %s", r->dir, (unsigned)r->gid,
                  strerror(errno));
        goto out;
    }
    if ((st.st_mode & 07777) != want) {
        /* Ours, so we may tighten it; an over-open directory would let others replace the
         * socket or read the pid. */
        if (fchmod(fd, want) < 0) {
            rc = elm_errf(err, errlen, -errno, "cannot chmod %s: %s", r->dir, strerror(errno));
            goto out;
        }
        if (!created) /* (mkdir's mode passes through the umask; that is no news) */
            elm_warn("runtime dir %s had mode %04o; set to %04o", r->dir,
                     (unsigned)(st.st_mode & 07777), (unsigned)want);
    }
out:
    close(fd);
    return rc;
}

/* The pid recorded in the lock file, or 0. */
static long lock_holder(int fd)
{
    char buf[32] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    return pid > 0 ? pid : 0;
}

int elmd_rundir_open(struct elmd_rundir *r, const char *dir, const char *group, char *err,
                     size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    /* sun_path holds 108 bytes: "<dir>/control" must fit for ZeroMQ's ipc:// bind, and
     * "<dir>/regions" for ours. */
    if (dl == 0 || dl + sizeof "/" ELM_CONTROL_SOCKET > 108 ||
        dl + sizeof "/" ELM_REGION_SOCKET > 108)
        return elm_errf(err, errlen, -ENAMETOOLONG, "runtime dir '%s' is too long for a socket path",
                    dir);
    snprintf(r->dir, sizeof r->dir, "%.*s", (int)dl, dir);
    snprintf(r->sock_path, sizeof r->sock_path, "%s/" ELM_CONTROL_SOCKET, r->dir);
    snprintf(r->pid_path, sizeof r->pid_path, "%s/elmd.pid", r->dir);
    snprintf(r->region_path, sizeof r->region_path, "%s/" ELM_REGION_SOCKET, r->dir);
    if (group && *group) {
        struct group *g = getgrnam(group);
        if (!g)
            return elm_errf(err, errlen, -ENOENT, "unknown group '%s'", group);
        r->have_group = true;
        r->gid = g->gr_gid;
    }
    int rc = check_dir(r, err, errlen);
    if (rc)
        return rc;

    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/" LOCK_NAME, r->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return elm_errf(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        long pid = lock_holder(fd);
        close(fd);
        if (e == EWOULDBLOCK) {
            if (pid)
                return elm_errf(err, errlen, ELM_EBUSY, "another elmd (pid %ld) already serves %s", pid,
                            r->dir);
            return elm_errf(err, errlen, ELM_EBUSY, "another elmd already serves %s", r->dir);
        }
        return elm_errf(err, errlen, -e, "cannot lock %s: %s", path, strerror(e));
    }
    r->lock_fd = fd;
    /* We hold the lock: anything left at these paths is from a daemon that died. */
    unlink(r->sock_path);
    unlink(r->region_path);
    unlink(r->pid_path);
    return 0;
}

int elmd_rundir_write_pid(struct elmd_rundir *r)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(r->lock_fd, 0) < 0 || pwrite(r->lock_fd, buf, (size_t)n, 0) != n)
        return -errno;
    int fd = open(r->pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = write(fd, buf, (size_t)n) == n ? 0 : -EIO;
    if (rc == 0 && r->have_group && fchmod(fd, 0640) < 0) /* the group may read who serves */
        rc = -errno;
    close(fd);
    return rc;
}

static int secure(const struct elmd_rundir *r, const char *path)
{
    if (r->have_group && chown(path, (uid_t)-1, r->gid) < 0)
        return -errno;
    return chmod(path, r->have_group ? 0660 : 0600) < 0 ? -errno : 0;
}

int elmd_rundir_secure_socket(const struct elmd_rundir *r)
{
    int rc = secure(r, r->sock_path);
    return rc ? rc : secure(r, r->region_path);
}

void elmd_rundir_close(struct elmd_rundir *r)
{
    if (!r || r->lock_fd < 0)
        return;
    unlink(r->sock_path);
    unlink(r->region_path);
    unlink(r->pid_path);
    if (ftruncate(r->lock_fd, 0) < 0)
        elm_debug("cannot clear the lock file: %s", strerror(errno));
    close(r->lock_fd);
    r->lock_fd = -1;
}
