# find_package(DeePMD) for deepmd_md's libdeepmd_c.so: DeePMD-kit's C API over the deepmd_md core
# (docs/deepmd_c.md). Defines the imported target DeePMD::deepmd_c (library + deepmd/c_api.h).
# Point CMake here with -DCMAKE_PREFIX_PATH=$(python -m deepmd_md.deepmd_c --prefix).
# Installed as <prefix>/lib/cmake/DeePMD/DeePMDConfig.cmake, next to <prefix>/lib/libdeepmd_c.so
# and <prefix>/include/deepmd/c_api.h. DeePMD-kit's C++ library (DeePMD::deepmd_cc) is not provided.
get_filename_component(_deepmd_md_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT EXISTS "${_deepmd_md_prefix}/lib/libdeepmd_c.so" OR NOT EXISTS "${_deepmd_md_prefix}/include/deepmd/c_api.h")
  set(DeePMD_FOUND FALSE)
  set(DeePMD_NOT_FOUND_MESSAGE "deepmd_md's libdeepmd_c.so or deepmd/c_api.h is missing under ${_deepmd_md_prefix}")
  return()
endif()
if(NOT TARGET DeePMD::deepmd_c)
  add_library(DeePMD::deepmd_c SHARED IMPORTED)
  set_target_properties(DeePMD::deepmd_c PROPERTIES
    IMPORTED_LOCATION "${_deepmd_md_prefix}/lib/libdeepmd_c.so"
    INTERFACE_INCLUDE_DIRECTORIES "${_deepmd_md_prefix}/include")
endif()
set(DeePMD_FOUND TRUE)
