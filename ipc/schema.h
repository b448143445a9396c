/* schema.h — decoding and checking control messages against what each command may carry
 * (schema.c), finishing a built frame, and the names of commands and tags. */
#ifndef ELM_IPC_SCHEMA_H
#define ELM_IPC_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "ipc/proto.h"

/* Reads only the header (magic and size checked), e.g. to echo the request id in an ERROR
 * reply to a frame that failed elm_proto_decode. Returns 0 or ELM_EPROTO. */
int elm_proto_decode_header(const void *frame, size_t len, struct elm_proto_hdr *out);

/* Validates a whole frame against its command's schema and fills *out, whose body points into
 * frame (keep the frame alive while using it). Returns 0 or ELM_EPROTO. On failure, if why is
 * not NULL, *why is set to a static string naming the problem (for logs and ERROR replies). */
int elm_proto_decode(const void *frame, size_t len, struct elm_proto_msg *out, const char **why);

/* Ends the frame and checks it with elm_proto_decode, so a frame that the peer would reject
 * is caught here (ELM_EPROTO). Returns 0 with *frame and *len set (owned by b), or the error. */
int elm_proto_finish(struct elm_proto_buf *b, const void **frame, size_t *len);

/* Static names for logs: "open_session", "session_id"...; "unknown" when not known. */
const char *elm_proto_cmd_name(uint16_t cmd);
const char *elm_proto_tag_name(uint16_t tag);
/* The value type of a known tag, or 0. */
int elm_proto_tag_type(uint16_t tag);

#endif
