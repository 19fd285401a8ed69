/* SPDX-License-Identifier: MIT */
/*
 * DPoP proofs (server/dpop.c) and the core's side of them (the replay set of qrl_dpop_jti_use,
 * the binding of a screen's tokens in lib/token.c and lib/login_request.c), which work as one.
 *
 * Proofs are made here with libsodium and hand-written JSON, apart from the SDK's code, so that
 * a mistake shared by the SDK and the server cannot pass unseen: a proof that verifies, then one
 * proof per way to be wrong (method, URL, time either way, signature, typ, alg, key, JSON,
 * base64url, access-token hash), each refused for its own reason. The RFC 7638 thumbprint is
 * checked against RFC 8037 appendix A.3 (Ed25519 key and thumbprint, recomputed independently
 * with Python's hashlib and here with OpenSSL's SHA-256).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "core_fixture.h"
#include "dpop.h"

#define NOW_MS 1795000000123LL
#define URL "https://login.example.com/oauth/token"

/* RFC 8037 appendix A.1 and A.3: the example Ed25519 key (seed d, public x) and its RFC 7638
 * thumbprint. */
#define RFC8037_D "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
#define RFC8037_X "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
#define RFC8037_JKT "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

typedef struct key {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    char x[48];
} key;

static void b64(char *out, size_t cap, const void *in, size_t n)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void key_new(key *k)
{
    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(k->pk, k->sk);
    b64(k->x, sizeof k->x, k->pk, sizeof k->pk);
}

/* A proof of `header` and `payload` (JSON text as given), signed with k. */
static void sign(const key *k, const char *header, const char *payload, char *out, size_t cap)
{
    unsigned char sig[crypto_sign_BYTES];
    size_t n;

    b64(out, cap, header, strlen(header));
    n = strlen(out);
    out[n++] = '.';
    b64(out + n, cap - n, payload, strlen(payload));
    n += strlen(out + n);
    crypto_sign_detached(sig, NULL, (const unsigned char *)out, n, k->sk);
    out[n++] = '.';
    b64(out + n, cap - n, sig, sizeof sig);
}

static void std_header(const key *k, char *out, size_t cap)
{
    snprintf(out, cap,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":"
             "\"Ed25519\",\"x\":\"%s\"}}",
             k->x);
}

/* The payload of a proof for POST URL made at iat, with `extra` members (may be ""). */
static void std_payload(long long iat, const char *extra, char *out, size_t cap)
{
    snprintf(out, cap, "{\"jti\":\"j-%lld\",\"htm\":\"POST\",\"htu\":\"%s\",\"iat\":%lld%s}", iat,
             URL, iat, extra);
}

static qrl__dpop_want want(void)
{
    return (qrl__dpop_want){.htm = "POST", .htu = URL, .access_token = NULL, .now_ms = NOW_MS};
}

/* Verifies and expects a refusal whose reason contains `because`. */
static void refused(const char *proof, const qrl__dpop_want *w, const char *because)
{
    qrl__dpop d;
    char why[256];

    assert_int_equal(qrl__dpop_verify(proof, w, &d, why, sizeof why), QRL_ERR_INVALID);
    if (strstr(why, because) == NULL)
        fail_msg("refused for '%s', expected '%s'", why, because);
}

