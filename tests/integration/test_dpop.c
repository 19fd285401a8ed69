/* SPDX-License-Identifier: MIT */
/*
 * Bound credentials (RFC 9449, DPoP) against the real server: a screen that proves a key at
 * redemption gets DPoP tokens bound to it; refresh needs the same key; introspection names the
 * key's thumbprint; the server's own API takes the access token only as DPoP with a proof, and
 * a proof only once; a standard client without DPoP keeps bearer tokens; `--dpop required`
 * refuses a bearer redemption while the web screen page still signs in.
 *
 * The proofs are made here, with libsodium and jansson, apart from the SDK, as any other client
 * would make them.
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

/* The key's RFC 7638 thumbprint: SHA-256 of {"crv","kty","x"} in that order. */
static void thumbprint(const key *k, char out[48])
{
    char jwk[128];
    unsigned char h[crypto_hash_sha256_BYTES];

    snprintf(jwk, sizeof jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", k->x);
    crypto_hash_sha256(h, (const unsigned char *)jwk, strlen(jwk));
    b64(out, 48, h, sizeof h);
}

/* A DPoP proof of k for `method` on the server's `path`, made `age_s` seconds ago by the
 * server's clock (`skew_s`: how far the test moved it), with the hash of `token` when not
 * NULL; `alg` other than NULL overrides the header's alg. Into out (a "DPoP: ..." line). */
static void proof_full(const it_server *s, const key *k, const char *method, const char *path,
                       const char *token, long long skew_s, const char *alg, char *out, size_t cap)
{
    char hdr[256], url[256], jti[32], ath[48], in[2048], sig64[96];
    unsigned char raw[16], sig[crypto_sign_BYTES], h[crypto_hash_sha256_BYTES];
    json_t *p;
    char *pl;
    size_t n;

    snprintf(hdr, sizeof hdr,
             "{\"typ\":\"dpop+jwt\",\"alg\":\"%s\",\"jwk\":{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
             "\"x\":\"%s\"}}",
             alg != NULL ? alg : "EdDSA", k->x);
    snprintf(url, sizeof url, "%s%s", s->base, path);
    randombytes_buf(raw, sizeof raw);
    b64(jti, sizeof jti, raw, sizeof raw);
    p = json_pack("{s:s, s:s, s:s, s:I}", "jti", jti, "htm", method, "htu", url, "iat",
                  (json_int_t)(time(NULL) + skew_s));
    if (token != NULL) {
        crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
        b64(ath, sizeof ath, h, sizeof h);
        json_object_set_new(p, "ath", json_string(ath));
    }
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

static void proof(const it_server *s, const key *k, const char *method, const char *path,
                  const char *token, char *out, size_t cap)
{
    proof_full(s, k, method, path, token, 0, NULL, out, cap);
}

/* POST /oauth/token with `kv` and the header line `dpop` (NULL: none). */
static it_resp *token_req(const it_server *s, const char *const *kv, const char *dpop, int wait_s)
{
    const char *hdrs[] = {dpop, NULL};
    it_req opt = {.headers = dpop != NULL ? hdrs : NULL, .prefer_wait = wait_s};
    return it_form_post(s, "/oauth/token", kv, &opt);
}

static it_resp *poll_with(const it_server *s, const char *device_code, const char *dpop)
{
    const char *kv[] = {"grant_type", IT_DEVICE_CODE_GRANT, "device_code", device_code,
                        "client_id",  IT_CLIENT_ID,         NULL};
    return token_req(s, kv, dpop, 0);
}

static it_resp *refresh_with(const it_server *s, const char *rt, const char *dpop)
{
    const char *kv[] = {"grant_type", "refresh_token", "refresh_token", rt, NULL};
    return token_req(s, kv, dpop, 0);
}

/* A device authorization approved by a phone of alice (not redeemed yet). */
static void approved(const it_server *s, it_devauth *da)
{
    it_phone p;

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", "profile", da);
    it_resp *v = it_view(s, &p, da->scan_secret);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    v = it_approve(s, &p, da->scan_secret, da->user_code, IT_PASSWORD);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    it_clock_advance(s, 5000); /* the next poll keeps to the interval */
}

/* Signs a screen in with key k: its tokens. */
static void bound_login(const it_server *s, const key *k, it_tokens *t)
{
    it_devauth da;
    char dp[2100];

    approved(s, &da);
    proof(s, k, "POST", "/oauth/token", NULL, dp, sizeof dp);
    it_resp *r = poll_with(s, da.device_code, dp);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "DPoP");
    snprintf(t->access_token, sizeof t->access_token, "%s", it_jstr(r, "access_token"));
    snprintf(t->refresh_token, sizeof t->refresh_token, "%s", it_jstr(r, "refresh_token"));
    assert_true(it_has_prefix(t->access_token, "qrl_at_"));
    assert_true(it_has_prefix(t->refresh_token, "qrl_rt_"));
    assert_string_equal(r->cache_control, "no-store");
    it_resp_free(r);
}

/* GET /v1/me with `auth` ("Authorization: ..." line) and `dpop` (a "DPoP: ..." line or NULL). */
static it_resp *me(const it_server *s, const char *auth, const char *dpop)
{
    const char *hdrs[] = {auth, dpop, NULL};
    it_req req = {.method = "GET", .path = "/v1/me", .headers = hdrs};
    return it_http(s, &req);
}

/* Redemption with a proof: DPoP tokens, the key in the screen's device row, cnf.jkt at
 * introspection; the metadata names EdDSA. */
static void test_redemption_binds(void **state)
{
    it_server *s = *state;
    key k;
    it_tokens t;
    char jkt[48];

    it_resp *m = it_http(s, &(it_req){.path = "/.well-known/oauth-authorization-server"});
    it_expect(m, 200, NULL);
    json_t *algs = json_object_get(m->json, "dpop_signing_alg_values_supported");
    assert_int_equal(json_array_size(algs), 1);
    assert_string_equal(json_string_value(json_array_get(algs, 0)), "EdDSA");
    it_resp_free(m);

    key_new(&k);
    bound_login(s, &k, &t);
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM devices WHERE kind = 'tv' AND "
                                    "pubkey IS NOT NULL"),
                     1);

    thumbprint(&k, jkt);
    it_resp *in = it_introspect(s, t.access_token);
    it_expect(in, 200, NULL);
    assert_int_equal(it_jbool(in, "active"), 1);
    assert_string_equal(it_jstr(in, "token_type"), "DPoP");
    assert_string_equal(json_string_value(json_object_get(json_object_get(in->json, "cnf"), "jkt")),
                        jkt);
    it_resp_free(in);
    in = it_introspect(s, t.refresh_token);
    it_expect(in, 200, NULL);
    assert_string_equal(it_jstr(in, "token_type"), "refresh_token");
    assert_string_equal(json_string_value(json_object_get(json_object_get(in->json, "cnf"), "jkt")),
                        jkt);
    it_resp_free(in);
}

