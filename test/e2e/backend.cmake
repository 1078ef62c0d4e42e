# The scheduler and the backend operations against real engines (needs scripts/engines.sh to
# have started them).
find_package(Threads REQUIRED)
add_executable(test_backend ${CMAKE_CURRENT_SOURCE_DIR}/e2e/test_backend.c)
target_link_libraries(test_backend PRIVATE ci_runner ci_backends ci_config ci_common
  PkgConfig::ARCHIVE Threads::Threads)
foreach(engine docker podman)
  add_test(NAME e2e_backend_${engine} COMMAND test_backend ${engine})
  # RESOURCE_LOCK: not at the same time as other tests that look at every labelled container
  # of the engine (run.sh removes any it finds after each run).
  set_tests_properties(e2e_backend_${engine} PROPERTIES LABELS "e2e;${engine}" TIMEOUT 600
    SKIP_RETURN_CODE 77 RESOURCE_LOCK ${engine})
endforeach()
