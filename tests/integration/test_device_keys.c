/* SPDX-License-Identifier: MIT */
/*
 * Signed decisions: a phone registers an Ed25519 device key (PUT /v1/device-key, password
 * required) and then approves or declines with a signature over
 *
 *     qrlogin-decision-v1\n<id>\n<approve|deny>\n<nonce>\n<canonical user code>\n
 *
 * instead of re-entering the password. What a user would notice if this broke: a captured
 * signature that approves another request, turns an approval into a decline, or works twice.
 *
 * The test signs with libsodium's Ed25519, as a phone app would.
 */
#include <sodium.h>

#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void b64url(const unsigned char *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n) {
            v |= (unsigned)in[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= in[i + 2];
        }
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        if (i + 1 < n) {
            out[o++] = tab[(v >> 6) & 63];
        }
        if (i + 2 < n) {
            out[o++] = tab[v & 63];
        }
    }
    out[o] = '\0';
}

/* Key pairs made by this test binary, by name; the secret keys stay in this process. */
static struct {
    char name[32];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
} keys[16];

/* An Ed25519 key pair (libsodium); `pub` gets the base64url raw public key. */
static void keypair_new(const it_server *s, const char *name, char pub[64])
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    size_t i;

    (void)s;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (keys[i].name[0] == '\0' || strcmp(keys[i].name, name) == 0)
            break;
    assert_true(i < sizeof keys / sizeof keys[0]);
    snprintf(keys[i].name, sizeof keys[i].name, "%s", name);
    crypto_sign_keypair(pk, keys[i].sk);
    b64url(pk, sizeof pk, pub);
}

/* Signs the decision message with key `name`; `sig` gets base64url of the 64-byte signature. */
static void sign_decision(const it_server *s, const char *name, long long id, const char *decision,
                          const char *nonce, const char *user_code, char sig[128])
{
    char canonical[16], msg[256];
    unsigned char raw[crypto_sign_BYTES];
    size_t n = 0, i;

    (void)s;
    for (const char *p = user_code; *p != '\0' && n < 8; p++) {
        if (*p != '-') {
            canonical[n++] = *p;
        }
    }
    canonical[n] = '\0';
    int len = snprintf(msg, sizeof msg, "qrlogin-decision-v1\n%lld\n%s\n%s\n%s\n", id, decision,
                       nonce, canonical);
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i].name, name) == 0)
            break;
    assert_true(i < sizeof keys / sizeof keys[0]);
    crypto_sign_detached(raw, NULL, (const unsigned char *)msg, (unsigned long long)len,
                         keys[i].sk);
    b64url(raw, sizeof raw, sig);
}

static it_resp *put_key(const it_server *s, const it_phone *p, const char *pub,
                        const char *password)
{
    json_t *body = json_pack("{s:s}", "public_key", pub);
    if (password != NULL) {
        json_object_set_new(body, "password", json_string(password));
    }
    it_resp *r = it_json_send(s, "PUT", "/v1/device-key", p->session, body);
    assert_non_null(r);
    return r;
}

static void register_key(const it_server *s, const it_phone *p, const char *name)
{
    char pub[64];
    keypair_new(s, name, pub);
    it_resp *r = put_key(s, p, pub, IT_PASSWORD);
    it_expect(r, 204, NULL);
    it_resp_free(r);
}

typedef struct scanned {
    it_devauth da;
    long long id;
    char nonce[128];
} scanned;

static void scan(const it_server *s, const it_phone *p, scanned *out)
{
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &out->da);
    it_resp *r = it_view(s, p, out->da.scan_secret);
    it_expect(r, 200, NULL);
    out->id = it_jint(r, "id");
    const char *nonce = it_jstr(r, "nonce");
    if (nonce == NULL || nonce[0] == '\0' || strlen(nonce) >= sizeof(out->nonce)) {
        print_error("the claiming phone got no \"nonce\": %s\n", r->body);
        fail();
    }
    strcpy(out->nonce, nonce);
    it_resp_free(r);
}

static it_resp *decide_signed(const it_server *s, const it_phone *p, const scanned *sc,
                              const char *decision, const char *sig)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/login-requests/%s/%s", sc->da.scan_secret, decision);
    it_resp *r =
        it_json_send(s, "POST", path, p->session,
                     json_pack("{s:s, s:s}", "user_code", sc->da.user_code, "signature", sig));
    assert_non_null(r);
    return r;
}

static void expect_screen_sees_scanned(const it_server *s, const scanned *sc)
{
    it_clock_advance(s, 5000);
    it_resp *r = it_token_poll(s, IT_CLIENT_ID, sc->da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    assert_string_equal(it_jstr(r, "status"), "scanned");
    it_resp_free(r);
}

static int has_key(const it_server *s, const it_phone *p)
{
    it_resp *r = it_json_send(s, "GET", "/v1/me", p->session, NULL);
    it_expect(r, 200, NULL);
    json_t *v = json_object_get(json_object_get(r->json, "device"), "has_key");
    assert_true(json_is_boolean(v));
    int k = json_is_true(v);
    it_resp_free(r);
    return k;
}

static void test_signed_approval(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    assert_false(has_key(s, &phone));
    register_key(s, &phone, "phone");
    assert_true(has_key(s, &phone));

    scanned sc;
    scan(s, &phone, &sc);
    char sig[128];
    sign_decision(s, "phone", sc.id, "approve", sc.nonce, sc.da.user_code, sig);
    it_resp *r = decide_signed(s, &phone, &sc, "approve", sig);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "approved");
    it_resp_free(r);

    r = it_token_poll(s, IT_CLIENT_ID, sc.da.device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);

    /* The same signature cannot approve anything again. */
    r = decide_signed(s, &phone, &sc, "approve", sig);
    it_expect(r, 409, "invalid_state");
    it_resp_free(r);
}