static void test_valid_proof(void **state)
{
    key k;
    char h[256], p[512], proof[2048], jkt[QRL__JKT_BUF];
    qrl__dpop d;
    char why[256];
    qrl__dpop_want w = want();

    key_new(&k);
    std_header(&k, h, sizeof h);
    std_payload(NOW_MS / 1000, "", p, sizeof p);
    sign(&k, h, p, proof, sizeof proof);
    assert_int_equal(qrl__dpop_verify(proof, &w, &d, why, sizeof why), QRL_OK);
    assert_memory_equal(d.key, k.pk, sizeof k.pk);
    assert_string_equal(d.jti, "j-1795000000");
    assert_int_equal(d.iat_s, NOW_MS / 1000);
    qrl__dpop_thumbprint(k.pk, jkt);
    assert_string_equal(d.jkt, jkt);

    /* The URL compares without query or fragment, scheme and host without case, and with the
     * default port as none (RFC 3986 section 6.2). */
    snprintf(p, sizeof p,
             "{\"jti\":\"q\",\"htm\":\"POST\",\"htu\":\"HTTPS://Login.Example.COM:443/oauth/"
             "token?x=1#f\",\"iat\":%lld}",
             NOW_MS / 1000);
    sign(&k, h, p, proof, sizeof proof);
    assert_int_equal(qrl__dpop_verify(proof, &w, &d, why, sizeof why), QRL_OK);

    /* Extra header members (kid) and a fractional iat are allowed; 60 s either way too. */
    snprintf(h, sizeof h,
             "{\"typ\":\"dpop+jwt\",\"kid\":\"k1\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\","
             "\"crv\":\"Ed25519\",\"x\":\"%s\",\"use\":\"sig\"}}",
             k.x);
    snprintf(p, sizeof p, "{\"jti\":\"f\",\"htm\":\"POST\",\"htu\":\"%s\",\"iat\":%lld.5}", URL,
             NOW_MS / 1000 - 60);
    sign(&k, h, p, proof, sizeof proof);
    assert_int_equal(qrl__dpop_verify(proof, &w, &d, why, sizeof why), QRL_OK);
    std_header(&k, h, sizeof h);
    std_payload((NOW_MS + 59999) / 1000, "", p, sizeof p);
    sign(&k, h, p, proof, sizeof proof);
    assert_int_equal(qrl__dpop_verify(proof, &w, &d, why, sizeof why), QRL_OK);
}

static void test_wrong_request(void **state)
{
    key k;
    char h[256], p[512], proof[2048];
    qrl__dpop_want w = want();

    key_new(&k);
    std_header(&k, h, sizeof h);
    std_payload(NOW_MS / 1000, "", p, sizeof p);
    sign(&k, h, p, proof, sizeof proof);

    w.htm = "GET";
    refused(proof, &w, "htm");
    w = want();
    w.htu = "https://login.example.com/oauth/revoke";
    refused(proof, &w, "htu");
    w.htu = "http://login.example.com/oauth/token"; /* another scheme */
    refused(proof, &w, "htu");
    w.htu = "https://login.example.com:8443/oauth/token"; /* another port */
    refused(proof, &w, "htu");
    w.htu = "https://evil.example.com/oauth/token";
    refused(proof, &w, "htu");
    w.htu = "https://login.example.com/oauth/Token"; /* paths are exact */
    refused(proof, &w, "htu");
}

static void test_time_window(void **state)
{
    key k;
    char h[256], p[512], proof[2048];
    qrl__dpop_want w = want();

    key_new(&k);
    std_header(&k, h, sizeof h);
    std_payload(NOW_MS / 1000 - 61, "", p, sizeof p); /* too old */
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "iat");
    std_payload(NOW_MS / 1000 + 61, "", p, sizeof p); /* from the future */
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "iat");
    snprintf(p, sizeof p, "{\"jti\":\"a\",\"htm\":\"POST\",\"htu\":\"%s\"}", URL); /* no iat */
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "iat");
    snprintf(p, sizeof p, "{\"jti\":\"a\",\"htm\":\"POST\",\"htu\":\"%s\",\"iat\":\"%lld\"}", URL,
             NOW_MS / 1000);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "iat");
}

static void test_bad_signature(void **state)
{
    key k, other;
    char h[256], p[512], proof[2048];
    qrl__dpop_want w = want();

    key_new(&k);
    key_new(&other);
    std_header(&k, h, sizeof h);
    std_payload(NOW_MS / 1000, "", p, sizeof p);
    sign(&other, h, p, proof, sizeof proof); /* signed with a key it does not name */
    refused(proof, &w, "signature does not verify");
    sign(&k, h, p, proof, sizeof proof);
    char *sig = strrchr(proof, '.') + 1;
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    refused(proof, &w, "signature does not verify");
    sig[-1] = '\0'; /* no signature at all */
    strcat(proof, ".");
    refused(proof, &w, "signature");
    /* A payload changed after signing. */
    sign(&k, h, p, proof, sizeof proof);
    char *dot = strchr(proof, '.');
    dot[3] = dot[3] == 'a' ? 'b' : 'a';
    refused(proof, &w, "signature does not verify");
}

