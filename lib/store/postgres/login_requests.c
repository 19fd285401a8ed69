/* SPDX-License-Identifier: MIT */
/*
 * Login requests in the PostgreSQL store: create, get, find by device code, scan secret or user
 * code, the compare-and-set transition, redemption (with the device and tokens it creates),
 * the requests a device takes part in, approval with redemption in one unit, and the RFC 8628
 * poll bookkeeping.
 *
 * This is where the login-request state machine (lib/login_request.c) becomes atomic across
 * nodes: a request changes state only through one conditional UPDATE (PST_LR_TRANSITION) that
 * returns the row it changed, and every node is told once it has committed (notify.c).
 * Redemption locks the request's row first (SELECT ... FOR UPDATE), so of two nodes redeeming
 * one request the second waits for the first's commit and then finds it REDEEMED; it re-checks
 * the approver under a shared lock of the approving device, so a revocation either came first
 * and is seen, or waits until the redemption committed. With at most two tokens (every login)
 * those statements run on the server, in the same order with the same locks, as the function
 * qrlogin_redeem (schema.c): one round trip instead of eight.
 *
 * User codes: the SQLite store keeps which request a user code names in its process's memory,
 * which another node cannot see. Here the partial unique index login_requests_live_code holds
 * at most one live request per code, for every node at once: lr_create's INSERT ... ON CONFLICT
 * DO NOTHING inserts nothing when the code (or the id) is taken. A live request that holds the
 * code past its expiry (nobody polled it since) is then moved to EXPIRED, which frees the code
 * (store.h: only unexpired requests hold one), and the INSERT is tried once more. A code is
 * looked up through the plain index login_requests_user_code, newest unexpired request first,
 * whatever its state.
 *
 * Poll bookkeeping (store.h, lr_poll): the previous poll's time and the interval in force are
 * columns of the request, read and written by one UPDATE ... RETURNING, so two nodes answering
 * polls of one request apply RFC 8628 section 3.5 to the same history. lr_poll_find is a poll in
 * one statement: the same UPDATE, matched by the device code's hash, client and DPoP key,
 * returning the whole row.
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "pg_internal.h"

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

/* The INSERT of lr_create: *inserted is 0 when the id or a live request's code was taken. */
static qrl_err lr_insert(struct pg_conn *c, const qrl_lr_rec *lr, int *inserted)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    p_i64(&p, lr->id);
    p_hash(&p, &lr->device_code_hash);
    p_hash(&p, &lr->scan_hash);
    p_text(&p, lr->user_code);
    p_text(&p, lr->client_id);
    p_text(&p, lr->scope);
    p_text(&p, lr->device_name);
    p_text(&p, lr->device_kind);
    p_text(&p, lr->address);
    p_i64(&p, lr->created_ms);
    p_i64(&p, lr->expires_ms);
    p_i64(&p, lr->interval_s);
    p_i64(&p, (int64_t)lr->state);
    p_i64(&p, lr->updated_ms);
    p_i64(&p, lr->claimed_device_id);
    p_i64(&p, lr->account_id);
    p_i64(&p, lr->approving_device_id);
    p_i64(&p, lr->redeemed_device_id);
    p_text(&p, lr->device_platform);
    p_text(&p, lr->dpop_jkt);
    rc = qrl__pg_exec(c, PST_LR_INSERT, &p, &n, "lr_create");
    *inserted = rc == QRL_OK && n == 1;
    return rc;
}

