/* SPDX-License-Identifier: MIT */
/*
 * Accounts, passwords and phone sessions.
 *
 * Passwords are hashed with Argon2id (libsodium crypto_pwhash_str) and checked in constant time
 * by libsodium. Failures are counted per username and per client address in the store, so the
 * limits hold across server nodes; a success never resets a counter, so
 * an attacker cannot interleave one good guess to clear the slate.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

#define PHONE_DEFAULT_NAME "Phone"

static int username_valid(const char *u)
{
    size_t n = u != NULL ? strlen(u) : 0;

    if (n == 0 || n > QRL_MAX_USERNAME)
        return 0;
    for (const char *p = u; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

static int password_valid(const char *p)
{
    size_t n = p != NULL ? strlen(p) : 0;
    return n > 0 && n <= QRL_MAX_PASSWORD;
}

static qrl_err password_hash(qrl_core *core, const char *password, char out[QRL_PWHASH_MAX + 1])
{
    unsigned long long ops =
        core->cfg.pwhash_ops ? core->cfg.pwhash_ops : crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = core->cfg.pwhash_mem ? core->cfg.pwhash_mem : crypto_pwhash_MEMLIMIT_INTERACTIVE;

    if (crypto_pwhash_str(out, password, strlen(password), ops, mem) != 0)
        return QRL_ERR_NOMEM; /* libsodium fails here only when it cannot get the memory */
    return QRL_OK;
}

qrl_err qrl_account_add(qrl_core *core, const char *username, const char *display_name,
                        const char *password, int64_t *id_out)
{
    qrl_account_rec acc = {0};
    qrl_err rc;

    if (!username_valid(username) || !password_valid(password))
        return QRL_ERR_INVALID;
    if (display_name == NULL || display_name[0] == '\0')
        display_name = username;
    if (qrl__strcpy(acc.username, sizeof acc.username, username) != QRL_OK ||
        qrl__strcpy(acc.display_name, sizeof acc.display_name, display_name) != QRL_OK)
        return QRL_ERR_INVALID;
    rc = password_hash(core, password, acc.pw_hash);
    if (rc != QRL_OK)
        return rc;
    acc.created_ms = qrl_core_now_ms(core);
    rc = core->st->m->account_create(core->st, &acc);
    if (rc == QRL_OK && id_out != NULL)
        *id_out = acc.id;
    return rc;
}

qrl_err qrl_account_set_password(qrl_core *core, const char *username, const char *password)
{
    qrl_account_rec acc;
    char hash[QRL_PWHASH_MAX + 1];
    qrl_err rc;

    if (!username_valid(username) || !password_valid(password))
        return QRL_ERR_INVALID;
    rc = core->st->m->account_by_name(core->st, username, &acc);
    if (rc != QRL_OK)
        return rc;
    rc = password_hash(core, password, hash);
    if (rc != QRL_OK)
        return rc;
    return core->st->m->account_set_password(core->st, acc.id, hash);
}

/* Verifies against a fixed hash so that an unknown username costs the same time as a wrong
 * password and does not reveal which usernames exist. The hash is made once, on first use. */
static void burn_password_time(qrl_core *core, const char *password)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static char dummy[QRL_PWHASH_MAX + 1];
    int ready;

    pthread_mutex_lock(&mu);
    if (dummy[0] == '\0' && password_hash(core, "qrlogin-timing-equaliser", dummy) != QRL_OK)
        dummy[0] = '\0';
    ready = dummy[0] != '\0';
    pthread_mutex_unlock(&mu);
    /* The result is meaningless by construction; only the time it takes matters. */
    if (ready && crypto_pwhash_str_verify(dummy, password, strlen(password)) == 0)
        return;
}

static void key_user(char *buf, size_t len, const char *username)
{
    snprintf(buf, len, "pw:user:%s", username);
}

static void key_addr(char *buf, size_t len, const char *address)
{
    char a[QRL_MAX_ADDRESS + 1];

    qrl__address_key(address, a, sizeof a);
    snprintf(buf, len, "pw:addr:%s", a);
}

/* Takes one attempt from the limits of (username, address) before any password work is done;
 * an attempt that turns out right is given back (password_right), so only failures count, and
 * parallel guesses cannot all pass a check made before any of them failed. */
