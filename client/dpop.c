/* SPDX-License-Identifier: MIT */
/*
 * The screen's key and its DPoP proofs (RFC 9449): each handle holds an Ed25519 key, made by
 * qrl_client_new() or restored with qrl_client_set_key(). When the server's metadata says it
 * takes EdDSA proofs (dpop_signing_alg_values_supported), every token request carries a proof
 * of that key, and the server binds the screen's tokens to it: a stolen refresh or access token
 * is then useless without the key. The app keeps the key with the refresh token
 * (qrl_client_get_key) and makes a proof for each request it sends with a bound access token
 * (qrl_client_dpop_proof).
 *
 * The key is also named at the start of every login (client.c, start_request): the device
 * authorization request carries its RFC 7638 thumbprint as dpop_jkt (RFC 9449 section 10), so
 * the login request is bound to the key from its first moment, its QR code names the key, and
 * only this handle can redeem it.
 *
 * A proof is a compact JWS signed with the key:
 *   header   {"typ":"dpop+jwt","alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":...}}
 *   payload  {"jti": 16 random bytes, "htm": method, "htu": URL without query or fragment,
 *             "iat": now, and "ath": base64url(SHA-256(access token)) when one goes with it}
 *
 * Clocks: a server refuses a proof whose iat is more than a minute from its own clock, and the
 * clocks of TVs are often wrong. When a proof is refused (invalid_dpop_proof), the answer's
 * Date says the server's time; the SDK keeps the difference (skew_s) for its later proofs and
 * sends the refused request once more with a new proof (client.c, fetch). A refused proof means
 * the server did nothing with the request, so this is safe for a refresh too.
 *
 * Cryptography is libsodium's (keys, signatures, SHA-256, random bytes, base64url); JSON is
 * jansson's.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

_Static_assert(QRLC__DPOP_SK_BYTES == crypto_sign_SECRETKEYBYTES, "an Ed25519 secret key");
_Static_assert(QRLC__DPOP_PK_BYTES == crypto_sign_PUBLICKEYBYTES, "an Ed25519 public key");

/* base64url of 32 bytes without padding, and the NUL. */
#define B64_32 44
/* A skew smaller than this is noise (the Date header counts whole seconds, and a request takes
 * time): no reason to retry a refused proof. */
#define SKEW_NOISE_S 5

