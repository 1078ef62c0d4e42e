# -o json, --junit, cirrus clean and the interactive output, on each backend (report.sh).
foreach(backend docker podman builtin)
  add_test(NAME e2e_report_${backend}
    COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/report.sh $<TARGET_FILE:cirrus> ${backend})
  set_tests_properties(e2e_report_${backend} PROPERTIES LABELS "e2e;${backend}" TIMEOUT 600
    SKIP_RETURN_CODE 77)
endforeach()
