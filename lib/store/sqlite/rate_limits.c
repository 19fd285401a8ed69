/* SPDX-License-Identifier: MIT */
/*
 * Rate limits and housekeeping in the SQLite store: count a hit in a fixed window, peek at a
 * count, take and give back attempts of a GCRA limit, and the sweep that deletes expired login
 * requests, stale counters and expired WebAuthn challenges.
 *
 * GCRA (ratelimit_take): a key's row keeps one time, its theoretical arrival time (TAT, in the
 * start_ms column). Each attempt moves it on by the emission interval e = window / limit
 * (from now, if it lies in the past), and is allowed when the new TAT is at most one window
 * ahead of now. So a key allows `limit` attempts at once, then one per e; in any span of one
 * window it never gets more than limit + 1. One upsert statement decides and counts, so
 * concurrent attempts cannot all pass a check made before any of them is counted.
 *
 * A hit is one upsert statement (INSERT ... ON CONFLICT DO UPDATE ... RETURNING), so the
 * read-modify-write of a counter cannot interleave with another. Hits and sweeps are lazy
 * writes (QRL__SQLITE_WRITES): a counter lost to a power loss only forgives a few failures. The
 * sweep deletes login requests by ranges of the primary key (their ids grow with the clock),
 * never by a scan of the whole table; the challenges are scanned, a table of a few rows per
 * phone that began a ceremony in the last two minutes.
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

/* Rate-limit keys are built by the core from a prefix and a username or an address
 * ("pw:user:<64>", "uc:addr:<63>"); 256 is several times that and rejects garbage. */
#define RATELIMIT_KEY_MAX 256

qrl_err qrl__sqlite_ratelimit_hit_w(qrl_store *st, const char *key, int64_t now_ms,
                                    int64_t window_ms, int64_t *count)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    int64_t hits = 0;
    qrl_err rc;

    if (!str_fits(key, RATELIMIT_KEY_MAX + 1) || window_ms <= 0 || count == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_RL_HIT, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, window_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "ratelimit_hit");
    /* Step to SQLITE_DONE: with RETURNING the autocommit transaction ends only then. */
    while ((src = sqlite3_step(s)) == SQLITE_ROW)
        hits = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return qrl__sqlite_db_fail(c, src, "ratelimit_hit");
    *count = hits;
    return QRL_OK;
}

static qrl_err ratelimit_peek_r(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                                int64_t *count)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    qrl_err rc;

    if (!str_fits(key, RATELIMIT_KEY_MAX + 1) || window_ms <= 0 || count == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_RL_PEEK, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "ratelimit_peek");
    src = sqlite3_step(s);
    *count = 0;
    if (src == SQLITE_ROW && now_ms < sqlite3_column_int64(s, 1) + window_ms)
        *count = sqlite3_column_int64(s, 0);
    else if (src != SQLITE_ROW && src != SQLITE_DONE)
        rc = qrl__sqlite_db_fail(c, src, "ratelimit_peek");
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(ratelimit_peek,
            (qrl_store * st, const char *key, int64_t now_ms, int64_t window_ms, int64_t *count),
            (st, key, now_ms, window_ms, count))

/* The emission interval of a GCRA limit: one attempt per window / limit, at least 1 ms. */
static int64_t emission_ms(int64_t window_ms, int64_t limit)
{
    int64_t e = window_ms / limit;
    return e > 0 ? e : 1;
}

qrl_err qrl__sqlite_ratelimit_take_w(qrl_store *st, const char *key, int64_t now_ms,
                                     int64_t window_ms, int64_t limit, int64_t *retry_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src, taken = 0;
    int64_t e, tat = 0;
    qrl_err rc;

    if (!str_fits(key, RATELIMIT_KEY_MAX + 1) || window_ms <= 0 || limit < 1)
        return QRL_ERR_INVALID;
    e = emission_ms(window_ms, limit);
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_RL_TAKE, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, e, &brc);
    bind_i64(s, 4, window_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "ratelimit_take");
    while ((src = sqlite3_step(s)) == SQLITE_ROW)
        taken = 1;
    sqlite3_reset(s);
    if (src != SQLITE_DONE)
        return qrl__sqlite_db_fail(c, src, "ratelimit_take");
    if (taken)
        return QRL_OK;
    /* Refused: an attempt is taken again once max(tat, t) + e - t <= window, at
     * t = tat + e - window. Read in the same transaction (the writer's batch). */
    if ((rc = stmt_get(c, ST_RL_PEEK, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    if (brc == SQLITE_OK && (src = sqlite3_step(s)) == SQLITE_ROW)
        tat = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    if (retry_ms != NULL)
        *retry_ms = tat + e - window_ms - now_ms > 0 ? tat + e - window_ms - now_ms : 1;
    return QRL_ERR_RATE_LIMITED;
}

qrl_err qrl__sqlite_ratelimit_give_w(qrl_store *st, const char *key, int64_t now_ms,
                                     int64_t window_ms, int64_t limit)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (!str_fits(key, RATELIMIT_KEY_MAX + 1) || window_ms <= 0 || limit < 1)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_RL_GIVE, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, key, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, emission_ms(window_ms, limit), &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "ratelimit_give");
    return qrl__sqlite_stmt_run(c, s, "ratelimit_give");
}

/* A bound above the id of every login request made before `ms`. Ids are the clock in ms when
 * the request was made, times 2048, plus 11 random bits (secret.c); its created_ms is that
 * clock or later (the core's clock may run ahead in tests), and counted ids from before schema
 * version 3 are small. */
static int64_t lr_ids_before(int64_t ms)
{
    if (ms <= 0)
        return 0;
    if (ms >= INT64_C(1) << 51)
        return INT64_MAX;
    return ms << 11;
}

qrl_err qrl__sqlite_sweep_w(qrl_store *st, int64_t now_ms, int64_t keep_ms)
{
    enum stmt_id ids[] = {ST_SWEEP_LR, ST_SWEEP_LR_UNDECIDED, ST_SWEEP_RL, ST_SWEEP_CHAL};
    struct conn *c;
    sqlite3_stmt *s = NULL;
    qrl_err rc;

    if (keep_ms < 0)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && rc == QRL_OK; i++) {
        int brc = SQLITE_OK;

        if ((rc = stmt_get(c, ids[i], &s)) != QRL_OK)
            break;
        bind_i64(s, 1, now_ms, &brc);
        if (ids[i] != ST_SWEEP_CHAL) /* expired challenges go at once: no ?2 */
            bind_i64(s, 2, keep_ms, &brc);
        if (ids[i] == ST_SWEEP_LR)
            bind_i64(s, 3, lr_ids_before(now_ms - keep_ms), &brc);
        if (ids[i] == ST_SWEEP_LR_UNDECIDED)
            bind_i64(s, 3, lr_ids_before(now_ms - 60000), &brc);
        rc = brc != SQLITE_OK ? qrl__sqlite_db_fail(c, brc, "sweep")
                              : qrl__sqlite_stmt_run(c, s, "sweep");
    }
    if (rc != QRL_OK) {
        qrl__sqlite_tx_end(c, 0);
        return rc;
    }
    return qrl__sqlite_tx_end(c, 1);
}
