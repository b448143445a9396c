# install.cmake — where `cmake --install` puts things, and the rule for each package component.
#
# Components (one Debian package each, cmake/package.cmake):
#   elm   the programs, their man pages, the docs, the sample elmd.conf and the systemd user unit
#   lib   libelmclient.so.0 (the runtime library)
#   dev   headers, libelmclient.so, libelmclient.a, elmclient.pc, libelmclient(3)
include(GNUInstallDirs)

# Where our shared library goes decides elmclient.pc's RPATH (libclient/CMakeLists.txt): none
# under a system libdir (the Debian packages: /usr/lib/<triplet>), as Debian wants.
list(FIND CMAKE_C_IMPLICIT_LINK_DIRECTORIES "${CMAKE_INSTALL_FULL_LIBDIR}" ELM_LIBDIR_INDEX)
if(ELM_LIBDIR_INDEX EQUAL -1)
  set(ELM_LIBDIR_IS_SYSTEM OFF)
else()
  set(ELM_LIBDIR_IS_SYSTEM ON)
endif()

# A program of the elm package: this one line is all a new program needs to be installed and
# packaged (its man page is one line in man/CMakeLists.txt). Programs link only our static
# libraries, so they carry no RPATH: with one, CMake padded the empty build-tree RPATH with ':'
# to the install RPATH's length, which ld.so reads as as many empty entries, i.e. the current
# directory (every library was looked for there first: ~95 failed opens per start, and a
# library planted in the caller's directory would have been loaded).
function(elm_install_program target)
  install(TARGETS ${target} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT elm)
endfunction()
