/* SPDX-License-Identifier: MIT */
/*
 * The start-up check of the database path, shared by `qrlogin serve` and `qrlogin account`.
 *
 * SQLite opens a read-only file without complaint and fails only at the first write, so a
 * server on a read-only database would print "listening" and then answer every sign-in with a
 * storage failure. In WAL mode SQLite also creates the -wal and -shm files next to the
 * database, so the directory must be writable too. Checking with faccessat(2) under the
 * effective ids first turns each of these into one clear sentence at start.
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

bool qrl_cli_db_writable(const char *path)
{
    char dir[4096];
    struct stat st;

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
