/* SPDX-License-Identifier: MIT */
/*
 * Screen credentials: access and refresh tokens, rotation, introspection and revocation.
 *
 * Each redeemed login request becomes one device, and the device owns one refresh-token family:
 * every refresh spends the presented token and issues a new pair. Presenting a spent token again
 * means two parties hold the family (OAuth 2.0 Security BCP, RFC 9700 section 4.14.2), so the
 * whole device is revoked. Access tokens are opaque and checked against the store on every
 * introspection, which is what makes revocation take effect on the very next request.
 *
 * A screen that proved a key with DPoP (RFC 9449) when it signed in has its tokens bound to
 * that key: the key is its device's, so the binding covers the whole family, and a refresh
 * needs a proof with the same key. The proofs themselves are the server's to parse and verify;
 * the core only compares keys and remembers used proof identifiers (qrl_dpop_jti_use).
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "crash.h"
#include "internal.h"

void qrl__tokens_draw(qrl_core *core, const char *client_id, const char *scope, int64_t now_ms,
                      qrl_tokens *out, qrl_token_rec rec[2])
{
    memset(rec, 0, 2 * sizeof rec[0]);
    qrl__token_new(QRL__PFX_ACCESS, out->access_token);
    qrl__token_new(QRL__PFX_REFRESH, out->refresh_token);
    out->expires_in_s = core->cfg.access_ttl_s;
    (void)qrl__strcpy(out->scope, sizeof out->scope, scope);

    qrl__token_key(out->access_token, &rec[0].hash);
    rec[0].kind = QRL_TOKEN_ACCESS;
    rec[0].created_ms = now_ms;
    rec[0].expires_ms = now_ms + core->cfg.access_ttl_s * 1000;
    qrl__token_key(out->refresh_token, &rec[1].hash);
    rec[1].kind = QRL_TOKEN_REFRESH;
    rec[1].created_ms = now_ms;
    rec[1].expires_ms = now_ms + core->cfg.refresh_ttl_s * 1000;
    for (int i = 0; i < 2; i++) {
        /* Both were validated against the same limits when the request was made. */
        (void)qrl__strcpy(rec[i].client_id, sizeof rec[i].client_id, client_id);
        (void)qrl__strcpy(rec[i].scope, sizeof rec[i].scope, scope);
    }
}

qrl_err qrl_token_refresh(qrl_core *core, const char *client_id, const char *refresh_token,
                          qrl_tokens *out)
{
    return qrl_token_refresh_dpop(core, client_id, refresh_token, NULL, out);
}

/* RFC 9449 section 5: a refresh token issued with a DPoP proof is bound to the proof's key, and
 * every refresh proves that key again. The binding is the device's key (store.h,
 * qrl_device_rec.pubkey), read with the device before anything is rotated or counted: a thief
 * holding the token but not the key spends nothing, and cannot use up the device's refresh
 * limit either. */
static qrl_err dpop_binding_check(const qrl_device_rec *dev, const unsigned char *key)
{
    if (!dev->has_pubkey)
        return QRL_OK;
    if (key == NULL)
        return QRL_ERR_UNAUTHORIZED;
    if (sodium_memcmp(key, dev->pubkey, QRL_PUBKEY_BYTES) != 0)
        return QRL_ERR_FORBIDDEN;
    return QRL_OK;
}