static qrl_err password_take(qrl_core *core, const char *username, const char *address)
{
    char ku[QRL_MAX_USERNAME + QRL_MAX_ADDRESS + 16], ka[sizeof ku];
    const qrl_config *c = &core->cfg;
    qrl_err rc;

    key_user(ku, sizeof ku, username);
    key_addr(ka, sizeof ka, address);
    rc = qrl__limit_take(core, ku, c->sign_in_user.count, c->sign_in_user.window_s);
    if (rc != QRL_OK)
        return rc;
    rc = qrl__limit_take(core, ka, c->sign_in_addr.count, c->sign_in_addr.window_s);
    if (rc != QRL_OK)
        qrl__limit_give(core, ku, c->sign_in_user.count, c->sign_in_user.window_s);
    return rc;
}

static void password_right(qrl_core *core, const char *username, const char *address)
{
    char k[QRL_MAX_USERNAME + QRL_MAX_ADDRESS + 16];
    const qrl_config *c = &core->cfg;

    key_user(k, sizeof k, username);
    qrl__limit_give(core, k, c->sign_in_user.count, c->sign_in_user.window_s);
    key_addr(k, sizeof k, address);
    qrl__limit_give(core, k, c->sign_in_addr.count, c->sign_in_addr.window_s);
}

qrl_err qrl__password_check(qrl_core *core, const qrl_account_rec *acc, const char *password,
                            const char *address)
{
    qrl_err rc;

    if (!password_valid(password))
        return QRL_ERR_INVALID;
    rc = password_take(core, acc->username, address);
    if (rc != QRL_OK)
        return rc;
    if (crypto_pwhash_str_verify(acc->pw_hash, password, strlen(password)) != 0)
        return QRL_ERR_UNAUTHORIZED; /* the attempt stays counted */
    password_right(core, acc->username, address);
    return QRL_OK;
}

qrl_err qrl_session_create(qrl_core *core, const char *username, const char *password,
                           const char *device_name, const char *device_kind, const char *address,
                           qrl_session *out)
{
    qrl_account_rec acc;
    qrl_device_rec dev = {0};
    qrl_token_rec tok = {0};
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    memset(out, 0, sizeof *out);
    if (!username_valid(username) || !password_valid(password))
        return QRL_ERR_INVALID;
    if (device_name == NULL || device_name[0] == '\0')
        device_name = PHONE_DEFAULT_NAME;
    if (device_kind == NULL)
        device_kind = "phone";
    if (!qrl_device_kind_valid(device_kind) ||
        qrl__strcpy(dev.name, sizeof dev.name, device_name) != QRL_OK ||
        qrl__strcpy(dev.kind, sizeof dev.kind, device_kind) != QRL_OK ||
        qrl__strcpy(dev.address, sizeof dev.address, address) != QRL_OK)
        return QRL_ERR_INVALID;

    rc = core->st->m->account_by_name(core->st, username, &acc);
    if (rc == QRL_ERR_NOT_FOUND) {
        /* Counted and timed like a wrong password, so that the answer does not tell whether
         * the account exists. */
        rc = password_take(core, username, address);
        if (rc != QRL_OK)
            return rc;
        burn_password_time(core, password);
        return QRL_ERR_UNAUTHORIZED;
    }
    if (rc != QRL_OK)
        return rc;
    rc = qrl__password_check(core, &acc, password, address);
    if (rc != QRL_OK)
        return rc;
    if (acc.disabled)
        return QRL_ERR_UNAUTHORIZED;

    dev.account_id = acc.id;
    dev.created_ms = now;
    qrl__token_new(QRL__PFX_SESSION, out->session_token);
    qrl__token_key(out->session_token, &tok.hash);
    tok.kind = QRL_TOKEN_SESSION;
    tok.created_ms = now;
    tok.expires_ms = now + core->cfg.session_ttl_s * 1000;
    rc = core->st->m->device_create(core->st, &dev, &tok, 1);
    if (rc != QRL_OK) {
        sodium_memzero(out->session_token, sizeof out->session_token);
        return rc;
    }
    out->device_id = dev.id;
    out->expires_in_s = core->cfg.session_ttl_s;
    out->account = acc;
    return QRL_OK;
}

