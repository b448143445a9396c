/* fuzz_chat.c — a conversation as a hostile client sends it (PROMPT flag MESSAGES: the record
 * decoder of ipc/session_shm.c) rendered in every chat format elm knows (engine/chat.c), and the
 * same bytes taken as a model's tokenizer.chat_template for detection. The first input byte
 * picks the format and the buffer size, so short buffers (the snprintf-like length contract)
 * are reached too.
 */
#include <stdint.h>
#include <stdlib.h>

#include "engine/chat.h"
#include "ipc/session_shm.h"

#define MAX_MSGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > UINT32_MAX)
        return 0;
    const uint8_t pick = data[0];
    const uint8_t *p = data + 1;
    size_t len = size - 1;

    /* detection and selection by template text, and by name */
    enum elm_chat_tmpl t;
    char err[128];
    elm_chat_detect((const char *)p, len);
    elm_chat_select((const char *)p, len, NULL, &t, err, sizeof err);

    struct elm_rec_message rm[MAX_MSGS];
    uint32_t n = 0;
    if (elm_rec_messages_decode(p, (uint32_t)len, rm, MAX_MSGS, &n) != 0)
        return 0;
    struct elm_chat_msg m[MAX_MSGS];
    int k = n < MAX_MSGS ? (int)n : MAX_MSGS;
    for (int i = 0; i < k; i++)
        m[i] = (struct elm_chat_msg){rm[i].role, rm[i].role_len, rm[i].content, rm[i].content_len};
    enum elm_chat_tmpl fmt = (enum elm_chat_tmpl)(pick % ELM_CHAT_COUNT);
    size_t cap = (size_t)(pick >> 4) * 64; /* 0..960: short buffers too */
    char *buf = malloc(cap ? cap : 1);
    size_t out = 0;
    if (buf)
        elm_chat_render(fmt, m, k, pick & 1, buf, cap, &out);
    free(buf);
    char *all = NULL;
    if (elm_chat_render_alloc(fmt, m, k, true, &all, &out) == 0 && all && all[out] != 0)
        abort(); /* the promised NUL */
    free(all);
    return 0;
}
