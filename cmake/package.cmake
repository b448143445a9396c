# package.cmake — the Debian packages, made by CPack's DEB generator from the install components
# of cmake/install.cmake (scripts/package.sh configures a build with CMAKE_INSTALL_PREFIX=/usr
# and runs cpack in it):
#   elm               elmd, elmctl, elm-bench, their man pages, the docs, the sample elmd.conf,
#                     the systemd user unit
#   libelmclient0     libelmclient.so.0 (the soname's major version is the package's number)
#   libelmclient-dev  headers, libelmclient.so, libelmclient.a, elmclient.pc, libelmclient(3)
# Depends: dpkg-shlibdeps reads each package's ELF files; libelmclient0 ships a shlibs file, so
# programs built against it depend on "libelmclient0 (>= this version)".
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME elm)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "elm maintainers <elm@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX ${CMAKE_INSTALL_PREFIX})
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL elm lib dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://localhost/elm")

set(CPACK_DEBIAN_ELM_PACKAGE_NAME elm)
set(CPACK_DEBIAN_ELM_PACKAGE_SECTION misc)
set(CPACK_DEBIAN_ELM_DESCRIPTION "on-device LLM inference daemon and tools
 elmd keeps one copy of a GGUF model in memory and serves it to every program of its
 user through libelmclient; elmctl drives it or runs a model in-process; elm-bench
 measures the machine.")

set(CPACK_DEBIAN_LIB_PACKAGE_NAME libelmclient${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON) # only libelmclient0 has a shared library
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
set(CPACK_DEBIAN_LIB_DESCRIPTION "client library of elmd, the elm inference daemon
 libelmclient connects programs to elmd and streams completions through shared memory.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libelmclient-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# the library itself, exactly this version (CPACK_COMPONENT_DEV_DEPENDS); nothing else: the
# library speaks ZeroMQ's wire itself (libclient/zmtp.c)
set(CPACK_COMPONENT_DEV_DEPENDS lib)
set(CPACK_DEBIAN_DEV_DESCRIPTION "client library of elmd: development files
 Headers, the static library and the pkg-config file (elmclient) for programs using elmd.")

include(CPack)
