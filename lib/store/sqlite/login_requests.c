/* SPDX-License-Identifier: MIT */
/*
 * Login requests in the SQLite store: create, get, find by device code, scan secret or user
 * code, the compare-and-set transition, redemption (with the device and tokens it creates),
 * the requests a device takes part in, and approval with redemption in one unit.
 *
 * This is where the login-request state machine (lib/login_request.c) becomes atomic: a
 * request changes state only through one conditional UPDATE (ST_LR_TRANSITION) judged by
 * sqlite3_changes() == 1, the compare-and-set that gives exactly one winner among racing
 * callers. Redemption re-checks the approver inside its transaction and creates the device and
 * its tokens there, so a redeemed request always has them. Device codes and scan secrets carry
 * the request's id (store.h, qrl_lr_secret_key): a lookup reads the row by primary key and
 * compares the whole secret's hash in constant time, and no random-keyed index is written per
 * new request; user codes go through the in-memory map of user_codes.c.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>
#include <sqlite3.h>

#include "sqlite_internal.h"

static int lr_valid(const qrl_lr_rec *lr)
{
    return lr != NULL && lr->state == QRL_LR_PENDING &&
           str_fits(lr->user_code, sizeof lr->user_code) &&
           str_fits(lr->client_id, sizeof lr->client_id) && str_fits(lr->scope, sizeof lr->scope) &&
           str_fits(lr->device_name, sizeof lr->device_name) &&
           str_fits(lr->device_kind, sizeof lr->device_kind) &&
           str_fits(lr->device_platform, sizeof lr->device_platform) &&
           str_fits(lr->address, sizeof lr->address) &&
           str_fits(lr->dpop_jkt, sizeof lr->dpop_jkt);
}

static qrl_err lr_get_conn(struct conn *c, int64_t id, qrl_lr_rec *out);

/* Whether an unexpired request in a non-terminal state already has lr's user code, by the
 * entry the map holds for it (the newest request with that code). Caller holds uc.mu. */
static qrl_err lr_code_taken(struct conn *c, struct uc_slot *e, const qrl_lr_rec *lr)
{
    qrl_lr_rec old;
    qrl_err rc;

    if (e == NULL || e->expires_ms <= lr->created_ms)
        return QRL_OK;
    rc = lr_get_conn(c, e->id, &old);
    if (rc == QRL_ERR_NOT_FOUND)
        return QRL_OK; /* its write was rolled back, or it was swept */
    if (rc != QRL_OK)
        return rc;
    if (strcmp(old.user_code, lr->user_code) == 0 && old.expires_ms > lr->created_ms &&
        (old.state == QRL_LR_PENDING || old.state == QRL_LR_SCANNED ||
         old.state == QRL_LR_APPROVED))
        return QRL_ERR_EXISTS;
    return QRL_OK;
}

/* The user-code check and the insert of lr_create. Its one write is the INSERT, and nothing
 * after it can fail (the user-code table makes room first), so the INSERT's own atomicity is
 * the unit's: see qrl__sqlite_lr_create_w. */
