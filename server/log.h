/* SPDX-License-Identifier: MIT */
/*
 * The server's log: JSON Lines (one JSON object per line) on stderr or in a file.
 *
 * Lines are formatted on the caller's stack with the qrl__jl_* functions, then written whole
 * by qrl__log_write(): one write() under the log's mutex. The mutex only orders the lines and
 * the reopen; a file is opened with O_APPEND. A worker that logs waits for that write, so a
 * disk that stalls stalls the workers that log: the price of lines that are never lost or
 * interleaved, and of no logging thread to feed. The lines are short (QRL__LOG_LINE) and a
 * page-cache write returns in microseconds.
 *
 * Lifecycle: qrl__log_init() (stderr, from qrl_server_new) -> qrl__log_open() (the file, from
 * qrl_server_listen) -> qrl__log_write() from any thread, qrl__log_reopen() from any thread
 * (SIGHUP after a rotation) -> qrl__log_close().
 *
 * Nothing secret may reach a line: callers pass route labels, addresses, ids and error codes,
 * never a path, a query, a header, a body, a device code, a user code or a token.
 */
#ifndef QRL_SERVER_LOG_H
#define QRL_SERVER_LOG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qrlogin/error.h"

/* Longest line, newline included. An access line is about 250 bytes, an audit line less; a
 * libmicrohttpd message is cut to fit. */
#define QRL__LOG_LINE 1024
/* Longest string value in a line; longer ones are cut (at a character boundary). */
#define QRL__LOG_VALUE 400

typedef struct qrl__log {
    pthread_mutex_t mu;
    int fd;     /* STDERR_FILENO, or the log file */
    char *path; /* the log file, NULL while the log is stderr */
    int level;  /* qrl_log_level: lines below it are not written */
} qrl__log;

/* A log on stderr at `level` (a qrl_log_level; 0 is QRL_LOG_INFO). */
void qrl__log_init(qrl__log *log, int level);
/* Sends the log to the file `path` from now on (created mode 0640, appended to). NULL or ""
 * keeps stderr. On failure the log stays where it was and errbuf says why. */
qrl_err qrl__log_open(qrl__log *log, const char *path, char *errbuf, size_t errlen);
/* Opens the file again by its name (logrotate moved it away): new lines go to the new file.
 * On failure lines keep going to the old descriptor and a line says so. */
qrl_err qrl__log_reopen(qrl__log *log);
/* Closes the file (not stderr). */
void qrl__log_close(qrl__log *log);
/* Whether lines of `level` are written. */
bool qrl__log_on(const qrl__log *log, int level);

/* A line being formatted. */
typedef struct qrl__jline {
    size_t n;
    char b[QRL__LOG_LINE];
} qrl__jline;

/* Starts a line: {"time":"<RFC 3339 UTC, ms>","level":"<level>","type":"<type>". */
void qrl__jl_begin(qrl__jline *l, int level, const char *type);
/* Adds a member; a string is escaped and cut to QRL__LOG_VALUE bytes, NULL adds nothing. A
 * member that does not fit the line is left out whole. */
void qrl__jl_str(qrl__jline *l, const char *key, const char *val);
void qrl__jl_int(qrl__jline *l, const char *key, long long v);
void qrl__jl_bool(qrl__jline *l, const char *key, bool v);
/* A duration in milliseconds with three decimals, from microseconds. */
void qrl__jl_ms(qrl__jline *l, const char *key, int64_t us);
/* Ends the line and writes it. */
void qrl__log_write(qrl__log *log, qrl__jline *l);
/* A line of type "log": {"source": source, "msg": msg}, when `level` is on. */
void qrl__log_msg(qrl__log *log, int level, const char *source, const char *msg);

/* The name of a level ("debug", "info", "warn", "error"). */
const char *qrl__log_level_name(int level);
/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" for `ms` since the epoch into out (at least 25 bytes). */
void qrl__rfc3339_ms(int64_t ms, char *out, size_t len);
/* Escapes `s` as the inside of a JSON string into out (always terminated), at most `max`
 * bytes of `s` (cut at a UTF-8 character boundary); bytes that are not valid UTF-8 become
 * U+FFFD. Returns the length written. */
size_t qrl__json_escape(const char *s, size_t max, char *out, size_t outlen);

#endif
