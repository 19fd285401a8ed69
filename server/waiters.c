/* SPDX-License-Identifier: MIT */
/*
 * Held requests: the push half of the token endpoint (Prefer: wait, RFC 7240).
 *
 * A held token request suspends its libmicrohttpd connection, so it costs no thread and no CPU
 * while it waits; what remains is one small waiter record here. Waiters are found two ways:
 * - by login request id, in a hash table, when that request changes state (qrl__hub_notify,
 *   called from the core's change callback on whatever thread made the change);
 * - by deadline, in one binary min-heap served by a single timer thread that sleeps until the
 *   earliest deadline. There is no per-request timer and nothing wakes up needlessly.
 * Either way the waiter is unlinked and its connection resumed; libmicrohttpd then calls the
 * access handler again on a worker thread, which re-reads the state and answers.
 *
 * Lost wake-ups are prevented with a change counter: the handler takes qrl__hub_seq() before it
 * reads the state, and qrl__hub_wait() refuses to suspend if any change happened since, so a
 * change between the read and the suspension is never missed.
 *
 * Keys. A waiter waits under one int64 key, and three kinds of holds share the table, each in a
 * range of its own so that a wake-up of one never reaches another:
 * - a login request's id (> 0, below 2^53): a screen's held token request;
 * - -device_id (-1 down to well above -2^62): a signed-in web screen watching for its
 *   revocation (http_web.c);
 * - -(2^62 + account_id) (qrl_notice_key in core.h): a device waiting for the notices of new
 *   devices of its account (http_notice.c). Device ids never reach 2^62, so the last two never
 *   meet. qrl_server_on_change() passes every nonzero id straight to qrl__hub_notify().
 * QRL_MAX_WAITERS_PER_REQUEST bounds the waiters of every key alike.
 *
 * Lock order: hub->mu, then libmicrohttpd's internal locks (inside suspend/resume).
 */
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../lib/hashtab.h"
#include "http.h"
#include "qrlogin/limits.h"

/* Power of two. 64 Ki buckets keep chains short with tens of thousands of held requests. */
#define NBUCKETS 65536
#define NBUCKETS_SHIFT 48 /* 64 - log2(NBUCKETS): the top 16 bits of a hash (lib/hashtab.h) */
_Static_assert(NBUCKETS == (size_t)1 << (64 - NBUCKETS_SHIFT), "shift and buckets agree");

typedef struct qrl__waiter {
    struct qrl__waiter *next, *prev; /* bucket chain */
    qrl__req *req;
    int64_t lr_id;
    int64_t deadline_ms;
    size_t heap_idx;
    bool timed_out;
} qrl__waiter;

struct qrl__hub {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t timer;
    bool stop, closing, timer_started;
    _Atomic uint64_t seq;
    qrl__waiter *buckets[NBUCKETS];
    qrl__waiter **heap;
    size_t heap_len, heap_cap;
};

int64_t qrl__mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t bucket_of(int64_t id)
{
    return qrl__hash_index((uint64_t)id, QRL__HASH_FIB, NBUCKETS_SHIFT);
}

/* --- min-heap on deadline; caller holds mu --- */

static void heap_set(struct qrl__hub *h, size_t i, qrl__waiter *w)
{
    h->heap[i] = w;
    w->heap_idx = i;
}

static void heap_up(struct qrl__hub *h, size_t i)
{
    qrl__waiter *w = h->heap[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->heap[parent]->deadline_ms <= w->deadline_ms)
            break;
        heap_set(h, i, h->heap[parent]);
        i = parent;
    }
    heap_set(h, i, w);
}

static void heap_down(struct qrl__hub *h, size_t i)
{
    qrl__waiter *w = h->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->heap_len)
            break;
        if (c + 1 < h->heap_len && h->heap[c + 1]->deadline_ms < h->heap[c]->deadline_ms)
            c++;
        if (w->deadline_ms <= h->heap[c]->deadline_ms)
            break;
        heap_set(h, i, h->heap[c]);
        i = c;
    }
    heap_set(h, i, w);
}

