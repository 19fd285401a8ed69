/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of passkeys (lib/passkey.c, lib/webauthn.c): registration (W3C WebAuthn Level 2
 * section 7.1) and approval with an assertion (section 7.2), through the core API on a real
 * SQLite store in a temporary directory.
 *
 * The test plays the browser and the authenticator itself: it makes P-256 keys and DER ECDSA
 * signatures with OpenSSL (as a security key or a phone's platform authenticator would) and
 * Ed25519 ones with libsodium, builds COSE keys and attestation objects with libcbor, and
 * clientDataJSON by hand. Each case changes one thing a real attacker or a broken client could
 * change, and checks that the core refuses exactly that.
 *
 * The challenges live in the store (store version 11): a ceremony begun through one core
 * finishes through another on the same store, as on two nodes of one database, and a challenge
 * is consumed once whichever core presents it. The tests of challenge rules also run with the
 * store's method table marked version 10 (setup_memory: a store written before challenges
 * were kept), where the core keeps them in its own bounded table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cbor.h>
#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "internal.h"
#include "qrlogin/core.h"
#include "webauthn.h"

#define PW "correct horse"
#define RP_ID "localhost"
#define ORIGIN "http://localhost:8080"

static const qrl_rp RP = {.id = RP_ID, .origin = ORIGIN};

typedef struct fx {
    char dir[64], db[96];
    qrl_store *st;
    qrl_store_methods old; /* setup_memory: the store's methods, marked version 10 */
    qrl_config cfg;
    qrl_core *core;
    qrl_auth phone, phone2, bob;
} fx;

/* A software authenticator holding one credential. */
typedef struct authn {
    int alg;
    EVP_PKEY *ec; /* ES256 */
    unsigned char ed_pk[crypto_sign_PUBLICKEYBYTES], ed_sk[crypto_sign_SECRETKEYBYTES];
    unsigned char cred_id[32];
    size_t cred_id_len;
    uint32_t counter;
} authn;

/* What the browser would send, and how the test bends it. */
typedef struct ceremony {
    const char *type;   /* NULL: the right one */
    const char *origin; /* NULL: ORIGIN */
    const char *rp_id;  /* NULL: RP_ID (hashed into authenticatorData) */
    uint8_t flags;      /* 0: UP | UV (| AT at registration) */
    bool packed;        /* "packed" self-attestation instead of "none" */
    bool bad_sig;       /* flip a bit of the signature */
    char json[512];     /* clientDataJSON as sent (what the signature covers) */
    char cdj[QRL_MAX_CLIENT_DATA_JSON * 2];
    char ao[QRL_MAX_ATTESTATION_OBJECT * 2];
    char ad[QRL_MAX_AUTHENTICATOR_DATA * 2];
    char sig[QRL_MAX_WEBAUTHN_SIGNATURE * 2];
    char cred[QRL_MAX_CRED_ID * 2];
} ceremony;

/* --- fixture --------------------------------------------------------------------------------- */

static void sign_in(fx *f, const char *user, qrl_auth *auth)
{
    qrl_session s;

    assert_int_equal(qrl_session_create(f->core, user, PW, "Phone", NULL, "10.0.0.5", &s), QRL_OK);
    assert_int_equal(qrl_session_auth(f->core, s.session_token, "10.0.0.5", auth), QRL_OK);
}

static int setup_with(void **state, bool memory)
{
    fx *f = calloc(1, sizeof *f);
    char err[128];

    snprintf(f->dir, sizeof f->dir, "/tmp/qrl-wa-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/t.db", f->dir);
    assert_int_equal(qrl_store_sqlite_open(f->db, &f->st, err, sizeof err), QRL_OK);
    if (memory) {
        /* A store written for version 10: the core never looks at the methods after it. */
        f->old = *f->st->m;
        f->old.version = 10;
        f->st->m = &f->old;
    }
    assert_true(qrl__challenges_in_store(f->st) == !memory);
    qrl_config_defaults(&f->cfg);
    f->cfg.pwhash_ops = crypto_pwhash_OPSLIMIT_MIN; /* fast hashes: not about cost here */
    f->cfg.pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
    /* Longer than a challenge's 120 s, so that a challenge can expire on a live request. */
    f->cfg.request_ttl_s = 300;
    assert_int_equal(qrl_core_new(&f->cfg, f->st, &f->core), QRL_OK);
    assert_int_equal(qrl_account_add(f->core, "alice", "Alice", PW, NULL), QRL_OK);
    assert_int_equal(qrl_account_add(f->core, "bob", NULL, PW, NULL), QRL_OK);
    sign_in(f, "alice", &f->phone);
    sign_in(f, "alice", &f->phone2);
    sign_in(f, "bob", &f->bob);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, false);
}

static int setup_memory(void **state)
{
    return setup_with(state, true);
}