/* Last-seen times are for people ("seen 3 minutes ago"); writing them more often than this
 * would turn every authenticated read into a write. */
#define LAST_SEEN_GRANULARITY_MS 60000

/* `dpop_key`: the key of the DPoP proof that came with the token (NULL: none), verified by the
 * caller. */
static qrl_err bearer_auth(qrl_core *core, const char *token, const char *address, bool any,
                           const unsigned char *dpop_key, qrl_auth *out)
{
    qrl_token_rec tok;
    qrl_hash h;
    int64_t now = qrl_core_now_ms(core);
    bool one_read = core->st->m->version >= 4 && core->st->m->token_auth != NULL;
    qrl_err rc;

    memset(out, 0, sizeof *out);
    if (!qrl__secret_has_prefix(token, QRL__PFX_SESSION) &&
        !(any && qrl__secret_has_prefix(token, QRL__PFX_ACCESS)))
        return QRL_ERR_UNAUTHORIZED;
    qrl__token_key(token, &h);
    /* One read for the token, its account and its device where the store can (version 4). */
    if (one_read)
        rc = core->st->m->token_auth(core->st, &h, &tok, &out->account, &out->device);
    else
        rc = core->st->m->token_lookup(core->st, &h, &tok);
    if (rc == QRL_ERR_NOT_FOUND)
        rc = QRL_ERR_UNAUTHORIZED;
    if (rc != QRL_OK) {
        memset(out, 0, sizeof *out);
        return rc;
    }
    if (!(tok.kind == QRL_TOKEN_SESSION || (any && tok.kind == QRL_TOKEN_ACCESS)) ||
        tok.expires_ms <= now || tok.revoked_ms != 0 || tok.device_revoked ||
        tok.account_disabled) {
        memset(out, 0, sizeof *out);
        return QRL_ERR_UNAUTHORIZED;
    }
    if (!one_read) {
        rc = core->st->m->account_get(core->st, tok.account_id, &out->account);
        if (rc == QRL_OK)
            rc = core->st->m->device_get(core->st, tok.device_id, &out->device);
        if (rc != QRL_OK) {
            memset(out, 0, sizeof *out);
            return rc == QRL_ERR_NOT_FOUND ? QRL_ERR_UNAUTHORIZED : rc;
        }
    }
    /* Unused for too long: the device no longer works (qrl_config.device_idle_ttl_s). */
    if (qrl_device_idle(core, &out->device, now)) {
        memset(out, 0, sizeof *out);
        return QRL_ERR_UNAUTHORIZED;
    }
    /* RFC 9449 section 7: a screen's access token bound to its device's key works only with a
     * proof made with that key, and a proof only with a token bound to its key. A bound token
     * sent as a bearer token is FORBIDDEN, so that the caller can tell the client to use DPoP. */
    bool bound = tok.kind == QRL_TOKEN_ACCESS && out->device.has_pubkey;
    if (bound != (dpop_key != NULL) ||
        (bound && sodium_memcmp(dpop_key, out->device.pubkey, QRL_PUBKEY_BYTES) != 0)) {
        memset(out, 0, sizeof *out);
        return bound && dpop_key == NULL ? QRL_ERR_FORBIDDEN : QRL_ERR_UNAUTHORIZED;
    }
    out->account_id = tok.account_id;
    out->device_id = tok.device_id;
    if (now - out->device.last_seen_ms > LAST_SEEN_GRANULARITY_MS)
        (void)core->st->m->device_touch(core->st, tok.device_id, now, address);
    return QRL_OK;
}

qrl_err qrl_session_auth(qrl_core *core, const char *token, const char *address, qrl_auth *out)
{
    return bearer_auth(core, token, address, false, NULL, out);
}

qrl_err qrl_device_auth_any(qrl_core *core, const char *token, const char *address, qrl_auth *out)
{
    return bearer_auth(core, token, address, true, NULL, out);
}

qrl_err qrl_device_auth_dpop(qrl_core *core, const char *token,
                             const unsigned char dpop_key[QRL_PUBKEY_BYTES], const char *address,
                             qrl_auth *out)
{
    if (dpop_key == NULL) {
        memset(out, 0, sizeof *out);
        return QRL_ERR_UNAUTHORIZED;
    }
    return bearer_auth(core, token, address, true, dpop_key, out);
}
