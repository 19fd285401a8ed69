/* SPDX-License-Identifier: MIT */
/*
 * Crash points of test builds (crash.h says what they are for). QRL_CRASH_AT is read by a
 * constructor, before main() and before any thread exists, so the check at a point is one load
 * of a plain integer that never changes afterwards. Release builds compile nothing here.
 */
#ifdef QRL_TEST_HOOKS

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crash.h"

static const char *const names[] = {
#define NAME(id, name, where) [QRL__CRASH_##id] = name,
    QRL__CRASH_POINTS(NAME)
#undef NAME
};

/* The armed point, or -1. Written once before main(). */
static int armed = -1;

static void say(const char *a, const char *b, const char *c)
{
    /* write(2), not stdio: nothing buffered may stand between the line and the kill. */
    (void)!write(STDERR_FILENO, a, strlen(a));
    (void)!write(STDERR_FILENO, b, strlen(b));
    (void)!write(STDERR_FILENO, c, strlen(c));
}

__attribute__((constructor)) static void crash_arm(void)
{
    const char *want = getenv("QRL_CRASH_AT");

    if (want == NULL || want[0] == '\0')
        return;
    for (int i = 0; i < QRL__CRASH__COUNT; i++)
        if (strcmp(want, names[i]) == 0) {
            armed = i;
            return;
        }
    say("qrlogin: QRL_CRASH_AT=", want, " names no crash point (lib/crash.h lists them)\n");
    _exit(1);
}

void qrl__crash_point(enum qrl__crash_point p)
{
    if ((int)p != armed)
        return;
    say("qrlogin: crash point ", names[p], ": SIGKILL\n");
    kill(getpid(), SIGKILL);
    /* SIGKILL cannot be blocked or caught: the process is gone before kill() returns. */
    _exit(137);
}

#else

/* ISO C wants at least one declaration in a translation unit. */
typedef int qrl__crash_points_absent;

#endif
