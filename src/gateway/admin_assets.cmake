# Embeds the dashboard's files (src/gateway/admin/) into a C file at build time:
#   cmake -DOUT=admin_assets.c -DDIR=src/gateway/admin -P admin_assets.cmake
# Each file NAME.EXT becomes `const unsigned char sipp__gw_asset_NAME_EXT[]` (NUL-terminated)
# and `const unsigned long sipp__gw_asset_NAME_EXT_len` (without the NUL).
set(files index.html app.js app.css)
set(out "/* generated from src/gateway/admin/ by admin_assets.cmake; do not edit */\n")
foreach(f ${files})
  file(READ "${DIR}/${f}" hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR n "${n} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "[.]" "_" sym "${f}")
  string(APPEND out "const unsigned char sipp__gw_asset_${sym}[] = {${bytes}0};\n")
  string(APPEND out "const unsigned long sipp__gw_asset_${sym}_len = ${n};\n")
endforeach()
file(WRITE "${OUT}.tmp" "${out}")
file(RENAME "${OUT}.tmp" "${OUT}")
