# cmake/rdkafka.cmake - finds a librdkafka of at least 2.12 (the floor: the KIP-848
# consumer group protocol is generally available from 2.12).
#
# scripts/install-deps decides which one (`--rdkafka-prefix`): the system's when
# pkg-config finds one that meets the floor, otherwise the newest one it built into its
# cache. When there is neither, configuring stops with its one line saying what to do.
# Include this file after find_package(PkgConfig).
#
# Defines:
#   PkgConfig::RDKAFKA        the imported target to link
#   RDKAFKA_VERSION           its version
#   BALLAST_RDKAFKA_PRIVATE   ON when it is the cache's build (not on the system's
#                             search path: linked with a RUNPATH, and `make install`
#                             installs a copy, see docs/design.md "Dependencies")
#   BALLAST_RDKAFKA_LIBDIR    the directory of its librdkafka.so.1
set(BALLAST_RDKAFKA_FLOOR 2.12)

execute_process(COMMAND ${CMAKE_CURRENT_LIST_DIR}/../scripts/install-deps --rdkafka-prefix
                OUTPUT_VARIABLE _rdkafka_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_VARIABLE _rdkafka_error ERROR_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE _rdkafka_rc)
if(NOT _rdkafka_rc EQUAL 0)
  string(REGEX REPLACE "^install-deps: " "" _rdkafka_error "${_rdkafka_error}")
  message(FATAL_ERROR "${_rdkafka_error}")
endif()

set(BALLAST_RDKAFKA_PRIVATE OFF)
if(NOT _rdkafka_prefix STREQUAL "")
  set(ENV{PKG_CONFIG_PATH} "${_rdkafka_prefix}/lib/pkgconfig:$ENV{PKG_CONFIG_PATH}")
  set(BALLAST_RDKAFKA_PRIVATE ON)
endif()

# Checked again on every configure: the choice above may have changed.
unset(__pkg_config_checked_RDKAFKA CACHE)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka>=${BALLAST_RDKAFKA_FLOOR})
pkg_get_variable(BALLAST_RDKAFKA_LIBDIR rdkafka libdir)
