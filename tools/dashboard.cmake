# dashboard.cmake - embeds tools/dashboard.html in a C header at build time,
# so that the page is edited as plain HTML and served from the binary.
#   cmake -DINPUT=tools/dashboard.html -DOUTPUT=dashboard_html.h -P dashboard.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
# 16 bytes a line, each byte as 0xNN.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "/* Generated from tools/dashboard.html by tools/dashboard.cmake: do not edit. */\n"
  "#ifndef BALLAST_DASHBOARD_HTML_H\n#define BALLAST_DASHBOARD_HTML_H\n"
  "/* ${len} bytes, not NUL-terminated. */\n"
  "static const unsigned char dashboard_html[] = {\n    ${bytes}\n};\n#endif\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