qrl_err qrl_token_refresh_dpop(qrl_core *core, const char *client_id, const char *refresh_token,
                               const unsigned char *dpop_key, qrl_tokens *out)
{
    qrl_token_rec old, fresh[2];
    qrl_token_rec probe;
    qrl_hash h;
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    memset(out, 0, sizeof *out);
    if (client_id != NULL && client_id[0] == '\0')
        return QRL_ERR_INVALID;
    if (!qrl__secret_has_prefix(refresh_token, QRL__PFX_REFRESH))
        return QRL_ERR_NOT_FOUND;
    qrl__token_key(refresh_token, &h);

    /* RFC 6749 section 6: the refresh token must have been issued to this client. Checked
     * before rotating so that a wrong client_id spends nothing. Our clients are public, and
     * section 6 asks a public client for no authentication, so a request without client_id
     * (client_id NULL here; oauthlib sends none by default) is the token's own client: the
     * token is bound to it and holding the token is what the grant proves. */
    rc = core->st->m->token_lookup(core->st, &h, &probe);
    if (rc != QRL_OK)
        return rc;
    if (probe.kind != QRL_TOKEN_REFRESH)
        return QRL_ERR_NOT_FOUND;
    if (client_id != NULL && strcmp(probe.client_id, client_id) != 0)
        return QRL_ERR_INVALID_CLIENT;
    /* A device unused for too long, or linked longer ago than refresh tokens may live in all,
     * signs in again: the token is refused as expired (nothing is rotated). */
    qrl_device_rec dev;
    rc = core->st->m->device_get(core->st, probe.device_id, &dev);
    if (rc == QRL_ERR_NOT_FOUND)
        return QRL_ERR_REVOKED;
    if (rc != QRL_OK)
        return rc;
    if (qrl_device_idle(core, &dev, now) ||
        (core->cfg.refresh_max_ttl_s > 0 &&
         now - dev.created_ms >= core->cfg.refresh_max_ttl_s * 1000))
        return QRL_ERR_EXPIRED;
    /* A dead token is told as dead, with or without a proof (token_rotate would say the
     * same); then the key, before token_rotate's reuse check: a spent token presented without
     * its key proves nothing, and must not sign the device out for whoever found it. */
    if (probe.revoked_ms != 0 || probe.device_revoked || probe.account_disabled)
        return QRL_ERR_REVOKED;
    if (probe.expires_ms <= now)
        return QRL_ERR_EXPIRED;
    rc = dpop_binding_check(&dev, dpop_key);
    if (rc != QRL_OK)
        return rc;
    /* Refreshes per device: a screen refreshes about once per access-token lifetime; a loop
     * (or a stolen token replayed in a hurry) is refused before it rotates anything. */
    char kr[48];
    snprintf(kr, sizeof kr, "rf:dev:%lld", (long long)probe.device_id);
    rc = qrl__limit_take(core, kr, core->cfg.refresh_device.count, core->cfg.refresh_device.window_s);
    if (rc != QRL_OK)
        return rc;

    qrl__tokens_draw(core, probe.client_id, probe.scope, now, out, fresh);
    QRL_CRASH_POINT(ROTATE_BEFORE_SUBMIT);
    rc = core->st->m->token_rotate(core->st, &h, now, fresh, 2, &old);
    if (rc != QRL_OK) {
        sodium_memzero(out, sizeof *out);
        return rc;
    }
    QRL_CRASH_POINT(ROTATE_COMMITTED);
    out->device_id = old.device_id;
    out->account_id = probe.account_id;
    out->dpop_bound = dev.has_pubkey;
    /* A refresh is a use of the device (qrl_config.device_idle_ttl_s). Lazy, and a failure
     * only makes it look older. */
    (void)core->st->m->device_touch(core->st, old.device_id, now, NULL);
    return QRL_OK;
}

qrl_err qrl_introspect(qrl_core *core, const char *token, qrl_introspection *out)
{
    qrl_token_rec tok;
    qrl_account_rec acc;
    qrl_device_rec dev;
    qrl_hash h;
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    memset(out, 0, sizeof *out);
    if (!qrl__secret_has_prefix(token, QRL__PFX_ACCESS) &&
        !qrl__secret_has_prefix(token, QRL__PFX_REFRESH) &&
        !qrl__secret_has_prefix(token, QRL__PFX_SESSION))
        return QRL_OK;
    qrl__token_key(token, &h);
    /* The token, its account and its device in one read. */
    rc = core->st->m->token_auth(core->st, &h, &tok, &acc, &dev);
    if (rc == QRL_ERR_NOT_FOUND)
        return QRL_OK;
    if (rc != QRL_OK)
        return rc;
    if (tok.expires_ms <= now || tok.revoked_ms != 0 || tok.used_ms != 0 || tok.device_revoked ||
        tok.account_disabled || qrl_device_idle(core, &dev, now))
        return QRL_OK;
    /* A resource server checking the screen's access token is the screen using it. */
    if (now - dev.last_seen_ms > 60000)
        (void)core->st->m->device_touch(core->st, dev.id, now, NULL);
    out->active = 1;
    out->kind = tok.kind;
    out->device_id = tok.device_id;
    out->account_id = tok.account_id;
    out->iat_s = tok.created_ms / 1000;
    out->exp_s = tok.expires_ms / 1000;
    memcpy(out->client_id, tok.client_id, sizeof out->client_id);
    memcpy(out->scope, tok.scope, sizeof out->scope);
    memcpy(out->username, acc.username, sizeof out->username);
    /* Only screens hold access and refresh tokens, and a screen's key is its DPoP key (a
     * phone's key, which signs decisions, never binds its session token). */
    if (tok.kind != QRL_TOKEN_SESSION && dev.has_pubkey) {
        out->dpop_bound = 1;
        memcpy(out->dpop_key, dev.pubkey, sizeof out->dpop_key);
    }
    return QRL_OK;
}