static void test_header(void **state)
{
    key k;
    char h[512], p[512], proof[2048];
    qrl__dpop_want w = want();

    key_new(&k);
    std_payload(NOW_MS / 1000, "", p, sizeof p);
    snprintf(h, sizeof h,
             "{\"typ\":\"JWT\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
             "\"x\":\"%s\"}}",
             k.x);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "typ");
    /* ES256: a clear sentence naming what we take. */
    snprintf(h, sizeof h,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"ES256\",\"jwk\":{\"kty\":\"EC\",\"crv\":\"P-256\","
             "\"x\":\"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs\",\"y\":"
             "\"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA\"}}");
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "accepts EdDSA (Ed25519) DPoP proofs only, not ES256");
    snprintf(h, sizeof h, "{\"typ\":\"dpop+jwt\",\"alg\":\"none\",\"jwk\":{}}");
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "no asymmetric");
    snprintf(h, sizeof h, "{\"typ\":\"dpop+jwt\",\"alg\":\"HS256\",\"jwk\":{}}");
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "no asymmetric");
    snprintf(h, sizeof h, "{\"typ\":\"dpop+jwt\",\"jwk\":{}}");
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "no alg");
    /* The key: a private part, another curve, a short x, none at all. */
    snprintf(h, sizeof h,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
             "\"x\":\"%s\",\"d\":\"%s\"}}",
             k.x, k.x);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "private key");
    snprintf(h, sizeof h,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"X25519\","
             "\"x\":\"%s\"}}",
             k.x);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "Ed25519 key");
    snprintf(h, sizeof h,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
             "\"x\":\"%.40s\"}}",
             k.x);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "jwk x");
    snprintf(h, sizeof h, "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\"}");
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "no jwk");
    /* An extension we do not know. */
    snprintf(h, sizeof h,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"crit\":[\"b64\"],\"b64\":false,\"jwk\":"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}}",
             k.x);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "crit");
}

static void test_malformed(void **state)
{
    key k;
    char h[256], p[512], proof[2048], bad[2200];
    qrl__dpop_want w = want();

    key_new(&k);
    std_header(&k, h, sizeof h);
    std_payload(NOW_MS / 1000, "", p, sizeof p);
    sign(&k, h, p, proof, sizeof proof);

    refused("", &w, "empty");
    refused("abc", &w, "not a JWT");
    refused("a.b", &w, "not a JWT");
    snprintf(bad, sizeof bad, "%s.x", proof); /* four parts */
    refused(bad, &w, "not a JWT");
    /* base64 with padding or the standard alphabet is no base64url. */
    snprintf(bad, sizeof bad, "%s", proof);
    bad[3] = '+';
    refused(bad, &w, "header");
    snprintf(bad, sizeof bad, "eyJ0eXAiOiJkcG9wK2p3dCJ9=%s", strchr(proof, '.'));
    refused(bad, &w, "header");
    /* JSON that is not an object, or not JSON, or says a member twice. */
    sign(&k, "[1,2]", p, bad, sizeof bad);
    refused(bad, &w, "header is not");
    sign(&k, "{\"typ\":", p, bad, sizeof bad);
    refused(bad, &w, "header is not");
    snprintf(bad, sizeof bad,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"alg\":\"ES256\",\"jwk\":{\"kty\":\"OKP\","
             "\"crv\":\"Ed25519\",\"x\":\"%s\"}}",
             k.x);
    sign(&k, bad, p, proof, sizeof proof);
    refused(proof, &w, "header is not");
    sign(&k, h, "\"a string\"", proof, sizeof proof);
    refused(proof, &w, "payload is not");
    /* Claims of the wrong kind, or none. */
    snprintf(p, sizeof p, "{\"htm\":\"POST\",\"htu\":\"%s\",\"iat\":%lld}", URL, NOW_MS / 1000);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "jti");
    snprintf(p, sizeof p, "{\"jti\":\"\",\"htm\":\"POST\",\"htu\":\"%s\",\"iat\":%lld}", URL,
             NOW_MS / 1000);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "jti");
    snprintf(p, sizeof p, "{\"jti\":7,\"htm\":\"POST\",\"htu\":\"%s\",\"iat\":%lld}", URL,
             NOW_MS / 1000);
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "jti");
    /* Over the size limit: refused unread. */
    char huge[QRL__DPOP_MAX_PROOF + 16];
    memset(huge, 'A', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    refused(huge, &w, "longer than");
}

