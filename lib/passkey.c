/* SPDX-License-Identifier: MIT */
/*
 * Passkeys: WebAuthn credentials of an account, used as the step-up proof of an approval
 * (W3C WebAuthn Level 2 section 7.1, registration, and 7.2, assertion).
 *
 * Lifecycle of a ceremony: qrl_webauthn_challenge() issues a one-time challenge bound to the
 * account, the phone (device id), the purpose and, for an approval, the login request; the
 * browser has the authenticator sign over it; qrl_passkey_register() or qrl_lr_approve() (which
 * calls qrl__passkey_assert) consumes it and verifies the result. Parsing and signature checks
 * live in webauthn.c; policy (what must match what) lives here.
 *
 * Challenges are kept in the store (challenge_put and challenge_take, store version 11), so
 * that a ceremony begun on one node finishes on any node sharing the database: the phone's
 * requests may go to any of them. The store gets the hash of a challenge, never the challenge,
 * and consumes it atomically: of two ceremonies presenting one challenge, on one node or two,
 * exactly one takes it. A store written for an older version keeps none; then the challenges
 * stay in this core's memory (struct qrl__chaltab below: a bounded table consumed under one
 * lock), and a ceremony must finish on the node that began it. Either way a phone holds at
 * most QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE live challenges, a new one replacing its oldest,
 * so that one signed-in session cannot fill the table for everyone.
 *
 * The signature counter (section 6.1.1): when the stored or the received counter is nonzero,
 * the received one must be greater, or the assertion is refused as coming from a cloned
 * authenticator; the new value is stored with a compare-and-set (store passkey_use), so two
 * assertions racing with the same counter cannot both pass.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"
#include "webauthn.h"

/* Section 5.4.3 / 5.5: a timeout the relying party chooses. Two minutes is the request's
 * default lifetime too, and is long enough for a fingerprint or a PIN. */
#define CHALLENGE_TTL_MS 120000
#define DEFAULT_NAME "Passkey"
/* RP IDs are domain names (RFC 1035: at most 253 characters). */
#define MAX_RP_ID 253

/* A challenge as this file handles it; kept in struct qrl__chaltab when the store keeps none. */
struct chal {
    unsigned char value[QRL__WA_CHALLENGE_BYTES];
    int64_t expires_ms;
    int64_t account_id;
    int64_t device_id;
    int64_t lr_id; /* APPROVE only */
    int purpose;   /* 0: free slot */
};

struct qrl__chaltab {
    pthread_mutex_t mu;
    struct chal slot[QRL_MAX_WEBAUTHN_CHALLENGES];
};

struct qrl__chaltab *qrl__chaltab_new(void)
{
    struct qrl__chaltab *t = calloc(1, sizeof *t);

    if (t != NULL && pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return NULL;
    }
    return t;
}

