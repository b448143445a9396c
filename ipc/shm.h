/* shm.h — named POSIX shared-memory objects for session regions.
 *
 * The daemon creates one object per session (elm_shm_create), initialises the layout in it
 * (ipc/session_shm.h) and sends its name to the client over the control socket; the client maps
 * it with elm_shm_open. The name is the only capability: it is "/elm-<uid>-<32 hex digits>",
 * with 128 bits from getrandom() (64 when the daemon puts its tag in the first half:
 * elm_shm_create_tagged), so no other process can guess it, and the object is created
 * with O_EXCL and mode 0600, so nobody can plant an object under that name in advance or open
 * it as another user (a daemon configured with a group gives it to that group, 0660:
 * elm_shm_share). The client still checks what it opened: a regular object, of exactly the size
 * announced, owned by the expected user, with no permission bits for others.
 *
 * Lifetime: the name should be unlinked (elm_shm_unlink) as soon as the client has mapped it or
 * the session is closed; the mappings stay valid until elm_shm_close. An object left by a
 * crashed daemon stays in /dev/shm until the next daemon of the same runtime directory starts
 * (elm_shm_sweep).
 *
 * KNOWN LIMIT (SIGBUS): a process that can open the object read-write can also ftruncate() it;
 * the other process then gets SIGBUS when it touches the mapping beyond the new end. POSIX shm
 * objects cannot be sealed against that (memfd seals could, but need fd passing, which the
 * ZeroMQ control channel cannot do). With the same-user model (owner = daemon user, mode 0600)
 * only processes that could already signal or ptrace the daemon can do it; with a group, any
 * member can while the name exists (until its client maps it, at most unlink_ms): the daemon
 * trusts its group not to crash it.
 */
#ifndef ELM_IPC_SHM_H
#define ELM_IPC_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ELM_SHM_NAME_MAX 64                /* bytes including the NUL; names use 49 at most */
#define ELM_SHM_MAX_SIZE ((size_t)1 << 32) /* sanity bound: two 1 GiB rings fit easily */

/* A mapped object. Embedded by the caller; filled by create/open, released by elm_shm_close. */
struct elm_shm {
    char name[ELM_SHM_NAME_MAX]; /* NUL-terminated */
    void *base;                  /* page-aligned mapping, read-write, MAP_SHARED */
    size_t size;                 /* bytes mapped == the object's size */
};

/* Creates a new object of size bytes (zero-filled) with a fresh random name, mode 0600, owned
 * by the effective user, and maps it. Returns 0, -EINVAL (size 0 or > ELM_SHM_MAX_SIZE) or
 * another -errno from shm_open/ftruncate/mmap/getrandom. *out is written only on success; on
 * failure no object is left behind. The caller unlinks the name when the peer has mapped it. */
int elm_shm_create(struct elm_shm *out, size_t size);

/* The same, with a name whose first 16 hex digits are tag (the other 16 stay random: 64 bits
 * nobody can guess): the daemon tags its objects with its runtime directory (elm_shm_tag), so a
 * later daemon that holds that directory's lock can find and remove what a killed one left
 * (elm_shm_sweep). */
int elm_shm_create_tagged(struct elm_shm *out, size_t size, uint64_t tag);

/* A tag for elm_shm_create_tagged: a 64-bit hash of key (the runtime directory's path). */
uint64_t elm_shm_tag(const char *key);

/* Unlinks every object in /dev/shm whose name is valid, carries the effective uid and tag, and
 * that is a regular object owned by the effective user. Only for a caller that knows no live
 * process uses those names (the daemon holding its runtime directory's lock). Returns how many
 * were removed, or -errno when /dev/shm cannot be read. */
int elm_shm_sweep(uint64_t tag);

/* Gives the object to group gid, mode 0660: a daemon configured with a group lets its members'
 * processes map their sessions (the client then checks the daemon's uid, not its own). The
 * object's name lives only until the client has mapped it (elm_shm_unlink). Returns 0 or
 * -errno. */
int elm_shm_share(const struct elm_shm *s, gid_t gid);

/* Opens and maps an existing object created by elm_shm_create. Rejects it unless its name is
 * well-formed (-EINVAL), it exists (-ENOENT), its name carries owner's uid and it is a regular
 * object owned by owner with no permission bits for others, no execute or set-id bits (group
 * read/write are allowed: elm_shm_share) (-EACCES), and its size is exactly size (-EINVAL).
 * owner is the uid the caller expects the daemon to run as: the owner of the daemon's socket.
 * *out is written only on success. */
int elm_shm_open(struct elm_shm *out, const char *name, size_t size, uid_t owner);

/* Unmaps the object (the name is not unlinked) and resets *s. NULL-safe and idempotent. */
void elm_shm_close(struct elm_shm *s);

/* Removes the name. Returns 0, -EINVAL for a malformed name, or -errno (e.g. -ENOENT). */
int elm_shm_unlink(const char *name);

/* True when name has the exact form "/elm-<decimal uid>-<32 lowercase hex digits>". */
bool elm_shm_name_is_valid(const char *name);

#endif
