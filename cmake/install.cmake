# install.cmake — where `cmake --install` puts things, and the rule for each package component.
#
# Components (one Debian package each, cmake/package.cmake):
#   elm   the programs, their man pages, the docs, the sample elmd.conf and the systemd user unit
#   lib   libelmclient.so.0 (the runtime library)
#   dev   headers, libelmclient.so, libelmclient.a, elmclient.pc, libelmclient(3)
include(GNUInstallDirs)

# Installed programs find our libraries without LD_LIBRARY_PATH when the libdir
# is not one the dynamic linker searches anyway: $ORIGIN keeps a `cmake --install --prefix P`
# tree relocatable. Under a system libdir (the Debian packages: /usr/lib/<triplet>) no RPATH is
# set, as Debian wants. elmclient.pc makes the same choice for programs built against it.
list(FIND CMAKE_C_IMPLICIT_LINK_DIRECTORIES "${CMAKE_INSTALL_FULL_LIBDIR}" ELM_LIBDIR_INDEX)
if(ELM_LIBDIR_INDEX EQUAL -1)
  set(ELM_LIBDIR_IS_SYSTEM OFF)
  file(RELATIVE_PATH ELM_BIN_TO_LIB "${CMAKE_INSTALL_FULL_BINDIR}" "${CMAKE_INSTALL_FULL_LIBDIR}")
else()
  set(ELM_LIBDIR_IS_SYSTEM ON)
endif()

# A program of the elm package: this one line is all a new program needs to be installed and
# packaged (its man page is one line in man/CMakeLists.txt).
function(elm_install_program target)
  if(NOT ELM_LIBDIR_IS_SYSTEM)
    set_target_properties(${target} PROPERTIES INSTALL_RPATH "$ORIGIN/${ELM_BIN_TO_LIB}")
  endif()
  install(TARGETS ${target} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT elm)
endfunction()
