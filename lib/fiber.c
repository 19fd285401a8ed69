/*
 * Fibers (include/qrlogin/fiber.h) on ucontext: makecontext/swapcontext from glibc, a stack of
 * FIBER_STACK bytes per fiber from mmap with a guard page below it, and a small per-thread cache
 * of stacks so that a busy worker thread does not map and unmap one per request.
 *
 * A fiber lives at the top of its own mapping: the struct, then the stack growing down to the
 * guard page. Nothing is allocated with malloc, so a cached stack left at thread exit is
 * unmapped by the cache's destructor and nothing leaks.
 *
 * Under AddressSanitizer every switch is announced (__sanitizer_start_switch_fiber /
 * __sanitizer_finish_switch_fiber), so that it tracks which stack is live.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "qrlogin/fiber.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define FIBER_ASAN 1
#else
#define FIBER_ASAN 0
#endif

/* Handlers call into SQLite, jansson, libsodium and the QR encoder; their deepest paths use a
 * few tens of KiB. Only touched pages cost memory. */
#define FIBER_STACK (256 * 1024)
/* Stacks kept per thread for reuse: enough for the requests one worker thread has waiting on
 * a commit at once under load. */
#define CACHE_MAX 64

struct qrl_fiber {
    ucontext_t ctx;    /* the fiber's own context while it is switched out */
    ucontext_t caller; /* where park() and the end of fn return to */
    void (*fn)(void *);
    void *arg;
    void (*wake)(void *);
    void *ud;
    bool done;
    bool ready;     /* its context runs entry()'s loop: reuse needs no new context */
    void *map;      /* the whole mapping: guard page, stack, this struct */
    size_t map_len;
    struct qrl_fiber *next_free;
#if FIBER_ASAN
    void *fake_stack;           /* ASan's fake stack of the side switched away from */
    const void *caller_bottom;  /* the caller's stack, for switching back */
    size_t caller_size;
#endif
};

static _Thread_local qrl_fiber *current;
static _Thread_local struct {
    qrl_fiber *head;
    int n;
} cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drain(void *unused)
{
    (void)unused;
    while (cache.head != NULL) {
        qrl_fiber *f = cache.head;
        cache.head = f->next_free;
        munmap(f->map, f->map_len);
    }
    cache.n = 0;
}

static void cache_init(void)
{
    (void)pthread_key_create(&cache_key, cache_drain);
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

static qrl_fiber *fiber_new(void)
{
    size_t pg = page_size(), len = FIBER_STACK + pg;
    unsigned char *m;
    qrl_fiber *f;

    if (cache.head != NULL) {
        f = cache.head;
        cache.head = f->next_free;
        cache.n--;
        return f;
    }
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (mprotect(m, pg, PROT_NONE) != 0) { /* the guard page: an overflow faults at once */
        munmap(m, len);
        return NULL;
    }
    /* The struct at the top of the mapping, aligned; the stack is everything below it. */
    f = (qrl_fiber *)(void *)(((uintptr_t)(m + len) - sizeof *f) & ~(uintptr_t)63);
    f->ready = false;
    f->map = m;
    f->map_len = len;
    return f;
}

static void fiber_free(qrl_fiber *f)
{
    if (cache.n >= CACHE_MAX) {
        munmap(f->map, f->map_len);
        return;
    }
    pthread_once(&cache_once, cache_init);
    (void)pthread_setspecific(cache_key, &cache); /* non-NULL: the destructor runs at exit */
    f->next_free = cache.head;
    cache.head = f;
    cache.n++;
}

static unsigned char *stack_lo(qrl_fiber *f)
{
    return (unsigned char *)f->map + page_size();
}

static size_t stack_len(qrl_fiber *f)
{
    return (size_t)((unsigned char *)f - stack_lo(f));
}

/* From the thread (or resumer) into the fiber, and back when it parks or ends. */
static void switch_in(qrl_fiber *f)
{
    qrl_fiber *prev = current;
#if FIBER_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, stack_lo(f), stack_len(f));
#endif
    current = f;
    swapcontext(&f->caller, &f->ctx);
    current = prev;
#if FIBER_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* From the fiber back to whoever switched in. A finished fiber comes back here too when its
 * stack is reused, so its fake stack (ASan) is always kept. */
static void switch_out(qrl_fiber *f)
{
#if FIBER_ASAN
    __sanitizer_start_switch_fiber(&f->fake_stack, f->caller_bottom, f->caller_size);
#endif
    swapcontext(&f->ctx, &f->caller);
#if FIBER_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &f->caller_bottom, &f->caller_size);
#endif
}

/* A fiber's stack runs this loop for as long as the stack lives: one job per round, and a
 * cached stack is reused by switching into it again (switching costs what glibc's swapcontext
 * costs; getcontext/makecontext only once per stack). */
static void entry(void)
{
    qrl_fiber *f = current;

#if FIBER_ASAN
    __sanitizer_finish_switch_fiber(NULL, &f->caller_bottom, &f->caller_size);
#endif
    for (;;) {
        f->fn(f->arg);
        f->done = true;
        switch_out(f); /* returns when the stack is reused for the next job */
    }
}

/* A context that starts entry() on f's stack. getcontext returns only once here (nothing ever
 * switches to the context it saved before makecontext replaces it); volatile keeps the
 * compiler from warning that it might return twice. */
static bool prepare(qrl_fiber *f)
{
    qrl_fiber *volatile vf = f;

    if (getcontext(&vf->ctx) != 0)
        return false;
    vf->ctx.uc_stack.ss_sp = stack_lo(vf);
    vf->ctx.uc_stack.ss_size = stack_len(vf);
    vf->ctx.uc_link = NULL;
    makecontext(&vf->ctx, entry, 0);
    return true;
}

qrl_fiber *qrl_fiber_start(void (*fn)(void *arg), void *arg, void (*wake)(void *ud), void *ud)
{
    qrl_fiber *f = current != NULL ? NULL : fiber_new();

    if (f == NULL) {
        fn(arg);
        return NULL;
    }
    f->fn = fn;
    f->arg = arg;
    f->wake = wake;
    f->ud = ud;
    f->done = false;
    f->next_free = NULL;
    if (!f->ready) {
#if FIBER_ASAN
        f->fake_stack = NULL;
#endif
        if (!prepare(f)) {
            fiber_free(f);
            fn(arg);
            return NULL;
        }
        f->ready = true;
    }
    return qrl_fiber_resume(f);
}

qrl_fiber *qrl_fiber_resume(qrl_fiber *f)
{
    switch_in(f);
    if (!f->done)
        return f;
    fiber_free(f);
    return NULL;
}

qrl_fiber *qrl_fiber_self(void)
{
    return current;
}

void qrl_fiber_park(void)
{
    qrl_fiber *f = current;

    if (f != NULL)
        switch_out(f);
}

void qrl_fiber_wake(qrl_fiber *f)
{
    f->wake(f->ud);
}
