/* SPDX-License-Identifier: MIT */
/*
 * Rate limits and housekeeping in the PostgreSQL store: count a hit in a fixed window, peek at
 * a count, take and give back attempts of a GCRA limit, and the sweep that deletes expired
 * login requests, stale counters and expired WebAuthn challenges.
 *
 * Rate limits are shared by every node (store.h): a key's row is the one counter they all
 * count in. GCRA (ratelimit_take): the row keeps the key's theoretical arrival time (TAT, in
 * start_ms); each attempt moves it on by the emission interval e = window / limit (from now,
 * if it lies in the past) and is taken when the new TAT is at most one window ahead of now. So
 * a key allows `limit` attempts at once, then one per e, and never more than limit + 1 in any
 * window. The decision and the count are one INSERT ... ON CONFLICT DO UPDATE ... WHERE
 * statement, which PostgreSQL runs with the row locked: attempts racing on several nodes are
 * counted one after the other, and none is judged before the ones ahead of it are counted.
 * A fixed-window hit is one such upsert too. All four are lazy writes (statements.c, LAZY): a
 * counter lost to a power loss of the database only forgives a few attempts.
 *
 * The sweep runs on one node at a time: its transaction first tries the sweep's advisory lock
 * (pg_try_advisory_xact_lock), and a node that does not get it skips this round, since another
 * is deleting the same rows right now (store.h: every node sweeps once a minute). It deletes
 * login requests by ranges of the primary key (their ids grow with the clock), never by a scan
 * of the whole table, and is lazy too. The challenges are scanned: a few rows per phone that
 * began a ceremony in the last two minutes.
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

/* Rate-limit keys are built by the core from a prefix and a username or an address
 * ("pw:user:<64>", "uc:addr:<63>"); 256 is several times that and rejects garbage. */
#define RATELIMIT_KEY_MAX 256

static int key_ok(const char *key, int64_t window_ms)
{
    return str_fits(key, RATELIMIT_KEY_MAX + 1) && window_ms > 0;
}

static qrl_err ratelimit_hit_c(struct pg_conn *c, const char *key, int64_t now_ms,
                               int64_t window_ms, int64_t *count)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (!key_ok(key, window_ms) || count == NULL)
        return QRL_ERR_INVALID;
    p_text(&p, key);
    p_i64(&p, now_ms);
    p_i64(&p, window_ms);
    if ((rc = qrl__pg_run(c, PST_RL_HIT, &p, &r, "ratelimit_hit")) != QRL_OK)
        return rc;
    *count = PQntuples(r) > 0 ? qrl__pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    return QRL_OK;
}

PG_WRITE(ratelimit_hit,
         (qrl_store * st, const char *key, int64_t now_ms, int64_t window_ms, int64_t *count),
         (c, key, now_ms, window_ms, count))

static qrl_err ratelimit_peek_c(struct pg_conn *c, const char *key, int64_t now_ms,
                                int64_t window_ms, int64_t *count)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (!key_ok(key, window_ms) || count == NULL)
        return QRL_ERR_INVALID;
    p_text(&p, key);
    if ((rc = qrl__pg_run(c, PST_RL_PEEK, &p, &r, "ratelimit_peek")) != QRL_OK)
        return rc;
    *count = 0;
    if (PQntuples(r) > 0 && now_ms < qrl__pg_col_i64(r, 0, 1) + window_ms)
        *count = qrl__pg_col_i64(r, 0, 0);
    PQclear(r);
    return QRL_OK;
}

PG_READ(ratelimit_peek,
        (qrl_store * st, const char *key, int64_t now_ms, int64_t window_ms, int64_t *count),
        (c, key, now_ms, window_ms, count))

/* The emission interval of a GCRA limit: one attempt per window / limit, at least 1 ms. */
static int64_t emission_ms(int64_t window_ms, int64_t limit)
{
    int64_t e = window_ms / limit;
    return e > 0 ? e : 1;
}

static qrl_err ratelimit_take_c(struct pg_conn *c, const char *key, int64_t now_ms,
                                int64_t window_ms, int64_t limit, int64_t *retry_ms)
{
    struct pg_params p = {0};
    PGresult *r;
    int64_t e, tat = 0;
    int taken = 0;
    qrl_err rc;

    if (!key_ok(key, window_ms) || limit < 1)
        return QRL_ERR_INVALID;
    e = emission_ms(window_ms, limit);
    p_text(&p, key);
    p_i64(&p, now_ms);
    p_i64(&p, e);
    p_i64(&p, window_ms);
    if ((rc = qrl__pg_run(c, PST_RL_TAKE, &p, &r, "ratelimit_take")) != QRL_OK)
        return rc;
    if (PQntuples(r) > 0) {
        taken = qrl__pg_col_i64(r, 0, 0) != 0;
        tat = qrl__pg_col_i64(r, 0, 1);
    }
    PQclear(r);
    if (taken)
        return QRL_OK;
    /* Refused: an attempt is taken again once max(tat, t) + e - t <= window, at
     * t = tat + e - window. */
    if (retry_ms != NULL)
        *retry_ms = tat + e - window_ms - now_ms > 0 ? tat + e - window_ms - now_ms : 1;
    return QRL_ERR_RATE_LIMITED;
}

