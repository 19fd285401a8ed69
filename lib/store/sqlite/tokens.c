/* SPDX-License-Identifier: MIT */
/*
 * Tokens in the SQLite store: insert, look up (alone, or with the account and device of a
 * session in one read), rotate a refresh token, revoke.
 *
 * Tokens are stored only as hashes (qrl_hash) and found by them: the row's key is the hash, in
 * a WITHOUT ROWID table, so a lookup is one b-tree descent. Each lookup joins the device and
 * the account, so that a token of a revoked device or a disabled account reads as such without
 * a second query. Rotation is the one multi-statement write: it checks and marks the old token
 * used and inserts the new ones in one transaction, and treats a used refresh token coming back
 * as theft (RFC 6749 section 10.4), revoking the device. insert_tokens() is shared with
 * device creation and redemption, which write tokens inside their own transactions.
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

static int token_valid(const qrl_token_rec *tok)
{
    return tok != NULL && tok->kind >= QRL_TOKEN_ACCESS && tok->kind <= QRL_TOKEN_SESSION &&
           str_fits(tok->client_id, sizeof tok->client_id) &&
           str_fits(tok->scope, sizeof tok->scope);
}

int qrl__sqlite_tokens_valid(const qrl_token_rec *tok, size_t n)
{
    if (n > 0 && tok == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!token_valid(&tok[i]))
            return 0;
    return 1;
}

static qrl_err insert_token(struct conn *c, const qrl_token_rec *tok, int64_t device_id)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_TOKEN_INSERT, &s);

    if (rc != QRL_OK)
        return rc;
    bind_hash(s, 1, &tok->hash, &brc);
    bind_i64(s, 2, (int64_t)tok->kind, &brc);
    bind_i64(s, 3, device_id, &brc);
    bind_i64(s, 4, tok->created_ms, &brc);
    bind_i64(s, 5, tok->expires_ms, &brc);
    bind_i64(s, 6, tok->used_ms, &brc);
    bind_i64(s, 7, tok->revoked_ms, &brc);
    bind_text(s, 8, tok->client_id, &brc);
    bind_text(s, 9, tok->scope, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "token insert");
    return qrl__sqlite_stmt_run(c, s, "token insert");
}

qrl_err qrl__sqlite_insert_tokens(struct conn *c, const qrl_token_rec *tok, size_t n,
                                  int64_t device_id)
{
    qrl_err rc = QRL_OK;

    for (size_t i = 0; i < n && rc == QRL_OK; i++)
        rc = insert_token(c, &tok[i], device_id);
    return rc;
}

static qrl_err token_lookup_conn(struct conn *c, const qrl_hash *h, qrl_token_rec *out)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    qrl_err rc = stmt_get(c, ST_TOKEN_LOOKUP, &s);

    if (rc != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "token_lookup");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = qrl__sqlite_read_token(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = qrl__sqlite_db_fail(c, src, "token_lookup");
    sqlite3_reset(s);
    return rc;
}

qrl_err qrl__sqlite_token_insert_w(qrl_store *st, const qrl_token_rec *tok)
{
    struct conn *c;
    qrl_err rc;

    if (!token_valid(tok))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK)
        return rc;
    return insert_token(c, tok, tok->device_id);
}

static qrl_err token_lookup_r(qrl_store *st, const qrl_hash *h, qrl_token_rec *out)
{
    struct conn *c;
    qrl_err rc;

    if (h == NULL || out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK)
        return rc;
    return token_lookup_conn(c, h, out);
}

READ_METHOD(token_lookup, (qrl_store * st, const qrl_hash *h, qrl_token_rec *out), (st, h, out))

static qrl_err token_auth_r(qrl_store *st, const qrl_hash *h, qrl_token_rec *tok,
                            qrl_account_rec *acc, qrl_device_rec *dev)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if (h == NULL || tok == NULL || acc == NULL || dev == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_TOKEN_AUTH, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "token_auth");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        rc = qrl__sqlite_read_token(s, tok);
        if (rc == QRL_OK)
            rc = qrl__sqlite_read_account_at(s, AUTH_ACCOUNT_COL, acc);
        if (rc == QRL_OK)
            rc = qrl__sqlite_read_device_at(s, AUTH_DEVICE_COL, dev);
    } else {
        rc = src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : qrl__sqlite_db_fail(c, src, "token_auth");
    }
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(token_auth,
            (qrl_store * st, const qrl_hash *h, qrl_token_rec *tok, qrl_account_rec *acc,
             qrl_device_rec *dev),
            (st, h, tok, acc, dev))

/* The checks and writes of token_rotate inside its transaction. Sets *commit when the outcome
 * must be committed (success, and the device revocation on reuse). */
static qrl_err token_rotate_tx(struct conn *c, const qrl_hash *old, int64_t now_ms,
                               qrl_token_rec *new_tok, size_t n, qrl_token_rec *rec, int *commit)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = token_lookup_conn(c, old, rec);

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
        rc = qrl__sqlite_revoke_device_tx(c, rec->device_id, now_ms);
        *commit = rc == QRL_OK;
        return rc == QRL_OK ? QRL_ERR_TOKEN_REUSED : rc;
    }
    if ((rc = stmt_get(c, ST_TOKEN_SET_USED, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, old, &brc);
    bind_i64(s, 2, now_ms, &brc);
    rc = brc != SQLITE_OK ? qrl__sqlite_db_fail(c, brc, "token_rotate")
                          : qrl__sqlite_stmt_run(c, s, "token_rotate");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_CONFLICT; /* cannot happen under the write lock */
    if (rc == QRL_OK)
        rc = qrl__sqlite_insert_tokens(c, new_tok, n, rec->device_id);
    *commit = rc == QRL_OK;
    return rc;
}

qrl_err qrl__sqlite_token_rotate_w(qrl_store *st, const qrl_hash *old, int64_t now_ms,
                                   qrl_token_rec *new_tok, size_t n, qrl_token_rec *old_out)
{
    struct conn *c;
    qrl_token_rec rec;
    int commit = 0;
    qrl_err rc, erc;

    memset(&rec, 0, sizeof rec);
    /* used_ms == 0 means unused: a rotation at time 0 would make reuse undetectable. */
    if (old == NULL || now_ms <= 0 || !qrl__sqlite_tokens_valid(new_tok, n))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    rc = token_rotate_tx(c, old, now_ms, new_tok, n, &rec, &commit);
    erc = qrl__sqlite_tx_end(c, commit);
    if (erc != QRL_OK)
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

qrl_err qrl__sqlite_token_revoke_w(qrl_store *st, const qrl_hash *h, int64_t now_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (h == NULL || now_ms <= 0)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_TOKEN_REVOKE, &s)) != QRL_OK)
        return rc;
    bind_hash(s, 1, h, &brc);
    bind_i64(s, 2, now_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "token_revoke");
    rc = qrl__sqlite_stmt_run(c, s, "token_revoke");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}
