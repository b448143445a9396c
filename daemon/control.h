/* control.h — the control thread's event loop (control.c): the sockets, signals, client deaths,
 * timers; it dispatches requests to commands.c and model events to lifecycle.c.
 */
#ifndef ELMD_CONTROL_H
#define ELMD_CONTROL_H

#include <stddef.h>

#include "daemon/elmd.h"

/* Creates the eventfds, installs the signal handlers and binds the sockets. */
int elmd_control_open(struct elmd *d, char *err, size_t errlen);
void elmd_control_close(struct elmd *d);

/* Runs until shutdown; returns the exit code. ready() is called once the initial model (if
 * any) has loaded, with 0 or the load's error. */
int elmd_control_run(struct elmd *d, void (*ready)(struct elmd *d, int rc, const char *msg));

/* SIGHUP: parses the configuration again and applies it (config.h elmd_config_reload says
 * what changes); an invalid one is logged and the running one stays. */
void elmd_reload_config(struct elmd *d);

#endif