static int teardown(void **state)
{
    fx *f = *state;
    char cmd[128];

    qrl_core_free(f->core);
    f->st->m->close(f->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* --- the authenticator ------------------------------------------------------------------------ */

static void authn_new(authn *a, int alg, unsigned char id_seed)
{
    memset(a, 0, sizeof *a);
    a->alg = alg;
    if (alg == QRL__COSE_ES256) {
        a->ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        assert_non_null(a->ec);
    } else {
        crypto_sign_keypair(a->ed_pk, a->ed_sk);
    }
    memset(a->cred_id, id_seed, sizeof a->cred_id);
    a->cred_id[0] = (unsigned char)alg;
    a->cred_id_len = sizeof a->cred_id;
}

static void authn_free(authn *a)
{
    EVP_PKEY_free(a->ec);
    a->ec = NULL;
}

static void b64(const unsigned char *p, size_t n, char *out, size_t cap)
{
    assert_true(cap >= sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING));
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void map_add(cbor_item_t *map, cbor_item_t *k, cbor_item_t *v)
{
    assert_true(cbor_map_add(map, (struct cbor_pair){.key = cbor_move(k), .value = cbor_move(v)}));
}

/* The credential public key as a COSE_Key (RFC 8152 section 13.1.1 / 13.2). */
static size_t cose_key(const authn *a, unsigned char *out, size_t cap)
{
    cbor_item_t *m;
    unsigned char *buf = NULL;
    size_t n, bufsz = 0;

    if (a->alg == QRL__COSE_ES256) {
        unsigned char x[32], y[32];
        BIGNUM *bx = NULL, *by = NULL;
        assert_int_equal(EVP_PKEY_get_bn_param(a->ec, OSSL_PKEY_PARAM_EC_PUB_X, &bx), 1);
        assert_int_equal(EVP_PKEY_get_bn_param(a->ec, OSSL_PKEY_PARAM_EC_PUB_Y, &by), 1);
        assert_int_equal(BN_bn2binpad(bx, x, 32), 32);
        assert_int_equal(BN_bn2binpad(by, y, 32), 32);
        BN_free(bx);
        BN_free(by);
        m = cbor_new_definite_map(5);
        map_add(m, cbor_build_uint8(1), cbor_build_uint8(2));   /* kty: EC2 */
        map_add(m, cbor_build_uint8(3), cbor_build_negint8(6)); /* alg: -7 */
        map_add(m, cbor_build_negint8(0), cbor_build_uint8(1)); /* crv: P-256 */
        map_add(m, cbor_build_negint8(1), cbor_build_bytestring(x, 32));
        map_add(m, cbor_build_negint8(2), cbor_build_bytestring(y, 32));
    } else {
        m = cbor_new_definite_map(4);
        map_add(m, cbor_build_uint8(1), cbor_build_uint8(1));   /* kty: OKP */
        map_add(m, cbor_build_uint8(3), cbor_build_negint8(7)); /* alg: -8 */
        map_add(m, cbor_build_negint8(0), cbor_build_uint8(6)); /* crv: Ed25519 */
        map_add(m, cbor_build_negint8(1), cbor_build_bytestring(a->ed_pk, 32));
    }
    n = cbor_serialize_alloc(m, &buf, &bufsz);
    assert_true(n > 0 && n <= cap);
    memcpy(out, buf, n);
    free(buf);
    cbor_decref(&m);
    return n;
}

/* authenticatorData (section 6.1), with attested credential data when AT is in flags. */
static size_t auth_data(const authn *a, const char *rp_id, uint8_t flags, unsigned char *out)
{
    size_t n = 0;

    crypto_hash_sha256(out, (const unsigned char *)rp_id, strlen(rp_id));
    n = 32;
    out[n++] = flags;
    out[n++] = (unsigned char)(a->counter >> 24);
    out[n++] = (unsigned char)(a->counter >> 16);
    out[n++] = (unsigned char)(a->counter >> 8);
    out[n++] = (unsigned char)a->counter;
    if (flags & QRL__WA_AT) {
        memset(out + n, 0xaa, 16); /* AAGUID */
        n += 16;
        out[n++] = (unsigned char)(a->cred_id_len >> 8);
        out[n++] = (unsigned char)a->cred_id_len;
        memcpy(out + n, a->cred_id, a->cred_id_len);
        n += a->cred_id_len;
        n += cose_key(a, out + n, QRL_MAX_AUTHENTICATOR_DATA - n);
    }
    return n;
}

/* Signs authData || SHA-256(clientDataJSON): DER ECDSA as browsers pass it on, or Ed25519. */
static size_t sign(const authn *a, const unsigned char *ad, size_t adlen, const char *cdj,
                   unsigned char *sig)
{
    unsigned char msg[QRL_MAX_AUTHENTICATOR_DATA + 32];
    size_t siglen = QRL_MAX_WEBAUTHN_SIGNATURE;

    memcpy(msg, ad, adlen);
    crypto_hash_sha256(msg + adlen, (const unsigned char *)cdj, strlen(cdj));
    if (a->alg == QRL__COSE_EDDSA) {
        crypto_sign_detached(sig, NULL, msg, adlen + 32, a->ed_sk);
        return crypto_sign_BYTES;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, a->ec), 1);
    assert_int_equal(EVP_DigestSign(ctx, sig, &siglen, msg, adlen + 32), 1);
    EVP_MD_CTX_free(ctx);
    return siglen;
}

static void client_data(ceremony *c, const char *type, const char *challenge)
{
    char json[512];

    snprintf(json, sizeof json,
             "{\"type\":\"%s\",\"challenge\":\"%s\",\"origin\":\"%s\","
             "\"crossOrigin\":false}",
             c->type != NULL ? c->type : type, challenge, c->origin != NULL ? c->origin : ORIGIN);
    b64((const unsigned char *)json, strlen(json), c->cdj, sizeof c->cdj);
    memcpy(c->json, json, sizeof c->json);
}

/* Builds a registration's clientDataJSON and attestationObject into c->cdj / c->ao. */
static void make_attestation(ceremony *c, const authn *a, const char *challenge)
{
    unsigned char ad[QRL_MAX_AUTHENTICATOR_DATA], sig[QRL_MAX_WEBAUTHN_SIGNATURE];
    uint8_t flags = c->flags != 0 ? c->flags : QRL__WA_UP | QRL__WA_UV | QRL__WA_AT;
    size_t adlen = auth_data(a, c->rp_id != NULL ? c->rp_id : RP_ID, flags, ad), n, bufsz = 0;
    cbor_item_t *m = cbor_new_definite_map(3), *st;
    unsigned char *buf = NULL;

    client_data(c, "webauthn.create", challenge);
    if (c->packed) {
        size_t siglen = sign(a, ad, adlen, c->json, sig);
        if (c->bad_sig)
            sig[siglen / 2] ^= 1;
        st = cbor_new_definite_map(2);
        map_add(st, cbor_build_string("alg"),
                a->alg == QRL__COSE_ES256 ? cbor_build_negint8(6) : cbor_build_negint8(7));
        map_add(st, cbor_build_string("sig"), cbor_build_bytestring(sig, siglen));
    } else {
        st = cbor_new_definite_map(0);
    }
    map_add(m, cbor_build_string("fmt"), cbor_build_string(c->packed ? "packed" : "none"));
    map_add(m, cbor_build_string("attStmt"), st);
    map_add(m, cbor_build_string("authData"), cbor_build_bytestring(ad, adlen));
    n = cbor_serialize_alloc(m, &buf, &bufsz);
    assert_true(n > 0);
    b64(buf, n, c->ao, sizeof c->ao);
    free(buf);
    cbor_decref(&m);
}

/* Builds an assertion into c->cdj / c->ad / c->sig / c->cred. */
static void make_assertion(ceremony *c, const authn *a, const char *challenge)
{
    unsigned char ad[QRL_MAX_AUTHENTICATOR_DATA], sig[QRL_MAX_WEBAUTHN_SIGNATURE];
    uint8_t flags = c->flags != 0 ? c->flags : QRL__WA_UP | QRL__WA_UV;
    size_t adlen = auth_data(a, c->rp_id != NULL ? c->rp_id : RP_ID, flags, ad), siglen;

    client_data(c, "webauthn.get", challenge);
    siglen = sign(a, ad, adlen, c->json, sig);
    if (c->bad_sig)
        sig[siglen / 2] ^= 1;
    b64(ad, adlen, c->ad, sizeof c->ad);
    b64(sig, siglen, c->sig, sizeof c->sig);
    b64(a->cred_id, a->cred_id_len, c->cred, sizeof c->cred);
}

/* --- ceremonies through the core ------------------------------------------------------------ */

static void challenge(fx *f, const qrl_auth *auth, qrl_webauthn_purpose p, const char *code,
                      char out[QRL_CHALLENGE_BUF])
{
    assert_int_equal(qrl_webauthn_challenge(f->core, auth, p, code, "10.0.0.5", out), QRL_OK);
    assert_int_equal(strlen(out), 43);
}

static qrl_err reg_with(fx *f, const qrl_auth *auth, const authn *a, ceremony *c, const char *chal,
                        const char *password, int64_t *id)
{
    make_attestation(c, a, chal);
    return qrl_passkey_register(f->core, auth, password, &RP, c->cdj, c->ao, "My key", "10.0.0.5",
                                id);
}

/* Registers `a` for `auth` with a fresh challenge; returns the passkey id. */
static int64_t reg_ok(fx *f, const qrl_auth *auth, const authn *a)
{
    char chal[QRL_CHALLENGE_BUF];
    ceremony c = {0};
    int64_t id = 0;

    challenge(f, auth, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, auth, a, &c, chal, PW, &id), QRL_OK);
    assert_true(id > 0);
    return id;
}

