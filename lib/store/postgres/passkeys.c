/* SPDX-License-Identifier: MIT */
/*
 * Passkeys in the PostgreSQL store: add, list an account's, get by credential id, record a use
 * (the signature counter), delete.
 *
 * A credential id names one credential wherever it is registered, hence its unique index: a
 * second registration, on any node, fails with QRL_ERR_EXISTS. passkey_use is a compare-and-set
 * on the signature counter (W3C WebAuthn Level 2 section 6.1.1): the UPDATE matches only the
 * counter the caller read, so of two assertions racing with the same counter, on one node or
 * two, one wins and the other hears QRL_ERR_CONFLICT. The same statement tells a missing
 * passkey from a lost race. Every write here is durable: a counter that went back after a
 * power loss would accept a replayed assertion's counter once more.
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

static qrl_err passkey_add_c(struct pg_conn *c, qrl_passkey_rec *pk)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (pk == NULL || pk->cred_id_len == 0 || pk->cred_id_len > sizeof pk->cred_id ||
        pk->pubkey_len == 0 || pk->pubkey_len > sizeof pk->pubkey ||
        !str_fits(pk->name, sizeof pk->name))
        return QRL_ERR_INVALID;
    p_i64(&p, pk->account_id);
    p_blob(&p, pk->cred_id, pk->cred_id_len);
    p_i64(&p, pk->alg);
    p_blob(&p, pk->pubkey, pk->pubkey_len);
    p_i64(&p, pk->sign_count);
    p_text(&p, pk->name);
    p_i64(&p, pk->created_ms);
    rc = qrl__pg_run(c, PST_PASSKEY_INSERT, &p, &r, "passkey_add");
    /* No such account (foreign_key_violation): the caller's mistake, said as for the other
     * methods keyed by account. */
    if (rc == QRL_ERR_STORE && strcmp(qrl__pg_last_sqlstate(), "23503") == 0)
        return QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return rc;
    pk->id = qrl__pg_col_i64(r, 0, 0);
    pk->last_used_ms = 0;
    PQclear(r);
    return QRL_OK;
}

PG_WRITE(passkey_add, (qrl_store * st, qrl_passkey_rec *pk), (c, pk))

static qrl_err passkey_list_c(struct pg_conn *c, int64_t account_id, qrl_passkey_rec *out,
                              size_t max, size_t *n)
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
    if ((rc = qrl__pg_run(c, PST_PASSKEY_LIST, &p, &r, "passkey_list")) != QRL_OK)
        return rc;
    for (int i = 0; i < PQntuples(r) && k < max && rc == QRL_OK; i++)
        if ((rc = qrl__pg_read_passkey(r, i, &out[k])) == QRL_OK)
            k++;
    PQclear(r);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

PG_READ(passkey_list,
        (qrl_store * st, int64_t account_id, qrl_passkey_rec *out, size_t max, size_t *n),
        (c, account_id, out, max, n))

static qrl_err passkey_get_c(struct pg_conn *c, const unsigned char *cred_id, size_t cred_id_len,
                             qrl_passkey_rec *out)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (out == NULL || cred_id == NULL || cred_id_len == 0 || cred_id_len > QRL_MAX_CRED_ID)
        return QRL_ERR_INVALID;
    p_blob(&p, cred_id, cred_id_len);
    if ((rc = qrl__pg_run(c, PST_PASSKEY_GET, &p, &r, "passkey_get")) != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? qrl__pg_read_passkey(r, 0, out) : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

PG_READ(passkey_get,
        (qrl_store * st, const unsigned char *cred_id, size_t cred_id_len, qrl_passkey_rec *out),
        (c, cred_id, cred_id_len, out))

static qrl_err passkey_use_c(struct pg_conn *c, int64_t id, uint32_t old_count, uint32_t new_count,
                             int64_t now_ms)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    p_i64(&p, id);
    p_i64(&p, old_count);
    p_i64(&p, new_count);
    p_i64(&p, now_ms);
    if ((rc = qrl__pg_run(c, PST_PASSKEY_USE, &p, &r, "passkey_use")) != QRL_OK)
        return rc;
    if (qrl__pg_col_i64(r, 0, 0) == 1)
        rc = QRL_OK;
    else
        rc = qrl__pg_col_i64(r, 0, 1) ? QRL_ERR_CONFLICT : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

PG_WRITE(passkey_use,
         (qrl_store * st, int64_t id, uint32_t old_count, uint32_t new_count, int64_t now_ms),
         (c, id, old_count, new_count, now_ms))

static qrl_err passkey_delete_c(struct pg_conn *c, int64_t account_id, int64_t id)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    p_i64(&p, id);
    p_i64(&p, account_id);
    rc = qrl__pg_exec(c, PST_PASSKEY_DELETE, &p, &n, "passkey_delete");
    return rc == QRL_OK && n != 1 ? QRL_ERR_NOT_FOUND : rc;
}

PG_WRITE(passkey_delete, (qrl_store * st, int64_t account_id, int64_t id), (c, account_id, id))