qrl_err qrl_dpop_jti_use(qrl_core *core, const char *jkt, const char *jti)
{
    unsigned char h[16];
    char hex[2 * sizeof h + 1], key[16 + sizeof hex];
    crypto_generichash_state st;
    size_t n = jti != NULL ? strlen(jti) : 0;
    qrl_err rc;

    if (jkt == NULL || n == 0 || n > QRL_DPOP_MAX_JTI)
        return QRL_ERR_INVALID;
    /* A hash of the thumbprint and the jti: a key of fixed length and alphabet, whatever the
     * client wrote, and one client's identifiers never collide with another's. 128 bits are
     * plenty for a set that holds two minutes of proofs. */
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const unsigned char *)jkt, strlen(jkt));
    crypto_generichash_update(&st, (const unsigned char *)"\n", 1);
    crypto_generichash_update(&st, (const unsigned char *)jti, n);
    crypto_generichash_final(&st, h, sizeof h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    snprintf(key, sizeof key, "dpop:jti:%s", hex);
    /* One use per window: a second use within it is refused atomically by the store, on every
     * node sharing it. */
    rc = core->st->m->ratelimit_take(core->st, key, qrl_core_now_ms(core),
                                     (int64_t)QRL_DPOP_JTI_WINDOW_S * 1000, 1, NULL);
    return rc == QRL_ERR_RATE_LIMITED ? QRL_ERR_EXISTS : rc;
}

void qrl_dpop_thumbprint(const unsigned char key[QRL_PUBKEY_BYTES], char out[QRL_DPOP_JKT_LEN + 1])
{
    char x[QRL_DPOP_JKT_LEN + 1], jwk[96];
    unsigned char h[crypto_hash_sha256_BYTES];
    int n;

    /* 32 bytes are 43 characters of base64url, a key as a SHA-256. */
    sodium_bin2base64(x, sizeof x, key, QRL_PUBKEY_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    /* RFC 7638 section 3.2: the required members only, in lexicographic order, no spaces. */
    n = snprintf(jwk, sizeof jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    crypto_hash_sha256(h, (const unsigned char *)jwk, (size_t)n);
    sodium_bin2base64(out, QRL_DPOP_JKT_LEN + 1, h, sizeof h,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

qrl_err qrl_revoke_token(qrl_core *core, const char *token)
{
    qrl_token_rec tok;
    qrl_hash h;
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    if (!qrl__secret_has_prefix(token, QRL__PFX_ACCESS) &&
        !qrl__secret_has_prefix(token, QRL__PFX_REFRESH))
        return QRL_OK; /* RFC 7009 section 2.2: unknown tokens are not an error */
    qrl__token_key(token, &h);
    rc = core->st->m->token_lookup(core->st, &h, &tok);
    if (rc == QRL_ERR_NOT_FOUND)
        return QRL_OK;
    if (rc != QRL_OK)
        return rc;
    if (tok.kind == QRL_TOKEN_REFRESH) {
        /* RFC 7009 section 2.1: revoking the refresh token ends the grant; here the grant is the
         * device, so the device goes with it. */
        rc = core->st->m->device_revoke(core->st, tok.account_id, tok.device_id, now);
        return rc == QRL_ERR_NOT_FOUND ? QRL_OK : rc;
    }
    rc = core->st->m->token_revoke(core->st, &h, now);
    return rc == QRL_ERR_NOT_FOUND ? QRL_OK : rc;
}
