# embed.cmake — cmake -DIN=FILE -DOUT=FILE.c -DNAME=SYMBOL -P embed.cmake: writes FILE's bytes
# as a C array SYMBOL (and SYMBOL_len), so elm-httpd carries its chat page in the binary and
# serves it without reading any file at run time.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n"
       bytes "${bytes}")
file(WRITE "${OUT}" "/* generated from ${IN} by httpd/embed.cmake: do not edit */\n"
     "#include <stddef.h>\n"
     "const unsigned char ${NAME}[] = {\n${bytes}};\n"
     "const size_t ${NAME}_len = ${len};\n")
