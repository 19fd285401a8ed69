/* SPDX-License-Identifier: MIT */
/*
 * Notices to the devices of an account, of two kinds (qrl_notice_kind, store.h).
 *
 * Notices of new devices: after every approval that links a device, the account's other
 * devices learn of it ("New device linked: “Living Room TV”, 2 minutes ago. Not you?") and,
 * for a while, may remove it with one tap.
 *
 * Why: the approval screen is the defence against a phished approval (docs/security.md), and
 * it can be talked past: a user who approved an attacker's screen believing it was their own
 * has linked a device they do not know. The notice reaches every other device of the account,
 * the approving phone included, at once (a held request wakes), names the device as the server
 * recorded it, and makes removing it one tap while the attacker has had it for minutes only.
 * The tap needs no step-up, like the devices list's Remove; the window (notice_revoke_window_s)
 * keeps the shortcut to a fresh link, so that an old notice is no standing way to remove
 * devices: after it, the devices list is the way.
 *
 * Lifecycle of a notice: recorded right after the redemption that created the device
 * (qrl__notice_linked, called by login_request.c once the store has committed the device) ->
 * listed to each other device of the account linked before it, until that device acknowledges
 * it, the new device is revoked, or it is older than KEEP_MS -> deleted when the account's next
 * notice is recorded after KEEP_MS (the store's notice_add prunes). Waiting for notices is the
 * server's business: it holds a request under qrl_notice_key(account) in its hub, which the
 * core wakes through on_change (qrl__notify) when it records a notice.
 *
 * Notices of blocked requests: when phishing.c refuses a login request a phone of the account
 * was opening or approving (a phishing kit's pattern), the account is told on every device,
 * the stopped phone included ("We stopped a sign-in request you were about to approve"):
 * whoever was talked into scanning a code learns it was an attack, on whichever device of the
 * account they look at next, and a phone that was signed in to the account by someone else
 * shows up as the one stopped. Recorded by
 * qrl__notice_blocked (from qrl__phish_block), once per request and account: a refusal repeated
 * in a race, or on another node, finds the first one's mark (a rate-limit key of the store,
 * taken once, like phishing.c's counts) and records nothing. Listed to every device of the
 * account signed in before it, until each acknowledges it or it is older than KEEP_MS; there is
 * nothing to remove (the request linked nothing), so it has no one-tap revoke.
 *
 * Everything is off when the store keeps no notices (store.h version 10 with the four notice
 * methods): a store written before, or one that leaves them NULL. A store before version 11
 * keeps only notices of new devices: notices of blocked requests are then not recorded.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Notices are listed for 30 days after the link, and deleted after that by the account's next
 * notice: long enough for a device left in a drawer for weeks to show what happened meanwhile,
 * short enough that an account's rows stay a handful. */
#define KEEP_MS (30LL * 24 * 3600 * 1000)
/* Draws of a new id when the store reports one taken: ids come from the clock and 11 random
 * bits (qrl__lr_id_new), so a second collision in a row means something else is wrong. */
#define ADD_ATTEMPTS 4

static bool enabled(const qrl_store *st)
{
    return st->m->version >= 10 && st->m->notice_add != NULL && st->m->notice_list != NULL &&
           st->m->notice_get != NULL && st->m->notice_ack != NULL;
}

int qrl_notices_enabled(const qrl_core *core)
{
    return enabled(core->st);
}

void qrl__notice_linked(qrl_core *core, const qrl_device_rec *dev, const char *platform,
                        int64_t now_ms)
{
    qrl_notice_rec n;
    qrl_err rc = QRL_ERR_EXISTS;

    if (!enabled(core->st) || dev->id <= 0 || dev->account_id <= 0)
        return;
    memset(&n, 0, sizeof n);
    n.account_id = dev->account_id;
    n.device_id = dev->id;
    n.created_ms = now_ms;
    /* The platform was checked against the same limit when the request was made. */
    if (platform == NULL || qrl__strcpy(n.platform, sizeof n.platform, platform) != QRL_OK)
        n.platform[0] = '\0';
    for (int attempt = 0; attempt < ADD_ATTEMPTS && rc == QRL_ERR_EXISTS; attempt++) {
        n.id = qrl__lr_id_new();
        rc = core->st->m->notice_add(core->st, &n, now_ms - KEEP_MS);
    }
    if (rc == QRL_OK)
        qrl__notify(core, qrl_notice_key(n.account_id));
}

