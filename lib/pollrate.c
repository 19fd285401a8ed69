/*
 * Poll bookkeeping for the RFC 8628 device-code grant, in memory.
 *
 * For each live login request we remember when its screen was last answered, the interval it
 * must keep (5 s, plus 5 s for each slow_down: RFC 8628 section 3.5) and which state it was last
 * told, so that a held request (Prefer: wait) can wait for a state the client has not seen yet.
 *
 * Why memory and not the store: this is touched on every poll, the hottest path of the server,
 * and losing it costs nothing but one lenient poll after a restart. A screen normally talks to
 * one node; if a load balancer moves it, the new node starts lenient.
 *
 * Open hashing on the request id, one mutex: the critical sections are a few loads and stores.
 */
#include <stdlib.h>

#include "internal.h"

/* Poll arriving this much earlier than the interval is still on time: network jitter and the
 * client's timer granularity must not turn a compliant client into a "too fast" one. */
#define SLACK_MS 1000
/* RFC 8628 section 3.5. */
#define SLOW_DOWN_STEP_S 5
/* Interval never grows past this, so a buggy client can still finish within a request's life. */
#define MAX_INTERVAL_S 60
#define NBUCKETS 4096

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
    struct entry *buckets[NBUCKETS];
};

struct qrl__polltab *qrl__polltab_new(void)
{
    struct qrl__polltab *t = calloc(1, sizeof *t);

    if (t != NULL)
        pthread_mutex_init(&t->mu, NULL);
    return t;
}

void qrl__polltab_free(struct qrl__polltab *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < NBUCKETS; i++) {
        struct entry *e = t->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            free(e);
            e = next;
        }
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static size_t bucket_of(int64_t id)
{
    return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull >> 52) % NBUCKETS;
}

/* Returns the entry for id, creating it when `create`; NULL when absent or out of memory.
 * Caller holds t->mu. */
static struct entry *lookup(struct qrl__polltab *t, int64_t id, int create, int base_interval_s)
{
    size_t b = bucket_of(id);
    struct entry *e;

    for (e = t->buckets[b]; e != NULL; e = e->next)
        if (e->lr_id == id)
            return e;
    if (!create)
        return NULL;
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return NULL;
    e->lr_id = id;
    e->interval_s = base_interval_s;
    e->last_state = QRL_LR_PENDING;
    e->next = t->buckets[b];
    t->buckets[b] = e;
    return e;
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
    e->touched_ms = now_ms;
    if (!exempt && e->last_answer_ms != 0 &&
        now_ms - e->last_answer_ms < (int64_t)e->interval_s * 1000 - SLACK_MS) {
        if (e->interval_s + SLOW_DOWN_STEP_S <= MAX_INTERVAL_S)
            e->interval_s += SLOW_DOWN_STEP_S;
        e->last_answer_ms = now_ms;
        rc = QRL_ERR_SLOW_DOWN;
    }
    *interval_s = e->interval_s;
    *last_state = e->last_state;
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
    size_t b = bucket_of(lr_id);

    pthread_mutex_lock(&t->mu);
    for (struct entry **pp = &t->buckets[b]; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->lr_id == lr_id) {
            struct entry *e = *pp;
            *pp = e->next;
            free(e);
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

void qrl__poll_sweep(struct qrl__polltab *t, int64_t before_ms)
{
    pthread_mutex_lock(&t->mu);
    for (size_t b = 0; b < NBUCKETS; b++) {
        struct entry **pp = &t->buckets[b];
        while (*pp != NULL) {
            struct entry *e = *pp;
            if (e->touched_ms < before_ms) {
                *pp = e->next;
                free(e);
            } else {
                pp = &e->next;
            }
        }
    }
    pthread_mutex_unlock(&t->mu);
}