/* A login request claimed by `auth`'s phone; its scan secret and user code. */
static void claimed(fx *f, const qrl_auth *auth, char ss[QRL_SECRET_BUF],
                    char uc[QRL_USER_CODE_BUF])
{
    qrl_device_auth da;
    qrl_lr_view v;

    assert_int_equal(
        qrl_device_authorize(f->core, "tv-app", "profile", "Living Room TV", "tv", "10.0.0.7", &da),
        QRL_OK);
    assert_int_equal(qrl_lr_view_claim(f->core, auth, da.scan_secret, "10.0.0.5", &v), QRL_OK);
    strcpy(ss, da.scan_secret);
    strcpy(uc, da.user_code);
}

static qrl_err approve(fx *f, const qrl_auth *auth, const char *ss, const char *uc, ceremony *c,
                       qrl_lr_rec *out)
{
    qrl_passkey_assertion pa = {.credential_id = c->cred,
                                .client_data_json = c->cdj,
                                .authenticator_data = c->ad,
                                .signature = c->sig,
                                .rp = &RP};
    qrl_proof proof = {.passkey = &pa};

    return qrl_lr_approve(f->core, auth, ss, uc, &proof, "10.0.0.5", out);
}

/* --- registration ---------------------------------------------------------------------------- */

static void test_register_list_delete(void **state)
{
    fx *f = *state;
    authn a, b;
    qrl_passkey_rec list[QRL_MAX_PASSKEYS];
    size_t n = 0;
    int64_t id1, id2;

    authn_new(&a, QRL__COSE_ES256, 1);
    authn_new(&b, QRL__COSE_EDDSA, 2);
    a.counter = 3;
    id1 = reg_ok(f, &f->phone, &a);
    id2 = reg_ok(f, &f->phone, &b);
    assert_int_equal(qrl_passkey_list(f->core, &f->phone, list, QRL_MAX_PASSKEYS, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].id, id1);
    assert_int_equal(list[0].alg, -7);
    assert_int_equal(list[0].pubkey_len, 65);
    assert_int_equal(list[0].sign_count, 3);
    assert_int_equal(list[0].cred_id_len, a.cred_id_len);
    assert_memory_equal(list[0].cred_id, a.cred_id, a.cred_id_len);
    assert_string_equal(list[0].name, "My key");
    assert_int_equal(list[1].id, id2);
    assert_int_equal(list[1].alg, -8);
    assert_memory_equal(list[1].pubkey, b.ed_pk, 32);
    /* The other phone of the same account sees them; bob does not, and cannot delete them. */
    assert_int_equal(qrl_passkey_list(f->core, &f->phone2, list, QRL_MAX_PASSKEYS, &n), QRL_OK);
    assert_int_equal(n, 2);
    assert_int_equal(qrl_passkey_list(f->core, &f->bob, list, QRL_MAX_PASSKEYS, &n), QRL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(qrl_passkey_delete(f->core, &f->bob, id1), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_passkey_delete(f->core, &f->phone, id1), QRL_OK);
    assert_int_equal(qrl_passkey_delete(f->core, &f->phone, id1), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_passkey_delete(f->core, &f->phone, 0), QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_passkey_list(f->core, &f->phone, list, QRL_MAX_PASSKEYS, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(list[0].id, id2);
    authn_free(&a);
    authn_free(&b);
}

static void test_register_default_name_and_packed(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF];
    ceremony c = {.packed = true};
    authn a;
    qrl_passkey_rec list[2];
    size_t n = 0;
    int64_t id = 0;

    authn_new(&a, QRL__COSE_ES256, 3);
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    make_attestation(&c, &a, chal);
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, c.cdj, c.ao, NULL, "10.0.0.5", &id),
        QRL_OK);
    assert_int_equal(qrl_passkey_list(f->core, &f->phone, list, 2, &n), QRL_OK);
    assert_int_equal(n, 1);
    assert_string_equal(list[0].name, "Passkey");
    authn_free(&a);
}

