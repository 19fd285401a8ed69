/* SPDX-License-Identifier: MIT */
/*
 * Tokens in the PostgreSQL store: insert, look up (alone, or with the account and device of a
 * session in one read), rotate a refresh token, revoke.
 *
 * Tokens are stored only as hashes and found by them (the hash is the primary key). Each
 * lookup joins the device and the account, so that a token of a revoked device or a disabled
 * account reads as such without a second query.
 *
 * Rotation is the one write that must hold against another node rotating the same token at the
 * same moment (a client retrying through a second node, or a thief): in one transaction it
 * locks the token's device, then the token (FOR NO KEY UPDATE: the lock order of pg_internal.h,
 * the one revocation takes too, so the two cannot deadlock), and only then reads whether the
 * token was used. Of two rotations of one token the second waits for the first's commit and
 * then sees it used: a reuse (RFC 6749 section 10.4), which revokes the whole device, notifies
 * "-<device id>" and is committed although the call fails. insert_tokens() is shared with
 * device creation and redemption, which write tokens inside their own transactions.
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

static int token_valid(const qrl_token_rec *tok)
{
    return tok != NULL && tok->kind >= QRL_TOKEN_ACCESS && tok->kind <= QRL_TOKEN_SESSION &&
           str_fits(tok->client_id, sizeof tok->client_id) &&
           str_fits(tok->scope, sizeof tok->scope);
}

int qrl__pg_tokens_valid(const qrl_token_rec *tok, size_t n)
{
    if (n > 0 && tok == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!token_valid(&tok[i]))
            return 0;
    return 1;
}

static qrl_err insert_token(struct pg_conn *c, const qrl_token_rec *tok, int64_t device_id)
{
    struct pg_params p = {0};

    p_hash(&p, &tok->hash);
    p_i64(&p, (int64_t)tok->kind);
    p_i64(&p, device_id);
    p_i64(&p, tok->created_ms);
    p_i64(&p, tok->expires_ms);
    p_i64(&p, tok->used_ms);
    p_i64(&p, tok->revoked_ms);
    p_text(&p, tok->client_id);
    p_text(&p, tok->scope);
    return qrl__pg_exec(c, PST_TOKEN_INSERT, &p, NULL, "token insert");
}

qrl_err qrl__pg_insert_tokens(struct pg_conn *c, const qrl_token_rec *tok, size_t n,
                              int64_t device_id)
{
    qrl_err rc = QRL_OK;

    for (size_t i = 0; i < n && rc == QRL_OK; i++)
        rc = insert_token(c, &tok[i], device_id);
    return rc;
}

/* Runs a token SELECT of TOKEN_COLS (by hash) and decodes its row. */
static qrl_err token_fetch(struct pg_conn *c, enum pg_stmt id, const qrl_hash *h,
                           qrl_token_rec *out)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    p_hash(&p, h);
    if ((rc = qrl__pg_run(c, id, &p, &r, "token_lookup")) != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? qrl__pg_read_token(r, 0, out) : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

static qrl_err token_insert_c(struct pg_conn *c, const qrl_token_rec *tok)
{
    if (!token_valid(tok))
        return QRL_ERR_INVALID;
    return insert_token(c, tok, tok->device_id);
}

PG_WRITE(token_insert, (qrl_store * st, const qrl_token_rec *tok), (c, tok))

static qrl_err token_lookup_c(struct pg_conn *c, const qrl_hash *h, qrl_token_rec *out)
{
    if (h == NULL || out == NULL)
        return QRL_ERR_INVALID;
    return token_fetch(c, PST_TOKEN_LOOKUP, h, out);
}

PG_READ(token_lookup, (qrl_store * st, const qrl_hash *h, qrl_token_rec *out), (c, h, out))

static qrl_err token_auth_c(struct pg_conn *c, const qrl_hash *h, qrl_token_rec *tok,
                            qrl_account_rec *acc, qrl_device_rec *dev)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (h == NULL || tok == NULL || acc == NULL || dev == NULL)
        return QRL_ERR_INVALID;
    p_hash(&p, h);
    if ((rc = qrl__pg_run(c, PST_TOKEN_AUTH, &p, &r, "token_auth")) != QRL_OK)
        return rc;
    if (PQntuples(r) == 0)
        rc = QRL_ERR_NOT_FOUND;
    if (rc == QRL_OK)
        rc = qrl__pg_read_token(r, 0, tok);
    if (rc == QRL_OK)
        rc = qrl__pg_read_account(r, 0, PG_AUTH_ACCOUNT_COL, acc);
    if (rc == QRL_OK)
        rc = qrl__pg_read_device(r, 0, PG_AUTH_DEVICE_COL, dev);
    PQclear(r);
    return rc;
}

PG_READ(token_auth,
        (qrl_store * st, const qrl_hash *h, qrl_token_rec *tok, qrl_account_rec *acc,
         qrl_device_rec *dev),
        (c, h, tok, acc, dev))

