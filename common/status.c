/* status.c — names for elm's result codes (see include/elm/status.h). */
#include <string.h>

#include "elm/status.h"

const char *elm_strerror(int code)
{
    switch (code) {
    case ELM_OK: return "success";
    case ELM_EFORMAT: return "malformed input";
    case ELM_EUNSUPPORTED: return "unsupported";
    case ELM_EMODEL: return "invalid model";
    case ELM_EPROTO: return "protocol error";
    case ELM_EDAEMON: return "daemon not reachable";
    case ELM_EBUSY: return "busy, try again later";
    case ELM_ECONTEXT: return "request does not fit the context";
    case ELM_ECANCELED: return "cancelled";
    case ELM_ERING: return "corrupted shared-memory ring";
    case ELM_ENOMODEL: return "no model loaded";
    case ELM_ESESSION: return "unknown or closed session";
    case ELM_ETOKEN: return "token id out of range";
    case ELM_ESHUTDOWN: return "daemon is shutting down";
    default: break;
    }
    /* strerror() is not thread-safe in general, but glibc's returns static strings for every
     * known errno; the negative range below -1000 is ours and handled above. */
    if (code < 0 && code > -1000)
        return strerror(-code);
    return "unknown error";
}