static void test_register_refusals(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF];
    authn a;

    authn_new(&a, QRL__COSE_ES256, 4);
    struct {
        ceremony c;
        qrl_err want;
    } cases[] = {
        {{.origin = "http://evil.example:8080"}, QRL_ERR_FORBIDDEN},
        {{.origin = "http://localhost:8081"}, QRL_ERR_FORBIDDEN},
        {{.rp_id = "evil.example"}, QRL_ERR_FORBIDDEN},
        {{.type = "webauthn.get"}, QRL_ERR_FORBIDDEN},
        {{.flags = QRL__WA_UP | QRL__WA_AT}, QRL_ERR_FORBIDDEN}, /* no UV */
        {{.flags = QRL__WA_UV | QRL__WA_AT}, QRL_ERR_FORBIDDEN}, /* no UP */
        {{.packed = true, .bad_sig = true}, QRL_ERR_FORBIDDEN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
        assert_int_equal(reg_with(f, &f->phone, &a, &cases[i].c, chal, PW, NULL), cases[i].want);
    }
    /* A refusal before the password leaves the challenge usable by a correct ceremony. */
    ceremony ok = {0};
    assert_int_equal(reg_with(f, &f->phone, &a, &ok, chal, PW, NULL), QRL_OK);
    authn_free(&a);
}

static void test_register_challenge_rules(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    ceremony c = {0};
    authn a, b;

    authn_new(&a, QRL__COSE_ES256, 5);
    authn_new(&b, QRL__COSE_ES256, 6);
    /* Reused: the second ceremony over one challenge is refused. */
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->phone, &a, &c, chal, PW, NULL), QRL_OK);
    assert_int_equal(reg_with(f, &f->phone, &b, &c, chal, PW, NULL), QRL_ERR_FORBIDDEN);
    /* Expired. */
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    qrl_core_clock_advance(f->core, 121000);
    assert_int_equal(reg_with(f, &f->phone, &b, &c, chal, PW, NULL), QRL_ERR_FORBIDDEN);
    /* Issued to another account, or to another phone of the same account. */
    challenge(f, &f->bob, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->phone, &b, &c, chal, PW, NULL), QRL_ERR_FORBIDDEN);
    challenge(f, &f->phone2, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->phone, &b, &c, chal, PW, NULL), QRL_ERR_FORBIDDEN);
    /* Issued for an approval. */
    claimed(f, &f->phone, ss, uc);
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    assert_int_equal(reg_with(f, &f->phone, &b, &c, chal, PW, NULL), QRL_ERR_FORBIDDEN);
    /* Never issued. */
    assert_int_equal(
        reg_with(f, &f->phone, &b, &c, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", PW, NULL),
        QRL_ERR_FORBIDDEN);
    /* A fresh one works. */
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->phone, &b, &c, chal, PW, NULL), QRL_OK);
    authn_free(&a);
    authn_free(&b);
}

static void test_register_password_and_duplicate(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF];
    ceremony c = {0};
    authn a;

    authn_new(&a, QRL__COSE_ES256, 7);
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->phone, &a, &c, chal, "wrong", NULL), QRL_ERR_UNAUTHORIZED);
    /* The wrong password did not use up the challenge: the user types it again. */
    assert_int_equal(reg_with(f, &f->phone, &a, &c, chal, PW, NULL), QRL_OK);
    /* The same credential again, for this account or another. */
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->phone, &a, &c, chal, PW, NULL), QRL_ERR_EXISTS);
    challenge(f, &f->bob, QRL_WEBAUTHN_REGISTER, NULL, chal);
    assert_int_equal(reg_with(f, &f->bob, &a, &c, chal, PW, NULL), QRL_ERR_EXISTS);
    /* Wrong passwords are rate-limited like every step-up (10 per user: one above, 9 here). */
    for (int i = 0; i < 9; i++) {
        challenge(f, &f->phone2, QRL_WEBAUTHN_REGISTER, NULL, chal);
        assert_int_equal(reg_with(f, &f->phone2, &a, &c, chal, "wrong", NULL),
                         QRL_ERR_UNAUTHORIZED);
    }
    assert_int_equal(reg_with(f, &f->phone2, &a, &c, chal, PW, NULL), QRL_ERR_RATE_LIMITED);
    authn_free(&a);
}

