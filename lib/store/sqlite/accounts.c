/* SPDX-License-Identifier: MIT */
/*
 * Accounts in the SQLite store: create, get by id or by username, set the password hash.
 *
 * Each method is one statement, atomic by itself, so none needs a transaction of its own. The
 * username is UNIQUE in the schema: a second account_create with it fails with QRL_ERR_EXISTS
 * (SQLITE_CONSTRAINT_UNIQUE, qrl__sqlite_db_fail), which is how the core learns a name is
 * taken without a racy check first.
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

qrl_err qrl__sqlite_account_create_w(qrl_store *st, qrl_account_rec *acc)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (acc == NULL || !str_fits(acc->username, sizeof acc->username) ||
        !str_fits(acc->display_name, sizeof acc->display_name) ||
        !str_fits(acc->pw_hash, sizeof acc->pw_hash))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_ACCOUNT_INSERT, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, acc->username, &brc);
    bind_text(s, 2, acc->display_name, &brc);
    bind_text(s, 3, acc->pw_hash, &brc);
    bind_i64(s, 4, acc->created_ms, &brc);
    bind_i64(s, 5, acc->disabled != 0, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "account_create");
    rc = qrl__sqlite_stmt_run(c, s, "account_create");
    if (rc == QRL_OK)
        acc->id = sqlite3_last_insert_rowid(c->db);
    return rc;
}

/* Looks up one account with a prepared statement whose ?1 the caller bound. */
static qrl_err account_fetch(struct conn *c, sqlite3_stmt *s, qrl_account_rec *out)
{
    int src = sqlite3_step(s);
    qrl_err rc;

    if (src == SQLITE_ROW)
        rc = qrl__sqlite_read_account(s, out);
    else if (src == SQLITE_DONE)
        rc = QRL_ERR_NOT_FOUND;
    else
        rc = qrl__sqlite_db_fail(c, src, "account");
    sqlite3_reset(s);
    return rc;
}

static qrl_err account_get_r(qrl_store *st, int64_t id, qrl_account_rec *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_ACCOUNT_GET, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "account_get");
    return account_fetch(c, s, out);
}

READ_METHOD(account_get, (qrl_store * st, int64_t id, qrl_account_rec *out), (st, id, out))

static qrl_err account_by_name_r(qrl_store *st, const char *username, qrl_account_rec *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (out == NULL || !str_fits(username, sizeof out->username))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_ACCOUNT_BY_NAME, &s)) != QRL_OK)
        return rc;
    bind_text(s, 1, username, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "account_by_name");
    return account_fetch(c, s, out);
}

READ_METHOD(account_by_name, (qrl_store * st, const char *username, qrl_account_rec *out),
            (st, username, out))

qrl_err qrl__sqlite_account_set_password_w(qrl_store *st, int64_t id, const char *pw_hash)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (!str_fits(pw_hash, QRL_PWHASH_MAX + 1))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_ACCOUNT_SET_PW, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_text(s, 2, pw_hash, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "account_set_password");
    rc = qrl__sqlite_stmt_run(c, s, "account_set_password");
    if (rc == QRL_OK && sqlite3_changes(c->db) != 1)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}