static qrl_err lr_create_c(struct pg_conn *c, qrl_lr_rec *lr)
{
    struct pg_params p = {0};
    int inserted = 0;
    int64_t expired = 0;
    qrl_err rc;

    if (!lr_valid(lr) || lr->id <= 0)
        return QRL_ERR_INVALID;
    if ((rc = lr_insert(c, lr, &inserted)) != QRL_OK || inserted)
        return rc;
    /* Taken. By a request that has expired (as of the new one's creation) but still says it
     * is live? Then it is expired for good, and the code is free. */
    p_text(&p, lr->user_code);
    p_i64(&p, lr->created_ms);
    if ((rc = qrl__pg_exec(c, PST_LR_EXPIRE_CODE, &p, &expired, "lr_create")) != QRL_OK)
        return rc;
    if (expired > 0 && (rc = lr_insert(c, lr, &inserted)) != QRL_OK)
        return rc;
    return inserted ? QRL_OK : QRL_ERR_EXISTS;
}

PG_WRITE(lr_create, (qrl_store * st, qrl_lr_rec *lr), (c, lr))

/* Runs a bound login-request SELECT (LR_COLS) and decodes its first row. */
static qrl_err lr_fetch(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p,
                        qrl_lr_rec *out)
{
    PGresult *r;
    qrl_err rc = qrl__pg_run(c, id, p, &r, "login request");

    if (rc != QRL_OK)
        return rc;
    rc = PQntuples(r) > 0 ? qrl__pg_read_lr(r, 0, out) : QRL_ERR_NOT_FOUND;
    PQclear(r);
    return rc;
}

static qrl_err lr_get_conn(struct pg_conn *c, enum pg_stmt id, int64_t lr_id, qrl_lr_rec *out)
{
    struct pg_params p = {0};

    p_i64(&p, lr_id);
    return lr_fetch(c, id, &p, out);
}

static qrl_err lr_get_c(struct pg_conn *c, int64_t id, qrl_lr_rec *out)
{
    if (out == NULL)
        return QRL_ERR_INVALID;
    return lr_get_conn(c, PST_LR_GET, id, out);
}

PG_READ(lr_get, (qrl_store * st, int64_t id, qrl_lr_rec *out), (c, id, out))

/* By device code or scan secret: the row with the key's id, if the hash matches (constant
 * time). A wrong hash is answered like a missing row. */
static qrl_err lr_by_secret(struct pg_conn *c, qrl_lr_key kind, const qrl_lr_secret_key *key,
                            qrl_lr_rec *out)
{
    const qrl_hash *h;
    qrl_err rc = lr_get_conn(c, PST_LR_GET, key->id, out);

    if (rc != QRL_OK)
        return rc;
    h = kind == QRL_LR_KEY_DEVICE_CODE ? &out->device_code_hash : &out->scan_hash;
    if (sodium_memcmp(h->b, key->hash.b, sizeof h->b) != 0) {
        sodium_memzero(out, sizeof *out);
        return QRL_ERR_NOT_FOUND;
    }
    return QRL_OK;
}

static qrl_err lr_find_c(struct pg_conn *c, qrl_lr_key kind, const void *key, int64_t now_ms,
                         qrl_lr_rec *out)
{
    struct pg_params p = {0};

    if (key == NULL || out == NULL)
        return QRL_ERR_INVALID;
    switch (kind) {
    case QRL_LR_KEY_DEVICE_CODE:
    case QRL_LR_KEY_SCAN:
        return lr_by_secret(c, kind, key, out);
    case QRL_LR_KEY_USER_CODE:
        if (!str_fits(key, QRL_USER_CODE_LEN + 1))
            return QRL_ERR_INVALID;
        p_text(&p, key);
        p_i64(&p, now_ms);
        return lr_fetch(c, PST_LR_BY_CODE, &p, out);
    default:
        return QRL_ERR_INVALID;
    }
}

PG_READ(lr_find,
        (qrl_store * st, qrl_lr_key kind, const void *key, int64_t now_ms, qrl_lr_rec *out),
        (c, kind, key, now_ms, out))

/* The compare-and-set, on the caller's connection (alone, or inside lr_approve_redeem's
 * transaction). */