static bool heap_push(struct qrl__hub *h, qrl__waiter *w)
{
    if (h->heap_len == h->heap_cap) {
        size_t cap = h->heap_cap ? h->heap_cap * 2 : 1024;
        qrl__waiter **nh = realloc(h->heap, cap * sizeof *nh);
        if (nh == NULL)
            return false;
        h->heap = nh;
        h->heap_cap = cap;
    }
    heap_set(h, h->heap_len++, w);
    heap_up(h, h->heap_len - 1);
    return true;
}

static void heap_remove(struct qrl__hub *h, qrl__waiter *w)
{
    size_t i = w->heap_idx;
    qrl__waiter *last = h->heap[--h->heap_len];

    if (i == h->heap_len)
        return;
    heap_set(h, i, last);
    heap_up(h, i);
    heap_down(h, last->heap_idx);
}

/* --- buckets; caller holds mu --- */

static void bucket_unlink(struct qrl__hub *h, qrl__waiter *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        h->buckets[bucket_of(w->lr_id)] = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
}

/* Unlinks w everywhere and resumes its connection. The waiter record stays with the request
 * until qrl__hub_finish. Caller holds mu. */
static void release(struct qrl__hub *h, qrl__waiter *w, bool timed_out)
{
    bucket_unlink(h, w);
    heap_remove(h, w);
    w->timed_out = timed_out;
    w->heap_idx = SIZE_MAX;
    MHD_resume_connection(w->req->conn);
}

static void *timer_main(void *arg)
{
    struct qrl__hub *h = arg;

    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        if (h->heap_len == 0) {
            pthread_cond_wait(&h->cond, &h->mu);
            continue;
        }
        int64_t now = qrl__mono_ms();
        qrl__waiter *top = h->heap[0];
        if (top->deadline_ms <= now) {
            release(h, top, true);
            continue;
        }
        /* Condition variable on CLOCK_MONOTONIC (set in qrl__hub_new). */
        struct timespec ts = {.tv_sec = top->deadline_ms / 1000,
                              .tv_nsec = (top->deadline_ms % 1000) * 1000000};
        int e = pthread_cond_timedwait(&h->cond, &h->mu, &ts);
        if (e != 0 && e != ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

struct qrl__hub *qrl__hub_new(void)
{
    struct qrl__hub *h = calloc(1, sizeof *h);
    pthread_condattr_t ca;

    if (h == NULL)
        return NULL;
    pthread_mutex_init(&h->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&h->timer, NULL, timer_main, h) != 0) {
        qrl__hub_free(h);
        return NULL;
    }
    h->timer_started = true;
    return h;
}

void qrl__hub_free(struct qrl__hub *h)
{
    if (h == NULL)
        return;
    if (h->timer_started) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_signal(&h->cond);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->timer, NULL);
    }
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->mu);
    free(h->heap);
    free(h);
}

uint64_t qrl__hub_seq(struct qrl__hub *h)
{
    return atomic_load(&h->seq);
}

