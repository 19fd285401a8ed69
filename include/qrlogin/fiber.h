/* SPDX-License-Identifier: MIT */
/*
 * Fibers: many requests on one worker thread, each waiting for the store's group commit
 * without holding the thread.
 *
 * The server runs every request handler on a fiber (a small stack of its own). When a store
 * write has to wait for its batch to be committed, it parks the fiber instead of blocking the
 * thread: the handler's call returns to the server, which suspends the HTTP connection and goes
 * on serving other connections (for a brief wait, qrl_fiber_park_brief(), it may instead serve
 * its other ready connections first and then block on the wake). The store's writer thread
 * wakes the fiber after the commit; the server resumes the connection, and on that
 * connection's thread the fiber continues where it parked, as if the write had simply
 * returned. Code between the handler and the store stays ordinary synchronous C.
 *
 * Rules:
 * - a fiber is started, resumed and finished on one thread (the connection's worker thread);
 * - code on a fiber never parks while it holds a lock another fiber of the same thread could
 *   want (store writes are made with no lock held);
 * - qrl_fiber_wake() may be called from any thread, before or after the fiber has actually
 *   switched away; the `wake` callback must cope with both (server.c does).
 */
#ifndef QRLOGIN_FIBER_H
#define QRLOGIN_FIBER_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qrl_fiber qrl_fiber;

/* Runs fn(arg) on a new fiber of the calling thread. Returns NULL once fn has returned, or the
 * fiber if it parked: wake(ud) will then be called exactly once, from some thread, when it may
 * continue; its owner then calls qrl_fiber_resume() on this thread. fn runs directly instead,
 * and NULL is returned when it is done, if no stack can be had (its waits then block the
 * thread) or if the caller is itself on a fiber (its waits then park that fiber). */
qrl_fiber *qrl_fiber_start(void (*fn)(void *arg), void *arg, void (*wake)(void *ud), void *ud);

/* Continues a parked fiber after its wake. Returns NULL when fn has returned (the fiber is gone),
 * or the fiber again if it parked again. */
qrl_fiber *qrl_fiber_resume(qrl_fiber *f);

/* The fiber the calling code runs on, or NULL on a plain thread stack. */
qrl_fiber *qrl_fiber_self(void);

/* On a fiber: switches back to the code that started or resumed it; returns once the fiber is
 * resumed. */
void qrl_fiber_park(void);

/* On a fiber: parks like qrl_fiber_park(), telling its owner that the wait is brief (a store
 * commit without a disk flush: tens of microseconds), so that the owner may block its thread
 * on the wake instead of giving the thread to other work meanwhile. */
void qrl_fiber_park_brief(void);

/* Whether the parked fiber f parked with qrl_fiber_park_brief(). */
bool qrl_fiber_brief(const qrl_fiber *f);

/* From any thread: the parked fiber f may continue (calls the wake callback given at start). */
void qrl_fiber_wake(qrl_fiber *f);

#ifdef __cplusplus
}
#endif

#endif
