# dashboard.cmake - embeds a page (tools/dashboard.html, tools/lag_dashboard.html)
# in a C header at build time, so that it is edited as plain HTML and served
# from the binary. NAME is the array's name (default dashboard_html).
#   cmake -DINPUT=tools/dashboard.html -DOUTPUT=dashboard_html.h [-DNAME=...] -P dashboard.cmake
if(NOT NAME)
  set(NAME dashboard_html)
endif()
string(TOUPPER "${NAME}" GUARD)
get_filename_component(SOURCE "${INPUT}" NAME)
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
# 16 bytes a line, each byte as 0xNN.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "/* Generated from tools/${SOURCE} by tools/dashboard.cmake: do not edit. */\n"
  "#ifndef BALLAST_${GUARD}_H\n#define BALLAST_${GUARD}_H\n"
  "/* ${len} bytes, not NUL-terminated. */\n"
  "static const unsigned char ${NAME}[] = {\n    ${bytes}\n};\n#endif\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