/* Refresh: without a proof invalid_dpop_proof, with another key invalid_grant (neither spends
 * the token), with the key a new DPoP pair that stays bound. */
static void test_refresh_needs_the_key(void **state)
{
    it_server *s = *state;
    key k, other;
    it_tokens t;
    char dp[2100];

    key_new(&k);
    key_new(&other);
    bound_login(s, &k, &t);

    it_resp *r = refresh_with(s, t.refresh_token, NULL);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    it_resp_free(r);
    proof(s, &other, "POST", "/oauth/token", NULL, dp, sizeof dp);
    r = refresh_with(s, t.refresh_token, dp);
    it_expect_oauth_error(r, "invalid_grant");
    assert_non_null(strstr(it_jstr(r, "error_description"), "another DPoP key"));
    it_resp_free(r);
    /* A proof for another endpoint is no proof for this one. */
    proof(s, &k, "POST", "/oauth/revoke", NULL, dp, sizeof dp);
    r = refresh_with(s, t.refresh_token, dp);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "htu"));
    it_resp_free(r);

    proof(s, &k, "POST", "/oauth/token", NULL, dp, sizeof dp);
    r = refresh_with(s, t.refresh_token, dp);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "DPoP");
    char rt2[IT_SECRET_MAX];
    snprintf(rt2, sizeof rt2, "%s", it_jstr(r, "refresh_token"));
    it_resp_free(r);
    r = refresh_with(s, rt2, NULL);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    it_resp_free(r);
    proof(s, &k, "POST", "/oauth/token", NULL, dp, sizeof dp);
    r = refresh_with(s, rt2, dp);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "DPoP");
    it_resp_free(r);
}

