/* SPDX-License-Identifier: MIT */
/*
 * qrlogin account: operator commands for accounts. Passwords come from a prompt (no echo), or
 * with --password-stdin from the first line of standard input, never from the command line,
 * where other users could read them in the process list.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "cli.h"
#include "qrlogin/core.h"

static void account_usage(FILE *f)
{
    fputs("usage: qrlogin account add USER [--display-name NAME] [--password-stdin] [--db PATH]\n"
          "       qrlogin account passwd USER [--password-stdin] [--db PATH]\n"
          "  --db PATH          SQLite database file (QRLOGIN_DB; default qrlogin.db), or a\n"
          "                     PostgreSQL URI postgresql://USER@HOST:PORT/DBNAME\n"
          "  --display-name N   name shown to the user (default: USER)\n"
          "  --password-stdin   read the password from the first line of standard input\n"
          "A database file and its directory must be writable. Exit status: 0 done, 1 failure\n"
          "(account exists, no such account, database), 2 usage error, 130 Ctrl-C.\n",
          f);
}

/* The rule of qrl_account_add (include/qrlogin/core.h), checked before the password prompt so
 * that a typo in the name is a usage error, not a prompt and then a failure. */
static bool username_ok(const char *u)
{
    size_t n = strlen(u);

    return n >= 1 && n <= QRL_MAX_USERNAME &&
           strspn(u, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-") == n;
}

static bool get_password(bool from_stdin, char *pw, size_t len)
{
    char again[QRL_MAX_PASSWORD + 2];
    bool ok;

    if (from_stdin)
        return qrl_cli_read_password(NULL, pw, len) && pw[0] != '\0';
    if (!qrl_cli_read_password("Password: ", pw, len) || pw[0] == '\0')
        return false;
    ok = qrl_cli_read_password("Repeat password: ", again, sizeof again) && strcmp(pw, again) == 0;
    sodium_memzero(again, sizeof again);
    if (!ok)
        qrl_cli_err("passwords do not match");
    return ok;
}

int qrl_cli_account(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"db", required_argument, NULL, 'd'},
        {"display-name", required_argument, NULL, 'n'},
        {"password-stdin", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db = qrl_cli_env("QRLOGIN_DB", "qrlogin.db"), *display = NULL, *verb, *user;
    char pw[QRL_MAX_PASSWORD + 2], err[256] = "";
    bool pw_stdin = false;
    qrl_store *st = NULL;
    qrl_core *core = NULL;
    qrl_config cfg;
    int c, rc = 1;
    qrl_err e;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 'n':
            display = optarg;
            break;
        case 'p':
            pw_stdin = true;
            break;
        case 'h':
            account_usage(stdout);
            return 0;
        default:
            account_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != 2 ||
        (strcmp(argv[optind], "add") != 0 && strcmp(argv[optind], "passwd") != 0)) {
        account_usage(stderr);
        return 2;
    }
    verb = argv[optind];
    user = argv[optind + 1];
    if (!username_ok(user)) {
        qrl_cli_err("invalid username '%s': 1-%d of A-Z a-z 0-9 . _ @ -", user, QRL_MAX_USERNAME);
        return 2;
    }
    if (display != NULL && strlen(display) > QRL_MAX_DISPLAY_NAME) {
        qrl_cli_err("the display name is longer than %d bytes", QRL_MAX_DISPLAY_NAME);
        return 2;
    }
    /* Before the prompt: a password typed for a database that cannot be written is lost. */
    if (!qrl_cli_db_writable(db))
        return 1;
    if (!get_password(pw_stdin, pw, sizeof pw)) {
        qrl_cli_err("no password given (1 to %d bytes)", QRL_MAX_PASSWORD);
        return 2;
    }
    e = qrl_store_open(db, &st, err, sizeof err);
    if (e != QRL_OK) {
        char shown[1024];
        qrl_cli_db_display(db, shown, sizeof shown); /* a URI's password is never printed */
        qrl_cli_err("cannot open database %s: %s", shown, err[0] ? err : qrl_strerror(e));
        goto out;
    }
    qrl_config_defaults(&cfg);
    if ((e = qrl_core_new(&cfg, st, &core)) != QRL_OK) {
        qrl_cli_err("%s", qrl_strerror(e));
        goto out;
    }
    if (strcmp(verb, "add") == 0)
        e = qrl_account_add(core, user, display, pw, NULL);
    else
        e = qrl_account_set_password(core, user, pw);
    if (e == QRL_ERR_EXISTS)
        qrl_cli_err("account '%s' already exists", user);
    else if (e == QRL_ERR_NOT_FOUND)
        qrl_cli_err("no account '%s'", user);
    else if (e == QRL_ERR_INVALID) {
        qrl_cli_err("invalid username or password (username: 1-%d of A-Z a-z 0-9 . _ @ -; "
                    "password: 1-%d bytes; display name: up to %d bytes)",
                    QRL_MAX_USERNAME, QRL_MAX_PASSWORD, QRL_MAX_DISPLAY_NAME);
        rc = 2;
    } else if (e != QRL_OK)
        qrl_cli_err("%s", qrl_strerror(e));
    else {
        printf("qrlogin: account '%s' %s\n", user,
               strcmp(verb, "add") == 0 ? "created" : "updated");
        rc = 0;
    }
out:
    sodium_memzero(pw, sizeof pw);
    qrl_core_free(core);
    if (st != NULL)
        st->m->close(st);
    return rc;
}
