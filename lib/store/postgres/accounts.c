/* SPDX-License-Identifier: MIT */
/*
 * Accounts in the PostgreSQL store: create, get by id or by username, set the password hash.
 *
 * Each method is one statement, atomic by itself. The username is UNIQUE in the schema, so of
 * two nodes creating the same name at once one gets QRL_ERR_EXISTS (a unique violation,
 * qrl__pg_fail) without a racy check first.
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

static qrl_err account_create_c(struct pg_conn *c, qrl_account_rec *acc)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (acc == NULL || !str_fits(acc->username, sizeof acc->username) ||
        !str_fits(acc->display_name, sizeof acc->display_name) ||
        !str_fits(acc->pw_hash, sizeof acc->pw_hash))
        return QRL_ERR_INVALID;
    p_text(&p, acc->username);
    p_text(&p, acc->display_name);
    p_text(&p, acc->pw_hash);
    p_i64(&p, acc->created_ms);
    p_i64(&p, acc->disabled != 0);
    if ((rc = qrl__pg_run(c, PST_ACCOUNT_INSERT, &p, &r, "account_create")) != QRL_OK)
        return rc;
    acc->id = qrl__pg_col_i64(r, 0, 0);
    PQclear(r);
    return QRL_OK;
}

PG_WRITE(account_create, (qrl_store * st, qrl_account_rec *acc), (c, acc))

/* The first row of a bound account SELECT. */
static qrl_err account_fetch(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p,
                             qrl_account_rec *out)
{
    PGresult *r;
    qrl_err rc = qrl__pg_run(c, id, p, &r, "account");

    if (rc != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? qrl__pg_read_account(r, 0, 0, out) : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

static qrl_err account_get_c(struct pg_conn *c, int64_t id, qrl_account_rec *out)
{
    struct pg_params p = {0};

    if (out == NULL)
        return QRL_ERR_INVALID;
    p_i64(&p, id);
    return account_fetch(c, PST_ACCOUNT_GET, &p, out);
}

PG_READ(account_get, (qrl_store * st, int64_t id, qrl_account_rec *out), (c, id, out))

static qrl_err account_by_name_c(struct pg_conn *c, const char *username, qrl_account_rec *out)
{
    struct pg_params p = {0};

    if (out == NULL || !str_fits(username, sizeof out->username))
        return QRL_ERR_INVALID;
    p_text(&p, username);
    return account_fetch(c, PST_ACCOUNT_BY_NAME, &p, out);
}

PG_READ(account_by_name, (qrl_store * st, const char *username, qrl_account_rec *out),
        (c, username, out))

static qrl_err account_set_password_c(struct pg_conn *c, int64_t id, const char *pw_hash)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    if (!str_fits(pw_hash, QRL_PWHASH_MAX + 1))
        return QRL_ERR_INVALID;
    p_i64(&p, id);
    p_text(&p, pw_hash);
    rc = qrl__pg_exec(c, PST_ACCOUNT_SET_PW, &p, &n, "account_set_password");
    return rc == QRL_OK && n != 1 ? QRL_ERR_NOT_FOUND : rc;
}

PG_WRITE(account_set_password, (qrl_store * st, int64_t id, const char *pw_hash), (c, id, pw_hash))