static qrl_err transition(struct pg_conn *c, const qrl_lr_cas *cas)
{
    struct pg_params p = {0};
    int64_t n = 0;
    qrl_err rc;

    if (cas == NULL || cas->to < QRL_LR_PENDING || cas->to > QRL_LR_EXPIRED)
        return QRL_ERR_INVALID;
    if ((cas->set_nonce != NULL && !str_fits(cas->set_nonce, QRL_MAX_NONCE + 1)) ||
        (cas->require_nonce != NULL && !str_fits(cas->require_nonce, QRL_MAX_NONCE + 1)))
        return QRL_ERR_INVALID;
    p_i64(&p, cas->id);
    p_i64(&p, (int64_t)cas->to);
    p_i64(&p, cas->now_ms);
    p_i64(&p, (int64_t)cas->from_mask);
    p_i64(&p, cas->set_claimed_device_id);
    p_i64(&p, cas->set_account_id);
    p_i64(&p, cas->set_approving_device_id);
    p_i64(&p, cas->require_claimed_by);
    p_text(&p, cas->set_nonce);
    p_text(&p, cas->require_nonce);
    rc = qrl__pg_exec(c, PST_LR_TRANSITION, &p, &n, "lr_transition");
    return rc == QRL_OK && n != 1 ? QRL_ERR_CONFLICT : rc;
}

static qrl_err lr_transition_c(struct pg_conn *c, const qrl_lr_cas *cas)
{
    return transition(c, cas);
}

PG_WRITE(lr_transition, (qrl_store * st, const qrl_lr_cas *cas), (c, cas))

/* Whether the approver of a request is still valid: the account exists and is not disabled,
 * and the approving device exists, belongs to it and is not revoked (its row stays locked,
 * shared, until the transaction ends). */
static qrl_err approver_valid(struct pg_conn *c, const qrl_lr_rec *lr, int *valid)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    p_i64(&p, lr->account_id);
    p_i64(&p, lr->approving_device_id);
    if ((rc = qrl__pg_run(c, PST_LR_APPROVER, &p, &r, "lr_redeem")) != QRL_OK)
        return rc;
    *valid = PQntuples(r) > 0 && qrl__pg_col_i64(r, 0, 0) == 0 && qrl__pg_col_i64(r, 0, 1) == 0;
    PQclear(r);
    return QRL_OK;
}

/* Runs an UPDATE of one APPROVED request (PST_LR_SET_DENIED or _REDEEMED). */
static qrl_err lr_update_approved(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p)
{
    int64_t n = 0;
    qrl_err rc = qrl__pg_exec(c, id, p, &n, "lr_redeem");

    return rc == QRL_OK && n != 1 ? QRL_ERR_CONFLICT /* cannot happen under the row lock */ : rc;
}

/* The checks and writes of lr_redeem inside the caller's transaction; lr receives the request
 * as it is afterwards, *commit whether to commit. */
static qrl_err lr_redeem_tx(struct pg_conn *c, int64_t id, int64_t now_ms,
                            const qrl_device_rec *dev, const qrl_token_rec *tok, size_t ntok,
                            qrl_lr_rec *lr, int *commit)
{
    struct pg_params p = {0};
    int valid = 0;
    int64_t dev_id = 0;
    qrl_err rc = lr_get_conn(c, PST_LR_GET_LOCK, id, lr);

    if (rc != QRL_OK)
        return rc;
    if (lr->state != QRL_LR_APPROVED)
        return QRL_ERR_CONFLICT;
    if (lr->expires_ms <= now_ms)
        return QRL_ERR_EXPIRED;
    if ((rc = approver_valid(c, lr, &valid)) != QRL_OK)
        return rc;
    p_i64(&p, id);
    p_i64(&p, now_ms);
    if (!valid) {
        /* Redemption re-checks the approver: a request approved by a device or account that
         * is no longer valid (revoked or disabled since) is declined for good, so that a
         * revocation also stops the logins it approved but that were not redeemed yet. */
        if ((rc = lr_update_approved(c, PST_LR_SET_DENIED, &p)) != QRL_OK)
            return rc;
        lr->state = QRL_LR_DENIED;
        *commit = 1;
        return QRL_ERR_DENIED;
    }
    rc = qrl__pg_insert_device(c, dev, lr->account_id, &dev_id);
    if (rc == QRL_OK)
        rc = qrl__pg_insert_tokens(c, tok, ntok, dev_id);
    if (rc != QRL_OK)
        return rc;
    p_i64(&p, dev_id);
    if ((rc = lr_update_approved(c, PST_LR_SET_REDEEMED, &p)) != QRL_OK)
        return rc;
    lr->state = QRL_LR_REDEEMED;
    lr->redeemed_device_id = dev_id;
    *commit = 1;
    return QRL_OK;
}

