# cmake -DIN=<elf> -DOUT=<file.cc> -DIDENT=<c identifier> -P embed_guest.cmake
# Writes the file's bytes as a C++ array apicv::guests::embedded::k<IDENT>.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT}
  "// Generated from ${IN} by embed_guest.cmake; do not edit.\n"
  "#include <cstddef>\n\n"
  "namespace apicv::guests::embedded {\n"
  "extern const unsigned char k_${IDENT}[];\n"
  "extern const std::size_t k_${IDENT}_size;\n"
  "alignas(16) const unsigned char k_${IDENT}[] = {\n${bytes}\n};\n"
  "const std::size_t k_${IDENT}_size = ${size};\n"
  "}  // namespace apicv::guests::embedded\n")
