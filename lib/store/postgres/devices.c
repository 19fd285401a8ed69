/* SPDX-License-Identifier: MIT */
/*
 * Devices in the PostgreSQL store: create (with its first tokens), get, list an account's
 * active ones, touch (last seen), revoke (with every token of the device), set a phone's
 * public key.
 *
 * A device and the tokens issued to it are written in one transaction, so no device ever
 * exists without its tokens nor tokens without their device. Revocation is one statement that
 * sets revoked_ms on the device and on its tokens together and notifies "-<device id>", so that
 * every node wakes the held requests of a screen signed in with that device (store.h,
 * set_notify); revoked_ms == 0 means active, which is why a revocation at time 0 is refused.
 * device_touch is lazy (statements.c, LAZY): a last-seen time lost to a power loss costs
 * nothing. The insert and the revocation are shared with login requests and token rotation,
 * which run them inside their own transactions.
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

int qrl__pg_device_valid(const qrl_device_rec *dev)
{
    return dev != NULL && str_fits(dev->name, sizeof dev->name) &&
           str_fits(dev->kind, sizeof dev->kind) && str_fits(dev->address, sizeof dev->address);
}

qrl_err qrl__pg_insert_device(struct pg_conn *c, const qrl_device_rec *dev, int64_t account_id,
                              int64_t *id)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    p_i64(&p, account_id);
    p_device(&p, dev);
    if ((rc = qrl__pg_run(c, PST_DEVICE_INSERT, &p, &r, "device insert")) != QRL_OK)
        return rc;
    *id = qrl__pg_col_i64(r, 0, 0);
    PQclear(r);
    return QRL_OK;
}

qrl_err qrl__pg_revoke_device(struct pg_conn *c, int64_t account_id, int64_t device_id,
                              int64_t now_ms, int *changed)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    p_i64(&p, account_id);
    p_i64(&p, device_id);
    p_i64(&p, now_ms);
    rc = qrl__pg_exec(c, PST_DEVICE_REVOKE, &p, &n, "device revoke");
    *changed = rc == QRL_OK && n > 0;
    return rc;
}

static qrl_err device_get_conn(struct pg_conn *c, int64_t id, qrl_device_rec *out)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    p_i64(&p, id);
    if ((rc = qrl__pg_run(c, PST_DEVICE_GET, &p, &r, "device_get")) != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? qrl__pg_read_device(r, 0, 0, out) : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

static qrl_err device_create_c(struct pg_conn *c, qrl_device_rec *dev, qrl_token_rec *tok,
                               size_t ntok)
{
    int64_t id = 0;
    qrl_err rc, erc;

    if (!qrl__pg_device_valid(dev) || !qrl__pg_tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    /* A device alone is one INSERT, atomic by itself. */
    if (ntok > 0 && (rc = qrl__pg_begin(c)) != QRL_OK)
        return rc;
    rc = qrl__pg_insert_device(c, dev, dev->account_id, &id);
    if (rc == QRL_OK)
        rc = qrl__pg_insert_tokens(c, tok, ntok, id);
    if (ntok > 0 && (erc = qrl__pg_end(c, rc == QRL_OK)) != QRL_OK && rc == QRL_OK)
        rc = erc;
    if (rc != QRL_OK)
        return rc;
    dev->id = id;
    dev->last_seen_ms = dev->created_ms;
    dev->revoked_ms = 0;
    for (size_t i = 0; i < ntok; i++)
        tok[i].device_id = id;
    return QRL_OK;
}

PG_WRITE(device_create, (qrl_store * st, qrl_device_rec *dev, qrl_token_rec *tok, size_t ntok),
         (c, dev, tok, ntok))

static qrl_err device_get_c(struct pg_conn *c, int64_t id, qrl_device_rec *out)
{
    if (out == NULL)
        return QRL_ERR_INVALID;
    return device_get_conn(c, id, out);
}

PG_READ(device_get, (qrl_store * st, int64_t id, qrl_device_rec *out), (c, id, out))

static qrl_err device_list_c(struct pg_conn *c, int64_t account_id, qrl_device_rec *out, size_t max,
                             size_t *n)
{
    struct pg_params p = {0};
    PGresult *r;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && out == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    p_i64(&p, account_id);
    p_i64(&p, limit_of(max));
    if ((rc = qrl__pg_run(c, PST_DEVICE_LIST, &p, &r, "device_list")) != QRL_OK)
        return rc;
    for (int i = 0; i < PQntuples(r) && k < max && rc == QRL_OK; i++)
        if ((rc = qrl__pg_read_device(r, i, 0, &out[k])) == QRL_OK)
            k++;
    PQclear(r);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

PG_READ(device_list,
        (qrl_store * st, int64_t account_id, qrl_device_rec *out, size_t max, size_t *n),
        (c, account_id, out, max, n))

static qrl_err device_touch_c(struct pg_conn *c, int64_t device_id, int64_t now_ms,
                              const char *address)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    if (address != NULL && !str_fits(address, QRL_MAX_ADDRESS + 1))
        return QRL_ERR_INVALID;
    p_i64(&p, device_id);
    p_i64(&p, now_ms);
    p_text(&p, address);
    rc = qrl__pg_exec(c, PST_DEVICE_TOUCH, &p, &n, "device_touch");
    return rc == QRL_OK && n != 1 ? QRL_ERR_NOT_FOUND : rc;
}

PG_WRITE(device_touch, (qrl_store * st, int64_t device_id, int64_t now_ms, const char *address),
         (c, device_id, now_ms, address))

static qrl_err device_revoke_c(struct pg_conn *c, int64_t account_id, int64_t device_id,
                               int64_t now_ms)
{
    qrl_device_rec dev;
    int changed = 0;
    qrl_err rc;

    /* revoked_ms == 0 means active: a revocation at time 0 would silently not happen. */
    if (now_ms <= 0)
        return QRL_ERR_INVALID;
    if ((rc = qrl__pg_revoke_device(c, account_id, device_id, now_ms, &changed)) != QRL_OK ||
        changed)
        return rc;
    /* Nothing changed: already revoked (QRL_OK), or not this account's device. */
    rc = device_get_conn(c, device_id, &dev);
    if (rc == QRL_OK && dev.account_id != account_id)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

PG_WRITE(device_revoke, (qrl_store * st, int64_t account_id, int64_t device_id, int64_t now_ms),
         (c, account_id, device_id, now_ms))

static qrl_err device_set_pubkey_c(struct pg_conn *c, int64_t account_id, int64_t device_id,
                                   const unsigned char *pubkey)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    if (pubkey == NULL)
        return QRL_ERR_INVALID;
    p_i64(&p, device_id);
    p_i64(&p, account_id);
    p_blob(&p, pubkey, QRL_PUBKEY_BYTES);
    rc = qrl__pg_exec(c, PST_DEVICE_SET_PUBKEY, &p, &n, "device_set_pubkey");
    return rc == QRL_OK && n != 1 ? QRL_ERR_NOT_FOUND : rc;
}

PG_WRITE(device_set_pubkey,
         (qrl_store * st, int64_t account_id, int64_t device_id,
          const unsigned char pubkey[QRL_PUBKEY_BYTES]),
         (c, account_id, device_id, pubkey))
