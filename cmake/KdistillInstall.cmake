# Installs headers, the libraries and a package config, and exports the build tree, so that
# `find_package(kdistill REQUIRED)` + `target_link_libraries(app PRIVATE kdistill::kdistill)` works
# against an install prefix or against this build directory.
#
# Two components, two export sets: `runtime` (kdistill::runtime: Eigen, and HDF5 privately) and
# `kdistill` (kdistill::kdistill: LibTorch). `find_package(kdistill COMPONENTS runtime)` loads only
# the first, so a serving program configures and links on a machine without LibTorch.
include(CMakePackageConfigHelpers)

set(KDISTILL_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/kdistill")

foreach(_kd_set kdistillRuntimeTargets kdistillTargets)
  if(_kd_set STREQUAL "kdistillRuntimeTargets")
    set(_kd_target kdistill_runtime)
  else()
    set(_kd_target kdistill)
  endif()
  install(TARGETS ${_kd_target} EXPORT ${_kd_set}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT ${_kd_set} NAMESPACE kdistill:: DESTINATION ${KDISTILL_CMAKE_DIR})
  # Build-tree export: a consumer may point kdistill_DIR at this build directory.
  export(EXPORT ${_kd_set} NAMESPACE kdistill:: FILE "${PROJECT_BINARY_DIR}/${_kd_set}.cmake")
endforeach()
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/kdistill" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# The config must find the private dependencies too when the libraries are static archives.
set(KDISTILL_SHARED ${BUILD_SHARED_LIBS})

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/kdistillConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/kdistillConfig.cmake"
  INSTALL_DESTINATION ${KDISTILL_CMAKE_DIR})
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/kdistillConfigVersion.cmake"
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/kdistillConfig.cmake"
  "${PROJECT_BINARY_DIR}/kdistillConfigVersion.cmake"
  DESTINATION ${KDISTILL_CMAKE_DIR})
