/* SPDX-License-Identifier: MIT */
/*
 * Linked devices of an account: listing and revocation. Revocation is checked on every token
 * use (token_lookup joins the device), so it takes effect on the very next request; here we
 * also decline login requests the revoked phone had claimed or approved, so that a screen
 * waiting on one is answered at once instead of at expiry.
 */
#include <string.h>

#include <sodium.h>

#include "crash.h"
#include "internal.h"

qrl_err qrl_devices_list(qrl_core *core, const qrl_auth *auth, qrl_device_rec *out, size_t max,
                         size_t *n)
{
    *n = 0;
    return core->st->m->device_list(core->st, auth->account_id, out, max, n);
}

qrl_err qrl_device_revoke(qrl_core *core, const qrl_auth *auth, int64_t device_id)
{
    qrl_device_rec dev;
    qrl_err rc;

    if (device_id <= 0)
        return QRL_ERR_NOT_FOUND;
    /* A revoked device is gone from the user's point of view: revoking it again is "not
     * found", like any id that is not in their list. */
    rc = core->st->m->device_get(core->st, device_id, &dev);
    if (rc != QRL_OK)
        return rc;
    if (dev.account_id != auth->account_id || dev.revoked_ms != 0)
        return QRL_ERR_NOT_FOUND;
    QRL_CRASH_POINT(REVOKE_BEFORE_SUBMIT);
    rc = core->st->m->device_revoke(core->st, auth->account_id, device_id, qrl_core_now_ms(core));
    if (rc != QRL_OK)
        return rc;
    QRL_CRASH_POINT(REVOKE_COMMITTED);
    qrl__lr_deny_for_device(core, device_id);
    return QRL_OK;
}

qrl_err qrl_device_set_key(qrl_core *core, const qrl_auth *auth, const char *pubkey_b64,
                           const char *password, const char *address)
{
    unsigned char pk[QRL_PUBKEY_BYTES];
    size_t len = 0;
    qrl_err rc;

    /* The alphabet first: libsodium 1.0.18 decodes some bytes outside it (0x80 and up) as if
     * they were '_', which would give one key many spellings. */
    static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    if (pubkey_b64 == NULL || password == NULL ||
        strspn(pubkey_b64, b64url) != strlen(pubkey_b64) ||
        sodium_base642bin(pk, sizeof pk, pubkey_b64, strlen(pubkey_b64), NULL, &len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        len != sizeof pk)
        return QRL_ERR_INVALID;
    rc = qrl__password_check(core, &auth->account, password, address);
    if (rc != QRL_OK)
        return rc;
    return core->st->m->device_set_pubkey(core->st, auth->account_id, auth->device_id, pk);
}