PG_WRITE(ratelimit_take,
         (qrl_store * st, const char *key, int64_t now_ms, int64_t window_ms, int64_t limit,
          int64_t *retry_ms),
         (c, key, now_ms, window_ms, limit, retry_ms))

static qrl_err ratelimit_give_c(struct pg_conn *c, const char *key, int64_t now_ms,
                                int64_t window_ms, int64_t limit)
{
    struct pg_params p = {0};

    if (!key_ok(key, window_ms) || limit < 1)
        return QRL_ERR_INVALID;
    p_text(&p, key);
    p_i64(&p, now_ms);
    p_i64(&p, emission_ms(window_ms, limit));
    return qrl__pg_exec(c, PST_RL_GIVE, &p, NULL, "ratelimit_give");
}

PG_WRITE(ratelimit_give,
         (qrl_store * st, const char *key, int64_t now_ms, int64_t window_ms, int64_t limit),
         (c, key, now_ms, window_ms, limit))

/* A first sight and its count in one statement (store.h, ratelimit_first_hit): the GCRA take
 * of seen_key with limit 1 and, when it took, the hit of count_key (PST_RL_FIRST_HIT). */
static qrl_err ratelimit_first_hit_c(struct pg_conn *c, const char *seen_key, const char *count_key,
                                     int64_t now_ms, int64_t window_ms, int64_t *count)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (!key_ok(seen_key, window_ms) || !key_ok(count_key, window_ms) || count == NULL ||
        strcmp(seen_key, count_key) == 0)
        return QRL_ERR_INVALID;
    p_text(&p, seen_key);
    p_text(&p, count_key);
    p_i64(&p, now_ms);
    p_i64(&p, window_ms);
    if ((rc = qrl__pg_run(c, PST_RL_FIRST_HIT, &p, &r, "ratelimit_first_hit")) != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? QRL_OK : QRL_ERR_EXISTS;
    *count = rc == QRL_OK ? qrl__pg_col_i64(r, 0, 0) : 0;
    PQclear(r);
    return rc;
}

PG_WRITE(ratelimit_first_hit,
         (qrl_store * st, const char *seen_key, const char *count_key, int64_t now_ms,
          int64_t window_ms, int64_t *count),
         (c, seen_key, count_key, now_ms, window_ms, count))

/* A bound above the id of every login request made before `ms`. Ids are the clock in ms when
 * the request was made, times 2048, plus 11 random bits (lib/secret.c); its created_ms is that
 * clock or later (the core's clock may run ahead in tests). */
static int64_t lr_ids_before(int64_t ms)
{
    if (ms <= 0)
        return 0;
    if (ms >= INT64_C(1) << 51)
        return INT64_MAX;
    return ms << 11;
}

/* The deletes of the sweep, once its lock is taken. */
static qrl_err sweep_tx(struct pg_conn *c, int64_t now_ms, int64_t keep_ms)
{
    struct pg_params lr = {0}, undecided = {0}, rl = {0}, chal = {0};
    qrl_err rc;

    p_i64(&lr, now_ms);
    p_i64(&lr, keep_ms);
    p_i64(&lr, lr_ids_before(now_ms - keep_ms));
    p_i64(&undecided, now_ms);
    p_i64(&undecided, lr_ids_before(now_ms - 60000));
    p_i64(&rl, now_ms);
    p_i64(&rl, keep_ms);
    p_i64(&chal, now_ms);
    if ((rc = qrl__pg_exec(c, PST_SWEEP_LR, &lr, NULL, "sweep")) != QRL_OK ||
        (rc = qrl__pg_exec(c, PST_SWEEP_LR_UNDECIDED, &undecided, NULL, "sweep")) != QRL_OK ||
        (rc = qrl__pg_exec(c, PST_SWEEP_RL, &rl, NULL, "sweep")) != QRL_OK)
        return rc;
    return qrl__pg_exec(c, PST_SWEEP_CHAL, &chal, NULL, "sweep");
}

static qrl_err sweep_c(struct pg_conn *c, int64_t now_ms, int64_t keep_ms)
{
    struct pg_params p = {0};
    PGresult *r;
    int mine = 0;
    qrl_err rc, erc;

    if (keep_ms < 0)
        return QRL_ERR_INVALID;
    if ((rc = qrl__pg_begin(c)) != QRL_OK)
        return rc;
    p_i64(&p, QRL__PG_LOCK_CLASS);
    p_i64(&p, QRL__PG_LOCK_SWEEP);
    if ((rc = qrl__pg_lazy(c)) == QRL_OK &&
        (rc = qrl__pg_run(c, PST_SWEEP_LOCK, &p, &r, "sweep")) == QRL_OK) {
        mine = PQntuples(r) > 0 && qrl__pg_col_i64(r, 0, 0) != 0;
        PQclear(r);
    }
    /* Another node sweeps right now: nothing to do here this time. */
    if (rc == QRL_OK && mine)
        rc = sweep_tx(c, now_ms, keep_ms);
    erc = qrl__pg_end(c, rc == QRL_OK && mine);
    return rc != QRL_OK ? rc : erc;
}

PG_WRITE(sweep, (qrl_store * st, int64_t now_ms, int64_t keep_ms), (c, now_ms, keep_ms))