/* The access token at GET /v1/me: as Bearer refused with a DPoP challenge; as DPoP with a proof
 * of the key and the token's hash accepted, once per proof. */
static void test_access_token_needs_a_proof(void **state)
{
    it_server *s = *state;
    key k, other;
    it_tokens t;
    char auth[256], dp[2100];

    key_new(&k);
    key_new(&other);
    bound_login(s, &k, &t);

    it_resp *r = it_json_send(s, "GET", "/v1/me", t.access_token, NULL);
    it_expect(r, 401, "invalid_token");
    assert_true(it_has_prefix(r->www_authenticate, "DPoP "));
    assert_non_null(strstr(r->www_authenticate, "error=\"invalid_token\""));
    it_resp_free(r);

    snprintf(auth, sizeof auth, "Authorization: DPoP %s", t.access_token);
    r = me(s, auth, NULL); /* no proof */
    it_expect(r, 401, "invalid_dpop_proof");
    assert_non_null(strstr(r->www_authenticate, "error=\"invalid_dpop_proof\""));
    it_resp_free(r);
    proof(s, &k, "GET", "/v1/me", NULL, dp, sizeof dp); /* no ath */
    r = me(s, auth, dp);
    it_expect(r, 401, "invalid_dpop_proof");
    it_resp_free(r);
    proof(s, &k, "GET", "/v1/me", "qrl_at_another", dp, sizeof dp); /* another token's */
    r = me(s, auth, dp);
    it_expect(r, 401, "invalid_dpop_proof");
    it_resp_free(r);
    proof(s, &k, "POST", "/v1/me", t.access_token, dp, sizeof dp); /* another method */
    r = me(s, auth, dp);
    it_expect(r, 401, "invalid_dpop_proof");
    it_resp_free(r);
    proof(s, &other, "GET", "/v1/me", t.access_token, dp, sizeof dp); /* another key */
    r = me(s, auth, dp);
    it_expect(r, 401, "invalid_token");
    it_resp_free(r);
    proof_full(s, &k, "GET", "/v1/me", t.access_token, -120, NULL, dp, sizeof dp); /* old */
    r = me(s, auth, dp);
    it_expect(r, 401, "invalid_dpop_proof");
    it_resp_free(r);

    proof(s, &k, "GET", "/v1/me", t.access_token, dp, sizeof dp);
    r = me(s, auth, dp);
    it_expect(r, 200, NULL);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(r->json, "account"), "username")),
        IT_USER);
    it_resp_free(r);
    r = me(s, auth, dp); /* the same proof again */
    it_expect(r, 401, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "used already"));
    it_resp_free(r);

    /* Nor does the web screen's cookie take it as a bearer token. */
    char cookie[256];
    snprintf(cookie, sizeof cookie, "Cookie: qrl_at=%s", t.access_token);
    const char *hdrs[] = {cookie, NULL};
    r = it_http(s, &(it_req){.method = "GET", .path = "/web/screen/me", .headers = hdrs});
    it_expect(r, 401, NULL);
    it_resp_free(r);
}

/* A proof is taken once at the token endpoint too; two DPoP headers, an ES256 proof and a
 * garbled one are refused with invalid_dpop_proof. */
