/* SPDX-License-Identifier: MIT */
/*
 * WebAuthn challenges in the PostgreSQL store (store.h, version 11): put one, take one.
 *
 * What this gives several nodes: a passkey ceremony begun on one node (the challenge issued)
 * finishes on any other (the challenge taken), so the phone's requests may go to any node.
 * A challenge is a row of `webauthn_challenges` keyed by the hash of the challenge; the store
 * never sees the challenge itself.
 *
 * The take is one statement, DELETE ... RETURNING: under READ COMMITTED, of two takes racing
 * for one row on two nodes, the second waits for the first to commit and then finds the row
 * gone, so exactly one of them gets it. It commits durably: a challenge that came back after a
 * power loss would let whatever was presented with it be verified once more.
 *
 * The put must keep a device's challenges under QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE when
 * puts of one device race on several nodes. A single statement cannot: each would count the
 * device's rows in its own snapshot, taken before the others committed, and all insert. So the
 * put is a transaction that first takes an advisory lock keyed by the device id, held until it
 * commits; the next put of that device waits for it, and its statement, which starts after the
 * wait, sees the rows committed before. Four round trips (BEGIN, the lock, the delete and
 * insert, COMMIT) for something a person does by hand a few times a day; the transaction is
 * lazy (a challenge lost to a power loss makes the browser ask for another).
 */
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "pg_internal.h"

static qrl_err challenge_put_c(struct pg_conn *c, const qrl_challenge_rec *ch, int64_t now_ms)
{
    struct pg_params lock = {0}, put = {0};
    qrl_err rc, erc;

    if (ch == NULL || ch->account_id <= 0 || ch->device_id <= 0 || ch->lr_id < 0 ||
        ch->purpose <= 0 || ch->expires_ms <= now_ms)
        return QRL_ERR_INVALID;
    p_i64(&lock, ch->device_id);
    p_hash(&put, &ch->hash);
    p_i64(&put, ch->account_id);
    p_i64(&put, ch->device_id);
    p_i64(&put, ch->lr_id);
    p_i64(&put, ch->purpose);
    p_i64(&put, ch->expires_ms);
    p_i64(&put, now_ms);
    p_i64(&put, QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE - 1);
    if ((rc = qrl__pg_begin(c)) != QRL_OK)
        return rc;
    if ((rc = qrl__pg_exec(c, PST_CHAL_LOCK, &lock, NULL, "challenge_put")) == QRL_OK)
        rc = qrl__pg_exec(c, PST_CHAL_PUT, &put, NULL, "challenge_put");
    erc = qrl__pg_end(c, rc == QRL_OK);
    return rc != QRL_OK ? rc : erc;
}

PG_WRITE(challenge_put, (qrl_store * st, const qrl_challenge_rec *ch, int64_t now_ms),
         (c, ch, now_ms))

static qrl_err challenge_take_c(struct pg_conn *c, const qrl_hash *h, int64_t now_ms,
                                qrl_challenge_rec *out)
{
    struct pg_params p = {0};
    qrl_challenge_rec got;
    PGresult *r;
    int64_t purpose;
    qrl_err rc;

    if (h == NULL)
        return QRL_ERR_INVALID;
    p_hash(&p, h);
    if ((rc = qrl__pg_run(c, PST_CHAL_TAKE, &p, &r, "challenge_take")) != QRL_OK)
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return QRL_ERR_NOT_FOUND;
    }
    memset(&got, 0, sizeof got);
    got.hash = *h;
    got.account_id = qrl__pg_col_i64(r, 0, 0);
    got.device_id = qrl__pg_col_i64(r, 0, 1);
    got.lr_id = qrl__pg_col_i64(r, 0, 2);
    purpose = qrl__pg_col_i64(r, 0, 3);
    got.expires_ms = qrl__pg_col_i64(r, 0, 4);
    PQclear(r);
    /* An expired challenge was deleted all the same; it is never handed out. */
    if (got.expires_ms <= now_ms)
        return QRL_ERR_NOT_FOUND;
    if (purpose <= 0 || purpose > INT32_MAX)
        return qrl__pg_bad_row("challenge_take");
    got.purpose = (int)purpose;
    if (out != NULL)
        *out = got;
    return QRL_OK;
}

PG_WRITE(challenge_take,
         (qrl_store * st, const qrl_hash *h, int64_t now_ms, qrl_challenge_rec *out),
         (c, h, now_ms, out))