static void test_register_malformed(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], junk[64];
    ceremony c = {0};
    authn a;

    authn_new(&a, QRL__COSE_ES256, 8);
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    make_attestation(&c, &a, chal);
    b64((const unsigned char *)"\xa1\x63"
                               "fmt",
        5, junk, sizeof junk); /* truncated CBOR */
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, c.cdj, "!!!", NULL, NULL, NULL),
        QRL_ERR_INVALID);
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, c.cdj, c.ao + 1, NULL, NULL, NULL),
        QRL_ERR_INVALID);
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, c.cdj, junk, NULL, NULL, NULL),
        QRL_ERR_INVALID);
    assert_int_equal(qrl_passkey_register(f->core, &f->phone, PW, &RP, c.cdj, "", NULL, NULL, NULL),
                     QRL_ERR_INVALID);
    b64((const unsigned char *)"{\"type\":", 8, junk, sizeof junk);
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, junk, c.ao, NULL, NULL, NULL),
        QRL_ERR_INVALID);
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, NULL, c.ao, NULL, NULL, NULL),
        QRL_ERR_INVALID);
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, NULL, c.cdj, c.ao, NULL, NULL, NULL),
        QRL_ERR_INVALID);
    /* None of that used the challenge. */
    assert_int_equal(
        qrl_passkey_register(f->core, &f->phone, PW, &RP, c.cdj, c.ao, NULL, "10.0.0.5", NULL),
        QRL_OK);
    authn_free(&a);
}

/* The strict clientDataJSON reader on its own. */
static void test_client_data_reader(void **state)
{
    qrl__wa_client cd;
    static const char *const bad[] = {
        "",
        "[]",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\"}",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",\"type\":\"x\"}",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\"} x",
        "{\"type\":\"webauthn\\u002eget\",\"challenge\":\"abc\",\"origin\":\"x\"}",
        "{\"t\\u0079pe\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\"}",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",\"crossOrigin\":1}",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",\"o\":[[[[[[[[[[1]]]]]]]"
        "]]]}",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",\"o\":01}",
        "{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",}",
    };
    const char *good = " {\"type\":\"webauthn.get\", \"challenge\":\"abc\",\"origin\":"
                       "\"https://a.example\",\"crossOrigin\":true,\"other\":{\"k\":[1,-2.5e3,"
                       "null,\"s\\n\\u00e9\"]}}\n";

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(qrl__wa_client_parse((const unsigned char *)bad[i], strlen(bad[i]), &cd),
                         QRL_ERR_INVALID);
    assert_int_equal(qrl__wa_client_parse((const unsigned char *)good, strlen(good), &cd), QRL_OK);
    assert_string_equal(cd.type, "webauthn.get");
    assert_string_equal(cd.challenge, "abc");
    assert_string_equal(cd.origin, "https://a.example");
    assert_true(cd.cross_origin);
}

/* Every string in clientDataJSON must be well-formed UTF-8 (found by fuzz/fuzz_webauthn.c: a
 * stray byte in the origin was accepted), in the members read and in those skipped; real
 * non-ASCII text is still fine. */
static void test_client_data_utf8(void **state)
{
    qrl__wa_client cd;
    char json[256];
    static const char *const bad[] = {
        "localho\x8ft",         /* a continuation byte on its own */
        "localhost\xc3",        /* truncated at the end of the string */
        "local\xc3host",        /* a lead byte without its continuation */
        "local\xc0\xafh",       /* overlong '/' */
        "\xe0\x80\xafx",        /* overlong, three bytes */
        "\xed\xa0\x80x",        /* a surrogate */
        "\xf4\x90\x80\x80",     /* above U+10FFFF */
        "\xf8\x88\x80\x80\x80", /* five-byte form */
        "\xff",
    };
    /* The text goes between each prefix and its suffix: into the origin, a skipped string, a
     * skipped member's name. */
    static const char *const around[][2] = {
        {"{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"https://", "\"}"},
        {"{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",\"o\":[\"", "\"]}"},
        {"{\"type\":\"webauthn.get\",\"challenge\":\"abc\",\"origin\":\"x\",\"", "\":1}"},
    };

    (void)state;
    for (size_t f = 0; f < sizeof around / sizeof around[0]; f++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            snprintf(json, sizeof json, "%s%s%s", around[f][0], bad[i], around[f][1]);
            assert_int_equal(qrl__wa_client_parse((const unsigned char *)json, strlen(json), &cd),
                             QRL_ERR_INVALID);
        }
        /* é, €, U+10FFFF and an emoji are well formed. */
        snprintf(json, sizeof json, "%s%s%s", around[f][0],
                 "caf\xc3\xa9\xe2\x82\xac\xf4\x8f\xbf\xbf\xf0\x9f\x93\xba", around[f][1]);
        assert_int_equal(qrl__wa_client_parse((const unsigned char *)json, strlen(json), &cd),
                         QRL_OK);
    }
    assert_string_equal(cd.origin, "x");
}

/* base64url decoding refuses every character outside the alphabet, bytes from 0x80 up
 * included (found by fuzz/fuzz_webauthn.c: libsodium 1.0.18 decodes those like '_'), and leaves
 * no length behind when it refuses. */
static void test_b64_decode_strict(void **state)
{
    unsigned char out[QRL_MAX_CRED_ID];
    size_t len = 99;
    static const char *const bad[] = {
        "\x80\x80\x80\x80",
        "AAA\xff",
        "\xa3"
        "cfm",
        "abcd!",
        "abcd====",
        "ab=",
        "a b",
        "AB",
        "",
    };

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        len = 99;
        assert_false(qrl__wa_b64_decode(bad[i], out, sizeof out, &len));
        assert_int_equal(len, 0);
    }
    /* A bad character after good ones: libsodium has decoded three bytes by then. */
    len = 99;
    assert_false(qrl__wa_b64_decode("abcd\x80"
                                    "efg",
                                    out, sizeof out, &len));
    assert_int_equal(len, 0);
    assert_false(qrl__wa_b64_decode(NULL, out, sizeof out, &len));
    assert_int_equal(len, 0);
    assert_true(qrl__wa_b64_decode("____", out, sizeof out, &len));
    assert_int_equal(len, 3);
    assert_memory_equal(out, "\xff\xff\xff", 3);
    assert_true(qrl__wa_b64_decode("-_8", out, sizeof out, &len));
    assert_int_equal(len, 2);
    assert_memory_equal(out, "\xfb\xff", 2);
}

