/* api.h — the endpoints, one function per route (api_openai.c, api_ollama.c, api_embed.c);
 * server.c's route table calls them once a request is read whole. */
#ifndef ELM_HTTPD_API_H
#define ELM_HTTPD_API_H

#include "httpd/httpd.h"

/* The routes of each API (api_openai.c, api_ollama.c, api_embed.c). */
enum MHD_Result openai_models(struct hreq *r);
enum MHD_Result openai_completions(struct hreq *r);
enum MHD_Result openai_chat(struct hreq *r);
enum MHD_Result openai_embeddings(struct hreq *r);
enum MHD_Result ollama_chat(struct hreq *r);
enum MHD_Result ollama_embed(struct hreq *r);
enum MHD_Result ollama_embeddings(struct hreq *r);
enum MHD_Result ollama_generate(struct hreq *r);
enum MHD_Result ollama_tags(struct hreq *r);
enum MHD_Result ollama_ps(struct hreq *r);
enum MHD_Result ollama_show(struct hreq *r);
enum MHD_Result ollama_version(struct hreq *r);
/* GET /: the chat page (page.c). */
enum MHD_Result page_chat(struct hreq *r);

#endif
