/* SPDX-License-Identifier: MIT */
/* Shared pieces of the qrlogin command: each subcommand lives in its own file. */
#ifndef QRLOGIN_CLI_H
#define QRLOGIN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <termios.h>

#include <jansson.h>

int qrl_cli_serve(int argc, char **argv);
int qrl_cli_account(int argc, char **argv);
int qrl_cli_phone(int argc, char **argv);
int qrl_cli_tv(int argc, char **argv);

/* http.c: one HTTP request with an optional JSON body and bearer token. Returns 0 when an
 * answer arrived (any status), -1 on a transport failure (message in out->error). Free the
 * answer with qrl_cli_resp_free. */
typedef struct qrl_cli_resp {
    long status;
    json_t *json; /* parsed body, or NULL */
    char error[256];
} qrl_cli_resp;
int qrl_cli_http(const char *method, const char *url, const char *bearer, const char *json_body,
                 qrl_cli_resp *out);
/* The same with `Prefer: wait=N` (RFC 7240) when wait_s > 0, for a request the server may
 * hold that long; the timeout grows by the wait. */
int qrl_cli_http_wait(const char *method, const char *url, const char *bearer,
                      const char *json_body, int wait_s, qrl_cli_resp *out);
void qrl_cli_resp_free(qrl_cli_resp *r);
const char *qrl_cli_resp_str(const qrl_cli_resp *r, const char *key);
/* Prints why a request failed: transport error, or the server's error_description. */
void qrl_cli_resp_report(const char *what, const qrl_cli_resp *r);

/* qrdecode.c: decodes the first QR code in a PNG file with zbar into `out`. */
bool qrl_cli_qr_decode_png(const char *path, char *out, size_t len, char *err, size_t errlen);
/* Reads one answer key from the terminal (raw, one keystroke) or a line from stdin. */
int qrl_cli_read_key(const char *prompt);
/* Where a terminal role keeps its state: `explicit_path` (an option) when given, else the
 * environment variable `env`, else $XDG_CONFIG_HOME/qrlogin/<file> or ~/.config/qrlogin/<file>. */
void qrl_cli_state_path(const char *explicit_path, const char *env, const char *file, char *out,
                        size_t len);
/* Writes `text` to `path` with mode 0600 (creating directories 0700), atomically. */
bool qrl_cli_write_private(const char *path, const char *text, char *err, size_t errlen);

/* Prints "qrlogin: <message>" to stderr. */
void qrl_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads one line of a password: from the terminal without echo when `prompt` is non-NULL and
 * stdin is a terminal, else from stdin. Strips the newline. false on EOF or too long. */
bool qrl_cli_read_password(const char *prompt, char *buf, size_t len);
/* Parses a whole decimal number in [min, max] (seconds, counts or bytes alike). */
bool qrl_cli_parse_seconds(const char *s, long long min, long long max, long long *out);
/* The value of an environment variable when set and non-empty, else `def`. */
const char *qrl_cli_env(const char *name, const char *def);

/* The version printed by `qrlogin --version`. The build passes the project's version; the
 * fallback is kept equal to it, and tests/e2e/test_cli_messages.c checks that it is. */
#ifndef QRL_VERSION
#define QRL_VERSION "0.1.0"
#endif

/* Exit status of a command stopped by Ctrl-C (SIGINT), as shells report it. */
#define QRL_CLI_EXIT_CANCELLED 130

/* term.c: from now on, Ctrl-C restores the terminal (echo after a password prompt), prints
 * "qrlogin: cancelled" and exits with QRL_CLI_EXIT_CANCELLED. For the commands that only
 * prompt and make short requests; `serve` and `tv` take SIGINT on a thread of their own. */
void qrl_cli_exit_on_interrupt(void);
/* Around a prompt that changes the terminal's mode: `old` is what Ctrl-C restores until
 * qrl_cli_tty_forget(). */
void qrl_cli_tty_remember(const struct termios *old);
void qrl_cli_tty_forget(void);

/* config.c: the settings of `qrlogin serve` from the configuration file, the environment
 * (QRLOGIN_<OPTION>) and the command line, as one argument vector for getopt_long() in which
 * the file's come first, then the environment's, then the command line's: the last one wins.
 * Lifecycle: qrl_cli_conf_load() -> getopt_long(argc, argv) -> qrl_cli_conf_free(). Not
 * thread-safe (getopt's globals). */
#define QRL_CLI_DEFAULT_CONFIG "/etc/qrlogin/qrlogin.conf"
struct option;
struct qrl_cli_conf_arg;
typedef struct qrl_cli_conf {
    int argc;
    char **argv; /* for getopt_long(); owned, with every string in it, until qrl_cli_conf_free */
    char *path;  /* the configuration file read, or NULL */
    /* The rest is config.c's. */
    const struct option *opts;
    int nopts;
    struct qrl_cli_conf_arg *args; /* the file's and the environment's arguments */
    size_t nargs;
    const char **value; /* per option: its effective value ("true" for a flag), or NULL */
    const struct qrl_cli_conf_arg **value_from; /* per option: its argument, NULL: command line */
    char **flags;                               /* per option: "--name" */
} qrl_cli_conf;
/* Reads the file named by --config FILE in argv, else by QRLOGIN_CONFIG, else
 * QRL_CLI_DEFAULT_CONFIG when that exists ("none" reads no file; with --help nothing is read),
 * and the environment, for the options of `opts` (borrowed until qrl_cli_conf_free). Returns 0,
 * or the exit status (2: a bad file, with a message naming FILE:LINE and the key). Call
 * qrl_cli_conf_free() in either case. */
int qrl_cli_conf_load(qrl_cli_conf *c, const struct option *opts, const char *shortopts, int argc,
                      char **argv);
/* Where option `name`'s effective value came from, for messages: "FILE:LINE: name",
 * "QRLOGIN_NAME" or "--name"; NULL when it was not given. Valid until qrl_cli_conf_free. */
const char *qrl_cli_conf_from(const qrl_cli_conf *c, const char *name);
/* Prints every setting as "name = value" with where it came from; secrets as "(set)". */
void qrl_cli_conf_print(const qrl_cli_conf *c, FILE *f);
void qrl_cli_conf_free(qrl_cli_conf *c);

/* db.c: checks, before SQLite opens it, that the database at `path` can be written: the file
 * (when it exists) and its directory, where SQLite keeps its write-ahead log. Prints one line
 * saying what is wrong and returns false otherwise. A PostgreSQL URI passes: no file. */
bool qrl_cli_db_writable(const char *path);
/* Whether --db names a PostgreSQL database (a postgres:// or postgresql:// URI), not a file. */
bool qrl_cli_db_is_url(const char *db);
/* --db as it may be printed: a URI with its password (user:PASSWORD@, ?password=) as "***";
 * a path as it is. Writes at most len bytes, NUL-terminated. */
void qrl_cli_db_display(const char *db, char *out, size_t len);

#endif
