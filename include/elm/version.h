/* elm/version.h — the version of the elm headers a program was compiled against, and of the
 * library it runs with. The numbers follow the project's version in CMakeLists.txt (the build
 * checks that they agree). The client-daemon protocol has its own version, negotiated at
 * connect time, so a client and a daemon from different releases can still talk.
 */
#ifndef ELM_VERSION_H
#define ELM_VERSION_H

#ifdef __cplusplus
extern "C" {
#endif

#define ELM_VERSION_MAJOR  0
#define ELM_VERSION_MINOR  1
#define ELM_VERSION_PATCH  0
#define ELM_VERSION_STRING "0.1.0"

/* The version of the library linked at run time, e.g. "0.1.0": static, never NULL. */
const char *elm_version(void);

#ifdef __cplusplus
}
#endif
#endif
