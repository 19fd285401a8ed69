/* SPDX-License-Identifier: MIT */
/*
 * Devices in the SQLite store: create (with its first tokens), get, list an account's active
 * ones, touch (last seen), revoke (with every token of the device), set a phone's public key.
 *
 * A device and the tokens issued to it are written in one transaction (tx_begin: a savepoint
 * of the writer's batch), so no device ever exists without its tokens nor tokens without their
 * device. Revocation sets revoked_ms on the device and on its tokens together; revoked_ms == 0
 * means active, which is why a revocation at time 0 is refused. device_touch is lazy (see
 * QRL__SQLITE_WRITES): a last-seen time lost to a power loss costs nothing. The insert and the
 * revocation are shared with login requests and token rotation, which run them inside their
 * own transactions.
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

int qrl__sqlite_device_valid(const qrl_device_rec *dev)
{
    return dev != NULL && str_fits(dev->name, sizeof dev->name) &&
           str_fits(dev->kind, sizeof dev->kind) && str_fits(dev->address, sizeof dev->address);
}

qrl_err qrl__sqlite_insert_device(struct conn *c, const qrl_device_rec *dev, int64_t account_id,
                                  int64_t *id)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_DEVICE_INSERT, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_text(s, 2, dev->name, &brc);
    bind_text(s, 3, dev->kind, &brc);
    bind_text(s, 4, dev->address, &brc);
    bind_i64(s, 5, dev->created_ms, &brc);
    /* A screen's DPoP key (store.h, qrl_device_rec); NULL for everyone else. */
    if (brc == SQLITE_OK && dev->has_pubkey)
        brc = sqlite3_bind_blob(s, 6, dev->pubkey, QRL_PUBKEY_BYTES, SQLITE_STATIC);
    else if (brc == SQLITE_OK)
        brc = sqlite3_bind_null(s, 6);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "device insert");
    rc = qrl__sqlite_stmt_run(c, s, "device insert");
    if (rc == QRL_OK)
        *id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

/* Sets revoked_ms of an active device and of its tokens not revoked yet. */
qrl_err qrl__sqlite_revoke_device_tx(struct conn *c, int64_t device_id, int64_t now_ms)
{
    enum stmt_id ids[] = {ST_DEVICE_SET_REVOKED, ST_DEVICE_REVOKE_TOKENS};
    sqlite3_stmt *s = NULL;
    qrl_err rc = QRL_OK;

    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && rc == QRL_OK; i++) {
        int brc = SQLITE_OK;

        if ((rc = stmt_get(c, ids[i], &s)) != QRL_OK)
            break;
        bind_i64(s, 1, device_id, &brc);
        bind_i64(s, 2, now_ms, &brc);
        rc = brc != SQLITE_OK ? qrl__sqlite_db_fail(c, brc, "device revoke")
                              : qrl__sqlite_stmt_run(c, s, "device revoke");
    }
    return rc;
}

/* Runs a bound device SELECT and decodes its first row. */
static qrl_err fetch_device(struct conn *c, sqlite3_stmt *s, qrl_device_rec *out)
{
    int src = sqlite3_step(s);
    qrl_err rc;

    if (src == SQLITE_ROW)
        rc = qrl__sqlite_read_device(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = qrl__sqlite_db_fail(c, src, "device");
    sqlite3_reset(s);
    return rc;
}

static qrl_err device_get_conn(struct conn *c, int64_t id, qrl_device_rec *out)
{
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc = stmt_get(c, ST_DEVICE_GET, &s);

    if (rc != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "device_get");
    return fetch_device(c, s, out);
}

qrl_err qrl__sqlite_device_create_w(qrl_store *st, qrl_device_rec *dev, qrl_token_rec *tok,
                                    size_t ntok)
{
    struct conn *c;
    int64_t id = 0;
    qrl_err rc;

    if (!qrl__sqlite_device_valid(dev) || !qrl__sqlite_tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    rc = qrl__sqlite_insert_device(c, dev, dev->account_id, &id);
    if (rc == QRL_OK)
        rc = qrl__sqlite_insert_tokens(c, tok, ntok, id);
    if (rc != QRL_OK) {
        qrl__sqlite_tx_end(c, 0);
        return rc;
    }
    if ((rc = qrl__sqlite_tx_end(c, 1)) != QRL_OK)
        return rc;
    dev->id = id;
    dev->last_seen_ms = dev->created_ms;
    dev->revoked_ms = 0;
    for (size_t i = 0; i < ntok; i++)
        tok[i].device_id = id;
    return QRL_OK;
}

static qrl_err device_get_r(qrl_store *st, int64_t id, qrl_device_rec *out)
{
    struct conn *c;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK)
        return rc;
    return device_get_conn(c, id, out);
}

READ_METHOD(device_get, (qrl_store * st, int64_t id, qrl_device_rec *out), (st, id, out))

static qrl_err device_list_r(qrl_store *st, int64_t account_id, qrl_device_rec *out, size_t max,
                             size_t *n)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    int src;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && out == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_DEVICE_LIST, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_i64(s, 2, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "device_list");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max) {
        if ((rc = qrl__sqlite_read_device(s, &out[k])) != QRL_OK)
            break;
        k++;
    }
    if (rc == QRL_OK && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = qrl__sqlite_db_fail(c, src, "device_list");
    sqlite3_reset(s);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

READ_METHOD(device_list,
            (qrl_store * st, int64_t account_id, qrl_device_rec *out, size_t max, size_t *n),
            (st, account_id, out, max, n))

qrl_err qrl__sqlite_device_touch_w(qrl_store *st, int64_t device_id, int64_t now_ms,
                                   const char *address)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (address != NULL && !str_fits(address, QRL_MAX_ADDRESS + 1))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_DEVICE_TOUCH, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, device_id, &brc);
    bind_i64(s, 2, now_ms, &brc);
    bind_text(s, 3, address, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "device_touch");
    rc = qrl__sqlite_stmt_run(c, s, "device_touch");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

qrl_err qrl__sqlite_device_revoke_w(qrl_store *st, int64_t account_id, int64_t device_id,
                                    int64_t now_ms)
{
    struct conn *c;
    qrl_device_rec dev;
    int commit = 0;
    qrl_err rc;

    /* revoked_ms == 0 means active: a revocation at time 0 would silently not happen. */
    if (now_ms <= 0)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    rc = device_get_conn(c, device_id, &dev);
    if (rc == QRL_OK && dev.account_id != account_id)
        rc = QRL_ERR_NOT_FOUND;
    if (rc == QRL_OK && dev.revoked_ms == 0) {
        rc = qrl__sqlite_revoke_device_tx(c, device_id, now_ms);
        commit = rc == QRL_OK;
    }
    if (commit)
        return qrl__sqlite_tx_end(c, 1);
    qrl__sqlite_tx_end(c, 0);
    return rc;
}

/* pubkey: QRL_PUBKEY_BYTES bytes (a pointer, as QRL__SQLITE_WRITES declares it). */
qrl_err qrl__sqlite_device_set_pubkey_w(qrl_store *st, int64_t account_id, int64_t device_id,
                                        const unsigned char *pubkey)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (pubkey == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_DEVICE_SET_PUBKEY, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, device_id, &brc);
    bind_i64(s, 2, account_id, &brc);
    if (brc == SQLITE_OK)
        brc = sqlite3_bind_blob(s, 3, pubkey, QRL_PUBKEY_BYTES, SQLITE_STATIC);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "device_set_pubkey");
    rc = qrl__sqlite_stmt_run(c, s, "device_set_pubkey");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}