/* lr_redeem_tx in one round trip, for at most two tokens (what a login issues): the function
 * qrlogin_redeem (schema.c) runs the same statements on the server, with the same locks, in
 * the caller's transaction or as one of its own. */
#define REDEEM_CALL_TOKENS 2

static void redeem_token_params(struct pg_params *p, const qrl_token_rec *t)
{
    if (t == NULL) {
        p_blob(p, NULL, 0);
        for (int i = 0; i < 5; i++)
            p_i64(p, 0);
        p_text(p, NULL);
        p_text(p, NULL);
        return;
    }
    p_hash(p, &t->hash);
    p_i64(p, (int64_t)t->kind);
    p_i64(p, t->created_ms);
    p_i64(p, t->expires_ms);
    p_i64(p, t->used_ms);
    p_i64(p, t->revoked_ms);
    p_text(p, t->client_id);
    p_text(p, t->scope);
}

static qrl_err redeem_call(struct pg_conn *c, int64_t id, int64_t now_ms, const qrl_device_rec *dev,
                           const qrl_token_rec *tok, size_t ntok, qrl_lr_rec *lr)
{
    struct pg_params p = {0};
    PGresult *r;
    int64_t outcome;
    qrl_err rc;

    p_i64(&p, id);
    p_i64(&p, now_ms);
    p_device(&p, dev);
    for (size_t i = 0; i < REDEEM_CALL_TOKENS; i++)
        redeem_token_params(&p, i < ntok ? &tok[i] : NULL);
    if ((rc = qrl__pg_run(c, PST_LR_REDEEM, &p, &r, "lr_redeem")) != QRL_OK)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return qrl__pg_bad_row("lr_redeem");
    }
    outcome = qrl__pg_col_i64(r, 0, 0);
    lr->id = id;
    lr->state = (qrl_lr_state)qrl__pg_col_i64(r, 0, 1);
    lr->account_id = qrl__pg_col_i64(r, 0, 2);
    lr->redeemed_device_id = qrl__pg_col_i64(r, 0, 3);
    PQclear(r);
    switch (outcome) {
    case 0:
        qrl__pg_changed(c, id);
        return QRL_OK;
    case 1:
        return QRL_ERR_CONFLICT;
    case 2:
        return QRL_ERR_EXPIRED;
    case 3:
        /* Redemption re-checks the approver (lr_redeem_tx): declined for good, committed. */
        qrl__pg_changed(c, id);
        return QRL_ERR_DENIED;
    case 4:
        return QRL_ERR_NOT_FOUND;
    default:
        return qrl__pg_bad_row("lr_redeem");
    }
}

/* Fills in what redemption made (store.h: dev->id and dev->account_id, the tokens' device). */
static void redeemed(const qrl_lr_rec *lr, qrl_device_rec *dev, qrl_token_rec *tok, size_t ntok)
{
    dev->id = lr->redeemed_device_id;
    dev->account_id = lr->account_id;
    dev->last_seen_ms = dev->created_ms;
    dev->revoked_ms = 0;
    for (size_t i = 0; i < ntok; i++)
        tok[i].device_id = dev->id;
}

