# Uses ccache for every compile when it is installed. The sloppiness settings let ccache cache
# translation units built with precompiled headers (the LibTorch targets).
find_program(TECL_CCACHE ccache)
if(TECL_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER
      ${CMAKE_COMMAND} -E env CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      ${TECL_CCACHE})
  message(STATUS "tecl: compiling through ccache (${TECL_CCACHE})")
endif()
