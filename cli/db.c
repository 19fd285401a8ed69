/* SPDX-License-Identifier: MIT */
/*
 * The start-up check of the database path, shared by `qrlogin serve` and `qrlogin account`.
 *
 * SQLite opens a read-only file without complaint and fails only at the first write, so a
 * server on a read-only database would print "listening" and then answer every sign-in with a
 * storage failure. In WAL mode SQLite also creates the -wal and -shm files next to the
 * database, so the directory must be writable too. Checking with faccessat(2) under the
 * effective ids first turns each of these into one clear sentence at start.
 *
 * --db may also be a PostgreSQL URI (qrl_store_open() tells them apart the same way): there is
 * no file to check, and the URI may carry a password, which is never printed: every message
 * and --check-config show it through qrl_cli_db_display().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* Copies the directory part of `path` into `dir` ("." for a bare file name). */
static bool dir_of(const char *path, char *dir, size_t len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        return snprintf(dir, len, ".") < (int)len;
    if (slash == path)
        return snprintf(dir, len, "/") < (int)len;
    return snprintf(dir, len, "%.*s", (int)(slash - path), path) < (int)len;
}

bool qrl_cli_db_is_url(const char *db)
{
    return strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
}

/* Appends n bytes of s to out (len bytes, *at used), always NUL-terminated, cut if it must. */
static void put(char *out, size_t len, size_t *at, const char *s, size_t n)
{
    if (*at + 1 >= len)
        return;
    if (n > len - 1 - *at)
        n = len - 1 - *at;
    memcpy(out + *at, s, n);
    *at += n;
    out[*at] = '\0';
}

void qrl_cli_db_display(const char *db, char *out, size_t len)
{
    const char *auth, *q, *at, *colon;
    size_t n = 0;

    if (len == 0)
        return;
    out[0] = '\0';
    if (!qrl_cli_db_is_url(db)) {
        put(out, len, &n, db, strlen(db));
        return;
    }
    auth = strstr(db, "://") + 3;
    /* user:PASSWORD@host: up to the last '@' of all, so that a password with a '/', '?' or
     * '@' in it (which libpq would misread anyway) is hidden whole too. An '@' in a parameter
     * hides more than the password, never less. */
    at = strrchr(auth, '@');
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon != NULL) {
        put(out, len, &n, db, (size_t)(colon + 1 - db));
        put(out, len, &n, "***", 3);
        db = at;
    }
    q = db + strcspn(db, "?");
    put(out, len, &n, db, (size_t)(q - db));
    /* ?password=...&... */
    while (*q != '\0') {
        size_t k = strcspn(q + 1, "&") + 1; /* one parameter with its '?' or '&' */
        if (strncmp(q + 1, "password=", 9) == 0) {
            put(out, len, &n, q, 10);
            put(out, len, &n, "***", 3);
        } else {
            put(out, len, &n, q, k);
        }
        q += k;
    }
}

bool qrl_cli_db_writable(const char *path)
{
    char dir[4096];
    struct stat st;

    /* A PostgreSQL database: nothing on this machine's file system to check. */
    if (qrl_cli_db_is_url(path))
        return true;
    if (path[0] == '\0' || !dir_of(path, dir, sizeof dir)) {
        qrl_cli_err("the database path '%s' is empty or too long", path);
        return false;
    }
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            qrl_cli_err("cannot use database %s: the directory %s does not exist (create it "
                        "first)",
                        path, dir);
        else
            qrl_cli_err("cannot use database %s: cannot reach the directory %s: %s", path, dir,
                        strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        qrl_cli_err("cannot use database %s: %s is not a directory", path, dir);
        return false;
    }
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            qrl_cli_err("cannot use database %s: it is a directory", path);
            return false;
        }
        if (faccessat(AT_FDCWD, path, R_OK | W_OK, AT_EACCESS) != 0) {
            qrl_cli_err("database %s is read-only (%s): qrlogin writes to it on every sign-in; "
                        "make it writable or choose another file",
                        path, strerror(errno));
            return false;
        }
    } else if (errno != ENOENT) {
        qrl_cli_err("cannot use database %s: %s", path, strerror(errno));
        return false;
    }
    if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
        qrl_cli_err("cannot use database %s: its directory %s is not writable (%s), and SQLite "
                    "keeps its write-ahead log (%s-wal) there",
                    path, dir, strerror(errno), path);
        return false;
    }
    return true;
}
