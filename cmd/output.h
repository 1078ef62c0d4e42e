/* cmd/output.h - how `cirrus run` shows what happens (upstream's echelon renderers).
 *
 *   simple          plain lines: "Started 'main' task", output, "'main' script succeeded in
 *                   0.3s!"; with -p > 1 each task's lines are printed as one block when the
 *                   task finishes, so concurrent logs stay readable
 *   github-actions  simple, each scope wrapped in ##[group] / ##[endgroup]
 *   travis          simple, each scope wrapped in travis_fold:start/end
 *   teamcity        simple, each scope wrapped in ##teamcity[blockOpened/blockClosed]
 *   interactive     a live tree of tasks and steps with spinners and the last output lines
 *   auto            travis if TRAVIS=true, github-actions if GITHUB_ACTIONS=true, teamcity if
 *                   TEAMCITY_VERSION is set, simple if CI=true or stdout is not a terminal,
 *                   else interactive
 */
#ifndef CLI_OUTPUT_H
#define CLI_OUTPUT_H

#include "runner/sched.h"

#include <stdio.h>

enum out_mode { OUT_SIMPLE, OUT_GITHUB, OUT_TRAVIS, OUT_TEAMCITY, OUT_INTERACTIVE };

struct out;

/* Parse an -o value ("auto" resolved from the environment); -1 if unknown. */
int out_mode_parse(const char *s, enum out_mode *mode);
const char *out_mode_name(enum out_mode mode);

/* A renderer writing to f.  parallel > 1 makes simple output block-buffer per task.
 * Interactive mode needs the loop for its redraw timer (out_start/out_stop). */
struct out *out_new(enum out_mode mode, FILE *f, unsigned parallel, bool color, bool verbose);
void out_start(struct out *o, uv_loop_t *loop);
/* The sched_event_cb. */
void out_event(const struct sched_event *ev, void *data);
/* Print the final state (interactive: the collapsed tree) and close the timer. */
void out_stop(struct out *o);
void out_free(struct out *o);

/* "0.3s", "12s", "01:05", "01:02:03" (upstream's duration format). */
void out_format_duration(double seconds, char *buf, size_t size);
/* The scope of a task: "'main' task", "'Build' Task", "'test' task (VERSION:1.14)". */
char *out_task_scope(const struct cfg_task *t);

#endif
