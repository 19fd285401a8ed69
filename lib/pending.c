/* SPDX-License-Identifier: MIT */
/*
 * The pending-poll cache: what this process has read of login requests that are still PENDING
 * or SCANNED, so that a screen's plain poll of such a request is answered without a store read.
 *
 * Why: polls are most of the server's requests, and nearly all of them are of a request nobody
 * has acted on yet. What may be kept is decided by the store, not by this process: an entry
 * holds the store's change stamp of its request (store.h, lr_stamp) taken before the read it
 * came from, and it is used only while the store still gives the same stamp. So a change made
 * anywhere (this server, `qrlogin account` revoking a phone, another process on the same
 * database) ends its use no later than the change is acknowledged. The core also forgets an
 * entry when it changes the request itself, and entries past their expiry are never used (the
 * store must record EXPIRED: that is a read and a write).
 *
 * This file knows nothing of poll intervals (RFC 8628 section 3.5: lib/pollrate.c): a hit
 * says what the store would answer, the interval rules then decide whether to answer it.
 *
 * Chained buckets by login request id (lib/hashtab.h), doubled whenever there are more entries
 * than buckets; one mutex, held for a few loads and stores. The device-code hash in an entry is
 * compared in constant time: the id in a device code is not secret, its hash is the check.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "hashtab.h"
#include "internal.h"

#define NBUCKETS_MIN (1u << 12)

struct entry {
    struct entry *next;
    int64_t lr_id;
    uint64_t stamp;
    int64_t expires_ms;
    qrl_lr_state state;
    int interval_s;
    qrl_hash dc_hash;
    char client_id[QRL_MAX_CLIENT_ID + 1];
};

struct qrl__pending {
    pthread_mutex_t mu;
    size_t nb;       /* buckets, a power of two */
    unsigned shift;  /* 64 - log2(nb) */
    size_t count;    /* entries */
    struct entry **b;
};

struct qrl__pending *qrl__pending_new(void)
{
    struct qrl__pending *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    t->nb = NBUCKETS_MIN;
    t->shift = qrl__hash_shift(t->nb);
    t->b = calloc(t->nb, sizeof *t->b);
    if (t->b == NULL) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->mu, NULL);
    return t;
}

void qrl__pending_free(struct qrl__pending *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nb; i++)
        for (struct entry *e = t->b[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    pthread_mutex_destroy(&t->mu);
    free(t->b);
    free(t);
}

static struct entry **chain(const struct qrl__pending *t, int64_t id)
{
    return &t->b[qrl__hash_index((uint64_t)id, QRL__HASH_FIB, t->shift)];
}

/* Doubles the buckets; out of memory, chains just grow longer. Caller holds t->mu. */
static void grow(struct qrl__pending *t)
{
    struct entry **old = t->b;
    size_t onb = t->nb;
    struct entry **nb = calloc(2 * onb, sizeof *nb);

    if (nb == NULL)
        return;
    t->b = nb;
    t->nb = 2 * onb;
    t->shift--;
    for (size_t i = 0; i < onb; i++)
        for (struct entry *e = old[i], *next; e != NULL; e = next) {
            struct entry **pp = chain(t, e->lr_id);
            next = e->next;
            e->next = *pp;
            *pp = e;
        }
    free(old);
}

/* The link that points at id's entry, or at the end of its chain. Caller holds t->mu. */
static struct entry **find(const struct qrl__pending *t, int64_t id)
{
    struct entry **pp = chain(t, id);

    while (*pp != NULL && (*pp)->lr_id != id)
        pp = &(*pp)->next;
    return pp;
}

void qrl__pending_learn(struct qrl__pending *t, const qrl_lr_rec *lr, uint64_t stamp)
{
    struct entry **pp, *e;

    /* A request bound to a DPoP key answers only a proof of that key, which the entry cannot
     * check (login_request.c, lr_key_check): its polls read the store. */
    if ((lr->state != QRL_LR_PENDING && lr->state != QRL_LR_SCANNED) || lr->dpop_jkt[0] != '\0')
        return;
    pthread_mutex_lock(&t->mu);
    pp = find(t, lr->id);
    if ((e = *pp) == NULL) {
        if (t->count >= t->nb)
            grow(t);
        e = calloc(1, sizeof *e);
        if (e == NULL)
            goto out; /* nothing is lost: the next poll reads the store */
        e->lr_id = lr->id;
        pp = chain(t, lr->id);
        e->next = *pp;
        *pp = e;
        t->count++;
    }
    e->stamp = stamp;
    e->expires_ms = lr->expires_ms;
    e->state = lr->state;
    e->interval_s = lr->interval_s;
    e->dc_hash = lr->device_code_hash;
    memcpy(e->client_id, lr->client_id, sizeof e->client_id);
out:
    pthread_mutex_unlock(&t->mu);
}

qrl_err qrl__pending_find(struct qrl__pending *t, const qrl_lr_secret_key *key,
                          const char *client_id, int64_t now_ms, qrl__pending_hit *hit)
{
    size_t clen = strlen(client_id);
    qrl_err rc = QRL_ERR_NOT_FOUND;
    struct entry *e;

    pthread_mutex_lock(&t->mu);
    e = *find(t, key->id);
    if (e == NULL || now_ms >= e->expires_ms ||
        sodium_memcmp(e->dc_hash.b, key->hash.b, sizeof key->hash.b) != 0)
        goto out;
    if (clen != strlen(e->client_id) || sodium_memcmp(client_id, e->client_id, clen) != 0) {
        rc = QRL_ERR_INVALID_CLIENT;
        goto out;
    }
    hit->stamp = e->stamp;
    hit->expires_ms = e->expires_ms;
    hit->state = e->state;
    hit->interval_s = e->interval_s;
    rc = QRL_OK;
out:
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void qrl__pending_forget(struct qrl__pending *t, int64_t lr_id)
{
    struct entry **pp, *e;

    pthread_mutex_lock(&t->mu);
    pp = find(t, lr_id);
    if ((e = *pp) != NULL) {
        *pp = e->next;
        t->count--;
        free(e);
    }
    pthread_mutex_unlock(&t->mu);
}

/* Buckets swept per hold of the mutex, so that polls are not held up by a long walk. */
#define SWEEP_SLICE 1024
_Static_assert(NBUCKETS_MIN % SWEEP_SLICE == 0, "the sweep walks whole slices");

void qrl__pending_sweep(struct qrl__pending *t, int64_t now_ms)
{
    /* The table may double between two slices: entries it moves may be passed over (the next
     * sweep takes them) or visited twice (harmless). */
    for (size_t b0 = 0;; b0 += SWEEP_SLICE) {
        pthread_mutex_lock(&t->mu);
        if (b0 >= t->nb) {
            pthread_mutex_unlock(&t->mu);
            break;
        }
        for (size_t i = b0; i < b0 + SWEEP_SLICE; i++) {
            struct entry **pp = &t->b[i];
            while (*pp != NULL) {
                struct entry *e = *pp;
                if (e->expires_ms <= now_ms) {
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
