/* elm/status.h — result codes shared by every elm library and tool.
 *
 * Functions that can fail return int: 0 on success, a negative errno value (-ENOMEM, -EINVAL...)
 * or one of the negative ELM_E* codes below. ELM_E* codes start at -1000 so they never collide
 * with an errno value. elm_strerror() names both kinds.
 */
#ifndef ELM_STATUS_H
#define ELM_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

enum elm_status {
    ELM_OK = 0,
    ELM_EFORMAT = -1000,      /* malformed file or record (GGUF, config) */
    ELM_EUNSUPPORTED = -1001, /* well formed, but not something elm runs (GGUF v1, arch, type) */
    ELM_EMODEL = -1002,       /* model misses a tensor or has inconsistent hyperparameters */
    ELM_EPROTO = -1003,       /* malformed control message or protocol version mismatch */
    ELM_EDAEMON = -1004,      /* the daemon is not running or stopped answering */
    ELM_EBUSY = -1005,        /* the daemon has no room for this request now; try later */
    ELM_ECONTEXT = -1006,     /* the request does not fit the model's context */
    ELM_ECANCELED = -1007,    /* the request was cancelled */
    ELM_ERING = -1008,        /* a shared-memory ring holds an invalid record */
    ELM_ENOMODEL = -1009,     /* no model is loaded */
    ELM_ESESSION = -1010,     /* unknown or closed session */
    ELM_ETOKEN = -1011,       /* token id out of the vocabulary */
    ELM_ESHUTDOWN = -1012,    /* the daemon is shutting down */
};

/* Returns a static, human-readable name for any code returned by an elm function (0, -errno or
 * ELM_E*). Never returns NULL. Thread-safe. */
const char *elm_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
