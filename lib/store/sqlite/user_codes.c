/* SPDX-License-Identifier: MIT */
/*
 * User codes of the SQLite store: which login request each user code names, kept in memory.
 *
 * A phone that cannot scan types the screen's user code; lr_create must keep the codes of
 * unexpired requests unique. An index on the code did both, but its key is random: every new
 * request wrote one random leaf of it to the WAL, copied it back at the next checkpoint, and
 * re-read leaves that had left the writer's page cache, so the rate of new requests fell as the
 * table grew (docs/benchmarks.md). The store keeps the map in memory instead, as the server keeps
 * its poll table: this needs one server process per database file, which the SQLite store
 * already assumes (docs/architecture.md).
 *
 * - It is loaded from the table on first use: the unexpired requests among those whose ids fall
 *   in the last two hours of the clock (a request lives at most an hour, and its id is the
 *   clock when it was made: secret.c) and those with ids below 2^40 (counted ids from before
 *   schema version 3). Both are ranges of the primary key: no full scan.
 * - Only the writer adds to it (lr_create), in id order, so the newest request wins a code.
 * - An entry is a hint, never the answer: a lookup reads the row by its id and checks the code
 *   and the expiry, so an entry left by a write that was rolled back is harmless (it reads as
 *   "no such request", and lr_create reuses its code).
 * - Expired entries stay until the table is rebuilt, which drops them; rebuilds come when
 *   three quarters of the slots are used, so their cost is spread over the inserts.
 *
 * The table is an open-addressing hash table with linear probing and a random odd multiplier
 * (struct uc_map in sqlite_internal.h; the index of a code as in lib/hashtab.h), guarded by its
 * own mutex: lookups come from every reading thread, inserts from the writer.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#include "hashtab.h"
#include "sqlite_internal.h"

#define UC_MIN_CAP 1024
#define UC_LEGACY_IDS (INT64_C(1) << 40)
#define UC_LOAD_WINDOW_MS (INT64_C(2) * 3600 * 1000)

int qrl__sqlite_uc_pack(const char *code, uint64_t *out)
{
    if (code == NULL || strlen(code) != QRL_USER_CODE_LEN)
        return 0;
    *out = 0;
    memcpy(out, code, QRL_USER_CODE_LEN);
    return 1;
}

static size_t uc_home(const struct uc_map *m, uint64_t code)
{
    return qrl__hash_index(code, m->mul, m->shift);
}

/* The slot holding `code`, or NULL. Caller holds m->mu. */
struct uc_slot *qrl__sqlite_uc_find(struct uc_map *m, uint64_t code)
{
    if (m->cap == 0)
        return NULL;
    for (size_t i = uc_home(m, code);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i].code == code)
            return &m->slot[i];
        if (m->slot[i].code == 0)
            return NULL;
    }
}

/* Rebuilds the table with room for twice its unexpired entries (at `now_ms`), dropping the
 * expired ones. */
static qrl_err uc_rebuild(struct uc_map *m, int64_t now_ms)
{
    size_t live = 0, cap;
    struct uc_slot *old = m->slot, *ns;
    size_t ocap = m->cap;

    for (size_t i = 0; i < ocap; i++)
        if (old[i].code != 0 && old[i].expires_ms > now_ms)
            live++;
    cap = qrl__hash_size(2 * (live + 1), UC_MIN_CAP);
    ns = calloc(cap, sizeof *ns);
    if (ns == NULL)
        return QRL_ERR_NOMEM;
    m->slot = ns;
    m->cap = cap;
    m->shift = qrl__hash_shift(cap);
    m->used = 0;
    for (size_t i = 0; i < ocap; i++) {
        size_t j;
        if (old[i].code == 0 || old[i].expires_ms <= now_ms)
            continue;
        for (j = uc_home(m, old[i].code); ns[j].code != 0; j = (j + 1) & (cap - 1))
            ;
        ns[j] = old[i];
        m->used++;
    }
    free(old);
    return QRL_OK;
}

