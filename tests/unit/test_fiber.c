/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of fibers (include/qrlogin/fiber.h): parking and waking across threads, many
 * fibers interleaved on one thread, brief parks, stack reuse, nesting, and deep stacks.
 */
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qrlogin/fiber.h"

typedef struct job {
    int steps;     /* parks this many times */
    int progress;  /* how far it got */
    int wakes;     /* wake callbacks received */
    long checksum; /* computed from locals that live across parks */
    qrl_fiber *self;
    sem_t woken;
} job;

static void on_wake(void *ud)
{
    job *j = ud;
    j->wakes++;
    sem_post(&j->woken);
}

static void run_job(void *arg)
{
    job *j = arg;
    long local[16];

    j->self = qrl_fiber_self();
    for (int i = 0; i < 16; i++)
        local[i] = (long)i * j->steps;
    for (int s = 0; s < j->steps; s++) {
        qrl_fiber_park();
        j->progress++;
    }
    j->checksum = 0;
    for (int i = 0; i < 16; i++)
        j->checksum += local[i];
}

/* Parks once briefly, then once plainly. */
static void run_brief_then_plain(void *arg)
{
    job *j = arg;

    qrl_fiber_park_brief();
    j->progress++;
    qrl_fiber_park();
    j->progress++;
}

/* The owner learns which kind of wait a fiber parked for (the server blocks its thread on a
 * brief one and suspends the connection otherwise), and the mark does not outlive the park. */
static void test_brief_park_is_reported(void **state)
{
    job j = {0};
    qrl_fiber *f;

    (void)state;
    sem_init(&j.woken, 0, 0);
    assert_false(qrl_fiber_brief(NULL));
    f = qrl_fiber_start(run_brief_then_plain, &j, on_wake, &j);
    assert_non_null(f);
    assert_true(qrl_fiber_brief(f));
    qrl_fiber_wake(f);
    sem_wait(&j.woken);
    f = qrl_fiber_resume(f);
    assert_non_null(f);
    assert_int_equal(j.progress, 1);
    assert_false(qrl_fiber_brief(f));
    qrl_fiber_wake(f);
    sem_wait(&j.woken);
    assert_null(qrl_fiber_resume(f));
    assert_int_equal(j.progress, 2);
    assert_int_equal(j.wakes, 2);
    sem_destroy(&j.woken);
}

static void test_no_park_runs_to_completion(void **state)
{
    job j = {.steps = 0};

    (void)state;
    assert_null(qrl_fiber_self());
    sem_init(&j.woken, 0, 0);
    assert_null(qrl_fiber_start(run_job, &j, on_wake, &j));
    assert_non_null(j.self); /* it did run on a fiber */
    assert_int_equal(j.progress, 0);
    assert_int_equal(j.wakes, 0);
    assert_null(qrl_fiber_self());
    sem_destroy(&j.woken);
}

static void *waker(void *arg)
{
    qrl_fiber_wake(arg);
    return NULL;
}

/* Parks twice; each time another thread wakes it, and this thread continues it. */
static void test_park_and_wake_from_another_thread(void **state)
{
    job j = {.steps = 2};
    qrl_fiber *f;
    pthread_t th;

    (void)state;
    sem_init(&j.woken, 0, 0);
    f = qrl_fiber_start(run_job, &j, on_wake, &j);
    assert_non_null(f);
    assert_ptr_equal(f, j.self);
    assert_int_equal(j.progress, 0);
    assert_null(qrl_fiber_self()); /* back on the thread's own stack */
    for (int round = 1; round <= 2; round++) {
        assert_int_equal(pthread_create(&th, NULL, waker, f), 0);
        sem_wait(&j.woken);
        pthread_join(th, NULL);
        f = qrl_fiber_resume(f);
        assert_int_equal(j.progress, round);
        if (round == 1)
            assert_non_null(f);
    }
    assert_null(f);
    assert_int_equal(j.wakes, 2);
    /* 0 + 2 + 4 + ... + 30: the locals survived both parks. */
    assert_int_equal(j.checksum, 240);
    sem_destroy(&j.woken);
}

