# Every example in examples/ run as its README says (test/e2e/examples.sh), on each backend of
# $CIRRUS_E2E_BACKENDS (default "builtin docker podman"), on the image scripts/example-images.sh
# builds.
add_test(NAME e2e_examples
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/examples.sh $<TARGET_FILE:cirrus>)
set_tests_properties(e2e_examples PROPERTIES LABELS "e2e;examples" TIMEOUT 1200
  SKIP_RETURN_CODE 77)