static void test_token_endpoint_proofs(void **state)
{
    it_server *s = *state;
    key k;
    it_devauth da;
    char dp[2100], dp2[2100];

    key_new(&k);
    approved(s, &da);

    proof_full(s, &k, "POST", "/oauth/token", NULL, 0, "ES256", dp, sizeof dp);
    it_resp *r = poll_with(s, da.device_code, dp);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "EdDSA"));
    it_resp_free(r);
    r = poll_with(s, da.device_code, "DPoP: not.a.proof");
    it_expect_oauth_error(r, "invalid_dpop_proof");
    it_resp_free(r);
    proof(s, &k, "POST", "/oauth/token", NULL, dp, sizeof dp);
    proof(s, &k, "POST", "/oauth/token", NULL, dp2, sizeof dp2);
    const char *two[] = {dp, dp2, NULL};
    const char *kv[] = {"grant_type", IT_DEVICE_CODE_GRANT, "device_code", da.device_code,
                        "client_id",  IT_CLIENT_ID,         NULL};
    r = it_form_post(s, "/oauth/token", kv, &(it_req){.headers = two});
    it_expect_oauth_error(r, "invalid_dpop_proof");
    it_resp_free(r);
    /* None of these redeemed anything: the code is still good, with a proof used once. */
    r = poll_with(s, da.device_code, dp);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "DPoP");
    it_resp_free(r);
    key k2;
    key_new(&k2);
    it_tokens t;
    bound_login(s, &k2, &t);
    r = refresh_with(s, t.refresh_token, dp); /* replay of a used proof (and another key) */
    it_expect_oauth_error(r, "invalid_dpop_proof");
    it_resp_free(r);
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
    const char *kv[] = {"grant_type", IT_DEVICE_CODE_GRANT, "device_code", h->device_code,
                        "client_id",  IT_CLIENT_ID,         NULL};
    h->r = token_req(h->s, kv, h->dp, 20);
    return NULL;
}

/* A screen held on this server (Prefer: wait) is handed its tokens by the approval itself:
 * they are bound to the key it proved when it arrived. */
static void test_held_screen_bound_at_approval(void **state)
{
    it_server *s = *state;
    key k;
    it_devauth da;
    it_phone p;
    char jkt[48];
    struct held h = {.s = s};

    key_new(&k);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", "profile", &da);
    it_resp *v = it_view(s, &p, da.scan_secret);
    it_expect(v, 200, NULL);
    it_resp_free(v);
    /* The screen learns of the scan first: a held request answers at once with news. */
    proof(s, &k, "POST", "/oauth/token", NULL, h.dp, sizeof h.dp);
    v = poll_with(s, da.device_code, h.dp);
    it_expect_oauth_error(v, "authorization_pending");
    it_resp_free(v);
    it_clock_advance(s, 5000);
    h.device_code = da.device_code;
    proof(s, &k, "POST", "/oauth/token", NULL, h.dp, sizeof h.dp);
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
    thumbprint(&k, jkt);
    assert_string_equal(json_string_value(json_object_get(json_object_get(in->json, "cnf"), "jkt")),
                        jkt);
    it_resp_free(in);
    it_resp_free(h.r);
}

/* A standard client without DPoP (optional mode): bearer tokens, as before, that work as
 * bearer tokens and not as DPoP ones; introspection has no cnf. */
static void test_bearer_client_unchanged(void **state)
{
    it_server *s = *state;
    it_tokens t;
    it_phone p;
    key k;
    char auth[256], dp[2100];

    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    it_login_screen(s, &p, &t, NULL); /* asserts token_type Bearer */
    it_resp *r = it_json_send(s, "GET", "/v1/me", t.access_token, NULL);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_introspect(s, t.access_token);
    assert_string_equal(it_jstr(r, "token_type"), "access_token");
    assert_null(json_object_get(r->json, "cnf"));
    it_resp_free(r);
    key_new(&k);
    snprintf(auth, sizeof auth, "Authorization: DPoP %s", t.access_token);
    proof(s, &k, "GET", "/v1/me", t.access_token, dp, sizeof dp);
    r = me(s, auth, dp);
    it_expect(r, 401, "invalid_token");
    it_resp_free(r);
    r = it_refresh(s, IT_CLIENT_ID, t.refresh_token);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "Bearer");
    it_resp_free(r);
    assert_int_equal(it_db_count(s, "SELECT count(*) FROM devices WHERE pubkey IS NOT NULL"), 0);
}