static void b64url(char *out, size_t cap, const unsigned char *in, size_t n)
{
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

qrl_err qrlc__dpop_init(qrl_client *c)
{
    if (sodium_init() < 0)
        return QRL_ERR_INTERNAL;
    crypto_sign_keypair(c->dpop_pk, c->dpop_sk);
    return QRL_OK;
}

void qrlc__dpop_wipe(qrl_client *c)
{
    qrlc__wipe(c->dpop_sk, sizeof c->dpop_sk);
}

/* An HTTP method as a proof names it: 1 to 16 letters, digits or '-'. */
static int method_ok(const char *m)
{
    size_t n = m != NULL ? strlen(m) : 0;

    return n > 0 && n <= 16 &&
           strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

qrl_err qrlc__dpop_proof(qrl_client *c, const char *method, const char *url,
                         const char *access_token, char *out, size_t len)
{
    char x[B64_32], jti[32], ath[B64_32], hdr[160], htu[QRLC__MAX_URL + 1];
    char payload[QRLC__MAX_URL + 256];
    unsigned char raw[16], sig[crypto_sign_BYTES], h[crypto_hash_sha256_BYTES];
    size_t ulen = url != NULL ? strcspn(url, "?#") : 0, hl, pl, need;
    json_t *p;
    int n;

    if (!method_ok(method) || ulen == 0)
        return QRL_ERR_INVALID;
    if (ulen > QRLC__MAX_URL)
        return QRL_ERR_TOO_LARGE;
    /* RFC 9449 section 4.2: htu is the target URI without its query and fragment. */
    memcpy(htu, url, ulen);
    htu[ulen] = '\0';
    b64url(x, sizeof x, c->dpop_pk, sizeof c->dpop_pk);
    n = snprintf(hdr, sizeof hdr,
                 "{\"typ\":\"dpop+jwt\",\"alg\":\"EdDSA\",\"jwk\":{\"kty\":\"OKP\",\"crv\":"
                 "\"Ed25519\",\"x\":\"%s\"}}",
                 x);
    if (n < 0 || (size_t)n >= sizeof hdr)
        return QRL_ERR_INTERNAL;
    hl = (size_t)n;
    randombytes_buf(raw, sizeof raw);
    b64url(jti, sizeof jti, raw, sizeof raw);
    p = json_pack("{s:s, s:s, s:s, s:I}", "jti", jti, "htm", method, "htu", htu, "iat",
                  (json_int_t)((long long)time(NULL) + c->skew_s));
    if (p != NULL && access_token != NULL) {
        crypto_hash_sha256(h, (const unsigned char *)access_token, strlen(access_token));
        b64url(ath, sizeof ath, h, sizeof h);
        json_object_set_new(p, "ath", json_string(ath));
    }
    if (p == NULL)
        return QRL_ERR_NOMEM;
    pl = json_dumpb(p, payload, sizeof payload, JSON_COMPACT);
    json_decref(p);
    if (pl == 0 || pl > sizeof payload)
        return QRL_ERR_TOO_LARGE;
    /* header.payload.signature, each part base64url without padding. */
    need = sodium_base64_ENCODED_LEN(hl, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
           sodium_base64_ENCODED_LEN(pl, sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
           sodium_base64_ENCODED_LEN(sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (need > len)
        return QRL_ERR_TOO_LARGE;
    b64url(out, len, (const unsigned char *)hdr, hl);
    n = (int)strlen(out);
    out[n++] = '.';
    b64url(out + n, len - (size_t)n, (const unsigned char *)payload, pl);
    n += (int)strlen(out + n);
    crypto_sign_detached(sig, NULL, (const unsigned char *)out, (size_t)n, c->dpop_sk);
    out[n++] = '.';
    b64url(out + n, len - (size_t)n, sig, sizeof sig);
    return QRL_OK;
}

int qrlc__dpop_learn_skew(qrl_client *c, const qrlc__resp *r)
{
    long long skew;

    if (r->date <= 0)
        return 0;
    skew = (long long)r->date - (long long)time(NULL);
    if (llabs(skew - c->skew_s) < SKEW_NOISE_S)
        return 0;
    c->skew_s = skew;
    return 1;
}

void qrlc__dpop_jkt(const qrl_client *c, char out[QRLC__JKT_BUF])
{
    char x[B64_32], jwk[96];
    unsigned char h[crypto_hash_sha256_BYTES];
    int n;

    b64url(x, sizeof x, c->dpop_pk, sizeof c->dpop_pk);
    /* RFC 7638 section 3.2: the members RFC 8037 requires of an OKP key, in lexicographic
     * order, no spaces. */
    n = snprintf(jwk, sizeof jwk, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", x);
    crypto_hash_sha256(h, (const unsigned char *)jwk, (size_t)n);
    b64url(out, QRLC__JKT_BUF, h, sizeof h);
}

/* --- public -------------------------------------------------------------------------------- */

QRL_CLIENT_API qrl_err qrl_client_dpop_jkt(const qrl_client *c, char *out, size_t len)
{
    if (c == NULL || out == NULL)
        return QRL_ERR_INVALID;
    if (len < QRLC__JKT_BUF)
        return QRL_ERR_TOO_LARGE;
    qrlc__dpop_jkt(c, out);
    return QRL_OK;
}

QRL_CLIENT_API qrl_err qrl_client_get_key(const qrl_client *c, char *out, size_t len)
{
    unsigned char seed[crypto_sign_SEEDBYTES];

    if (c == NULL || out == NULL)
        return QRL_ERR_INVALID;
    if (len < sodium_base64_ENCODED_LEN(sizeof seed, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return QRL_ERR_TOO_LARGE;
    /* The seed is the whole secret: the key pair is made again from it. */
    crypto_sign_ed25519_sk_to_seed(seed, c->dpop_sk);
    b64url(out, len, seed, sizeof seed);
    sodium_memzero(seed, sizeof seed);
    return QRL_OK;
}

QRL_CLIENT_API qrl_err qrl_client_set_key(qrl_client *c, const char *key)
{
    unsigned char seed[crypto_sign_SEEDBYTES];
    size_t got = 0;
    qrl_err rc = QRL_OK;

    if (c == NULL)
        return QRL_ERR_INVALID;
    if (atomic_flag_test_and_set(&c->busy))
        return QRL_ERR_CONFLICT;
    c->err[0] = '\0';
    if (key == NULL ||
        sodium_base642bin(seed, sizeof seed, key, strlen(key), NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != sizeof seed) {
        rc = qrlc__fail(c, QRL_ERR_INVALID,
                        "the key is not one qrl_client_get_key wrote (43 characters of base64url)");
    } else {
        crypto_sign_seed_keypair(c->dpop_pk, c->dpop_sk, seed);
        /* Tokens on the handle were bound to the key it had, if to any. */
        c->dpop_bound = 0;
    }
    sodium_memzero(seed, sizeof seed);
    atomic_flag_clear(&c->busy);
    return rc;
}

QRL_CLIENT_API int qrl_client_dpop_bound(const qrl_client *c)
{
    return c != NULL && c->have_tokens && c->dpop_bound;
}

QRL_CLIENT_API qrl_err qrl_client_dpop_proof(qrl_client *c, const char *method, const char *url,
                                             const char *access_token, char *out, size_t len)
{
    qrl_err rc;

    if (c == NULL || out == NULL || len == 0)
        return QRL_ERR_INVALID;
    out[0] = '\0';
    if (atomic_flag_test_and_set(&c->busy))
        return QRL_ERR_CONFLICT;
    c->err[0] = '\0';
    rc = qrlc__dpop_proof(c, method, url, access_token, out, len);
    if (rc != QRL_OK) {
        out[0] = '\0';
        qrlc__fail(c, rc, "no DPoP proof: %s",
                   rc == QRL_ERR_TOO_LARGE ? "the URL or the buffer is too long or too short"
                                           : "the method or the URL is not valid");
    }
    atomic_flag_clear(&c->busy);
    return rc;
}
