/* cmd/output.h - how `cirrus run` shows what happens (upstream's echelon renderers).
 *
 *   simple          plain lines: "Started 'main' task", output, "'main' script succeeded in
 *                   0.3s!"; with -p > 1 each task's lines are printed as one block when the
 *                   task finishes, so concurrent logs stay readable
 *   github-actions  simple, each scope wrapped in ##[group] / ##[endgroup]
 *   travis          simple, each scope wrapped in travis_fold:start/end
 *   teamcity        simple, each scope wrapped in ##teamcity[blockOpened/blockClosed]
 *   interactive     a live tree of tasks and steps with spinners and the last output lines
 *   json            one JSON object per line for programs (docs/json-output.md)
 *   auto            travis if TRAVIS=true, github-actions if GITHUB_ACTIONS=true, teamcity if
 *                   TEAMCITY_VERSION is set, simple if CI=true or stdout is not a terminal,
 *                   else interactive
 */
#ifndef CLI_OUTPUT_H
#define CLI_OUTPUT_H

#include "runner/sched.h"

#include <stdio.h>

enum out_mode { OUT_SIMPLE, OUT_GITHUB, OUT_TRAVIS, OUT_TEAMCITY, OUT_INTERACTIVE, OUT_JSON };

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
/* The run as a whole, before the first and after the last event (json shows them; the other
 * modes print nothing).  g: the filtered graph; failure: sched_result's first_failure. */
void out_run_started(struct out *o, const char *run_id, const char *backend, const struct graph *g);
void out_run_finished(struct out *o, int status, const char *failure);
void out_free(struct out *o);

/* "0.3s", "12s", "01:05", "01:02:03" (upstream's duration format). */
void out_format_duration(double seconds, char *buf, size_t size);
/* The scope of a task: "'main' task", "'Build' Task", "'test' task (VERSION:1.14)". */
char *out_task_scope(const struct cfg_task *t);

/* The JSON lines renderer (output_json.c), used by out_* in json mode. */
struct out_json;
struct out_json *out_json_new(FILE *f, bool verbose);
void out_json_run_started(struct out_json *j, const char *run_id, const char *backend,
                          const struct graph *g);
void out_json_event(struct out_json *j, const struct sched_event *ev);
void out_json_run_finished(struct out_json *j, int status, const char *failure, double seconds);
void out_json_free(struct out_json *j);

#endif
