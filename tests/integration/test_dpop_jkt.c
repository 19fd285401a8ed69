/* SPDX-License-Identifier: MIT */
/*
 * A login request bound to the screen's key from its start (RFC 9449 section 10, dpop_jkt, on
 * the device authorization request), against the real server: the key named by the dpop_jkt
 * parameter or by a DPoP proof sent with the request (both: they must agree); the request
 * answers the token endpoint only with a proof of that key, in every state, and a refusal
 * changes nothing, so the right key redeems it afterwards, bound (cnf.jkt) although the server
 * runs with --dpop optional; a held request with another key is refused at once and never
 * handed the tokens, one with the key is; the QR link carries the key's short form ("?k=") and
 * the phone's view the whole thumbprint and its fingerprint; a dpop_jkt that is no thumbprint is
 * refused and creates nothing. Rows are counted from outside with it_db_count, so the test runs
 * on both stores.
 *
 * Keys and proofs are made here with libsodium and jansson, apart from the server and the SDK.
 */
#include "harness.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

typedef struct key {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    char x[48];
    char jkt[48]; /* RFC 7638 thumbprint */
} key;

static void b64(char *out, size_t cap, const void *in, size_t n)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void key_new(key *k)
{
    char jwk[128];
    unsigned char h[crypto_hash_sha256_BYTES];

    assert_true(sodium_init() >= 0);
    crypto_sign_keypair(k->pk, k->sk);
    b64(k->x, sizeof k->x, k->pk, sizeof k->pk);
    snprintf(jwk, sizeof jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", k->x);
    crypto_hash_sha256(h, (const unsigned char *)jwk, strlen(jwk));
    b64(k->jkt, sizeof k->jkt, h, sizeof h);
}

/* What a phone shows for a key: "KEY " and the thumbprint's first 4 bytes in hexadecimal. */
static void fingerprint(const key *k, char out[16])
{
    unsigned char h[32];
    size_t n = 0;

    assert_int_equal(sodium_base642bin(h, sizeof h, k->jkt, strlen(k->jkt), NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    snprintf(out, 16, "KEY %02X%02X-%02X%02X", h[0], h[1], h[2], h[3]);
}

/* A "DPoP: ..." header line: a proof of k for POST on the server's `path`. */
static void proof(const it_server *s, const key *k, const char *path, char *out, size_t cap)
{
    char hdr[256], url[256], jti[32], in[2048], sig64[96];
    unsigned char raw[16], sig[crypto_sign_BYTES];
    json_t *p;
    char *pl;
    size_t n;

    snprintf(hdr, sizeof hdr,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
             "\"x\":\"%s\"}}",
             k->x);
    snprintf(url, sizeof url, "%s%s", s->base, path);
    randombytes_buf(raw, sizeof raw);
    b64(jti, sizeof jti, raw, sizeof raw);
    p = json_pack("{s:s, s:s, s:s, s:I}", "jti", jti, "htm", "POST", "htu", url, "iat",
                  (json_int_t)time(NULL));
    pl = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    b64(in, sizeof in, hdr, strlen(hdr));
    n = strlen(in);
    in[n++] = '.';
    b64(in + n, sizeof in - n, pl, strlen(pl));
    free(pl);
    crypto_sign_detached(sig, NULL, (const unsigned char *)in, strlen(in), k->sk);
    b64(sig64, sizeof sig64, sig, sizeof sig);
    snprintf(out, cap, "DPoP: %s.%s", in, sig64);
}

/* POST /oauth/device_authorization for a TV with `jkt` as dpop_jkt (NULL: none) and the
 * header line `dpop` (NULL: none). */
static it_resp *authorize(const it_server *s, const char *jkt, const char *dpop)
{
    const char *kv[] = {"client_id",      IT_CLIENT_ID,  "device_name",
                        "Living Room TV", "device_kind", "tv",
                        "dpop_jkt",       jkt,           NULL};
    const char *hdrs[] = {dpop, NULL};

    if (jkt == NULL)
        kv[6] = NULL;
    return it_form_post(s, "/oauth/device_authorization", kv,
                        &(it_req){.headers = dpop != NULL ? hdrs : NULL});
}

/* The answer of a device authorization in `da`; asserts 200. */
static void take(it_resp *r, it_devauth *da)
{
    const char *u;

    it_expect(r, 200, NULL);
    memset(da, 0, sizeof *da);
    snprintf(da->device_code, sizeof da->device_code, "%s", it_jstr(r, "device_code"));
    snprintf(da->user_code, sizeof da->user_code, "%s", it_jstr(r, "user_code"));
    u = it_jstr(r, "verification_uri_complete");
    assert_non_null(u);
    snprintf(da->verification_uri_complete, sizeof da->verification_uri_complete, "%s", u);
    assert_non_null(strchr(u, '#'));
    snprintf(da->scan_secret, sizeof da->scan_secret, "%s", strchr(u, '#') + 1);
    assert_true(it_has_prefix(da->scan_secret, "qrl_ss_"));
    it_resp_free(r);
}

/* The QR link of a request bound to k: PUBLIC/s?k=<the thumbprint's first 8 characters>#... */
static void expect_link_names(const it_server *s, const it_devauth *da, const key *k)
{
    char want[128];

    snprintf(want, sizeof want, "%s/s?k=%.8s#qrl_ss_", s->base, k->jkt);
    if (!it_has_prefix(da->verification_uri_complete, want)) {
        print_error("verification_uri_complete %s does not start with %s\n",
                    da->verification_uri_complete, want);
        fail();
    }
}

/* Counts the login requests bound to k. */
static long long bound_to(const it_server *s, const key *k)
{
    char sql[160];

    snprintf(sql, sizeof sql, "SELECT count(*) FROM login_requests WHERE dpop_jkt = '%s'", k->jkt);
    return it_db_count(s, sql);
}

/* The state of the test's one login request, as stored. */
static long long state_of(const it_server *s)
{
    return it_db_count(s, "SELECT max(state) FROM login_requests");
}

/* A device-code token request with the header line `dpop` (NULL: none), held when wait_s > 0. */
static it_resp *poll_with(const it_server *s, const char *device_code, const char *dpop, int wait_s)
{
    const char *kv[] = {"grant_type", IT_DEVICE_CODE_GRANT, "device_code", device_code,
                        "client_id",  IT_CLIENT_ID,         NULL};
    const char *hdrs[] = {dpop, NULL};

    return it_form_post(s, "/oauth/token", kv,
                        &(it_req){.headers = dpop != NULL ? hdrs : NULL, .prefer_wait = wait_s});
}

/* Polls without a proof and with a proof of `other`: both refused, nothing changes. */
static void expect_refusals(const it_server *s, const it_devauth *da, const key *other)
{
    char dp[2100];

    it_resp *r = poll_with(s, da->device_code, NULL, 0);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "bound to a DPoP key"));
    assert_null(json_object_get(r->json, "status")); /* no word on the request's state */
    it_resp_free(r);
    proof(s, other, "/oauth/token", dp, sizeof dp);
    r = poll_with(s, da->device_code, dp, 0);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "another DPoP key"));
    it_resp_free(r);
    /* Held: refused at once, not held. */
    proof(s, other, "/oauth/token", dp, sizeof dp);
    r = poll_with(s, da->device_code, dp, 20);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    assert_true(r->elapsed_s < 5.0);
    it_resp_free(r);
}

