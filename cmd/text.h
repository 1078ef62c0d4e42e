/* cmd/text.h - making container output safe for JSON and XML reports.
 *
 * Task output is arbitrary bytes; JSON strings and XML documents must be valid UTF-8 (and XML
 * 1.0 forbids most control characters).  These helpers copy text with every invalid byte
 * sequence replaced by U+FFFD, so a report never becomes unreadable because a step printed
 * binary.
 */
#ifndef CLI_TEXT_H
#define CLI_TEXT_H

#include "common/util.h"

/* Append s[0..len) to b as valid UTF-8 (invalid sequences and NUL become U+FFFD).  With xml,
 * characters XML 1.0 does not allow (C0 controls but tab, newline and carriage return,
 * U+FFFE, U+FFFF) become U+FFFD too, and & < > " ' are escaped as entities. */
void cli_text_add_utf8(struct ci_buf *b, const char *s, size_t len, bool xml);

/* How many bytes at the end of s[0..len) are the start of a UTF-8 sequence that is not
 * complete yet (0 to 3): an output chunk may end in the middle of a character. */
size_t cli_text_utf8_tail(const char *s, size_t len);

#endif
