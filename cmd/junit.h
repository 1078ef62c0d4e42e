/* cmd/junit.h - `cirrus run --junit FILE`: a JUnit XML report of the run.
 *
 *   1. j = junit_new(suite_name)
 *   2. junit_event(j, ev) for every sched_event (alongside the output renderer);
 *   3. junit_write(j, path, &err) once the run is over: the file appears atomically
 *      (written next to it, then renamed), so a reader never sees half a report;
 *   4. junit_free(j).
 *
 * One <testsuite>, one <testcase classname=TASK name="TASK (LABELS)" time=SECONDS> per task
 * that finished.  Failures and timeouts carry <failure message=REASON type=failed|timed_out>
 * with the last JUNIT_TAIL_LINES lines of the task's log; skipped tasks and tasks canceled
 * before they started are <skipped message=REASON/>; a task stopped by Ctrl-C is an <error>;
 * an allowed failure passes, with the reason and the log tail in <system-out>.
 */
#ifndef CLI_JUNIT_H
#define CLI_JUNIT_H

#include "runner/sched.h"

#define JUNIT_TAIL_LINES 100

struct junit;

struct junit *junit_new(const char *suite_name);
void junit_event(struct junit *j, const struct sched_event *ev);
/* The report as XML text (owned by the caller). */
char *junit_xml(const struct junit *j);
/* Write the report to path atomically.  < 0 with *err on failure (path is then untouched). */
int junit_write(const struct junit *j, const char *path, struct ci_error **err);
void junit_free(struct junit *j);

#endif
