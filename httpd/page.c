/* page.c — GET /: the chat page (httpd/chat.html, built into the binary by httpd/embed.cmake).
 * It talks only to this gateway's API, so its Content-Security-Policy allows nothing from
 * elsewhere; it needs no API key itself (it holds no data), its requests do. */
#include "httpd/api.h"
#include "httpd/reply.h"

extern const unsigned char elm_chat_page[];
extern const size_t elm_chat_page_len;

enum MHD_Result page_chat(struct hreq *r)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        elm_chat_page_len, (void *)elm_chat_page, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; connect-src 'self'; "
                            "frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return reply_queue(r, 200, resp);
}
