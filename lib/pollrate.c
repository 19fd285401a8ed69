/* SPDX-License-Identifier: MIT */
/*
 * Poll bookkeeping for the RFC 8628 device-code grant, in memory: the interval rules.
 *
 * For each live login request we remember when its screen was last answered, the interval it
 * must keep (5 s, plus 5 s for each slow_down: RFC 8628 section 3.5) and which state it was last
 * told, so that a held request (Prefer: wait) can wait for a state the client has not seen yet.
 *
 * Why memory and not the store: this is touched on every poll, the hottest path of the server,
 * and losing it costs nothing but one lenient poll after a restart. A screen normally talks to
 * one node; if a load balancer moves it, the new node starts lenient.
 *
 * What the store says of a request is not kept here: the cache of pending requests that spares
 * a poll its store read is lib/pending.c.
 *
 * Chained buckets on the request id (multiplicative hashing, lib/hashtab.h), doubled whenever
 * there are more entries than buckets; one mutex: the critical sections are a few loads and
 * stores.
 */
#include <stdlib.h>

#include "hashtab.h"
#include "internal.h"
#include "qrlogin/limits.h"

/* Buckets at first: a power of two, a multiple of SWEEP_SLICE; 512 KiB, touched only as buckets
 * are used. The table doubles whenever it holds more entries than buckets, so chains stay about
 * one entry long: with a fixed 65,536 the chains of a server making 20,000 requests a second
 * grew to ten entries within a minute, and walking them was the largest cost of this file. */
#define NBUCKETS_MIN (1u << 16)

struct entry {
    struct entry *next;
    int64_t lr_id;
    int64_t last_answer_ms;
    int64_t touched_ms;
    int interval_s;
    qrl_lr_state last_state;
};

struct qrl__polltab {
    pthread_mutex_t mu;
    size_t nb;              /* buckets, a power of two */
    unsigned shift;         /* 64 - log2(nb) */
    size_t count;           /* entries */
    struct entry **buckets; /* by request id */
};

struct qrl__polltab *qrl__polltab_new(void)
{
    struct qrl__polltab *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->nb = NBUCKETS_MIN;
    t->shift = qrl__hash_shift(NBUCKETS_MIN);
    t->buckets = calloc(t->nb, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

void qrl__polltab_free(struct qrl__polltab *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nb; i++) {
        struct entry *e = t->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&t->mu);
    free(t->buckets);
    free(t);
}

static size_t bucket_of(const struct qrl__polltab *t, int64_t id)
{
    return qrl__hash_index((uint64_t)id, QRL__HASH_FIB, t->shift);
}

/* Doubles the buckets. Out of memory, the chains just grow longer. Caller holds t->mu. */
static void grow(struct qrl__polltab *t)
{
    size_t onb = t->nb;
    struct entry **ob = t->buckets;
    struct entry **nbk = calloc(2 * onb, sizeof *nbk);

    if (nbk == NULL)
        return;
    t->buckets = nbk;
    t->nb = 2 * onb;
    t->shift--;
    for (size_t i = 0; i < onb; i++) {
        for (struct entry *e = ob[i], *next; e != NULL; e = next) {
            size_t b = bucket_of(t, e->lr_id);
            next = e->next;
            e->next = nbk[b];
            nbk[b] = e;
        }
    }
    free(ob);
}

/* Returns the entry for id, creating it when `create`; NULL when absent or out of memory.
 * Caller holds t->mu. */
static struct entry *lookup(struct qrl__polltab *t, int64_t id, int create, int base_interval_s)
{
    size_t b = bucket_of(t, id);
    struct entry *e;