static qrl_err lr_create_tx(sqlite_store *st, struct conn *c, const qrl_lr_rec *lr)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    uint64_t code;
    qrl_err rc;

    if (!qrl__sqlite_uc_pack(lr->user_code, &code))
        return QRL_ERR_INVALID;
    pthread_mutex_lock(&st->uc.mu);
    if ((rc = qrl__sqlite_uc_load(&st->uc, c, lr->created_ms)) != QRL_OK ||
        (rc = lr_code_taken(c, qrl__sqlite_uc_find(&st->uc, code), lr)) != QRL_OK ||
        (rc = qrl__sqlite_uc_reserve(&st->uc, lr->created_ms)) != QRL_OK ||
        (rc = stmt_get(c, ST_LR_INSERT, &s)) != QRL_OK)
        goto out;
    bind_hash(s, 1, &lr->device_code_hash, &brc);
    bind_hash(s, 2, &lr->scan_hash, &brc);
    bind_text(s, 3, lr->user_code, &brc);
    bind_text(s, 4, lr->client_id, &brc);
    bind_text(s, 5, lr->scope, &brc);
    bind_text(s, 6, lr->device_name, &brc);
    bind_text(s, 7, lr->device_kind, &brc);
    bind_text(s, 8, lr->address, &brc);
    bind_i64(s, 9, lr->created_ms, &brc);
    bind_i64(s, 10, lr->expires_ms, &brc);
    bind_i64(s, 11, lr->interval_s, &brc);
    bind_i64(s, 12, (int64_t)lr->state, &brc);
    bind_i64(s, 13, lr->updated_ms, &brc);
    bind_i64(s, 14, lr->claimed_device_id, &brc);
    bind_i64(s, 15, lr->account_id, &brc);
    bind_i64(s, 16, lr->approving_device_id, &brc);
    bind_i64(s, 17, lr->redeemed_device_id, &brc);
    bind_i64(s, 18, lr->id, &brc);
    bind_text(s, 19, lr->device_platform, &brc);
    bind_text(s, 20, lr->dpop_jkt, &brc);
    if (brc != SQLITE_OK) {
        rc = qrl__sqlite_db_fail(c, brc, "lr_create");
        goto out;
    }
    if ((rc = qrl__sqlite_stmt_run(c, s, "lr_create")) == QRL_OK)
        qrl__sqlite_uc_place(&st->uc, code, lr->id, lr->expires_ms);
out:
    pthread_mutex_unlock(&st->uc.mu);
    return rc;
}

qrl_err qrl__sqlite_lr_create_w(qrl_store *st, qrl_lr_rec *lr)
{
    struct conn *c;
    qrl_err rc;

    if (!lr_valid(lr) || lr->id <= 0)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK)
        return rc;
    /* Inside the writer's batch, no savepoint: a failed INSERT is backed out by SQLite itself
     * while the batch's transaction goes on (an error that ends the transaction instead is
     * caught by run_batch), and lr_create_tx writes nothing else. A savepoint around it cost
     * two more statements and a copy of the table's last page into the savepoint journal,
     * that page having been changed by the batch's previous insert. */
    if (c->in_batch)
        return lr_create_tx((sqlite_store *)st, c, lr);
    if ((rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    rc = lr_create_tx((sqlite_store *)st, c, lr);
    if (rc != QRL_OK) {
        qrl__sqlite_tx_end(c, 0);
        return rc;
    }
    return qrl__sqlite_tx_end(c, 1);
}

/* Runs a bound login-request SELECT and decodes its first row. */
static qrl_err fetch_lr(struct conn *c, sqlite3_stmt *s, qrl_lr_rec *out)
{
    int src = sqlite3_step(s);
    qrl_err rc;

    if (src == SQLITE_ROW)
        rc = qrl__sqlite_read_lr(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = qrl__sqlite_db_fail(c, src, "login request");
    sqlite3_reset(s);
    return rc;
}

static qrl_err lr_get_conn(struct conn *c, int64_t id, qrl_lr_rec *out)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_LR_GET, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "lr_get");
    return fetch_lr(c, s, out);
}

static qrl_err lr_get_r(qrl_store *st, int64_t id, qrl_lr_rec *out)
{
    struct conn *c;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK)
        return rc;
    return lr_get_conn(c, id, out);
}

READ_METHOD(lr_get, (qrl_store * st, int64_t id, qrl_lr_rec *out), (st, id, out))

/* By device code or scan secret: the row with the key's id, if the hash matches (constant
 * time). A wrong hash is answered like a missing row. */
static qrl_err lr_by_secret(qrl_store *st, qrl_lr_key kind, const qrl_lr_secret_key *key,
                            qrl_lr_rec *out)
{
    struct conn *c;
    const qrl_hash *h;
    qrl_err rc;

    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = lr_get_conn(c, key->id, out)) != QRL_OK)
        return rc;
    h = kind == QRL_LR_KEY_DEVICE_CODE ? &out->device_code_hash : &out->scan_hash;
    if (sodium_memcmp(h->b, key->hash.b, sizeof h->b) != 0) {
        sodium_memzero(out, sizeof *out);
        return QRL_ERR_NOT_FOUND;
    }
    return QRL_OK;
}

