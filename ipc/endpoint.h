/* endpoint.h — where a daemon and its clients meet: the default runtime directory and the name
 * of the control socket in it. The one definition of that rule: elmd (daemon/rundir.c) uses it
 * to create its directory, libelmclient (elm_client_default_runtime_dir, elm_client_connect) to
 * find it, so the two cannot disagree.
 */
#ifndef ELM_IPC_ENDPOINT_H
#define ELM_IPC_ENDPOINT_H

#include <stddef.h>

#define ELM_CONTROL_SOCKET "control" /* the control socket, in the runtime directory */
/* The control socket's name while elmd refuses new connections (max_connections): connecting
 * finds no socket, and a client that finds this name says why (elm_client_connect). */
#define ELM_CONTROL_FULL_SUFFIX ".full"

/* The default runtime directory: $XDG_RUNTIME_DIR/elm (when it is an absolute path), else
 * /run/user/<euid>/elm when /run/user/<euid> exists, else /tmp/elm-<euid>. Writes it into buf
 * (cap bytes, NUL-terminated). Returns 0 or -ENAMETOOLONG. $ELM_RUNTIME_DIR is not read here:
 * it is the clients' override (libelmclient), not part of where elmd puts itself. */
int elm_rundir_default(char *buf, size_t cap);

#endif
