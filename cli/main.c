/* SPDX-License-Identifier: MIT */
/*
 * The qrlogin command. Like curl's src/, it is only a client of the public headers: the
 * subcommands parse arguments and call the library.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *f)
{
    fputs(
        "usage: qrlogin <command> [options]\n"
        "\n"
        "commands:\n"
        "  serve                  run the server (see qrlogin serve --help)\n"
        "  account add USER       create an account (password from a prompt or stdin)\n"
        "  account passwd USER    set a new password\n"
        "  tv                     act as a screen: show a QR code and sign in (qrlogin tv --help)\n"
        "  phone                  act as a phone: sign in, approve, list and revoke devices\n"
        "                         (qrlogin phone --help)\n"
        "  version                print the version (also --version)\n"
        "  help [COMMAND]         show this text, or the help of COMMAND (also COMMAND --help)\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error, 130 cancelled with Ctrl-C.\n"
        "Documentation: docs/cli.md, docs/api.md\n",
        f);
}

void qrl_cli_err(const char *fmt, ...)
{
    va_list ap;

    fputs("qrlogin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

bool qrl_cli_read_password(const char *prompt, char *buf, size_t len)
{
    struct termios old, noecho;
    bool tty = prompt != NULL && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    bool ok;

    if (tty) {
        fputs(prompt, stderr);
        fflush(stderr);
        noecho = old;
        noecho.c_lflag &= ~(tcflag_t)ECHO;
        qrl_cli_tty_remember(&old);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &noecho);
    }
    ok = fgets(buf, (int)len, stdin) != NULL;
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        qrl_cli_tty_forget();
        fputc('\n', stderr);
    }
    if (!ok)
        return false;
    size_t n = strlen(buf);
    if (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == len - 1)
        return false; /* longer than the buffer */
    if (n > 0 && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return true;
}

bool qrl_cli_parse_seconds(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0')
        return false;
    v = strtoll(s, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

const char *qrl_cli_env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : def;
}

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"serve", qrl_cli_serve},
    {"account", qrl_cli_account},
    {"phone", qrl_cli_phone},
    {"tv", qrl_cli_tv},
};

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

/* `qrlogin help COMMAND` is `qrlogin COMMAND --help`. */
static int help(int argc, char **argv)
{
    const struct command *cmd;
    char help_flag[] = "--help";
    char *sub[3];

    if (argc < 3) {
        usage(stdout);
        return 0;
    }
    if ((cmd = find_command(argv[2])) == NULL) {
        qrl_cli_err("no help on '%s': not a command", argv[2]);
        usage(stderr);
        return 2;
    }
    sub[0] = argv[2];
    sub[1] = help_flag;
    sub[2] = NULL;
    return cmd->run(2, sub);
}

int main(int argc, char **argv)
{
    const struct command *cmd;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if ((cmd = find_command(argv[1])) != NULL) {
        /* `serve` and `tv` block SIGINT and take it on a thread of their own; for the others
         * Ctrl-C ends the command at once, with the terminal restored. */
        qrl_cli_exit_on_interrupt();
        return cmd->run(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0)
        return help(argc, argv);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("qrlogin %s\n", QRL_VERSION);
        return 0;
    }
    qrl_cli_err("unknown command '%s'", argv[1]);
    usage(stderr);
    return 2;
}
