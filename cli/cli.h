/* Shared pieces of the qrlogin command: each subcommand lives in its own file. */
#ifndef QRLOGIN_CLI_H
#define QRLOGIN_CLI_H

#include <stdbool.h>
#include <stddef.h>

int qrl_cli_serve(int argc, char **argv);
int qrl_cli_account(int argc, char **argv);

/* Prints "qrlogin: <message>" to stderr. */
void qrl_cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads one line of a password: from the terminal without echo when `prompt` is non-NULL and
 * stdin is a terminal, else from stdin. Strips the newline. false on EOF or too long. */
bool qrl_cli_read_password(const char *prompt, char *buf, size_t len);
/* Parses a decimal number of seconds in [min, max]. */
bool qrl_cli_parse_seconds(const char *s, long long min, long long max, long long *out);
/* The value of an environment variable when set and non-empty, else `def`. */
const char *qrl_cli_env(const char *name, const char *def);

#endif
