/* install_check.h — checks an installed elm (tests/install/): the docs' example program built
 * against the installed library, run against the installed elmd; the installed systemd unit. */
#ifndef ELM_INSTALL_CHECK_H
#define ELM_INSTALL_CHECK_H

/* Extracts the C example of docs/client.md into workdir, builds it with
 * `pkg-config --cflags --libs elmclient` (pkgconfig_path: PKG_CONFIG_PATH, NULL for the
 * system's) without LD_LIBRARY_PATH, starts bindir/elmd on model in a runtime directory under
 * workdir, and asserts that the example's completion is bindir/elmctl generate --local's
 * (greedy, 64 tokens). Stops the daemon. */
void install_check_example(const char *bindir, const char *pkgconfig_path, const char *workdir,
                           const char *model);

/* Asserts that unit runs bindir/elmd, sets no LimitMEMLOCK, and passes
 * `systemd-analyze --user verify` with manpath searched for its Documentation= pages (skips
 * when systemd-analyze is missing). */
void install_check_unit(const char *unit, const char *bindir, const char *manpath,
                        const char *workdir);

/* Runs a shell command with its stdout in out and stderr in workdir's err file; returns the
 * exit status. */
int install_sh(char *out, size_t cap, const char *workdir, const char *fmt, ...);

#endif
