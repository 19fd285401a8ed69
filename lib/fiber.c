/* SPDX-License-Identifier: MIT */
/*
 * Fibers (include/qrlogin/fiber.h): a stack of FIBER_STACK bytes per fiber from mmap with a
 * guard page below it, and a small per-thread cache of stacks so that a busy worker thread does
 * not map and unmap one per request.
 *
 * Switching: on x86-64 a dozen instructions of our own (ctx_switch below) save the
 * callee-saved registers, the SSE and x87 control words and the stack pointer, and load the
 * other side's. glibc's swapcontext does the same plus a system call to save and restore the
 * signal mask, which fibers of one thread share anyway: four system calls per request that
 * waits for a commit, measured at about 4 % of the server's CPU per login flow. Boost.Context
 * has the same switch but only with a C++ interface. Other architectures use ucontext.
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

#if defined(__x86_64__)
/* A switched-out side is just its stack pointer; the registers are on its stack. */
typedef struct fctx {
    void *sp;
} fctx;

/* Saves the caller's registers on its stack and its stack pointer in *save, then continues the
 * side whose stack pointer is `to` (SysV x86-64: rdi = save, rsi = to). */
void qrl__fctx_switch(void **save, void *to) __attribute__((visibility("hidden")));
__asm__(".text\n"
        ".globl qrl__fctx_switch\n"
        ".hidden qrl__fctx_switch\n"
        ".type qrl__fctx_switch, @function\n"
        "qrl__fctx_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    subq $8, %rsp\n"
        "    stmxcsr (%rsp)\n"
        "    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n"
        "    fldcw 4(%rsp)\n"
        "    addq $8, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size qrl__fctx_switch, .-qrl__fctx_switch\n");

static void ctx_switch(fctx *from, fctx *to)
{
    qrl__fctx_switch(&from->sp, to->sp);
}
#else
typedef ucontext_t fctx;

static void ctx_switch(fctx *from, fctx *to)
{
    swapcontext(from, to);
}
#endif

struct qrl_fiber {
    fctx ctx;    /* the fiber's own context while it is switched out */
    fctx caller; /* where park() and the end of fn return to */
    void (*fn)(void *);
    void *arg;
    void (*wake)(void *);
    void *ud;
    bool done;
    bool ready; /* its context runs entry()'s loop: reuse needs no new context */
    bool brief; /* parked with qrl_fiber_park_brief() */
    void *map;  /* the whole mapping: guard page, stack, this struct */
    size_t map_len;
    struct qrl_fiber *next_free;
#if FIBER_ASAN
    void *fake_stack;          /* ASan's fake stack of the side switched away from */
    const void *caller_bottom; /* the caller's stack, for switching back */
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
    ctx_switch(&f->caller, &f->ctx);
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
    ctx_switch(&f->ctx, &f->caller);
#if FIBER_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &f->caller_bottom, &f->caller_size);
#endif
}

/* A fiber's stack runs this loop for as long as the stack lives: one job per round, and a
 * cached stack is reused by switching into it again. */
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

#if defined(__x86_64__)
/* The first switch into f "returns" into entry() with a fresh stack: below a 16-byte aligned
 * top, entry()'s address where ctx_switch's `ret` finds it (so that entry() starts with the
 * stack aligned as after a call), zeroed callee-saved registers and the default SSE and x87
 * control words (0x1f80, 0x037f). */
static bool prepare(qrl_fiber *f)
{
    uintptr_t top = ((uintptr_t)stack_lo(f) + stack_len(f)) & ~(uintptr_t)15;
    uint64_t *a = (uint64_t *)(top - 16);
    uint64_t *sp = a - 7;

    a[0] = (uint64_t)(uintptr_t)entry;
    a[1] = 0;
    for (int i = 1; i < 7; i++)
        sp[i] = 0; /* r15, r14, r13, r12, rbx, rbp */
    sp[0] = 0x1f80u | (uint64_t)0x037fu << 32;
    f->ctx.sp = sp;
    return true;
}
#else
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
#endif

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

    if (f != NULL) {
        f->brief = false;
        switch_out(f);
    }
}

void qrl_fiber_park_brief(void)
{
    qrl_fiber *f = current;

    if (f != NULL) {
        f->brief = true;
        switch_out(f);
        f->brief = false;
    }
}

bool qrl_fiber_brief(const qrl_fiber *f)
{
    return f != NULL && f->brief;
}

void qrl_fiber_wake(qrl_fiber *f)
{
    f->wake(f->ud);
}
