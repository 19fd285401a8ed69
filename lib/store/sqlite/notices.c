/* SPDX-License-Identifier: MIT */
/*
 * Notices in the SQLite store (store.h, version 10; kinds since 11): of new devices and of
 * blocked requests. Add one (pruning the account's old ones), list what a device has not
 * acknowledged, get one, acknowledge one.
 *
 * A notice is a row of `notices` keyed by an id the core draws from the clock, so new rows
 * append to the table; a device's acknowledgement is a row of `notice_acks` keyed by (notice,
 * device), deleted with its notice (ON DELETE CASCADE). Adding a notice also deletes the
 * account's notices older than the caller's horizon: an account's list stays a handful of rows
 * without a sweep of its own, and the index on (account_id, created_ms) serves both the list and
 * the pruning. Both writes are lazy (QRL__SQLITE_WRITES says why); the list and get are reads
 * under a lease, joined with the device's row, so that a notice of a new device that was
 * revoked since drops out of every list by itself. A notice of a blocked request names the
 * phone that was stopped and is listed to every device of the account, that phone included,
 * whatever became of it (ST_NOTICE_LIST).
 */
#include <stdint.h>
#include <string.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

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

qrl_err qrl__sqlite_notice_add_w(qrl_store *st, const qrl_notice_rec *n, int64_t older_than_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK;
    qrl_err rc;

    if (n == NULL || n->id <= 0 || kind_of(n) == 0 || !str_fits(n->platform, sizeof n->platform) ||
        !str_fits(n->reason, sizeof n->reason) || !str_fits(n->screen_name, sizeof n->screen_name) ||
        !str_fits(n->screen_kind, sizeof n->screen_kind) ||
        !str_fits(n->screen_address, sizeof n->screen_address))
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK || (rc = qrl__sqlite_tx_begin(c)) != QRL_OK)
        return rc;
    if ((rc = stmt_get(c, ST_NOTICE_PRUNE, &s)) != QRL_OK)
        goto out;
    bind_i64(s, 1, n->account_id, &brc);
    bind_i64(s, 2, older_than_ms, &brc);
    rc = brc != SQLITE_OK ? qrl__sqlite_db_fail(c, brc, "notice_add")
                          : qrl__sqlite_stmt_run(c, s, "notice_add");
    if (rc != QRL_OK || (rc = stmt_get(c, ST_NOTICE_INSERT, &s)) != QRL_OK)
        goto out;
    bind_i64(s, 1, n->id, &brc);
    bind_i64(s, 2, n->account_id, &brc);
    bind_i64(s, 3, n->device_id, &brc);
    bind_i64(s, 4, n->created_ms, &brc);
    bind_text(s, 5, n->platform, &brc);
    bind_i64(s, 6, kind_of(n), &brc);
    bind_text(s, 7, n->reason, &brc);
    bind_text(s, 8, n->screen_name, &brc);
    bind_text(s, 9, n->screen_kind, &brc);
    bind_text(s, 10, n->screen_address, &brc);
    if (brc != SQLITE_OK) {
        rc = qrl__sqlite_db_fail(c, brc, "notice_add");
        goto out;
    }
    brc = sqlite3_step(s);
    sqlite3_reset(s);
    /* No such account or device: the caller's mistake, said as for passkey_add. */
    if (brc == SQLITE_CONSTRAINT_FOREIGNKEY)
        rc = QRL_ERR_NOT_FOUND;
    else if (brc != SQLITE_DONE)
        rc = qrl__sqlite_db_fail(c, brc, "notice_add");
out:
    if (rc != QRL_OK) {
        qrl__sqlite_tx_end(c, 0);
        return rc;
    }
    return qrl__sqlite_tx_end(c, 1);
}

static qrl_err notice_list_r(qrl_store *st, int64_t account_id, int64_t device_id, int64_t since_ms,
                             qrl_notice_rec *out, size_t max, size_t *n)
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
        (rc = stmt_get(c, ST_NOTICE_LIST, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, account_id, &brc);
    bind_i64(s, 2, device_id, &brc);
    bind_i64(s, 3, since_ms, &brc);
    bind_i64(s, 4, limit_of(max), &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "notice_list");
    while ((src = sqlite3_step(s)) == SQLITE_ROW && k < max) {
        if ((rc = qrl__sqlite_read_notice(s, &out[k])) != QRL_OK)
            break;
        k++;
    }
    if (rc == QRL_OK && src != SQLITE_DONE && src != SQLITE_ROW)
        rc = qrl__sqlite_db_fail(c, src, "notice_list");
    sqlite3_reset(s);
    if (rc == QRL_OK)
        *n = k;
    return rc;
}

READ_METHOD(notice_list,
            (qrl_store * st, int64_t account_id, int64_t device_id, int64_t since_ms,
             qrl_notice_rec *out, size_t max, size_t *n),
            (st, account_id, device_id, since_ms, out, max, n))

static qrl_err notice_get_r(qrl_store *st, int64_t account_id, int64_t id, qrl_notice_rec *out)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_NOTICE_GET, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, account_id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "notice_get");
    src = sqlite3_step(s);
    if (src == SQLITE_ROW)
        rc = qrl__sqlite_read_notice(s, out);
    else
        rc = src == SQLITE_DONE ? QRL_ERR_NOT_FOUND : qrl__sqlite_db_fail(c, src, "notice_get");
    sqlite3_reset(s);
    return rc;
}

READ_METHOD(notice_get, (qrl_store * st, int64_t account_id, int64_t id, qrl_notice_rec *out),
            (st, account_id, id, out))

qrl_err qrl__sqlite_notice_ack_w(qrl_store *st, int64_t account_id, int64_t id, int64_t device_id,
                                 int64_t now_ms)
{
    struct conn *c;
    sqlite3_stmt *s = NULL;
    int brc = SQLITE_OK, src;
    qrl_err rc;

    if ((rc = qrl__sqlite_store_conn(st, &c)) != QRL_OK ||
        (rc = stmt_get(c, ST_NOTICE_EXISTS, &s)) != QRL_OK)
        return rc;
    /* This runs on the writer, which alone writes: the notice read here is still there for
     * the INSERT below. */
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, account_id, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "notice_ack");
    src = sqlite3_step(s);
    sqlite3_reset(s);
    if (src == SQLITE_DONE)
        return QRL_ERR_NOT_FOUND;
    if (src != SQLITE_ROW)
        return qrl__sqlite_db_fail(c, src, "notice_ack");
    if ((rc = stmt_get(c, ST_NOTICE_ACK, &s)) != QRL_OK)
        return rc;
    bind_i64(s, 1, id, &brc);
    bind_i64(s, 2, device_id, &brc);
    bind_i64(s, 3, now_ms, &brc);
    if (brc != SQLITE_OK)
        return qrl__sqlite_db_fail(c, brc, "notice_ack");
    return qrl__sqlite_stmt_run(c, s, "notice_ack");
}
