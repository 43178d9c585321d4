# Turns one compiled shader (SPIR-V) into a C++ source that defines its entry of the shader
# table. Run by shaders/CMakeLists.txt at build time:
#   cmake -DNAME=matvec_f32 -DSPV=x.spv -DSRC=matvec.comp -DPRE=x.pre.comp -DOUT=shader_matvec_f32.cpp
#         -P embed_spirv.cmake
# The binding count is the largest `binding = N` in PRE, the .comp preprocessed with this
# variant's defines (so bindings under an #ifdef count only where it holds), plus one; the
# Recorder checks each dispatch's buffers against it.
file(READ "${SPV}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR n_bytes "${hex_len} / 2")
if(n_bytes EQUAL 0 OR NOT n_bytes MATCHES "^[0-9]+$")
  message(FATAL_ERROR "embed_spirv: ${SPV} is empty")
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){24})" "\\1\n    " bytes "${bytes}")

file(READ "${PRE}" source)
string(REGEX MATCHALL "binding[ \t]*=[ \t]*[0-9]+" bindings "${source}")
set(n_bindings 0)
foreach(b IN LISTS bindings)
  string(REGEX REPLACE "binding[ \t]*=[ \t]*" "" idx "${b}")
  math(EXPR next "${idx} + 1")
  if(next GREATER n_bindings)
    set(n_bindings ${next})
  endif()
endforeach()

get_filename_component(src_name "${SRC}" NAME)
file(WRITE "${OUT}.tmp"
"// Generated from shaders/${src_name} by shaders/embed_spirv.cmake: do not edit.
#include \"glimpse_shaders/shader_ids.h\"

namespace glimpse::vk::shaders {
namespace {
alignas(4) const unsigned char kBytes[${n_bytes}] = {
    ${bytes}
};
}  // namespace
extern const ShaderBinary kShader_${NAME};
const ShaderBinary kShader_${NAME} = {ShaderId::${NAME}, \"${NAME}\", kBytes, sizeof kBytes, ${n_bindings}};
}  // namespace glimpse::vk::shaders
")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