/* dpop_jkt binds the request: its link names the key, the token endpoint answers only a proof
 * of it whether the request waits or is approved, the phone sees the key, and after all the
 * refusals the right key redeems it and gets tokens bound to it. */
static void test_param_binds_request(void **state)
{
    it_server *s = *state;
    key k, other;
    it_devauth da;
    it_phone p;
    char dp[2100], fp[16];

    key_new(&k);
    key_new(&other);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    take(authorize(s, k.jkt, NULL), &da);
    expect_link_names(s, &da, &k);
    assert_int_equal(bound_to(s, &k), 1);

    /* Waiting: refused without the key, pending with it. */
    expect_refusals(s, &da, &other);
    proof(s, &k, "/oauth/token", dp, sizeof dp);
    it_resp *r = poll_with(s, da.device_code, dp, 0);
    it_expect_oauth_error(r, "authorization_pending");
    it_resp_free(r);

    /* The phone sees the whole thumbprint and its fingerprint. */
    it_resp *v = it_view(s, &p, da.scan_secret);
    it_expect(v, 200, NULL);
    assert_string_equal(it_jstr(v, "dpop_jkt"), k.jkt);
    fingerprint(&k, fp);
    assert_string_equal(it_jstr(v, "key_fingerprint"), fp);
    it_resp_free(v);
    v = it_approve(s, &p, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    it_clock_advance(s, 5000);

    /* Approved: still refused without the key, and still approved afterwards. */
    expect_refusals(s, &da, &other);
    assert_int_equal(state_of(s), 2); /* APPROVED */
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM devices WHERE kind = 'tv'"), 0);

    proof(s, &k, "/oauth/token", dp, sizeof dp);
    r = poll_with(s, da.device_code, dp, 0);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "DPoP");
    it_resp *in = it_introspect(s, it_jstr(r, "access_token"));
    it_expect(in, 200, NULL);
    assert_string_equal(json_string_value(json_object_get(json_object_get(in->json, "cnf"), "jkt")),
                        k.jkt);
    it_resp_free(in);
    it_resp_free(r);
    assert_int_equal(state_of(s), 3); /* REDEEMED */
    assert_int_equal(
        it_db_count(s, "SELECT count(*) FROM devices WHERE kind = 'tv' AND pubkey IS NOT NULL"), 1);
    /* Spent, for the key as for anyone (a poll on time: a store shared by several nodes keeps
     * the interval even now). */
    it_clock_advance(s, 5000);
    proof(s, &k, "/oauth/token", dp, sizeof dp);
    r = poll_with(s, da.device_code, dp, 0);
    it_expect_oauth_error(r, "invalid_grant");
    it_resp_free(r);
}