static qrl_err lr_redeem_c(struct pg_conn *c, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                           qrl_token_rec *tok, size_t ntok, qrl_lr_state *state_out)
{
    qrl_lr_rec lr;
    int commit = 0;
    qrl_err rc, erc;

    memset(&lr, 0, sizeof lr);
    if (!qrl__pg_device_valid(dev) || !qrl__pg_tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    if (ntok <= REDEEM_CALL_TOKENS) {
        /* One statement, its own transaction: what it decided is committed when it returns. */
        rc = redeem_call(c, id, now_ms, dev, tok, ntok, &lr);
        if (rc != QRL_OK && rc != QRL_ERR_CONFLICT && rc != QRL_ERR_EXPIRED && rc != QRL_ERR_DENIED)
            return rc;
    } else {
        if ((rc = qrl__pg_begin(c)) != QRL_OK)
            return rc;
        rc = lr_redeem_tx(c, id, now_ms, dev, tok, ntok, &lr, &commit);
        if ((erc = qrl__pg_end(c, commit)) != QRL_OK)
            return erc;
    }
    if (state_out != NULL &&
        (rc == QRL_OK || rc == QRL_ERR_CONFLICT || rc == QRL_ERR_EXPIRED || rc == QRL_ERR_DENIED))
        *state_out = lr.state;
    if (rc == QRL_OK)
        redeemed(&lr, dev, tok, ntok);
    return rc;
}

PG_WRITE(lr_redeem,
         (qrl_store * st, int64_t id, int64_t now_ms, qrl_device_rec *dev, qrl_token_rec *tok,
          size_t ntok, qrl_lr_state *state_out),
         (c, id, now_ms, dev, tok, ntok, state_out))

static qrl_err lr_by_device_c(struct pg_conn *c, int64_t device_id, int64_t *ids, size_t max,
                              size_t *n)
{
    struct pg_params p = {0};
    PGresult *r;
    size_t k = 0;
    qrl_err rc;

    if (n == NULL || (max > 0 && ids == NULL))
        return QRL_ERR_INVALID;
    *n = 0;
    if (max == 0)
        return QRL_OK;
    p_i64(&p, device_id);
    p_i64(&p, limit_of(max));
    if ((rc = qrl__pg_run(c, PST_LR_BY_DEVICE, &p, &r, "lr_by_device")) != QRL_OK)
        return rc;
    for (int i = 0; i < PQntuples(r) && k < max; i++)
        ids[k++] = qrl__pg_col_i64(r, i, 0);
    PQclear(r);
    *n = k;
    return QRL_OK;
}

PG_READ(lr_by_device, (qrl_store * st, int64_t device_id, int64_t *ids, size_t max, size_t *n),
        (c, device_id, ids, max, n))

/* Approval and redemption in one transaction: a failure of either undoes both (store.h). */
static qrl_err lr_approve_redeem_c(struct pg_conn *c, const qrl_lr_cas *cas, qrl_device_rec *dev,
                                   qrl_token_rec *tok, size_t ntok)
{
    qrl_lr_rec lr;
    int commit = 0;
    qrl_err rc, erc;

    memset(&lr, 0, sizeof lr);
    if (cas == NULL || cas->to != QRL_LR_APPROVED)
        return QRL_ERR_INVALID;
    if (!qrl__pg_device_valid(dev) || !qrl__pg_tokens_valid(tok, ntok))
        return QRL_ERR_INVALID;
    if ((rc = qrl__pg_begin(c)) != QRL_OK)
        return rc;
    rc = transition(c, cas);
    if (rc == QRL_OK && ntok <= REDEEM_CALL_TOKENS) {
        rc = redeem_call(c, cas->id, cas->now_ms, dev, tok, ntok, &lr);
        commit = rc == QRL_OK;
    } else if (rc == QRL_OK) {
        rc = lr_redeem_tx(c, cas->id, cas->now_ms, dev, tok, ntok, &lr, &commit);
    }
    if ((erc = qrl__pg_end(c, rc == QRL_OK && commit)) != QRL_OK)
        return rc != QRL_OK ? rc : erc;
    if (rc == QRL_OK)
        redeemed(&lr, dev, tok, ntok);
    return rc;
}

PG_WRITE(lr_approve_redeem,
         (qrl_store * st, const qrl_lr_cas *cas, qrl_device_rec *dev, qrl_token_rec *tok,
          size_t ntok),
         (c, cas, dev, tok, ntok))

static qrl_err lr_poll_c(struct pg_conn *c, int64_t id, int64_t now_ms, int exempt, int slack_ms,
                         int step_s, int max_s, int *interval_s)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;

    if (step_s < 0 || max_s < 0)
        return QRL_ERR_INVALID;
    p_i64(&p, id);
    p_i64(&p, now_ms);
    p_i64(&p, exempt != 0);
    p_i64(&p, slack_ms);
    p_i64(&p, step_s);
    p_i64(&p, max_s);
    if ((rc = qrl__pg_run(c, PST_LR_POLL, &p, &r, "lr_poll")) != QRL_OK)
        return rc;
    if (PQntuples(r) == 0) {
        rc = QRL_ERR_NOT_FOUND;
    } else {
        if (interval_s != NULL)
            *interval_s = (int)qrl__pg_col_i64(r, 0, 0);
        rc = qrl__pg_col_i64(r, 0, 1) ? QRL_ERR_SLOW_DOWN : QRL_OK;
    }
    PQclear(r);
    return rc;
}

