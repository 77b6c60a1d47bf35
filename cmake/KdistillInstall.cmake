# Installs headers, the library and a package config, and exports the build tree, so that
# `find_package(kdistill REQUIRED)` + `target_link_libraries(app PRIVATE kdistill::kdistill)` works
# against an install prefix or against this build directory.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(KDISTILL_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/kdistill")

install(TARGETS kdistill kdistill_runtime EXPORT kdistillTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/kdistill" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT kdistillTargets NAMESPACE kdistill:: DESTINATION ${KDISTILL_CMAKE_DIR})

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

# Build-tree export: a consumer may point kdistill_DIR at this build directory.
export(EXPORT kdistillTargets NAMESPACE kdistill:: FILE "${PROJECT_BINARY_DIR}/kdistillTargets.cmake")