/* The web screen page under --dpop required: the TV's browser, its cookies. */
typedef struct jar {
    char cookie[1400];
} jar;

static void jar_take(jar *j, const it_resp *r)
{
    for (int i = 0; i < r->n_set_cookie; i++) {
        size_t n = strcspn(r->set_cookie[i], ";");
        size_t have = strlen(j->cookie);
        snprintf(j->cookie + have, sizeof j->cookie - have, "%s%.*s", have > 8 ? "; " : "", (int)n,
                 r->set_cookie[i]);
    }
}

static it_resp *web(const it_server *s, jar *j, const char *method, const char *path)
{
    char origin[160], csrf[200] = "X-CSRF-Token: ";
    const char *c = strstr(j->cookie, "qrl_csrf=");
    const char *hdrs[] = {j->cookie, origin, csrf, NULL};

    snprintf(origin, sizeof origin, "Origin: %s", s->base);
    if (c != NULL)
        snprintf(csrf + strlen(csrf), sizeof csrf - strlen(csrf), "%.*s", (int)strcspn(c + 9, ";"),
                 c + 9);
    it_resp *r = it_http(s, &(it_req){.method = method,
                                      .path = path,
                                      .body = method[0] == 'P' ? "{}" : NULL,
                                      .content_type = method[0] == 'P' ? "application/json" : NULL,
                                      .headers = hdrs});
    assert_non_null(r);
    jar_take(j, r);
    return r;
}

/* --dpop required: a bearer redemption is refused before anything happens (and says why), a
 * redemption with a proof works, and the web screen page still signs in with its cookies. */
static void test_required(void **state)
{
    static const char *const args[] = {"--dpop", "required", NULL};
    it_server *s = it_server_new();
    it_devauth da;
    it_phone p;
    key k;
    it_tokens t;
    jar tv = {.cookie = "Cookie: "};

    s->extra_args = args;
    it_account_add(s, IT_USER, IT_PASSWORD, IT_DISPLAY_NAME);
    it_server_start(s);

    approved(s, &da);
    it_resp *r = poll_with(s, da.device_code, NULL);
    it_expect_oauth_error(r, "invalid_dpop_proof");
    assert_non_null(strstr(it_jstr(r, "error_description"), "requires a DPoP proof"));
    it_resp_free(r);
    key_new(&k);
    char dp[2100];
    proof(s, &k, "POST", "/oauth/token", NULL, dp, sizeof dp);
    r = poll_with(s, da.device_code, dp);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "token_type"), "DPoP");
    it_resp_free(r);
    bound_login(s, &k, &t);

    /* The web screen: cookies, no key, and it signs in all the same. */
    r = web(s, &tv, "GET", "/");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = web(s, &tv, "POST", "/web/screen/start");
    it_expect(r, 200, NULL);
    char uc[32];
    snprintf(uc, sizeof uc, "%s", it_jstr(r, "user_code"));
    it_resp_free(r);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &p);
    r = it_view(s, &p, uc);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &p, uc, uc, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = web(s, &tv, "POST", "/web/screen/wait");
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    it_resp_free(r);
    r = web(s, &tv, "GET", "/web/screen/me");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    it_server_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redemption_binds, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_refresh_needs_the_key, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_access_token_needs_a_proof, it_setup_alice,
                                        it_teardown),
        cmocka_unit_test_setup_teardown(test_token_endpoint_proofs, it_setup_alice, it_teardown),
        cmocka_unit_test_setup_teardown(test_held_screen_bound_at_approval, it_setup_alice,
                                        it_teardown),
        cmocka_unit_test_setup_teardown(test_bearer_client_unchanged, it_setup_alice, it_teardown),
        cmocka_unit_test(test_required),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