    for (e = t->buckets[b]; e != NULL; e = e->next)
        if (e->lr_id == id)
            return e;
    if (!create)
        return NULL;
    if (t->count >= t->nb) {
        grow(t);
        b = bucket_of(t, id);
    }
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->lr_id = id;
    e->interval_s = base_interval_s;
    e->last_state = QRL_LR_PENDING;
    e->next = t->buckets[b];
    t->buckets[b] = e;
    t->count++;
    return e;
}

/* The rate decision of a poll on entry e; caller holds t->mu. */
static qrl_err arrive(struct entry *e, int64_t now_ms, int exempt)
{
    e->touched_ms = now_ms;
    if (!exempt && e->last_answer_ms != 0 &&
        now_ms - e->last_answer_ms < (int64_t)e->interval_s * 1000 - QRL__POLL_SLACK_MS) {
        if (e->interval_s + QRL_SLOW_DOWN_STEP_S <= QRL_MAX_POLL_INTERVAL_S)
            e->interval_s += QRL_SLOW_DOWN_STEP_S;
        e->last_answer_ms = now_ms;
        return QRL_ERR_SLOW_DOWN;
    }
    return QRL_OK;
}

qrl_err qrl__poll_arrive(struct qrl__polltab *t, int64_t lr_id, int64_t now_ms, int base_interval_s,
                         int exempt, int *interval_s, qrl_lr_state *last_state)
{
    qrl_err rc = QRL_OK;
    struct entry *e;

    pthread_mutex_lock(&t->mu);
    e = lookup(t, lr_id, 1, base_interval_s);
    if (e == NULL) {
        /* Out of memory: be lenient rather than fail the poll. */
        *interval_s = base_interval_s;
        *last_state = QRL_LR_PENDING;
        goto out;
    }
    rc = arrive(e, now_ms, exempt);
    *interval_s = e->interval_s;
    *last_state = e->last_state;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

qrl_err qrl__poll_answer(struct qrl__polltab *t, int64_t lr_id, int64_t now_ms, int base_interval_s,
                         qrl_lr_state state, int *interval_s)
{
    qrl_err rc = QRL_OK;
    struct entry *e;

    pthread_mutex_lock(&t->mu);
    e = lookup(t, lr_id, 1, base_interval_s);
    *interval_s = e != NULL ? e->interval_s : base_interval_s;
    if (e == NULL)
        goto out; /* out of memory: lenient */
    rc = arrive(e, now_ms, 0);
    if (rc == QRL_OK) {
        e->last_answer_ms = now_ms;
        e->last_state = state;
    }
    *interval_s = e->interval_s;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void qrl__poll_answered(struct qrl__polltab *t, int64_t lr_id, int64_t now_ms, qrl_lr_state state)
{
    struct entry *e;

    pthread_mutex_lock(&t->mu);
    e = lookup(t, lr_id, 0, 0);
    if (e != NULL) {
        e->last_answer_ms = now_ms;
        e->touched_ms = now_ms;
        e->last_state = state;
    }
    pthread_mutex_unlock(&t->mu);
}

qrl_lr_state qrl__poll_last_state(struct qrl__polltab *t, int64_t lr_id)
{
    qrl_lr_state s = QRL_LR_PENDING;
    struct entry *e;

    pthread_mutex_lock(&t->mu);
    e = lookup(t, lr_id, 0, 0);
    if (e != NULL)
        s = e->last_state;
    pthread_mutex_unlock(&t->mu);
    return s;
}

void qrl__poll_forget(struct qrl__polltab *t, int64_t lr_id)
{
    pthread_mutex_lock(&t->mu);
    for (struct entry **pp = &t->buckets[bucket_of(t, lr_id)]; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->lr_id == lr_id) {
            struct entry *e = *pp;
            *pp = e->next;
            t->count--;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

/* Buckets swept per hold of the mutex: a walk over hundreds of thousands of entries at once
 * would hold up every poll for tens of milliseconds. */
#define SWEEP_SLICE 1024
_Static_assert(NBUCKETS_MIN % SWEEP_SLICE == 0, "the sweep walks whole slices");

void qrl__poll_sweep(struct qrl__polltab *t, int64_t before_ms)
{
    /* The table may double between two slices: entries then moved may be passed over (the
     * next sweep takes them) or visited twice (harmless). */
    for (size_t b0 = 0;; b0 += SWEEP_SLICE) {
        pthread_mutex_lock(&t->mu);
        if (b0 >= t->nb) {
            pthread_mutex_unlock(&t->mu);
            break;
        }
        for (size_t b = b0; b < b0 + SWEEP_SLICE; b++) {
            struct entry **pp = &t->buckets[b];
            while (*pp != NULL) {
                struct entry *e = *pp;
                if (e->touched_ms < before_ms) {
                    *pp = e->next;
                    t->count--;
                    free(e);
                } else {
                    pp = &e->next;
                }
            }
        }
        pthread_mutex_unlock(&t->mu);
    }
}
