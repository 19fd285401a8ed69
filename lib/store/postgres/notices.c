/* SPDX-License-Identifier: MIT */
/*
 * Notices in the PostgreSQL store (store.h, version 10; kinds since 11): of new devices and of
 * blocked requests. Add one (pruning the account's old ones), list what a device has not
 * acknowledged, get one, acknowledge one.
 *
 * As in the SQLite store: a notice is a row of `notices` keyed by an id the core draws from
 * the clock; a device's acknowledgement is a row of `notice_acks` keyed by (notice, device),
 * deleted with its notice. Adding a notice deletes the account's notices older than the
 * caller's horizon in the same statement, so an account's list stays a handful of rows
 * without a sweep. What several nodes add: once the INSERT has committed, every node is told
 * qrl_notice_key(account_id) (core.h; notify.c), so a phone whose request for notices is held
 * on another node is woken there too. Both writes are lazy (statements.c, LAZY): a lost notice costs the warning, never
 * a credential. The list and get join the device's row, so that a notice of a new device that
 * was revoked since drops out of every list by itself; a notice of a blocked request names the
 * phone that was stopped and is listed to every device of the account, that phone included,
 * whatever became of it (PST_NOTICE_LIST).
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

/* foreign_key_violation: no such account or device (notice_add), or a notice another node
 * pruned a moment ago (notice_ack). */
#define SQLSTATE_FK "23503"

/* The kind notice_add stores: 0 is a notice of a new device (store.h); 0 for one that is no
 * kind (QRL_ERR_INVALID). */
static int kind_of(const qrl_notice_rec *n)
{
    switch ((int)n->kind) {
    case 0:
    case QRL_NOTICE_DEVICE_LINKED:
        return QRL_NOTICE_DEVICE_LINKED;
    case QRL_NOTICE_REQUEST_BLOCKED:
        return QRL_NOTICE_REQUEST_BLOCKED;
    default:
        return 0;
    }
}

static qrl_err notice_add_c(struct pg_conn *c, const qrl_notice_rec *n, int64_t older_than_ms)
{
    struct pg_params ins = {0};
    qrl_err rc;

    if (n == NULL || n->id <= 0 || kind_of(n) == 0 || !str_fits(n->platform, sizeof n->platform) ||
        !str_fits(n->reason, sizeof n->reason) || !str_fits(n->screen_name, sizeof n->screen_name) ||
        !str_fits(n->screen_kind, sizeof n->screen_kind) ||
        !str_fits(n->screen_address, sizeof n->screen_address))
        return QRL_ERR_INVALID;
    p_i64(&ins, n->id);
    p_i64(&ins, n->account_id);
    p_i64(&ins, n->device_id);
    p_i64(&ins, n->created_ms);
    p_text(&ins, n->platform);
    p_i64(&ins, kind_of(n));
    p_text(&ins, n->reason);
    p_text(&ins, n->screen_name);
    p_text(&ins, n->screen_kind);
    p_text(&ins, n->screen_address);
    p_i64(&ins, older_than_ms);
    /* The prune and the insert are one statement, so one transaction of their own. */
    rc = qrl__pg_exec(c, PST_NOTICE_INSERT, &ins, NULL, "notice_add");
    /* No such account or device: the caller's mistake, said as for passkey_add. */
    if (rc == QRL_ERR_STORE && strcmp(qrl__pg_last_sqlstate(), SQLSTATE_FK) == 0)
        rc = QRL_ERR_NOT_FOUND;
    return rc;
}

PG_WRITE(notice_add, (qrl_store * st, const qrl_notice_rec *n, int64_t older_than_ms),
         (c, n, older_than_ms))

static qrl_err notice_list_c(struct pg_conn *c, int64_t account_id, int64_t device_id,
                             int64_t since_ms, qrl_notice_rec *out, size_t max, size_t *n)
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
    p_i64(&p, device_id);
    p_i64(&p, since_ms);
    p_i64(&p, limit_of(max));
    if ((rc = qrl__pg_run(c, PST_NOTICE_LIST, &p, &r, "notice_list")) != QRL_OK)
        return rc;
    for (int i = 0; i < PQntuples(r) && k < max && rc == QRL_OK; i++)
        if ((rc = qrl__pg_read_notice(r, i, &out[k])) == QRL_OK)
            k++;
    PQclear(r);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

PG_READ(notice_list,
        (qrl_store * st, int64_t account_id, int64_t device_id, int64_t since_ms,
         qrl_notice_rec *out, size_t max, size_t *n),
        (c, account_id, device_id, since_ms, out, max, n))

static qrl_err notice_get_c(struct pg_conn *c, int64_t account_id, int64_t id, qrl_notice_rec *out)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    p_i64(&p, id);
    p_i64(&p, account_id);
    if ((rc = qrl__pg_run(c, PST_NOTICE_GET, &p, &r, "notice_get")) != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? qrl__pg_read_notice(r, 0, out) : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

PG_READ(notice_get, (qrl_store * st, int64_t account_id, int64_t id, qrl_notice_rec *out),
        (c, account_id, id, out))

static qrl_err notice_ack_c(struct pg_conn *c, int64_t account_id, int64_t id, int64_t device_id,
                            int64_t now_ms)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    p_i64(&p, id);
    p_i64(&p, account_id);
    p_i64(&p, device_id);
    p_i64(&p, now_ms);
    rc = qrl__pg_run(c, PST_NOTICE_ACK, &p, &r, "notice_ack");
    if (rc == QRL_ERR_STORE && strcmp(qrl__pg_last_sqlstate(), SQLSTATE_FK) == 0)
        return QRL_ERR_NOT_FOUND;
    if (rc != QRL_OK)
        return rc;
    rc = qrl__pg_col_i64(r, 0, 0) > 0 ? QRL_OK : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

PG_WRITE(notice_ack,
         (qrl_store * st, int64_t account_id, int64_t id, int64_t device_id, int64_t now_ms),
         (c, account_id, id, device_id, now_ms))