PG_WRITE(lr_poll,
         (qrl_store * st, int64_t id, int64_t now_ms, int exempt, int slack_ms, int step_s,
          int max_s, int *interval_s),
         (c, id, now_ms, exempt, slack_ms, step_s, max_s, interval_s))

/* A poll in one statement (store.h, lr_poll_find): the request is read and its poll recorded
 * by one UPDATE ... RETURNING, only if it is the poll's (PST_LR_POLL_FIND). */
static qrl_err lr_poll_find_c(struct pg_conn *c, const qrl_lr_poll_req *poll, qrl_lr_rec *out,
                              int *interval_s)
{
    struct pg_params p = {0};
    PGresult *r;
    qrl_err rc;
    int nf;

    if (poll == NULL || out == NULL || poll->step_s < 0 || poll->max_s < 0 ||
        !str_fits(poll->client_id, QRL_MAX_CLIENT_ID + 1) ||
        (poll->dpop_jkt != NULL && !str_fits(poll->dpop_jkt, QRL_DPOP_JKT_LEN + 1)))
        return QRL_ERR_INVALID;
    p_i64(&p, poll->key.id);
    p_hash(&p, &poll->key.hash);
    p_text(&p, poll->client_id);
    p_text(&p, poll->dpop_jkt);
    p_i64(&p, poll->now_ms);
    p_i64(&p, poll->wait_s);
    p_i64(&p, poll->slack_ms);
    p_i64(&p, poll->step_s);
    p_i64(&p, poll->max_s);
    if ((rc = qrl__pg_run(c, PST_LR_POLL_FIND, &p, &r, "lr_poll_find")) != QRL_OK)
        return rc;
    nf = PQnfields(r);
    if (PQntuples(r) == 0 || nf < 2)
        rc = QRL_ERR_NOT_FOUND;
    else if ((rc = qrl__pg_read_lr(r, 0, out)) == QRL_OK) {
        if (interval_s != NULL)
            *interval_s = (int)qrl__pg_col_i64(r, 0, nf - 2);
        rc = qrl__pg_col_i64(r, 0, nf - 1) ? QRL_ERR_SLOW_DOWN : QRL_OK;
    }
    PQclear(r);
    return rc;
}

PG_WRITE(lr_poll_find,
         (qrl_store * st, const qrl_lr_poll_req *poll, qrl_lr_rec *out, int *interval_s),
         (c, poll, out, interval_s))