static qrl_err lr_find_r(qrl_store *st, qrl_lr_key kind, const void *key, int64_t now_ms,
                         qrl_lr_rec *out)
{
    struct conn *c;
    int64_t id;
    qrl_err rc;

    if (key == NULL || out == NULL)
        return QRL_ERR_INVALID;
    switch (kind) {
    case QRL_LR_KEY_DEVICE_CODE:
    case QRL_LR_KEY_SCAN:
        return lr_by_secret(st, kind, key, out);
    case QRL_LR_KEY_USER_CODE:
        if (!str_fits(key, QRL_USER_CODE_LEN + 1))
            return QRL_ERR_INVALID;
        break;
    default:
        return QRL_ERR_INVALID;
    }
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK)
        return rc;
    id = qrl__sqlite_uc_lookup((sqlite_store *)st, c, key, now_ms, &rc);
    if (rc != QRL_OK)
        return rc;
    if (id == 0)
        return QRL_ERR_NOT_FOUND;
    /* The map's entry is a hint: the row decides. */
    rc = lr_get_conn(c, id, out);
    if (rc == QRL_OK && (strcmp(out->user_code, key) != 0 || out->expires_ms <= now_ms)) {
        sodium_memzero(out, sizeof *out);
        rc = QRL_ERR_NOT_FOUND;
    }
    return rc;
}

READ_METHOD(lr_find,
            (qrl_store * st, qrl_lr_key kind, const void *key, int64_t now_ms, qrl_lr_rec *out),
            (st, kind, key, now_ms, out))

qrl_err qrl__sqlite_lr_transition_w(qrl_store *st, const qrl_lr_cas *cas)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (cas == NULL || cas->to < QRL_LR_PENDING || cas->to > QRL_LR_EXPIRED)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_LR_TRANSITION, &s)) != QRL_OK)
        return rc;
    qrl__sqlite_stamp_later(st, cas->id);
    bind_i64(s, 1, cas->id, &brc);
    bind_i64(s, 2, (int64_t)cas->to, &brc);
    bind_i64(s, 3, cas->now_ms, &brc);
    bind_i64(s, 4, (int64_t)cas->from_mask, &brc);
    bind_i64(s, 5, cas->set_claimed_device_id, &brc);
    bind_i64(s, 6, cas->set_account_id, &brc);
    bind_i64(s, 7, cas->set_approving_device_id, &brc);
    bind_i64(s, 8, cas->require_claimed_by, &brc);
    bind_text(s, 9, cas->set_nonce, &brc);
    bind_text(s, 10, cas->require_nonce, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "lr_transition");
    rc = qrl__sqlite_stmt_run(c, s, "lr_transition");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_CONFLICT;
    return rc;
}

/* Whether the approver of a request is still valid: the account exists and is not disabled,
 * and the approving device exists, belongs to it and is not revoked. */
static qrl_err approver_valid(struct conn *c, const qrl_lr_rec *lr, int *valid)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    qrl_err rc = stmt_get(c, ST_LR_APPROVER, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, lr->account_id, &brc);
    bind_i64(s, 2, lr->approving_device_id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "lr_redeem");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW) {
        *valid = sqlite3_column_type(s, 0) != SQLITE_NULL && sqlite3_column_int(s, 0) == 0 &&
                 sqlite3_column_type(s, 1) != SQLITE_NULL && sqlite3_column_int64(s, 1) == 0;
    } else {
        rc = qrl__sqlite_db_fail(c, src, "lr_redeem");
    }
    sqlite3_reset(s);
    return rc;
}

/* Runs a bound UPDATE of one login request in APPROVED state; CONFLICT when it matched none. */
static qrl_err lr_update_approved(struct conn *c, sqlite3_stmt *s, int brc)
{
    qrl_err rc;

    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "lr_redeem");
    rc = qrl__sqlite_stmt_run(c, s, "lr_redeem");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_CONFLICT; /* cannot happen under the write lock */
    return rc;
}

/* The checks and writes of lr_redeem inside its transaction; *state receives the state the
 * request is in afterwards, *commit whether to commit. */