static void test_device_key_registration_errors(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    char pub[64];
    keypair_new(s, "k", pub);

    /* A stolen session token alone cannot add a key. */
    it_resp *r = put_key(s, &phone, pub, "not my password");
    it_expect(r, 403, "step_up_failed");
    it_expect_error_shape(r);
    it_resp_free(r);
    r = put_key(s, &phone, pub, NULL);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);

    unsigned char short_key[31] = {1};
    char bad[64];
    b64url(short_key, sizeof(short_key), bad);
    static const char *const bad_keys[] = {"", "not base64 !!", "AAAA"};
    r = put_key(s, &phone, bad, IT_PASSWORD);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
        r = put_key(s, &phone, bad_keys[i], IT_PASSWORD);
        it_expect(r, 400, "invalid_request");
        it_resp_free(r);
    }
    assert_false(has_key(s, &phone));

    r = it_json_send(s, "PUT", "/v1/device-key", NULL,
                     json_pack("{s:s, s:s}", "public_key", pub, "password", IT_PASSWORD));
    it_expect(r, 401, "unauthorized");
    it_resp_free(r);
}

/* Every way to present a signature that is not for exactly this decision fails with
 * 403 signature_invalid and leaves the request SCANNED. */
static void test_bad_signatures_change_nothing(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    register_key(s, &phone, "phone");
    char other_pub[64];
    keypair_new(s, "other", other_pub);

    scanned a, b;
    scan(s, &phone, &a);
    scan(s, &phone, &b);
    char sig[128];
    struct {
        const char *what;
        const char *key;
        long long id;
        const char *decision;
        const char *nonce;
    } cases[] = {
        {"a deny signature used to approve", "phone", a.id, "deny", a.nonce},
        {"another request's id", "phone", b.id, "approve", a.nonce},
        {"another request's nonce", "phone", a.id, "approve", b.nonce},
        {"a key that is not registered", "other", a.id, "approve", a.nonce},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sign_decision(s, cases[i].key, cases[i].id, cases[i].decision, cases[i].nonce,
                      a.da.user_code, sig);
        it_resp *r = decide_signed(s, &phone, &a, "approve", sig);
        if (r->status != 403) {
            print_error("signature case: %s\n", cases[i].what);
        }
        it_expect(r, 403, "signature_invalid");
        it_expect_error_shape(r);
        it_resp_free(r);
    }
    /* B's valid signature moved onto A. */
    sign_decision(s, "phone", b.id, "approve", b.nonce, b.da.user_code, sig);
    it_resp *r = decide_signed(s, &phone, &a, "approve", sig);
    it_expect(r, 403, "signature_invalid");
    it_resp_free(r);
    /* Garbage. */
    r = decide_signed(s, &phone, &a, "approve", "AAAA");
    it_expect(r, 403, "signature_invalid");
    it_resp_free(r);

    expect_screen_sees_scanned(s, &a);
    expect_screen_sees_scanned(s, &b);

    /* The genuine one still works. */
    sign_decision(s, "phone", a.id, "approve", a.nonce, a.da.user_code, sig);
    r = decide_signed(s, &phone, &a, "approve", sig);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

static void test_signature_without_registered_key(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    char pub[64];
    keypair_new(s, "unregistered", pub);
    scanned sc;
    scan(s, &phone, &sc);
    char sig[128];
    sign_decision(s, "unregistered", sc.id, "approve", sc.nonce, sc.da.user_code, sig);
    it_resp *r = decide_signed(s, &phone, &sc, "approve", sig);
    it_expect(r, 403, "signature_invalid");
    it_resp_free(r);
    expect_screen_sees_scanned(s, &sc);
}

static void test_signed_deny(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    register_key(s, &phone, "phone");
    scanned sc;
    scan(s, &phone, &sc);

    /* A signature sent with a deny must verify: an approve signature does not. */
    char sig[128];
    sign_decision(s, "phone", sc.id, "approve", sc.nonce, sc.da.user_code, sig);
    it_resp *r = decide_signed(s, &phone, &sc, "deny", sig);
    it_expect(r, 403, "signature_invalid");
    it_resp_free(r);
    expect_screen_sees_scanned(s, &sc);

    sign_decision(s, "phone", sc.id, "deny", sc.nonce, sc.da.user_code, sig);
    r = decide_signed(s, &phone, &sc, "deny", sig);
    it_expect(r, 200, NULL);
    assert_string_equal(it_jstr(r, "state"), "denied");
    it_resp_free(r);
    it_clock_advance(s, 5000);
    r = it_token_poll(s, IT_CLIENT_ID, sc.da.device_code, 0);
    it_expect_oauth_error(r, "access_denied");
    it_resp_free(r);
}

/* Replacing the key: signatures by the old key stop working. */
static void test_replaced_key(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    register_key(s, &phone, "old");
    register_key(s, &phone, "new");
    scanned sc;
    scan(s, &phone, &sc);
    char sig[128];
    sign_decision(s, "old", sc.id, "approve", sc.nonce, sc.da.user_code, sig);
    it_resp *r = decide_signed(s, &phone, &sc, "approve", sig);
    it_expect(r, 403, "signature_invalid");
    it_resp_free(r);
    sign_decision(s, "new", sc.id, "approve", sc.nonce, sc.da.user_code, sig);
    r = decide_signed(s, &phone, &sc, "approve", sig);
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_signed_approval),
        T(test_device_key_registration_errors),
        T(test_bad_signatures_change_nothing),
        T(test_signature_without_registered_key),
        T(test_signed_deny),
        T(test_replaced_key),
    };
#undef T
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests_name("integration/device_keys", tests, NULL, NULL);
}
