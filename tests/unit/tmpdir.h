/* SPDX-License-Identifier: MIT */
/*
 * Unit-test helper shared by the store tests: removes a test's temporary directory and the
 * files in it (databases and their -wal and -shm files; no subdirectories).
 */
#ifndef QRL_TEST_TMPDIR_H
#define QRL_TEST_TMPDIR_H

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void remove_dir(const char *dir)
{
    char p[PATH_MAX];
    struct dirent *e;
    DIR *d = opendir(dir);

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

#endif
