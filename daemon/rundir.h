/* rundir.h — the daemon's runtime directory: where it lives, who may enter it, and the lock and
 * pid files that make one directory belong to one elmd.
 *
 * The default directory is ipc/endpoint.h's elm_rundir_default (the clients look there too).
 * The directory holds the control socket ("control"), the region socket ("regions",
 * ipc/region.h), the lock file ("elmd.lock", which also
 * records the holder's pid) and the pid file ("elmd.pid"). It is created 0700 (02750 with a
 * configured group); an existing one must be owned by us: group/other bits beyond the allowed
 * ones are removed (logged), and a directory owned by someone else is refused, because whoever
 * owns it could swap our socket for theirs.
 *
 * The lock file is never removed: a second daemon that opened the old file just before the
 * first removed it would otherwise lock an orphaned inode while a third locks a new file.
 */
#ifndef ELMD_RUNDIR_H
#define ELMD_RUNDIR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct elmd_rundir {
    char dir[PATH_MAX];
    char sock_path[PATH_MAX + 16]; /* <dir>/control */
    char pid_path[PATH_MAX + 16];  /* <dir>/elmd.pid */
    char region_path[PATH_MAX + 16]; /* <dir>/regions */
    int lock_fd;                   /* holds the flock; -1 when not open */
    bool have_group;
    gid_t gid;
};

/* Creates or checks dir, then takes the lock. group may be NULL or "". Returns 0; ELM_EBUSY
 * when another elmd holds the lock (err: "another elmd (pid N) already serves DIR"); -EACCES,
 * -EPERM or another -errno with a message in err. */
int elmd_rundir_open(struct elmd_rundir *r, const char *dir, const char *group, char *err,
                     size_t errlen);

/* Records getpid() in the lock file and the pid file. Returns 0 or -errno. */
int elmd_rundir_write_pid(struct elmd_rundir *r);

/* Applies the sockets' permissions after bind (the control and the region socket alike): 0600,
 * or 0660 with the group. */
int elmd_rundir_secure_socket(const struct elmd_rundir *r);

/* Removes the pid file and the sockets, releases the lock. NULL-safe, idempotent. */
void elmd_rundir_close(struct elmd_rundir *r);

#endif