qrl_err qrl__hub_wait(struct qrl__hub *h, qrl__req *r, int64_t lr_id, int64_t deadline_ms,
                      uint64_t seq)
{
    size_t b = bucket_of(lr_id), same = 0;
    qrl__waiter *w = r->waiter;
    qrl_err rc = QRL_OK;

    if (w == NULL) {
        w = calloc(1, sizeof *w);
        if (w == NULL)
            return QRL_ERR_BUSY;
        w->req = r;
        w->heap_idx = SIZE_MAX;
        r->waiter = w;
    }
    pthread_mutex_lock(&h->mu);
    if (h->closing) {
        rc = QRL_ERR_BUSY;
        goto out;
    }
    if (atomic_load(&h->seq) != seq) {
        rc = QRL_ERR_CONFLICT;
        goto out;
    }
    for (qrl__waiter *o = h->buckets[b]; o != NULL; o = o->next)
        same += o->lr_id == lr_id;
    if (same >= QRL_MAX_WAITERS_PER_REQUEST) {
        rc = QRL_ERR_BUSY;
        goto out;
    }
    w->lr_id = lr_id;
    w->deadline_ms = deadline_ms;
    w->timed_out = false;
    if (!heap_push(h, w)) {
        rc = QRL_ERR_BUSY;
        goto out;
    }
    w->prev = NULL;
    w->next = h->buckets[b];
    if (w->next != NULL)
        w->next->prev = w;
    h->buckets[b] = w;
    if (w->heap_idx == 0)
        pthread_cond_signal(&h->cond); /* new earliest deadline */
    MHD_suspend_connection(r->conn);
out:
    pthread_mutex_unlock(&h->mu);
    return rc;
}

bool qrl__hub_finish(struct qrl__hub *h, qrl__req *r)
{
    bool timed_out = false;

    if (r->waiter != NULL) {
        pthread_mutex_lock(&h->mu);
        timed_out = r->waiter->timed_out || h->closing;
        pthread_mutex_unlock(&h->mu);
    }
    return timed_out;
}

void qrl__hub_cancel(struct qrl__hub *h, qrl__req *r)
{
    qrl__waiter *w = r->waiter;

    if (w == NULL)
        return;
    pthread_mutex_lock(&h->mu);
    if (w->heap_idx != SIZE_MAX) {
        bucket_unlink(h, w);
        heap_remove(h, w);
    }
    pthread_mutex_unlock(&h->mu);
    free(w);
    r->waiter = NULL;
}

void qrl__hub_notify(struct qrl__hub *h, int64_t lr_id)
{
    size_t b = bucket_of(lr_id);

    atomic_fetch_add(&h->seq, 1);
    pthread_mutex_lock(&h->mu);
    for (qrl__waiter *w = h->buckets[b], *next; w != NULL; w = next) {
        next = w->next;
        if (w->lr_id == lr_id)
            release(h, w, false);
    }
    pthread_mutex_unlock(&h->mu);
}

void qrl__hub_wake_all(struct qrl__hub *h, bool closing)
{
    atomic_fetch_add(&h->seq, 1);
    pthread_mutex_lock(&h->mu);
    if (closing)
        h->closing = true;
    while (h->heap_len > 0)
        release(h, h->heap[0], closing);
    pthread_mutex_unlock(&h->mu);
}

size_t qrl__hub_count(struct qrl__hub *h)
{
    size_t n;

    pthread_mutex_lock(&h->mu);
    n = h->heap_len;
    pthread_mutex_unlock(&h->mu);
    return n;
}

void *qrl__hub_take(void *ud, int64_t lr_id, char *address, size_t len)
{
    qrl_server *srv = ud;
    struct qrl__hub *h = srv->hub;
    qrl__req *taken = NULL;

    pthread_mutex_lock(&h->mu);
    for (qrl__waiter *w = h->buckets[bucket_of(lr_id)]; w != NULL; w = w->next) {
        /* A screen that hung up must not get the tokens: they would be lost with it. */
        if (w->lr_id != lr_id || h->closing || qrl__peer_gone(w->req))
            continue;
        bucket_unlink(h, w);
        heap_remove(h, w);
        w->heap_idx = SIZE_MAX;
        taken = w->req;
        snprintf(address, len, "%s", taken->address);
        break;
    }
    pthread_mutex_unlock(&h->mu);
    return taken;
}

void qrl__hub_give(void *ud, void *held, qrl_err rc, const qrl_tokens *t)
{
    qrl__req *r = held;

    (void)ud;
    r->handed = rc == QRL_OK;
    r->handed_rc = rc;
    if (rc == QRL_OK)
        r->handed_tokens = *t;
    /* From here the worker that resumes it owns the request again. */
    MHD_resume_connection(r->conn);
}
