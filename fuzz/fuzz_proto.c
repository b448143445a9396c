/* fuzz_proto.c — the control-message decoder (ipc/schema.c) and the field tables that read a
 * decoded body (ipc/fields.c) on arbitrary frames, as elmd reads a client's request and
 * libelmclient reads elmd's reply. Whatever elm_proto_decode accepts, every accessor and every
 * table must read without leaving the frame.
 */
#include <stdlib.h>

#include "ipc/fields.h"
#include "ipc/proto.h"
#include "ipc/schema.h"

/* Fills a zeroed struct of t's type from v, with the request or the reply reader. */
static void read_table(const struct elm_proto_view *v, const struct elm_fields *t, bool request)
{
    char msg[256];
    void *obj = calloc(1, t->size);
    if (!obj)
        return;
    if (request)
        elm_fields_get_request(v, t, obj, msg, sizeof msg);
    else
        elm_fields_get(v, t, obj);
    free(obj);
}

/* Every accessor on every known tag, including the optional ones (their tag space is sparse:
 * the first few of each are enough to reach every type). */
static void read_tags(const struct elm_proto_view *v)
{
    char buf[64];
    for (uint32_t i = 0; i < ELM_TAG_LIMIT + 40; i++) {
        uint16_t tag =
            i < ELM_TAG_LIMIT ? (uint16_t)i : (uint16_t)(ELM_TAG_ARCH + i - ELM_TAG_LIMIT);
        uint64_t u;
        int64_t s;
        double f;
        const char *str;
        const void *p;
        uint32_t n;
        elm_proto_get_u64(v, tag, &u);
        elm_proto_get_i64(v, tag, &s);
        elm_proto_get_f64(v, tag, &f);
        elm_proto_get_str(v, tag, &str, &n);
        elm_proto_get_bytes(v, tag, &p, &n);
        elm_proto_copy_str(v, tag, buf, sizeof buf);
        elm_proto_tag_name(tag);
        elm_proto_tag_type(tag);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct elm_proto_hdr h;
    struct elm_proto_msg m;
    const char *why = NULL;

    elm_proto_decode_header(data, size, &h);
    if (elm_proto_decode(data, size, &m, &why) < 0) {
        if (!why)
            abort(); /* every rejection names its reason (the daemon logs and replies it) */
        return 0;
    }
    elm_proto_cmd_name(m.hdr.cmd);
    read_tags(&m.body);
    for (const struct elm_fields *const *t = elm_fields_requests; *t; t++)
        read_table(&m.body, *t, true);
    for (const struct elm_fields *const *t = elm_fields_all; *t; t++)
        read_table(&m.body, *t, false);
    struct elm_proto_view g;
    uint32_t cursor = 0;
    while (elm_proto_next_group(&m.body, ELM_TAG_SESSION, &cursor, &g) == 0) {
        read_tags(&g);
        read_table(&g, &elm_fields_session, false);
    }
    return 0;
}
