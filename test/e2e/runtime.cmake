# cirrus-runtime driven directly (test/e2e/runtime.sh): as root, as a user with subordinate ids
# and as a user without (single mapping).  Needs root (it prepares the users) and the local
# registry of scripts/engines.sh.  CIRRUS_TEST_SKIP=runtime skips (exit 77).
foreach(mode root subid single)
  add_test(NAME e2e_runtime_${mode}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/runtime.sh $<TARGET_FILE:cirrus-runtime>
            $<TARGET_FILE:img_tool> ${mode})
  set_tests_properties(e2e_runtime_${mode} PROPERTIES LABELS "e2e;runtime" TIMEOUT 300
    SKIP_RETURN_CODE 77)
endforeach()