/* A request without a key is as before: no "?k=", no key in the phone's view, bearer tokens. */
static void test_unbound_request_unchanged(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_phone p;
    char want[96];

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    take(authorize(s, NULL, NULL), &da);
    snprintf(want, sizeof want, "%s/s#qrl_ss_", s->base);
    assert_true(it_has_prefix(da.verification_uri_complete, want));
    /* dpop_jkt without a value is as if omitted (RFC 6749 section 3.1). */
    take(authorize(s, "", NULL), &da);
    assert_true(it_has_prefix(da.verification_uri_complete, want));
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests WHERE dpop_jkt = ''"), 2);
    it_resp *v = it_view(s, &p, da.scan_secret);
    it_expect(v, 200, NULL);
    assert_true(json_is_null(json_object_get(v->json, "dpop_jkt")));
    assert_true(json_is_null(json_object_get(v->json, "key_fingerprint")));
    it_resp_free(v);
    v = it_approve(s, &p, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    it_resp *r = poll_with(s, da.device_code, NULL, 0);
    it_tokens t;
    it_expect_tokens(r, &t); /* Bearer */
    it_resp_free(r);
}

/* The key named by a DPoP proof on the device authorization request; a proof and a dpop_jkt
 * that name two keys, a bad proof and a replayed one are refused and create nothing. */
static void test_proof_names_the_key(void **state)
{
    it_server *s = *state;
    key k, other;
    it_devauth da;
    char dp[2100];

    key_new(&k);
    key_new(&other);
    proof(s, &k, "/oauth/device_authorization", dp, sizeof dp);
    take(authorize(s, NULL, dp), &da);
    expect_link_names(s, &da, &k);
    assert_int_equal(bound_to(s, &k), 1);
    /* The same proof again: used up. */
    it_resp *r = authorize(s, NULL, dp);
    it_expect(r, 400, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "used already"));
    it_resp_free(r);
    /* Both, of one key. */
    proof(s, &k, "/oauth/device_authorization", dp, sizeof dp);
    take(authorize(s, k.jkt, dp), &da);
    expect_link_names(s, &da, &k);
    assert_int_equal(bound_to(s, &k), 2);

    /* Both, of two keys. */
    proof(s, &other, "/oauth/device_authorization", dp, sizeof dp);
    r = authorize(s, k.jkt, dp);
    it_expect(r, 400, "invalid_dpop_proof");
    it_expect_error_shape(r);
    assert_non_null(strstr(it_jstr(r, "error_description"), "dpop_jkt"));
    it_resp_free(r);
    /* A proof made for another endpoint. */
    proof(s, &k, "/oauth/token", dp, sizeof dp);
    r = authorize(s, NULL, dp);
    it_expect(r, 400, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "htu"));
    it_resp_free(r);
    r = authorize(s, NULL, "DPoP: not.a.proof");
    it_expect(r, 400, "invalid_dpop_proof");
    it_resp_free(r);
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests"), 2);
    assert_int_equal(bound_to(s, &other), 0);
}