void qrl__chaltab_free(struct qrl__chaltab *t)
{
    if (t == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    sodium_memzero(t->slot, sizeof t->slot);
    free(t);
}

/* Puts `c` into a free slot, else over the expired one that expired first. A phone that
 * already holds QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE live challenges has its oldest one
 * replaced instead, so that one signed-in session cannot fill the table for everyone.
 * QRL_ERR_BUSY when every slot holds a live challenge. */
static qrl_err chal_put(struct qrl__chaltab *t, const struct chal *c, int64_t now)
{
    struct chal *victim = NULL, *oldest_own = NULL;
    size_t own = 0;
    qrl_err rc = QRL_ERR_BUSY;

    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < QRL_MAX_WEBAUTHN_CHALLENGES; i++) {
        struct chal *s = &t->slot[i];
        if (s->purpose == 0) {
            if (victim == NULL || victim->purpose != 0)
                victim = s;
        } else if (s->expires_ms > now) {
            if (s->device_id == c->device_id) {
                own++;
                if (oldest_own == NULL || s->expires_ms < oldest_own->expires_ms)
                    oldest_own = s;
            }
        } else if (victim == NULL || (victim->purpose != 0 && s->expires_ms < victim->expires_ms)) {
            victim = s;
        }
    }
    if (own >= QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE)
        victim = oldest_own;
    if (victim != NULL) {
        *victim = *c;
        rc = QRL_OK;
    }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

/* Takes the challenge with this value out of the table (one use: whoever presents it first
 * consumes it, whatever happens next). False when there is none. Expired ones are taken too;
 * the caller judges expiry. */
static bool chal_take(struct qrl__chaltab *t, const unsigned char value[QRL__WA_CHALLENGE_BYTES],
                      struct chal *out)
{
    bool found = false;

    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < QRL_MAX_WEBAUTHN_CHALLENGES && !found; i++) {
        struct chal *s = &t->slot[i];
        if (s->purpose != 0 && sodium_memcmp(s->value, value, sizeof s->value) == 0) {
            *out = *s;
            sodium_memzero(s, sizeof *s);
            found = true;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return found;
}

bool qrl__challenges_in_store(const qrl_store *st)
{
    return st->m->version >= 11 && st->m->challenge_put != NULL && st->m->challenge_take != NULL;
}

/* Records challenge `c`, issued as `text` (its base64url): in the store, by the hash of the
 * text, or in this core's table. */
static qrl_err chal_record(qrl_core *core, const struct chal *c, const char *text, int64_t now)
{
    qrl_challenge_rec r = {.account_id = c->account_id,
                           .device_id = c->device_id,
                           .lr_id = c->lr_id,
                           .purpose = c->purpose,
                           .expires_ms = c->expires_ms};

    if (!qrl__challenges_in_store(core->st))
        return chal_put(core->challenges, c, now);
    qrl__secret_hash(text, &r.hash);
    return core->st->m->challenge_put(core->st, &r, now);
}

/* Consumes the challenge issued as `text` (whose value is `value`) into *out. QRL_OK,
 * QRL_ERR_FORBIDDEN when there is none (never issued, taken already, or, from the store,
 * expired), or a store error. */
static qrl_err chal_consume(qrl_core *core, const char *text,
                            const unsigned char value[QRL__WA_CHALLENGE_BYTES], struct chal *out)
{
    qrl_challenge_rec r;
    qrl_hash h;
    qrl_err rc;

    if (!qrl__challenges_in_store(core->st))
        return chal_take(core->challenges, value, out) ? QRL_OK : QRL_ERR_FORBIDDEN;
    qrl__secret_hash(text, &h);
    rc = core->st->m->challenge_take(core->st, &h, qrl_core_now_ms(core), &r);
    if (rc == QRL_ERR_NOT_FOUND)
        return QRL_ERR_FORBIDDEN;
    if (rc != QRL_OK)
        return rc;
    memcpy(out->value, value, sizeof out->value);
    out->expires_ms = r.expires_ms;
    out->account_id = r.account_id;
    out->device_id = r.device_id;
    out->lr_id = r.lr_id;
    out->purpose = r.purpose;
    return QRL_OK;
}

qrl_err qrl_webauthn_challenge(qrl_core *core, const qrl_auth *auth, qrl_webauthn_purpose purpose,
                               const char *code, const char *address, char out[QRL_CHALLENGE_BUF])
{
    struct chal c = {0};
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    out[0] = '\0';
    if (auth == NULL || auth->account_id <= 0 || auth->device_id <= 0)
        return QRL_ERR_INVALID;
    if (purpose == QRL_WEBAUTHN_APPROVE) {
        rc = qrl__lr_claimed(core, auth, code, address, &c.lr_id);
        if (rc != QRL_OK)
            return rc;
    } else if (purpose != QRL_WEBAUTHN_REGISTER || code != NULL) {
        return QRL_ERR_INVALID;
    }
    qrl__random(c.value, sizeof c.value);
    c.expires_ms = now + CHALLENGE_TTL_MS;
    c.account_id = auth->account_id;
    c.device_id = auth->device_id;
    c.purpose = (int)purpose;
    sodium_bin2base64(out, QRL_CHALLENGE_BUF, c.value, sizeof c.value,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    rc = chal_record(core, &c, out, now);
    if (rc != QRL_OK)
        sodium_memzero(out, QRL_CHALLENGE_BUF);
    sodium_memzero(&c, sizeof c);
    return rc;
}

/* Consumes the challenge the client data names and checks what it was issued for. */
static qrl_err challenge_check(qrl_core *core, const qrl_auth *auth, const char *challenge_b64,
                               int purpose, int64_t lr_id)
{
    unsigned char v[QRL__WA_CHALLENGE_BYTES + 1];
    struct chal c;
    size_t len = 0;
    bool ok;
    qrl_err rc;

    /* Section 7.1 step 8 / 7.2 step 12: the challenge must be the one we sent. The decoder
     * takes only the canonical base64url of 32 bytes, so the text names one value: the one
     * whose hash the store keeps. */
    if (!qrl__wa_b64_decode(challenge_b64, v, sizeof v, &len) || len != QRL__WA_CHALLENGE_BYTES)
        return QRL_ERR_FORBIDDEN;
    if ((rc = chal_consume(core, challenge_b64, v, &c)) != QRL_OK) {
        sodium_memzero(v, sizeof v);
        return rc;
    }
    ok = c.expires_ms > qrl_core_now_ms(core) && c.purpose == purpose &&
         c.account_id == auth->account_id && c.device_id == auth->device_id && c.lr_id == lr_id;
    sodium_memzero(&c, sizeof c);
    sodium_memzero(v, sizeof v);
    return ok ? QRL_OK : QRL_ERR_FORBIDDEN;
}

static bool rp_valid(const qrl_rp *rp)
{
    return rp != NULL && rp->id != NULL && rp->origin != NULL && rp->id[0] != '\0' &&
           strlen(rp->id) <= MAX_RP_ID && rp->origin[0] != '\0' &&
           strlen(rp->origin) <= QRL__WA_MAX_ORIGIN;
}

/* Section 7.1 steps 7-9 / 7.2 steps 11-13: the collected client data. */
static qrl_err client_check(const qrl__wa_client *cd, const char *type, const qrl_rp *rp)
{
    /* The origin is compared exactly: scheme, host and port. Our pages are never framed, so a
     * cross-origin ceremony (an iframe on another site) is refused. */
    if (strcmp(cd->type, type) != 0 || strcmp(cd->origin, rp->origin) != 0 || cd->cross_origin)
        return QRL_ERR_FORBIDDEN;
    return QRL_OK;
}

/* The rest of section 7.1 that needs no secret: steps 13-21 for formats "none" and "packed"
 * self-attestation. */
static qrl_err attestation_check(const qrl__wa_attestation *att, const qrl__wa_authdata *ad,
                                 const qrl_rp *rp, const unsigned char cdh[32])
{
    unsigned need = QRL__WA_UP | QRL__WA_UV | QRL__WA_AT;

    if (!qrl__wa_rp_id_hash_ok(ad->rp_id_hash, rp->id) || (ad->flags & need) != need)
        return QRL_ERR_FORBIDDEN;
    /* Section 8.7: "none" has an empty statement. */
    if (strcmp(att->fmt, "none") == 0)
        return att->att_stmt_members == 0 ? QRL_OK : QRL_ERR_FORBIDDEN;
    /* Section 8.2, self attestation: alg and sig only, alg that of the credential. A statement
     * with a certificate (x5c) would need a trust policy for authenticator makers, which we do
     * not have; our pages ask for attestation "none", which browsers honour. */
    if (strcmp(att->fmt, "packed") == 0 && !att->has_x5c && att->has_alg &&
        att->att_stmt_members == 2 && att->sig_len > 0 && att->alg == ad->alg)
        return qrl__wa_packed_self_verify(ad, rp->id, cdh, att->sig, att->sig_len);
    return QRL_ERR_FORBIDDEN;
}

/* Decoded inputs of a registration, on the heap: together they are several kilobytes, more
 * than a library function should put on its caller's stack. */
struct reg {
    unsigned char cdj[QRL_MAX_CLIENT_DATA_JSON];
    size_t cdj_len;
    unsigned char ao[QRL_MAX_ATTESTATION_OBJECT];
    size_t ao_len;
    qrl__wa_client cd;
    qrl__wa_attestation att;
    qrl__wa_authdata ad;
    qrl_passkey_rec pk;
    qrl_passkey_rec list[QRL_MAX_PASSKEYS];
};

/* Decodes and parses what the browser sent. QRL_ERR_INVALID when it is malformed,
 * QRL_ERR_FORBIDDEN for a well-formed key we do not support. */
static qrl_err reg_parse(struct reg *r, const char *cdj_b64, const char *ao_b64)
{
    if (!qrl__wa_b64_decode(cdj_b64, r->cdj, sizeof r->cdj, &r->cdj_len) ||
        !qrl__wa_b64_decode(ao_b64, r->ao, sizeof r->ao, &r->ao_len) ||
        qrl__wa_client_parse(r->cdj, r->cdj_len, &r->cd) != QRL_OK ||
        qrl__wa_attestation_parse(r->ao, r->ao_len, &r->att) != QRL_OK)
        return QRL_ERR_INVALID;
    return qrl__wa_authdata_parse(r->att.authdata, r->att.authdata_len, &r->ad);
}

qrl_err qrl_passkey_register(qrl_core *core, const qrl_auth *auth, const char *password,
                             const qrl_rp *rp, const char *client_data_json_b64,
                             const char *attestation_object_b64, const char *name,
                             const char *address, int64_t *id_out)
{
    struct reg *r = NULL;
    unsigned char cdh[crypto_hash_sha256_BYTES];
    size_t n = 0;
    qrl_err rc = QRL_ERR_INVALID;

    if (id_out != NULL)
        *id_out = 0;
    if (name == NULL || name[0] == '\0')
        name = DEFAULT_NAME;
    if (auth == NULL || password == NULL || !rp_valid(rp) ||
        !qrl__text_valid(name, QRL_MAX_DEVICE_NAME))
        return QRL_ERR_INVALID;
    if ((r = calloc(1, sizeof *r)) == NULL)
        return QRL_ERR_NOMEM;
    if ((rc = reg_parse(r, client_data_json_b64, attestation_object_b64)) != QRL_OK)
        goto out;
    crypto_hash_sha256(cdh, r->cdj, r->cdj_len);
    /* Everything that needs no secret first: a forged or mistaken ceremony costs no Argon2id
     * run and leaves the challenge for a correct one. */
    if ((rc = client_check(&r->cd, "webauthn.create", rp)) != QRL_OK ||
        (rc = attestation_check(&r->att, &r->ad, rp, cdh)) != QRL_OK)
        goto out;
    /* A passkey approves sign-ins from then on: adding one needs the password, so a stolen
     * session token alone cannot plant the thief's own authenticator. */
    if ((rc = qrl__password_check(core, &auth->account, password, address)) != QRL_OK)
        goto out;
    if ((rc = challenge_check(core, auth, r->cd.challenge, QRL_WEBAUTHN_REGISTER, 0)) != QRL_OK)
        goto out;
    rc = core->st->m->passkey_list(core->st, auth->account_id, r->list, QRL_MAX_PASSKEYS, &n);
    if (rc == QRL_OK && n >= QRL_MAX_PASSKEYS)
        rc = QRL_ERR_TOO_LARGE;
    if (rc != QRL_OK)
        goto out;
    /* Section 7.1 steps 22-24: store the credential id, key and counter under this account;
     * the store refuses an id registered before (to anyone). */
    r->pk.account_id = auth->account_id;
    memcpy(r->pk.cred_id, r->ad.cred_id, r->ad.cred_id_len);
    r->pk.cred_id_len = r->ad.cred_id_len;
    r->pk.alg = r->ad.alg;
    memcpy(r->pk.pubkey, r->ad.pubkey, r->ad.pubkey_len);
    r->pk.pubkey_len = r->ad.pubkey_len;
    r->pk.sign_count = r->ad.sign_count;
    r->pk.created_ms = qrl_core_now_ms(core);
    if ((rc = qrl__strcpy(r->pk.name, sizeof r->pk.name, name)) != QRL_OK)
        goto out;
    rc = core->st->m->passkey_add(core->st, &r->pk);
    if (rc == QRL_OK && id_out != NULL)
        *id_out = r->pk.id;
out:
    if (r != NULL) {
        sodium_memzero(r, sizeof *r);
        free(r);
    }
    return rc;
}

qrl_err qrl_passkey_list(qrl_core *core, const qrl_auth *auth, qrl_passkey_rec *out, size_t max,
                         size_t *n)
{
    *n = 0;
    if (auth == NULL || (max > 0 && out == NULL))
        return QRL_ERR_INVALID;
    return core->st->m->passkey_list(core->st, auth->account_id, out, max, n);
}

qrl_err qrl_passkey_delete(qrl_core *core, const qrl_auth *auth, int64_t id)
{
    if (auth == NULL)
        return QRL_ERR_INVALID;
    if (id <= 0)
        return QRL_ERR_NOT_FOUND;
    return core->st->m->passkey_delete(core->st, auth->account_id, id);
}

/* Decoded inputs of an assertion (heap, as struct reg). */
struct asr {
    unsigned char cred_id[QRL_MAX_CRED_ID];
    size_t cred_id_len;
    unsigned char cdj[QRL_MAX_CLIENT_DATA_JSON];
    size_t cdj_len;
    unsigned char authdata[QRL_MAX_AUTHENTICATOR_DATA];
    size_t authdata_len;
    unsigned char sig[QRL_MAX_WEBAUTHN_SIGNATURE];
    size_t sig_len;
    qrl__wa_client cd;
    qrl__wa_authdata ad;
    qrl_passkey_rec pk;
};

/* Section 6.1.1: a counter that did not grow means two authenticators share the credential
 * (or a replay). Authenticators without a counter always send 0, which stays acceptable. */
static bool counter_ok(uint32_t stored, uint32_t received)
{
    if (stored == 0 && received == 0)
        return true;
    return received > stored;
}

/* Everything after the challenge: section 7.2 steps 5-6 and 13-21. */
static qrl_err assertion_check(qrl_core *core, const qrl_auth *auth, struct asr *r,
                               const qrl_rp *rp)
{
    unsigned char cdh[crypto_hash_sha256_BYTES];
    unsigned need = QRL__WA_UP | QRL__WA_UV;
    qrl_err rc;

    if ((rc = client_check(&r->cd, "webauthn.get", rp)) != QRL_OK)
        return rc;
    rc = core->st->m->passkey_get(core->st, r->cred_id, r->cred_id_len, &r->pk);
    if (rc == QRL_ERR_NOT_FOUND || (rc == QRL_OK && r->pk.account_id != auth->account_id))
        return QRL_ERR_FORBIDDEN;
    if (rc != QRL_OK)
        return rc;
    if (qrl__wa_authdata_parse(r->authdata, r->authdata_len, &r->ad) != QRL_OK ||
        (r->ad.flags & QRL__WA_AT) != 0 || (r->ad.flags & need) != need ||
        !qrl__wa_rp_id_hash_ok(r->ad.rp_id_hash, rp->id))
        return QRL_ERR_FORBIDDEN;
    crypto_hash_sha256(cdh, r->cdj, r->cdj_len);
    rc = qrl__wa_sig_verify(r->pk.alg, r->pk.pubkey, r->pk.pubkey_len, rp->id, r->authdata,
                            r->authdata_len, cdh, r->sig, r->sig_len);
    if (rc != QRL_OK)
        return rc;
    if (!counter_ok(r->pk.sign_count, r->ad.sign_count))
        return QRL_ERR_FORBIDDEN;
    rc = core->st->m->passkey_use(core->st, r->pk.id, r->pk.sign_count, r->ad.sign_count,
                                  qrl_core_now_ms(core));
    /* Another assertion moved the counter since we read it: only one of them may count. */
    if (rc == QRL_ERR_CONFLICT || rc == QRL_ERR_NOT_FOUND)
        rc = QRL_ERR_FORBIDDEN;
    return rc;
}

qrl_err qrl__passkey_assert(qrl_core *core, const qrl_auth *auth, int64_t lr_id,
                            const qrl_passkey_assertion *a)
{
    struct asr *r;
    qrl_err rc = QRL_ERR_INVALID;

    if (a == NULL || !rp_valid(a->rp))
        return QRL_ERR_INVALID;
    if ((r = calloc(1, sizeof *r)) == NULL)
        return QRL_ERR_NOMEM;
    if (!qrl__wa_b64_decode(a->credential_id, r->cred_id, sizeof r->cred_id, &r->cred_id_len) ||
        !qrl__wa_b64_decode(a->client_data_json, r->cdj, sizeof r->cdj, &r->cdj_len) ||
        !qrl__wa_b64_decode(a->authenticator_data, r->authdata, sizeof r->authdata,
                            &r->authdata_len) ||
        !qrl__wa_b64_decode(a->signature, r->sig, sizeof r->sig, &r->sig_len) ||
        qrl__wa_client_parse(r->cdj, r->cdj_len, &r->cd) != QRL_OK)
        goto out;
    /* The challenge is consumed before anything else is judged, so an assertion is verified
     * at most once, whatever its outcome. */
    rc = challenge_check(core, auth, r->cd.challenge, QRL_WEBAUTHN_APPROVE, lr_id);
    if (rc == QRL_OK)
        rc = assertion_check(core, auth, r, a->rp);
out:
    sodium_memzero(r, sizeof *r);
    free(r);
    return rc;
}