/* A CBOR array or map header that announces more items than the input holds is refused before
 * libcbor allocates room for them (found by fuzz/fuzz_webauthn.c: a map header in an
 * attestationObject made libcbor ask for 35 GB, which aborts a sanitizer build and asks an
 * ordinary one for memory it may be given). */
static void test_cbor_counts_bounded(void **state)
{
    qrl__wa_attestation *at = malloc(sizeof *at);
    qrl__wa_authdata ad;
    unsigned char buf[80];
    /* A map of 2^32 pairs, an array of 2^40 items, a byte string of 2^31 bytes, each in a few
     * bytes, as the attestationObject itself and as a member's value. */
    static const unsigned char huge[][10] = {
        {0xbb, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00},
        {0x9b, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0x5a, 0x80, 0x00, 0x00, 0x00},
        {0xba, 0x10, 0x00, 0x00, 0x00},
    };
    static const unsigned char member[] = {0xa3, 0x63, 'f', 'm', 't', 0x64, 'n', 'o', 'n',
                                           'e',  0x67, 'a', 't', 't', 'S',  't', 'm', 't'};

    (void)state;
    assert_non_null(at);
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        assert_int_equal(qrl__wa_attestation_parse(huge[i], sizeof huge[i], at), QRL_ERR_INVALID);
        memcpy(buf, member, sizeof member);
        memcpy(buf + sizeof member, huge[i], sizeof huge[i]);
        assert_int_equal(qrl__wa_attestation_parse(buf, sizeof member + sizeof huge[i], at),
                         QRL_ERR_INVALID);
        /* The same as a credential public key in authenticatorData (flag AT). */
        memset(buf, 0, sizeof buf);
        buf[32] = QRL__WA_UP | QRL__WA_AT;
        buf[54] = 1; /* a 1-byte credential id */
        memcpy(buf + 56, huge[i], sizeof huge[i]);
        assert_int_equal(qrl__wa_authdata_parse(buf, sizeof buf, &ad), QRL_ERR_INVALID);
    }
    /* Counts that the input does hold still load: an empty attStmt map, a 2-item array. */
    {
        static const unsigned char ok[] = {0xa3, 0x63, 'f', 'm', 't', 0x64, 'n', 'o', 'n',  'e',
                                           0x67, 'a',  't', 't', 'S', 't',  'm', 't', 0xa0, 0x68,
                                           'a',  'u',  't', 'h', 'D', 'a',  't', 'a', 0x41, 0x00};
        assert_int_equal(qrl__wa_attestation_parse(ok, sizeof ok, at), QRL_OK);
        assert_string_equal(at->fmt, "none");
        assert_int_equal(at->authdata_len, 1);
    }
    free(at);
}

/* --- approval with a passkey ----------------------------------------------------------------- */

static void test_approve_with_passkey(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    char ss2[QRL_SECRET_BUF], uc2[QRL_USER_CODE_BUF];
    ceremony c = {0};
    qrl_lr_rec lr;
    qrl_passkey_rec list[1];
    size_t n;
    authn a;

    authn_new(&a, QRL__COSE_ES256, 9);
    a.counter = 10;
    reg_ok(f, &f->phone, &a);
    claimed(f, &f->phone, ss, uc);
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    a.counter = 11;
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    assert_int_equal(qrl_passkey_list(f->core, &f->phone, list, 1, &n), QRL_OK);
    assert_int_equal(list[0].sign_count, 11);
    assert_true(list[0].last_used_ms > 0);

    /* Replayed on the same request (decided) and on another one: refused. */
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_CONFLICT);
    claimed(f, &f->phone, ss2, uc2);
    assert_int_equal(approve(f, &f->phone, ss2, uc2, &c, &lr), QRL_ERR_FORBIDDEN);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
    authn_free(&a);
}

static void test_approve_eddsa_and_user_code(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    ceremony c = {0};
    qrl_lr_rec lr;
    authn a;

    authn_new(&a, QRL__COSE_EDDSA, 10);
    reg_ok(f, &f->phone, &a);
    claimed(f, &f->phone, ss, uc);
    /* The challenge may name the request by its user code too. */
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, uc, chal);
    make_assertion(&c, &a, chal); /* counter stays 0: allowed while both are 0 */
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);
    authn_free(&a);
}

static void test_approve_challenge_bindings(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    char ss2[QRL_SECRET_BUF], uc2[QRL_USER_CODE_BUF];
    ceremony c = {0};
    qrl_lr_rec lr;
    authn a;

    authn_new(&a, QRL__COSE_ES256, 11);
    reg_ok(f, &f->phone, &a);
    claimed(f, &f->phone, ss, uc);
    claimed(f, &f->phone, ss2, uc2);
    /* Issued for request 2, presented for request 1. */
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss2, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    /* ... and that consumed it: not usable for request 2 any more either. */
    assert_int_equal(approve(f, &f->phone, ss2, uc2, &c, &lr), QRL_ERR_FORBIDDEN);
    /* A registration challenge. */
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    /* Expired (the request itself lives on). */
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);
    qrl_core_clock_advance(f->core, 121000);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    assert_int_equal(lr.state, QRL_LR_SCANNED);
    /* Only the phone that claimed the request gets a challenge for it. */
    assert_int_equal(
        qrl_webauthn_challenge(f->core, &f->phone2, QRL_WEBAUTHN_APPROVE, ss, "10.0.0.5", chal),
        QRL_ERR_CLAIMED);
    assert_int_equal(
        qrl_webauthn_challenge(f->core, &f->phone, QRL_WEBAUTHN_REGISTER, ss, "10.0.0.5", chal),
        QRL_ERR_INVALID);
    assert_int_equal(
        qrl_webauthn_challenge(f->core, &f->phone, QRL_WEBAUTHN_APPROVE, NULL, "10.0.0.5", chal),
        QRL_ERR_INVALID);
    /* The right challenge still works. */
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_OK);
    authn_free(&a);
}

