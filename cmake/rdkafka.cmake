# cmake/rdkafka.cmake - finds a librdkafka of at least BALLAST_RDKAFKA_FLOOR.
#
# The system's (pkg-config) when it meets the floor; otherwise the newest one that
# scripts/install-deps built into its cache ($BALLAST_CACHE, default ~/.cache/ballast,
# librdkafka-VERSION/ with a .complete marker). Stops with one line saying what to do
# when there is neither. Include it after find_package(PkgConfig).
#
# Defines:
#   PkgConfig::RDKAFKA        the imported target to link
#   RDKAFKA_VERSION           its version
#   BALLAST_RDKAFKA_PRIVATE   ON when it is the cache's build (not on the system's
#                             search path: linked with a RUNPATH, and `make install`
#                             installs a copy, see docs/design.md "Dependencies")
#   BALLAST_RDKAFKA_LIBDIR    the directory of its librdkafka.so.1
# The floor: the KIP-848 consumer group protocol is generally available from 2.12.
set(BALLAST_RDKAFKA_FLOOR 2.12)

execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --modversion rdkafka
                OUTPUT_VARIABLE _rdkafka_system OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET RESULT_VARIABLE _rdkafka_rc)
if(NOT _rdkafka_rc EQUAL 0)
  set(_rdkafka_system "")
endif()

set(BALLAST_RDKAFKA_PRIVATE OFF)
if(_rdkafka_system STREQUAL "" OR _rdkafka_system VERSION_LESS BALLAST_RDKAFKA_FLOOR)
  if(DEFINED ENV{BALLAST_CACHE} AND NOT "$ENV{BALLAST_CACHE}" STREQUAL "")
    set(_rdkafka_cache "$ENV{BALLAST_CACHE}")
  else()
    set(_rdkafka_cache "$ENV{HOME}/.cache/ballast")
  endif()
  file(GLOB _rdkafka_builds LIST_DIRECTORIES true "${_rdkafka_cache}/librdkafka-*")
  set(_rdkafka_best "")
  foreach(_dir ${_rdkafka_builds})
    string(REGEX REPLACE ".*/librdkafka-" "" _v "${_dir}")
    if(EXISTS "${_dir}/.complete" AND EXISTS "${_dir}/lib/pkgconfig/rdkafka.pc"
       AND _v VERSION_GREATER_EQUAL BALLAST_RDKAFKA_FLOOR
       AND (_rdkafka_best STREQUAL "" OR _v VERSION_GREATER _rdkafka_best))
      set(_rdkafka_best "${_v}")
      set(_rdkafka_dir "${_dir}")
    endif()
  endforeach()
  if(_rdkafka_best STREQUAL "")
    if(_rdkafka_system STREQUAL "")
      set(_rdkafka_system "none")
    endif()
    message(FATAL_ERROR "librdkafka >= ${BALLAST_RDKAFKA_FLOOR} is needed (system: "
            "${_rdkafka_system}; none built in ${_rdkafka_cache}): run scripts/install-deps")
  endif()
  set(ENV{PKG_CONFIG_PATH} "${_rdkafka_dir}/lib/pkgconfig:$ENV{PKG_CONFIG_PATH}")
  set(BALLAST_RDKAFKA_PRIVATE ON)
endif()

# Checked again on every configure: the choice above may have changed.
unset(__pkg_config_checked_RDKAFKA CACHE)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka>=${BALLAST_RDKAFKA_FLOOR})
pkg_get_variable(BALLAST_RDKAFKA_LIBDIR rdkafka libdir)