/* Makes room for one more code (rebuilding the table if it would be over three quarters full),
 * so that the qrl__sqlite_uc_place() after it cannot fail. Caller holds m->mu. */
qrl_err qrl__sqlite_uc_reserve(struct uc_map *m, int64_t now_ms)
{
    if ((m->used + 1) * 4 > m->cap * 3)
        return uc_rebuild(m, now_ms);
    return QRL_OK;
}

/* Points `code` at request `id`, replacing what it named before; after qrl__sqlite_uc_reserve().
 * Caller holds m->mu. */
void qrl__sqlite_uc_place(struct uc_map *m, uint64_t code, int64_t id, int64_t expires_ms)
{
    struct uc_slot *e;
    size_t i;

    /* One probe: the code's slot, or the free one that ends its run. */
    for (i = uc_home(m, code); m->slot[i].code != 0 && m->slot[i].code != code;
         i = (i + 1) & (m->cap - 1))
        ;
    e = &m->slot[i];
    if (e->code == 0) {
        e->code = code;
        m->used++;
    }
    e->id = id;
    e->expires_ms = expires_ms;
}

/* qrl__sqlite_uc_reserve() and qrl__sqlite_uc_place() in one. Caller holds m->mu. */
static qrl_err uc_put(struct uc_map *m, uint64_t code, int64_t id, int64_t expires_ms,
                      int64_t now_ms)
{
    qrl_err rc = qrl__sqlite_uc_reserve(m, now_ms);

    if (rc == QRL_OK)
        qrl__sqlite_uc_place(m, code, id, expires_ms);
    return rc;
}

/* Loads the map from the table on first use, on the caller's connection. Caller holds m->mu. */
qrl_err qrl__sqlite_uc_load(struct uc_map *m, struct conn *c, int64_t now_ms)
{
    struct timespec ts;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    int64_t wall_ms;
    qrl_err rc;

    if (m->built)
        return QRL_OK;
    if ((rc = stmt_get(c, ST_LR_LIVE_CODES, &s)) != QRL_OK)
        return rc;
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    bind_i64(s, 1, UC_LEGACY_IDS, &brc);
    bind_i64(s, 2, wall_ms > UC_LOAD_WINDOW_MS ? (wall_ms - UC_LOAD_WINDOW_MS) << 11 : 0, &brc);
    bind_i64(s, 3, now_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "user codes");
    randombytes_buf(&m->mul, sizeof m->mul);
    m->mul |= 1;
    if ((rc = uc_rebuild(m, now_ms)) != QRL_OK) {
        sqlite3_reset(s);
        return rc;
    }
    while ((src = sqlite3_step(s)) == SQLITE_ROW) {
        uint64_t code;
        const char *t = (const char *)sqlite3_column_text(s, 1);
        if (!qrl__sqlite_uc_pack(t, &code))
            continue; /* not a code lr_create wrote: it can never be typed */
        rc = uc_put(m, code, sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 2), now_ms);
        if (rc != QRL_OK)
            break;
    }
    sqlite3_reset(s);
    if (rc == QRL_OK && src != SQLITE_DONE)
        rc = qrl__sqlite_db_fail(c, src, "user codes");
    if (rc == QRL_OK)
        m->built = 1;
    return rc;
}

/* The id of the request an unexpired entry names for `code`, or 0. */
int64_t qrl__sqlite_uc_lookup(sqlite_store *s, struct conn *c, const char *code, int64_t now_ms,
                              qrl_err *err)
{
    struct uc_slot *e;
    uint64_t k;
    int64_t id = 0;

    *err = QRL_OK;
    if (!qrl__sqlite_uc_pack(code, &k))
        return 0;
    pthread_mutex_lock(&s->uc.mu);
    *err = qrl__sqlite_uc_load(&s->uc, c, now_ms);
    if (*err == QRL_OK && (e = qrl__sqlite_uc_find(&s->uc, k)) != NULL && e->expires_ms > now_ms)
        id = e->id;
    pthread_mutex_unlock(&s->uc.mu);
    return id;
}
