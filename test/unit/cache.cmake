# runner/cache.* and runner/artifacts.*: the host side of caches and artifacts.
ci_unit_test(test_cache SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_cache.c
  LIBS ci_runner_t PkgConfig::ARCHIVE)
ci_unit_test(test_artifacts SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_artifacts.c
  LIBS ci_runner_t PkgConfig::ARCHIVE)
# runner/bundle.*: a failed task's container as an OCI runtime bundle (--export-bundle).
ci_unit_test(test_bundle SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_bundle.c
  LIBS ci_runner_t PkgConfig::ARCHIVE PkgConfig::JANSSON)