static void test_approve_refusals(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    qrl_lr_rec lr;
    authn a;

    authn_new(&a, QRL__COSE_ES256, 12);
    reg_ok(f, &f->phone, &a);
    claimed(f, &f->phone, ss, uc);
    ceremony cases[] = {
        {.bad_sig = true},         {.origin = "http://evil.example"},
        {.rp_id = "evil.example"}, {.type = "webauthn.create"},
        {.flags = QRL__WA_UP}, /* no UV */
        {.flags = QRL__WA_UV}, /* no UP */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
        make_assertion(&cases[i], &a, chal);
        assert_int_equal(approve(f, &f->phone, ss, uc, &cases[i], &lr), QRL_ERR_FORBIDDEN);
        /* Consumed whatever the outcome: the corrected assertion over it is refused too. */
        ceremony ok = {0};
        make_assertion(&ok, &a, chal);
        assert_int_equal(approve(f, &f->phone, ss, uc, &ok, &lr), QRL_ERR_FORBIDDEN);
    }
    assert_int_equal(lr.state, QRL_LR_SCANNED);
    authn_free(&a);
}

static void test_approve_counter(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    ceremony c = {0};
    qrl_lr_rec lr;
    authn a;

    authn_new(&a, QRL__COSE_ES256, 13);
    a.counter = 5;
    reg_ok(f, &f->phone, &a);
    claimed(f, &f->phone, ss, uc);
    /* Not greater than the stored 5: a cloned authenticator. */
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    a.counter = 4;
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    /* A stored nonzero counter and a received 0 (counter reset) are refused too. */
    a.counter = 0;
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    a.counter = 6;
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_OK);
    authn_free(&a);
}

static void test_approve_other_accounts_credential(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    ceremony c = {0};
    qrl_lr_rec lr;
    authn bobs, unknown;

    authn_new(&bobs, QRL__COSE_ES256, 14);
    authn_new(&unknown, QRL__COSE_ES256, 15);
    reg_ok(f, &f->bob, &bobs);
    claimed(f, &f->phone, ss, uc);
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &bobs, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &unknown, chal);
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
    authn_free(&bobs);
    authn_free(&unknown);
}

static void test_approve_malformed_and_proof_rules(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    ceremony c = {0};
    qrl_lr_rec lr;
    authn a;

    authn_new(&a, QRL__COSE_ES256, 16);
    reg_ok(f, &f->phone, &a);
    claimed(f, &f->phone, ss, uc);
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    make_assertion(&c, &a, chal);

    qrl_passkey_assertion pa = {.credential_id = c.cred,
                                .client_data_json = c.cdj,
                                .authenticator_data = c.ad,
                                .signature = c.sig,
                                .rp = &RP};
    /* Exactly one proof. */
    qrl_proof two = {.password = PW, .passkey = &pa}, none = {0};
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &two, NULL, &lr), QRL_ERR_INVALID);
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &none, NULL, &lr), QRL_ERR_INVALID);
    /* Undecodable pieces: refused before the challenge is looked at. */
    qrl_proof p = {.passkey = &pa};
    pa.signature = "***";
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &p, NULL, &lr), QRL_ERR_INVALID);
    pa.signature = c.sig;
    pa.client_data_json = "e30"; /* {} */
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &p, NULL, &lr), QRL_ERR_INVALID);
    pa.client_data_json = c.cdj;
    pa.rp = NULL;
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &p, NULL, &lr), QRL_ERR_INVALID);
    pa.rp = &RP;
    /* Truncated authenticatorData: decodes, but is no authenticatorData. */
    pa.authenticator_data = "AAAA";
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &p, NULL, &lr), QRL_ERR_FORBIDDEN);
    /* The password path still works as before. */
    qrl_proof pw = {.password = PW};
    assert_int_equal(qrl_lr_approve(f->core, &f->phone, ss, uc, &pw, NULL, &lr), QRL_OK);
    authn_free(&a);
}

/* Only with a store that keeps no challenges: the core's own table is bounded. */
static void test_challenge_table_full(void **state)
{
    fx *f = *state;
    char chal[QRL_CHALLENGE_BUF];
    qrl_auth a = f->phone;

    /* Many phones (the core does not look the device up for a registration challenge). */
    for (int i = 0; i < QRL_MAX_WEBAUTHN_CHALLENGES; i++) {
        a.device_id = 1000000 + i / QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE;
        assert_int_equal(
            qrl_webauthn_challenge(f->core, &a, QRL_WEBAUTHN_REGISTER, NULL, NULL, chal), QRL_OK);
    }
    a.device_id = 2000000;
    assert_int_equal(qrl_webauthn_challenge(f->core, &a, QRL_WEBAUTHN_REGISTER, NULL, NULL, chal),
                     QRL_ERR_BUSY);
    /* Once they expire, their slots are taken again. */
    qrl_core_clock_advance(f->core, 120001);
    assert_int_equal(qrl_webauthn_challenge(f->core, &a, QRL_WEBAUTHN_REGISTER, NULL, NULL, chal),
                     QRL_OK);
}