/* Locks the device of the token with hash `old` (nothing when there is no such token). */
static qrl_err lock_token_device(struct pg_conn *c, const qrl_hash *old)
{
    struct pg_params p = {0}, q = {0};
    PGresult *r;
    int64_t dev;
    qrl_err rc;

    p_hash(&p, old);
    if ((rc = qrl__pg_run(c, PST_TOKEN_DEVICE, &p, &r, "token_rotate")) != QRL_OK)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return QRL_ERR_NOT_FOUND;
    }
    dev = qrl__pg_col_i64(r, 0, 0);
    PQclear(r);
    p_i64(&q, dev);
    return qrl__pg_exec(c, PST_DEVICE_LOCK, &q, NULL, "token_rotate");
}

/* The checks and writes of token_rotate inside its transaction. Sets *commit when the outcome
 * must be committed (success, and the device revocation on reuse). */
static qrl_err token_rotate_tx(struct pg_conn *c, const qrl_hash *old, int64_t now_ms,
                               qrl_token_rec *new_tok, size_t n, qrl_token_rec *rec, int *commit)
{
    struct pg_params p = {0};
    int64_t rows = 0;
    int changed = 0;
    qrl_err rc = lock_token_device(c, old);

    if (rc == QRL_OK)
        rc = token_fetch(c, PST_TOKEN_LOOKUP_LOCK, old, rec);
    if (rc == QRL_OK && rec->kind != QRL_TOKEN_REFRESH)
        rc = QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return rc;
    if (rec->revoked_ms != 0 || rec->device_revoked || rec->account_disabled)
        return QRL_ERR_REVOKED;
    if (rec->expires_ms <= now_ms)
        return QRL_ERR_EXPIRED;
    if (rec->used_ms != 0) {
        /* RFC 6749 section 10.4: a rotated token came back, so one of its holders is an
         * attacker. Revoke the whole device and keep that even though the call fails. */
        rc = qrl__pg_revoke_device(c, rec->account_id, rec->device_id, now_ms, &changed);
        *commit = rc == QRL_OK;
        return rc == QRL_OK ? QRL_ERR_TOKEN_REUSED : rc;
    }
    p_hash(&p, old);
    p_i64(&p, now_ms);
    rc = qrl__pg_exec(c, PST_TOKEN_SET_USED, &p, &rows, "token_rotate");
    if (rc == QRL_OK && rows != 1)
        rc = QRL_ERR_CONFLICT; /* cannot happen under the row lock */
    if (rc == QRL_OK)
        rc = qrl__pg_insert_tokens(c, new_tok, n, rec->device_id);
    *commit = rc == QRL_OK;
    return rc;
}

static qrl_err token_rotate_c(struct pg_conn *c, const qrl_hash *old, int64_t now_ms,
                              qrl_token_rec *new_tok, size_t n, qrl_token_rec *old_out)
{
    qrl_token_rec rec;
    int commit = 0;
    qrl_err rc, erc;

    memset(&rec, 0, sizeof rec);
    /* used_ms == 0 means unused: a rotation at time 0 would make reuse undetectable. */
    if (old == NULL || now_ms <= 0 || !qrl__pg_tokens_valid(new_tok, n))
        return QRL_ERR_INVALID;
    if ((rc = qrl__pg_begin(c)) != QRL_OK)
        return rc;
    rc = token_rotate_tx(c, old, now_ms, new_tok, n, &rec, &commit);
    if ((erc = qrl__pg_end(c, commit)) != QRL_OK)
        return erc;
    if (rc == QRL_OK) {
        rec.used_ms = now_ms;
        for (size_t i = 0; i < n; i++)
            new_tok[i].device_id = rec.device_id;
    }
    if (old_out != NULL && (rc == QRL_OK || rc == QRL_ERR_REVOKED || rc == QRL_ERR_EXPIRED ||
                            rc == QRL_ERR_TOKEN_REUSED))
        *old_out = rec;
    return rc;
}

PG_WRITE(token_rotate,
         (qrl_store * st, const qrl_hash *old, int64_t now_ms, qrl_token_rec *new_tok, size_t n,
          qrl_token_rec *old_out),
         (c, old, now_ms, new_tok, n, old_out))

static qrl_err token_revoke_c(struct pg_conn *c, const qrl_hash *h, int64_t now_ms)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    if (h == NULL || now_ms <= 0)
        return QRL_ERR_INVALID;
    p_hash(&p, h);
    p_i64(&p, now_ms);
    rc = qrl__pg_exec(c, PST_TOKEN_REVOKE, &p, &n, "token_revoke");
    return rc == QRL_OK && n != 1 ? QRL_ERR_NOT_FOUND : rc;
}

PG_WRITE(token_revoke, (qrl_store * st, const qrl_hash *h, int64_t now_ms), (c, h, now_ms))
