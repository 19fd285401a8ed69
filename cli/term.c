/* SPDX-License-Identifier: MIT */
/*
 * Terminal and file helpers shared by the subcommands: one-keystroke answers, and writing
 * credential files that only the user can read.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* The terminal mode to restore if Ctrl-C comes while a prompt has echo or line editing off. */
static struct termios saved_tty;
static volatile sig_atomic_t tty_saved;

void qrl_cli_tty_remember(const struct termios *old)
{
    saved_tty = *old;
    tty_saved = 1;
}

void qrl_cli_tty_forget(void)
{
    tty_saved = 0;
}

/* Only async-signal-safe calls: tcsetattr, write and _exit. */
static void on_interrupt(int sig)
{
    static const char msg[] = "\nqrlogin: cancelled\n";

    (void)sig;
    if (tty_saved)
        (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(QRL_CLI_EXIT_CANCELLED);
}

void qrl_cli_exit_on_interrupt(void)
{
    struct sigaction sa = {.sa_handler = on_interrupt};

    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

int qrl_cli_read_key(const char *prompt)
{
    struct termios old, raw;
    char line[64];
    int c;

    fputs(prompt, stderr);
    fflush(stderr);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0) {
        raw = old;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        qrl_cli_tty_remember(&old);
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
        c = getchar();
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        qrl_cli_tty_forget();
        fputc('\n', stderr);
        return c;
    }
    if (fgets(line, sizeof line, stdin) == NULL)
        return EOF;
    return (unsigned char)line[0];
}

/* mkdir -p for the parent directories of `path`, mode 0700. */
static bool make_parents(const char *path)
{
    char tmp[4096];

    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return false;
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return false;
        *p = '/';
    }
    return true;
}

bool qrl_cli_write_private(const char *path, const char *text, char *err, size_t errlen)
{
    char tmp[4096];
    size_t n = strlen(text);
    int fd;

    if (!make_parents(path) || snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "cannot create the directory of %s", path);
        return false;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, text, n) != (ssize_t)n || fsync(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return false;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return false;
    }
    return true;
}

void qrl_cli_state_path(const char *explicit_path, const char *env, const char *file, char *out,
                        size_t len)
{
    const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");

    if (explicit_path != NULL)
        snprintf(out, len, "%s", explicit_path);
    else if (getenv(env) != NULL && getenv(env)[0] != '\0')
        snprintf(out, len, "%s", getenv(env));
    else if (xdg != NULL && xdg[0] != '\0')
        snprintf(out, len, "%s/qrlogin/%s", xdg, file);
    else
        snprintf(out, len, "%s/.config/qrlogin/%s", home != NULL ? home : ".", file);
}