/* A dpop_jkt that is no thumbprint: 400 invalid_request naming it, and no request. */
static void test_bad_jkt_refused(void **state)
{
    it_server *s = *state;
    static const char *const bad[] = {
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4",   /* 42 characters */
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4kk", /* 44 */
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4=",  /* padding */
        "kPrK+qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",  /* base64, not base64url */
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4l",  /* unused bits set: no SHA-256 */
        "kPrK qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",  "3F7A-91C2",
    };

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        it_resp *r = authorize(s, bad[i], NULL);
        it_expect(r, 400, "invalid_request");
        assert_non_null(strstr(it_jstr(r, "error_description"), "dpop_jkt"));
        it_resp_free(r);
    }
    /* Twice, even the same: a repeated parameter. */
    const char *kv[] = {"client_id", IT_CLIENT_ID,
                        "dpop_jkt",  "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                        "dpop_jkt",  "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                        NULL};
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, NULL);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM login_requests"), 0);
}

struct held {
    const it_server *s;
    const char *device_code;
    char dp[2100];
    it_resp *r;
    pthread_t th;
};

static void *held_main(void *arg)
{
    struct held *h = arg;

    h->r = poll_with(h->s, h->device_code, h->dp, 20);
    return NULL;
}

/* The screen with the key, held when the phone approves, is handed its tokens by the approval,
 * bound to the key. */
static void test_held_with_the_key(void **state)
{
    it_server *s = *state;
    key k;
    it_devauth da;
    it_phone p;
    struct held h = {.s = s};

    key_new(&k);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    take(authorize(s, k.jkt, NULL), &da);
    it_resp *v = it_view(s, &p, da.scan_secret);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    /* The scan is news: answered at once. */
    proof(s, &k, "/oauth/token", h.dp, sizeof h.dp);
    v = poll_with(s, da.device_code, h.dp, 20);
    it_expect_oauth_error(v, "authorization_pending");
    assert_string_equal(it_jstr(v, "status"), "scanned");
    it_resp_free(v);
    it_clock_advance(s, 5000);
    h.device_code = da.device_code;
    proof(s, &k, "/oauth/token", h.dp, sizeof h.dp);
    assert_int_equal(pthread_create(&h.th, NULL, held_main, &h), 0);
    it_sleep_ms(400); /* let it be held */
    v = it_approve(s, &p, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    pthread_join(h.th, NULL);
    it_expect(h.r, 200, NULL);
    assert_string_equal(it_jstr(h.r, "token_type"), "DPoP");
    assert_string_equal(h.r->preference_applied, "wait=20");
    it_resp *in = it_introspect(s, it_jstr(h.r, "access_token"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(in->json, "cnf"), "jkt")),
                        k.jkt);
    it_resp_free(in);
    it_resp_free(h.r);
}

/* The screen's QR image (POST /v1/screen/qr) is there for a bound request as for any. */
static void test_screen_qr(void **state)
{
    it_server *s = *state;
    key k;
    it_devauth da;

    key_new(&k);
    take(authorize(s, k.jkt, NULL), &da);
    const char *kv[] = {"client_id", IT_CLIENT_ID, "device_code", da.device_code, NULL};
    it_resp *r = it_form_post(s, "/v1/screen/qr", kv, NULL);
    it_expect(r, 200, NULL);
    assert_true(it_has_prefix(r->content_type, "image/svg+xml"));
    it_resp_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_param_binds_request, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_unbound_request_unchanged, it_setup_alice,
                                        it_teardown),
        cmocka_unit_test_setup_teardown(test_proof_names_the_key, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_bad_jkt_refused, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_held_with_the_key, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_screen_qr, it_setup_alice, it_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