/* 200 fibers parked at once on one thread, continued round-robin until all are done. */
static void test_many_interleaved(void **state)
{
    enum { N = 200 };
    static job jobs[N];
    qrl_fiber *f[N];
    int live = 0;

    (void)state;
    for (int i = 0; i < N; i++) {
        memset(&jobs[i], 0, sizeof jobs[i]);
        jobs[i].steps = 1 + i % 4;
        sem_init(&jobs[i].woken, 0, 0);
        f[i] = qrl_fiber_start(run_job, &jobs[i], on_wake, &jobs[i]);
        assert_non_null(f[i]);
        live++;
    }
    while (live > 0) {
        for (int i = 0; i < N; i++) {
            if (f[i] == NULL)
                continue;
            qrl_fiber_wake(f[i]);
            f[i] = qrl_fiber_resume(f[i]);
            if (f[i] == NULL)
                live--;
        }
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].progress, jobs[i].steps);
        assert_int_equal(jobs[i].checksum, 120 * jobs[i].steps);
        sem_destroy(&jobs[i].woken);
    }
}

/* Finished fibers' stacks are reused: a thousand fibers in a row use a handful of stacks. */
static void test_stacks_are_reused(void **state)
{
    enum { N = 1000 };
    qrl_fiber *seen[8];
    size_t nseen = 0;
    job j;

    (void)state;
    for (int i = 0; i < N; i++) {
        memset(&j, 0, sizeof j);
        j.steps = 1;
        sem_init(&j.woken, 0, 0);
        qrl_fiber *f = qrl_fiber_start(run_job, &j, on_wake, &j);
        size_t k;
        assert_non_null(f);
        for (k = 0; k < nseen && seen[k] != f; k++)
            ;
        if (k == nseen) {
            assert_true(nseen < 8);
            seen[nseen++] = f;
        }
        qrl_fiber_wake(f);
        assert_null(qrl_fiber_resume(f));
        sem_destroy(&j.woken);
    }
    assert_int_equal(nseen, 1);
}

/* A fiber started from a fiber runs inline: its park returns at once, nothing is nested. */
static void inner(void *arg)
{
    int *ran = arg;
    *ran = 1;
}

static void outer(void *arg)
{
    int *ran = arg;
    assert_null(qrl_fiber_start(inner, ran, NULL, NULL));
}

static void test_nested_start_runs_inline(void **state)
{
    int ran = 0;

    (void)state;
    assert_null(qrl_fiber_start(outer, &ran, NULL, NULL));
    assert_int_equal(ran, 1);
}

/* Handlers may use a good part of the stack (SQLite, the QR encoder): 128 KiB of locals. */
static long deep(int depth)
{
    volatile char buf[4096];

    memset((char *)buf, depth, sizeof buf);
    if (depth == 0)
        return buf[100];
    return buf[depth] + deep(depth - 1);
}

static void deep_job(void *arg)
{
    long *out = arg;
    *out = deep(32);
}

static void test_deep_stack(void **state)
{
    long out = -1;

    (void)state;
    assert_null(qrl_fiber_start(deep_job, &out, NULL, NULL));
    assert_int_equal(out, 528); /* 32 + 31 + ... + 1 + 0 */
}

#if defined(__x86_64__)
#include <xmmintrin.h>

/* Each side keeps its own SSE control word (rounding mode) across switches. */
static void rounding_job(void *arg)
{
    unsigned *seen = arg;
    _mm_setcsr((_mm_getcsr() & ~0x6000u) | 0x4000u); /* round up */
    qrl_fiber_park();
    *seen = _mm_getcsr() & 0x6000u;
    _mm_setcsr(_mm_getcsr() & ~0x6000u);
}

static void test_control_words_kept(void **state)
{
    unsigned seen = 0, before = _mm_getcsr();
    qrl_fiber *f;

    (void)state;
    f = qrl_fiber_start(rounding_job, &seen, NULL, NULL);
    assert_non_null(f);
    assert_int_equal(_mm_getcsr(), before); /* the thread's own mode is untouched */
    assert_null(qrl_fiber_resume(f));
    assert_int_equal(seen, 0x4000u); /* and the fiber's survived its park */
    assert_int_equal(_mm_getcsr(), before);
}
#endif

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_park_runs_to_completion),
        cmocka_unit_test(test_park_and_wake_from_another_thread),
        cmocka_unit_test(test_brief_park_is_reported),
        cmocka_unit_test(test_many_interleaved),
        cmocka_unit_test(test_stacks_are_reused),
        cmocka_unit_test(test_nested_start_runs_inline),
        cmocka_unit_test(test_deep_stack),
#if defined(__x86_64__)
        cmocka_unit_test(test_control_words_kept),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