static void test_access_token_hash(void **state)
{
    key k;
    char h[256], p[512], extra[128], proof[2048], ath[48];
    unsigned char dig[crypto_hash_sha256_BYTES];
    const char *token = "qrl_at_AAAAAAAAAAAtest-token-for-ath";
    qrl__dpop d;
    char why[256];
    qrl__dpop_want w = want();

    key_new(&k);
    std_header(&k, h, sizeof h);
    w.access_token = token;
    std_payload(NOW_MS / 1000, "", p, sizeof p); /* no ath */
    sign(&k, h, p, proof, sizeof proof);
    refused(proof, &w, "ath");
    /* ath: base64url of SHA-256 of the token's ASCII, checked with OpenSSL. */
    SHA256((const unsigned char *)token, strlen(token), dig);
    b64(ath, sizeof ath, dig, sizeof dig);
    snprintf(extra, sizeof extra, ",\"ath\":\"%s\"", ath);
    std_payload(NOW_MS / 1000, extra, p, sizeof p);
    sign(&k, h, p, proof, sizeof proof);
    assert_int_equal(qrl__dpop_verify(proof, &w, &d, why, sizeof why), QRL_OK);
    w.access_token = "qrl_at_another";
    refused(proof, &w, "ath");
    /* Without an access token in play, an ath is ignored. */
    w.access_token = NULL;
    assert_int_equal(qrl__dpop_verify(proof, &w, &d, why, sizeof why), QRL_OK);
}

/* RFC 7638 over RFC 8037's Ed25519 example key: the key made from the RFC's seed is the RFC's x,
 * and its thumbprint is the RFC's, which SHA-256 by OpenSSL over the canonical JWK agrees with. */