/* One phone cannot fill the table (the store's, or the core's own): past its share, its own
 * oldest challenge makes room. */
static void test_challenges_per_phone(void **state)
{
    fx *f = *state;
    char first[QRL_CHALLENGE_BUF], chal[QRL_CHALLENGE_BUF];
    ceremony c = {0};
    authn a;
    /* The core's table would be full twice over; the store bounds each phone the same way. */
    int n = qrl__challenges_in_store(f->st) ? 4 * QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE
                                            : 2 * QRL_MAX_WEBAUTHN_CHALLENGES;

    authn_new(&a, QRL__COSE_ES256, 7);
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, first);
    for (int i = 0; i < n; i++)
        assert_int_equal(
            qrl_webauthn_challenge(f->core, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, NULL, chal),
            QRL_OK);
    /* The first was replaced; the newest works; other phones still get theirs. */
    assert_int_equal(reg_with(f, &f->phone, &a, &c, first, PW, NULL), QRL_ERR_FORBIDDEN);
    assert_int_equal(reg_with(f, &f->phone, &a, &c, chal, PW, NULL), QRL_OK);
    assert_int_equal(
        qrl_webauthn_challenge(f->core, &f->phone2, QRL_WEBAUTHN_REGISTER, NULL, NULL, chal),
        QRL_OK);
    authn_free(&a);
}

/* Two cores on one store, as two nodes on one database: a ceremony begun through one finishes
 * through the other, and its challenge is spent for both, whatever the outcome of its first
 * use. With a store that keeps no challenges the other core does not know them (the ceremony
 * must end where it began), and the one that issued a challenge still takes it. */
static void test_ceremony_across_cores(void **state)
{
    fx *f = *state;
    const bool shared = qrl__challenges_in_store(f->st);
    char chal[QRL_CHALLENGE_BUF], ss[QRL_SECRET_BUF], uc[QRL_USER_CODE_BUF];
    ceremony c = {0}, again = {0}, bad = {.bad_sig = true};
    qrl_core *a = f->core, *b = NULL;
    qrl_lr_rec lr;
    authn k, other;

    authn_new(&k, QRL__COSE_ES256, 20);
    authn_new(&other, QRL__COSE_EDDSA, 21);
    assert_int_equal(qrl_core_new(&f->cfg, f->st, &b), QRL_OK);

    /* Registration: the challenge from A, the attestation to B. */
    challenge(f, &f->phone, QRL_WEBAUTHN_REGISTER, NULL, chal);
    f->core = b;
    assert_int_equal(reg_with(f, &f->phone, &k, &c, chal, PW, NULL),
                     shared ? QRL_OK : QRL_ERR_FORBIDDEN);
    /* Spent on both (another authenticator, so that only the challenge can be refused). */
    f->core = a;
    if (!shared)
        assert_int_equal(reg_with(f, &f->phone, &k, &c, chal, PW, NULL), QRL_OK);
    assert_int_equal(reg_with(f, &f->phone, &other, &again, chal, PW, NULL), QRL_ERR_FORBIDDEN);
    f->core = b;
    assert_int_equal(reg_with(f, &f->phone, &other, &again, chal, PW, NULL), QRL_ERR_FORBIDDEN);

    /* Approval: claimed and challenged through A, presented through B with a bad signature,
     * which spends the challenge; the good assertion over it is refused on both. */
    f->core = a;
    claimed(f, &f->phone, ss, uc);
    challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
    k.counter = 1;
    make_assertion(&bad, &k, chal);
    make_assertion(&c, &k, chal);
    f->core = b;
    assert_int_equal(approve(f, &f->phone, ss, uc, &bad, &lr), QRL_ERR_FORBIDDEN);
    if (shared) {
        assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
        f->core = a;
        assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_ERR_FORBIDDEN);
        /* A new challenge through B, approved through A. */
        f->core = b;
        challenge(f, &f->phone, QRL_WEBAUTHN_APPROVE, ss, chal);
        make_assertion(&c, &k, chal);
        f->core = a;
    } else {
        /* B never had it; A still does. */
        f->core = a;
    }
    assert_int_equal(approve(f, &f->phone, ss, uc, &c, &lr), QRL_OK);
    assert_int_equal(lr.state, QRL_LR_APPROVED);

    f->core = a;
    qrl_core_free(b);
    authn_free(&k);
    authn_free(&other);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define TM(fn)                                                                                     \
    {                                                                                              \
        "memory: " #fn, fn, setup_memory, teardown, NULL                                           \
    }
    const struct CMUnitTest tests[] = {
        T(test_register_list_delete),
        T(test_register_default_name_and_packed),
        T(test_register_refusals),
        T(test_register_challenge_rules),
        T(test_register_password_and_duplicate),
        T(test_register_malformed),
        cmocka_unit_test(test_client_data_reader),
        cmocka_unit_test(test_client_data_utf8),
        cmocka_unit_test(test_b64_decode_strict),
        cmocka_unit_test(test_cbor_counts_bounded),
        T(test_approve_with_passkey),
        T(test_approve_eddsa_and_user_code),
        T(test_approve_challenge_bindings),
        T(test_approve_refusals),
        T(test_approve_counter),
        T(test_approve_other_accounts_credential),
        T(test_approve_malformed_and_proof_rules),
        T(test_challenges_per_phone),
        T(test_ceremony_across_cores),
        /* With a store written before challenges were kept: the core's own table. */
        TM(test_register_challenge_rules),
        TM(test_approve_with_passkey),
        TM(test_approve_challenge_bindings),
        TM(test_approve_refusals),
        TM(test_challenge_table_full),
        TM(test_challenges_per_phone),
        TM(test_ceremony_across_cores),
    };
#undef T
#undef TM
    return cmocka_run_group_tests_name("webauthn", tests, NULL, NULL);
}
