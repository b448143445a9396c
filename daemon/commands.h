/* commands.h — the control commands (commands.c): decoding a request frame, checking it against
 * the daemon's state, and building its reply.
 */
#ifndef ELMD_COMMANDS_H
#define ELMD_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/elmd.h"
#include "daemon/reply.h"

/* Decodes and answers one control frame. */
void elmd_handle_frame(struct elmd *d, const struct elmd_peer *p, const void *frame, size_t len);

/* Answers the pending requests of command cmd (0: all) with status rc (and, for a successful
 * LOAD, the model's fields). */
void elmd_answer_pending(struct elmd *d, uint16_t cmd, int rc, const char *msg);

#endif