void qrl__notice_blocked(qrl_core *core, const qrl_auth *auth, const qrl_lr_rec *lr,
                         qrl_block_reason why, int64_t now_ms)
{
    /* The request's whole life and a minute: the mark outlives every refusal of the request. */
    int64_t window = lr->expires_ms - lr->created_ms + 60000;
    char key[64];
    qrl_notice_rec n;
    qrl_err rc = QRL_ERR_EXISTS;

    if (!enabled(core->st) || core->st->m->version < 11 || auth == NULL ||
        auth->account_id <= 0 || auth->device_id <= 0 || why == QRL_BLOCK_NONE)
        return;
    if (window < 60000)
        window = 60000;
    snprintf(key, sizeof key, "nbl:%lld:%lld", (long long)lr->id, (long long)auth->account_id);
    /* Taken by the first refusal only (a limit of one per window): told once, not per retry. */
    if (core->st->m->ratelimit_take(core->st, key, now_ms, window, 1, NULL) != QRL_OK)
        return;
    memset(&n, 0, sizeof n);
    n.account_id = auth->account_id;
    n.device_id = auth->device_id;
    n.created_ms = now_ms;
    n.kind = QRL_NOTICE_REQUEST_BLOCKED;
    /* Every string was checked against the same limit when the request was made; one that
     * does not fit (it cannot) is left out rather than losing the notice. */
    if (qrl__strcpy(n.reason, sizeof n.reason, qrl_block_reason_name(why)) != QRL_OK)
        n.reason[0] = '\0';
    if (qrl__strcpy(n.platform, sizeof n.platform, lr->device_platform) != QRL_OK)
        n.platform[0] = '\0';
    if (qrl__strcpy(n.screen_name, sizeof n.screen_name, lr->device_name) != QRL_OK)
        n.screen_name[0] = '\0';
    if (qrl__strcpy(n.screen_kind, sizeof n.screen_kind, lr->device_kind) != QRL_OK)
        n.screen_kind[0] = '\0';
    if (qrl__strcpy(n.screen_address, sizeof n.screen_address, lr->address) != QRL_OK)
        n.screen_address[0] = '\0';
    for (int attempt = 0; attempt < ADD_ATTEMPTS && rc == QRL_ERR_EXISTS; attempt++) {
        n.id = qrl__lr_id_new();
        rc = core->st->m->notice_add(core->st, &n, now_ms - KEEP_MS);
    }
    if (rc == QRL_OK)
        qrl__notify(core, qrl_notice_key(n.account_id));
    else /* Not recorded: the next refusal of the request may try again. */
        (void)core->st->m->ratelimit_give(core->st, key, now_ms, window, 1);
}

/* The notice with the time until which its one-tap revoke works (none for a blocked request:
 * it linked nothing). */
static void notice_fill(const qrl_core *core, const qrl_notice_rec *rec, qrl_notice *out)
{
    out->rec = *rec;
    out->revoke_until_ms =
        core->cfg.notice_revoke_window_s > 0 && rec->kind != QRL_NOTICE_REQUEST_BLOCKED
            ? rec->created_ms + core->cfg.notice_revoke_window_s * 1000
            : 0;
}

qrl_err qrl_notices_list(qrl_core *core, const qrl_auth *auth, qrl_notice *out, size_t max,
                         size_t *n)
{
    qrl_notice_rec rec[QRL_MAX_NOTICES_LISTED];
    int64_t now = qrl_core_now_ms(core), since;
    size_t got = 0;
    qrl_err rc;

    *n = 0;
    if (!enabled(core->st))
        return QRL_ERR_NOT_FOUND;
    if (max > QRL_MAX_NOTICES_LISTED)
        max = QRL_MAX_NOTICES_LISTED;
    /* A device hears of the devices linked after it, not of those it found on the account. */
    since = auth->device.created_ms > now - KEEP_MS ? auth->device.created_ms : now - KEEP_MS;
    rc = core->st->m->notice_list(core->st, auth->account_id, auth->device_id, since, rec, max,
                                  &got);
    if (rc != QRL_OK)
        return rc;
    for (size_t i = 0; i < got; i++)
        notice_fill(core, &rec[i], &out[i]);
    *n = got;
    return QRL_OK;
}

qrl_err qrl_notice_ack(qrl_core *core, const qrl_auth *auth, int64_t id)
{
    if (!enabled(core->st) || id <= 0)
        return QRL_ERR_NOT_FOUND;
    return core->st->m->notice_ack(core->st, auth->account_id, id, auth->device_id,
                                   qrl_core_now_ms(core));
}

qrl_err qrl_notice_revoke(qrl_core *core, const qrl_auth *auth, int64_t id, qrl_notice *out)
{
    qrl_notice_rec rec;
    qrl_notice n;
    qrl_err rc;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (!enabled(core->st) || id <= 0)
        return QRL_ERR_NOT_FOUND;
    rc = core->st->m->notice_get(core->st, auth->account_id, id, &rec);
    if (rc != QRL_OK)
        return rc;
    notice_fill(core, &rec, &n);
    if (out != NULL)
        *out = n;
    /* A blocked request linked nothing: there is no device to remove (the one it names is the
     * phone that was stopped). */
    if (rec.kind == QRL_NOTICE_REQUEST_BLOCKED)
        return QRL_ERR_CONFLICT;
    /* A device does not remove itself through its own notice (it is never listed one), and a
     * device removed already is gone, as for the devices list. */
    if (rec.device_id == auth->device_id || rec.device.revoked_ms != 0)
        return QRL_ERR_NOT_FOUND;
    if (n.revoke_until_ms == 0 || qrl_core_now_ms(core) >= n.revoke_until_ms)
        return QRL_ERR_FORBIDDEN;
    rc = qrl_device_revoke(core, auth, rec.device_id);
    if (rc != QRL_OK)
        return rc;
    /* Done with for this device; a lost acknowledgement only shows it once more (and the list
     * leaves out revoked devices anyway). */
    (void)core->st->m->notice_ack(core->st, auth->account_id, id, auth->device_id,
                                  qrl_core_now_ms(core));
    return QRL_OK;
}