static void test_thumbprint(void **state)
{
    unsigned char seed[32], pk[32], sk[64], dig[SHA256_DIGEST_LENGTH];
    char x[48], jkt[QRL__JKT_BUF], ref[48], canon[128];
    size_t n = 0;

    assert_true(sodium_init() >= 0);
    assert_int_equal(sodium_base642bin(seed, sizeof seed, RFC8037_D, strlen(RFC8037_D), NULL, &n,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(n, 32);
    crypto_sign_seed_keypair(pk, sk, seed);
    b64(x, sizeof x, pk, sizeof pk);
    assert_string_equal(x, RFC8037_X);
    qrl__dpop_thumbprint(pk, jkt);
    assert_string_equal(jkt, RFC8037_JKT);
    snprintf(canon, sizeof canon, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    SHA256((const unsigned char *)canon, strlen(canon), dig);
    b64(ref, sizeof ref, dig, sizeof dig);
    assert_string_equal(ref, jkt);
    sodium_memzero(sk, sizeof sk);
}

/* The replay set: a jti is taken once per window, by key; the window outlasts the time a proof
 * is accepted. */
static void test_jti_once(void **state)
{
    fx *f = *state;

    assert_int_equal(qrl_dpop_jti_use(f->core, RFC8037_JKT, "jti-1"), QRL_OK);
    assert_int_equal(qrl_dpop_jti_use(f->core, RFC8037_JKT, "jti-1"), QRL_ERR_EXISTS);
    assert_int_equal(qrl_dpop_jti_use(f->core, RFC8037_JKT, "jti-2"), QRL_OK);
    assert_int_equal(qrl_dpop_jti_use(f->core, "another-thumbprint", "jti-1"), QRL_OK);
    assert_int_equal(qrl_dpop_jti_use(f->core, RFC8037_JKT, ""), QRL_ERR_INVALID);
    qrl_core_clock_advance(f->core, (int64_t)2 * QRL_DPOP_MAX_SKEW_S * 1000);
    assert_int_equal(qrl_dpop_jti_use(f->core, RFC8037_JKT, "jti-1"), QRL_ERR_EXISTS);
    qrl_core_clock_advance(f->core, 1000);
    assert_int_equal(qrl_dpop_jti_use(f->core, RFC8037_JKT, "jti-1"), QRL_OK);
}

/* The core's binding: a redemption with a key gives the screen's device that key; refresh needs
 * it, access tokens are no bearer tokens any more, introspection names the key. */
static void test_core_binding(void **state)
{
    fx *f = *state;
    key k, other;
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_tokens t, t2;
    qrl_auth a;
    qrl_introspection in;

    key_new(&k);
    key_new(&other);
    fx_start(f, &da);
    fx_approve(f, &f->alice, &da);
    qrl_core_clock_advance(f->core, 5000);
    assert_int_equal(qrl_token_device_code_dpop(f->core, FX_CLIENT, da.device_code, 0, 30,
                                                "10.0.0.7", k.pk, &res),
                     QRL_OK);
    t = res.tokens;
    assert_int_equal(t.dpop_bound, 1);

    assert_int_equal(qrl_token_refresh(f->core, FX_CLIENT, t.refresh_token, &t2),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_token_refresh_dpop(f->core, FX_CLIENT, t.refresh_token, other.pk, &t2),
                     QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_token_refresh_dpop(f->core, FX_CLIENT, t.refresh_token, k.pk, &t2),
                     QRL_OK);
    assert_int_equal(t2.dpop_bound, 1);
    /* The refused attempts spent nothing: the old token is spent by the good refresh only. */
    assert_int_equal(qrl_token_refresh_dpop(f->core, FX_CLIENT, t2.refresh_token, k.pk, &t),
                     QRL_OK);

    assert_int_equal(qrl_device_auth_any(f->core, t.access_token, "10.0.0.7", &a),
                     QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_device_auth_dpop(f->core, t.access_token, other.pk, "10.0.0.7", &a),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_device_auth_dpop(f->core, t.access_token, k.pk, "10.0.0.7", &a), QRL_OK);
    assert_int_equal(a.device.has_pubkey, 1);
    assert_memory_equal(a.device.pubkey, k.pk, sizeof k.pk);
    assert_int_equal(qrl_introspect(f->core, t.access_token, &in), QRL_OK);
    assert_int_equal(in.active, 1);
    assert_int_equal(in.dpop_bound, 1);
    assert_memory_equal(in.dpop_key, k.pk, sizeof k.pk);

    /* A screen without a key keeps bearer tokens, also when a refresh comes with a proof. */
    fx_login(f, &f->alice, &t);
    assert_int_equal(t.dpop_bound, 0);
    assert_int_equal(qrl_token_refresh_dpop(f->core, FX_CLIENT, t.refresh_token, k.pk, &t2),
                     QRL_OK);
    assert_int_equal(t2.dpop_bound, 0);
    assert_int_equal(qrl_device_auth_any(f->core, t2.access_token, "10.0.0.7", &a), QRL_OK);
    assert_int_equal(qrl_device_auth_dpop(f->core, t2.access_token, k.pk, "10.0.0.7", &a),
                     QRL_ERR_UNAUTHORIZED);
    assert_int_equal(qrl_introspect(f->core, t2.access_token, &in), QRL_OK);
    assert_int_equal(in.dpop_bound, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_proof),
        cmocka_unit_test(test_wrong_request),
        cmocka_unit_test(test_time_window),
        cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_access_token_hash),
        cmocka_unit_test(test_thumbprint),
        cmocka_unit_test_setup_teardown(test_jti_once, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_core_binding, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
