/* guard.h — putting the machine back after a test that changes it (a sysctl, a mount), even when
 * the test process is SIGKILLed (a ctest timeout) and no teardown, atexit or signal handler runs.
 *
 * A guardian process of its own (double-forked and in its own session, so that killing the
 * test's process tree misses it) holds the read end of a pipe. Before each change the test
 * tells it what would undo the change, and after undoing it itself, that the entry is done. When
 * the pipe closes, however the test ended, the guardian undoes what is still listed and exits.
 * Only for root-only tests: it writes sysctls and unmounts. */
#ifndef ELM_TEST_GUARD_H
#define ELM_TEST_GUARD_H

/* Starts the guardian (once per process). Returns 0 or -errno. */
int elm_test_guard_start(void);

/* Until elm_test_guard_sysctl_done(path): if the test dies, write `old` into path. */
void elm_test_guard_sysctl(const char *path, long old);
void elm_test_guard_sysctl_done(const char *path);

/* Until elm_test_guard_mount_done(dir): if the test dies, detach the mount at dir (lazily: a
 * process of the test may still hold a file open there). */
void elm_test_guard_mount(const char *dir);
void elm_test_guard_mount_done(const char *dir);

#endif
