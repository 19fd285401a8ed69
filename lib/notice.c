/* SPDX-License-Identifier: MIT */
/*
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
 * Everything is off when the store keeps no notices (store.h version 10 with the four notice
 * methods): a store written before, or one that leaves them NULL.
 */
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

/* The notice with the time until which its one-tap revoke works. */
static void notice_fill(const qrl_core *core, const qrl_notice_rec *rec, qrl_notice *out)
{
    out->rec = *rec;
    out->revoke_until_ms = core->cfg.notice_revoke_window_s > 0
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
