# `cirrus run` end to end on each backend (test/e2e/run.sh), with the real binary.
foreach(backend docker podman builtin)
  add_test(NAME e2e_run_${backend}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/run.sh $<TARGET_FILE:cirrus> ${backend})
  set_tests_properties(e2e_run_${backend} PROPERTIES LABELS "e2e;${backend}" TIMEOUT 900
    SKIP_RETURN_CODE 77)
endforeach()

# Rootless podman started by cirrus itself for an unprivileged user.
add_test(NAME e2e_podman_rootless
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/podman-rootless.sh $<TARGET_FILE:cirrus>)
set_tests_properties(e2e_podman_rootless PROPERTIES LABELS "e2e;podman" TIMEOUT 300
  SKIP_RETURN_CODE 77)

# The built-in backend as unprivileged users (with and without subordinate ids).
foreach(who subuid single)
  add_test(NAME e2e_run_builtin_user_${who}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/builtin-user.sh $<TARGET_FILE:cirrus> ${who})
  set_tests_properties(e2e_run_builtin_user_${who} PROPERTIES LABELS "e2e;builtin" TIMEOUT 900)
endforeach()

# Caches, artifacts, additional containers, Dockerfile environments, pipes (issue 6).
foreach(backend docker podman builtin)
  add_test(NAME e2e_features_${backend}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/run-features.sh $<TARGET_FILE:cirrus> ${backend})
  set_tests_properties(e2e_features_${backend} PROPERTIES LABELS "e2e;${backend}" TIMEOUT 900
    SKIP_RETURN_CODE 77)
endforeach()

# ... and the same as unprivileged users of the built-in backend.
foreach(who subuid single)
  add_test(NAME e2e_features_builtin_user_${who}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/builtin-user.sh $<TARGET_FILE:cirrus> ${who}
      run-features.sh)
  set_tests_properties(e2e_features_builtin_user_${who} PROPERTIES LABELS "e2e;builtin"
    TIMEOUT 900)
endforeach()