static qrl_err lr_redeem_tx(struct conn *c, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                            const qrl_token_rec *tok, size_t ntok, qrl_lr_rec *lr, int *commit)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int valid = 0;
    int64_t dev_id = 0;
    qrl_err rc = lr_get_conn(c, id, lr);

    if (rc != QRL_OK)
        return rc;
    if (lr->state != QRL_LR_APPROVED)
        return QRL_ERR_CONFLICT;
    if (lr->expires_ms <= now_ms)
        return QRL_ERR_EXPIRED;
    if ((rc = approver_valid(c, lr, &valid)) != QRL_OK)
        return rc;
    if (!valid) {
        /* Redemption re-checks the approver: a request approved by a device or account that
         * is no longer valid (revoked or disabled since) is declined for good, so that a
         * revocation also stops the logins it approved but that were not redeemed yet. */
        if ((rc = stmt_get(c, ST_LR_SET_DENIED, &s)) != QRL_OK)
            return rc;
        bind_i64(s, 1, id, &brc);
        bind_i64(s, 2, now_ms, &brc);
        rc = lr_update_approved(c, s, brc);
        if (rc != QRL_OK)
            return rc;
        lr->state = QRL_LR_DENIED;
        *commit = 1;
        return QRL_ERR_DENIED;
    }
    rc = qrl__sqlite_insert_device(c, dev, lr->account_id, &dev_id);
    if (rc == QRL_OK)
        rc = qrl__sqlite_insert_tokens(c, tok, ntok, dev_id);
    if (rc == QRL_OK)
        rc = stmt_get(c, ST_LR_SET_REDEEMED, &s);
    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_i64(s, 3, dev_id, &brc);
    if ((rc = lr_update_approved(c, s, brc)) != QRL_OK)
        return rc;
    lr->state = QRL_LR_REDEEMED;
    lr->redeemed_device_id = dev_id;
    *commit = 1;
    return QRL_OK;
}

qrl_err qrl__sqlite_lr_redeem_w(qrl_store *st, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                                qrl_token_rec *tok, size_t ntok, qrl_lr_state *state_out)
{
    struct conn *c;
    qrl_lr_rec lr;
    int commit = 0;
    qrl_err rc, erc;

    memset(&lr, 0, sizeof lr);
    if (!qrl__sqlite_device_valid(dev) || !qrl__sqlite_tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    qrl__sqlite_stamp_later(st, id);
    rc = lr_redeem_tx(c, id, now_ms, dev, tok, ntok, &lr, &commit);
    erc = qrl__sqlite_tx_end(c, commit);
    if (erc != QRL_OK)
        return erc;
    if (state_out != NULL &&
        (rc == QRL_OK || rc == QRL_ERR_CONFLICT || rc == QRL_ERR_EXPIRED || rc == QRL_ERR_DENIED))
        *state_out = lr.state;
    if (rc != QRL_OK)
        return rc;
    dev->id = lr.redeemed_device_id;
    dev->account_id = lr.account_id;
    dev->last_seen_ms = dev->created_ms;
    dev->revoked_ms = 0;
    for (size_t i = 0; i < ntok; i++)
        tok[i].device_id = dev->id;
    return QRL_OK;
}

static qrl_err lr_by_device_r(qrl_store *st, int64_t device_id, int64_t *ids, size_t max, size_t *n)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && ids == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_LR_BY_DEVICE, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, device_id, &brc);
    bind_i64(s, 2, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "lr_by_device");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max)
        ids[k++] = sqlite3_column_int64(s, 0);
    if (src != SQLITE_DONE && src != SQLITE_ROW)
        rc = qrl__sqlite_db_fail(c, src, "lr_by_device");
    sqlite3_reset(s);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

READ_METHOD(lr_by_device, (qrl_store * st, int64_t device_id, int64_t *ids, size_t max, size_t *n),
            (st, device_id, ids, max, n))

qrl_err qrl__sqlite_lr_approve_redeem_w(qrl_store *st, const qrl_lr_cas *cas, qrl_device_rec *dev,
                                        qrl_token_rec *tok, size_t ntok)
{
    struct conn *c;
    qrl_err rc, erc;

    if (cas == NULL || cas->to != QRL_LR_APPROVED)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    rc = qrl__sqlite_lr_transition_w(st, cas);
    if (rc == QRL_OK)
        rc = qrl__sqlite_lr_redeem_w(st, cas->id, cas->now_ms, dev, tok, ntok, NULL);
    erc = qrl__sqlite_tx_end(c, rc == QRL_OK);
    return rc != QRL_OK ? rc : erc;
}
