/* SPDX-License-Identifier: MIT */
/*
 * DPoP proofs (RFC 9449): a screen proves, with every token request and every use of a bound
 * access token, that it holds the private key its tokens are bound to. A proof is a compact
 * JWS (three base64url parts, header.payload.signature) whose header carries the public key:
 *
 *   header   {"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x"}}
 *   payload  {"jti", "htm", "htu", "iat", and "ath" when it comes with an access token}
 *
 * What qrl__dpop_verify() checks, in this order (section 4.3): three parts of base64url
 * without padding; a header object with typ dpop+jwt, alg EdDSA, no "crit" (we understand no
 * extension) and a public Ed25519 jwk without a private part; the signature over the first
 * two parts, by that key (libsodium); a payload object with a jti of 1 to QRL_DPOP_MAX_JTI
 * characters, htm equal to the request's method, htu equal to the URL the request was sent to
 * (the public URL and the path: query and fragment are ignored, scheme and host compared
 * without case, a default port equal to none), iat within QRL_DPOP_MAX_SKEW_S of the core's
 * clock (so that tests can move it), and, with an access token, ath equal to the base64url
 * SHA-256 of that token. The replay check (section 11.1) comes last and apart
 * (qrl__dpop_use): it is the one check that writes, to the store, so that a proof is used up
 * on every node sharing it.
 *
 * Why EdDSA only: it is what our SDK and `qrlogin tv` make, libsodium verifies it in constant
 * time with checks against small-order keys, and its key is one 32-byte value, so a JWK has
 * one shape. ES256 or RS256 would need a second crypto library for a path no client of ours
 * takes; such a proof is refused with a sentence that says which algorithm we take.
 *
 * Nothing here is hand-made cryptography: base64url and SHA-256 and Ed25519 are libsodium's,
 * JSON is jansson's (duplicate members refused, so a header cannot say two things).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "dpop.h"

/* Longest decoded header or payload: ours are under 300 bytes. */
#define MAX_PART 2048
/* base64url of 32 bytes (a key, a SHA-256) without padding. */
#define B64_32 43

/* Sets `why` and returns QRL_ERR_INVALID. */
static qrl_err refuse(char *why, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static qrl_err refuse(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return QRL_ERR_INVALID;
}

/* Decodes `n` characters of base64url without padding into out (at most cap bytes). Returns the
 * length, or -1 when it is not exactly that (a stray character, padding, unused bits set). */
static long b64url_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t got = 0;

    if (sodium_base642bin(out, cap, s, n, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return (long)got;
}

/* A JSON object from `n` characters of base64url. NULL when either layer is malformed. */
static json_t *b64url_json(const char *s, size_t n)
{
    unsigned char buf[MAX_PART];
    long len;
    json_t *j;

    if (n == 0 || n > sodium_base64_ENCODED_LEN(MAX_PART, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
        return NULL;
    if ((len = b64url_decode(s, n, buf, sizeof buf)) <= 0)
        return NULL;
    j = json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    if (j != NULL && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* An algorithm name fit to be echoed in an answer: short, letters and digits only. */
static bool alg_printable(const char *a)
{
    size_t n = strlen(a);

    return n > 0 && n <= 16 &&
           strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789") == n;
}

/* The JOSE header: typ, alg, jwk (section 4.2). On success the key is in out->key. */
static qrl_err check_header(json_t *h, qrl__dpop *out, char *why, size_t len)
{
    const char *typ = jstr(h, "typ"), *alg = jstr(h, "alg"), *x;
    json_t *jwk = json_object_get(h, "jwk");

    if (typ == NULL || strcmp(typ, "dpop+jwt") != 0)
        return refuse(why, len, "the proof's typ must be dpop+jwt");
    if (alg == NULL)
        return refuse(why, len, "the proof has no alg");
    if (strcmp(alg, "EdDSA") != 0) {
        /* Section 4.3 check 5: an asymmetric algorithm this server supports. Say which one
         * that is: a client with an ES256 key otherwise cannot tell what went wrong. */
        if (strcmp(alg, "none") == 0 || strncmp(alg, "HS", 2) == 0)
            return refuse(why, len,
                          "alg %s is no asymmetric signature; this server accepts EdDSA "
                          "(Ed25519) DPoP proofs only",
                          alg_printable(alg) ? alg : "(this)");
        return refuse(why, len, "this server accepts EdDSA (Ed25519) DPoP proofs only, not %s",
                      alg_printable(alg) ? alg : "this alg");
    }
    /* RFC 7515 section 4.1.11: an extension we do not know must be understood or refused. */
    if (json_object_get(h, "crit") != NULL || json_object_get(h, "b64") != NULL)
        return refuse(why, len, "the proof's header names an extension (crit) we do not support");
    if (!json_is_object(jwk))
        return refuse(why, len, "the proof's header has no jwk");
    if (json_object_get(jwk, "d") != NULL)
        return refuse(why, len, "the proof's jwk holds a private key");
    if (jstr(jwk, "kty") == NULL || strcmp(jstr(jwk, "kty"), "OKP") != 0 ||
        jstr(jwk, "crv") == NULL || strcmp(jstr(jwk, "crv"), "Ed25519") != 0)
        return refuse(why, len, "the proof's jwk must be an Ed25519 key (kty OKP, crv Ed25519)");
    x = jstr(jwk, "x");
    if (x == NULL || strlen(x) != B64_32 ||
        b64url_decode(x, B64_32, out->key, sizeof out->key) != QRL_PUBKEY_BYTES)
        return refuse(why, len, "the proof's jwk x is not a base64url Ed25519 public key");
    return QRL_OK;
}

/* The scheme and authority of an http(s) URL, lowercased and with the scheme's default port
 * left out (RFC 3986 sections 6.2.2.1 and 6.2.3), into out; *rest points at what follows the
 * authority. false when it is no absolute http(s) URL or does not fit. */
static bool url_split(const char *u, char *out, size_t cap, const char **rest)
{
    const char *scheme = strncasecmp(u, "https://", 8) == 0  ? "https://"
                         : strncasecmp(u, "http://", 7) == 0 ? "http://"
                                                             : NULL;
    const char *auth, *dflt;
    size_t s, n, dl;

    if (scheme == NULL)
        return false;
    s = strlen(scheme);
    auth = u + s;
    n = strcspn(auth, "/?#");
    dflt = s == 8 ? ":443" : ":80";
    dl = strlen(dflt);
    if (n == 0 || s + n + 1 > cap)
        return false;
    memcpy(out, scheme, s);
    for (size_t i = 0; i < n; i++)
        out[s + i] = (auth[i] >= 'A' && auth[i] <= 'Z') ? (char)(auth[i] - 'A' + 'a') : auth[i];
    out[s + n] = '\0';
    if (n > dl && memcmp(out + s + n - dl, dflt, dl) == 0)
        out[s + n - dl] = '\0';
    *rest = auth + n;
    return true;
}

/* Section 4.3 check 9: the proof's htu is the URL of this request, ignoring its query and
 * fragment; scheme and host without case and a default port as none (RFC 3986 section 6.2.2
 * and 6.2.3). The path is compared exactly: we never redirect and serve each path once. */
static bool htu_matches(const char *htu, const char *want)
{
    char a[300], b[300];
    const char *pa, *pb;
    size_t la, lb;

    if (!url_split(htu, a, sizeof a, &pa) || !url_split(want, b, sizeof b, &pb) ||
        strcmp(a, b) != 0)
        return false;
    la = strcspn(pa, "?#");
    lb = strcspn(pb, "?#");
    /* An empty path is "/" (RFC 3986 section 6.2.3). */
    if (la == 0)
        pa = "/", la = 1;
    if (lb == 0)
        pb = "/", lb = 1;
    return la == lb && memcmp(pa, pb, la) == 0;
}

/* ath (section 4.2): base64url(SHA-256(ASCII of the access token)). */
static void token_hash(const char *token, char out[B64_32 + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2base64(out, B64_32 + 1, h, sizeof h, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* The claims (section 4.2) against the request. */
static qrl_err check_payload(json_t *p, const qrl__dpop_want *want, qrl__dpop *out, char *why,
                             size_t len)
{
    const char *jti = jstr(p, "jti"), *htm = jstr(p, "htm"), *htu = jstr(p, "htu");
    json_t *iat = json_object_get(p, "iat");
    double t;

    if (jti == NULL || jti[0] == '\0' || strlen(jti) > QRL_DPOP_MAX_JTI)
        return refuse(why, len, "the proof needs a jti of 1 to %d characters", QRL_DPOP_MAX_JTI);
    if (htm == NULL || strcmp(htm, want->htm) != 0)
        return refuse(why, len, "the proof's htm is not this request's method (%s)", want->htm);
    if (htu == NULL || !htu_matches(htu, want->htu))
        return refuse(why, len, "the proof's htu is not this request's URL (%s)", want->htu);
    if (!json_is_number(iat))
        return refuse(why, len, "the proof needs iat, the time it was made");
    t = json_number_value(iat);
    /* Compared in milliseconds; a double holds every NumericDate of this era exactly. */
    if (!(t * 1000.0 >= (double)(want->now_ms - QRL_DPOP_MAX_SKEW_S * 1000) &&
          t * 1000.0 <= (double)(want->now_ms + QRL_DPOP_MAX_SKEW_S * 1000)))
        return refuse(why, len,
                      "the proof's iat is more than %d seconds from the server's clock; see the "
                      "Date of this answer",
                      QRL_DPOP_MAX_SKEW_S);
    if (want->access_token != NULL) {
        char h[B64_32 + 1];
        const char *ath = jstr(p, "ath");
        token_hash(want->access_token, h);
        if (ath == NULL || strlen(ath) != B64_32 || sodium_memcmp(ath, h, B64_32) != 0)
            return refuse(why, len, "the proof's ath is not the hash of this access token");
    }
    memcpy(out->jti, jti, strlen(jti) + 1);
    out->iat_s = (int64_t)t;
    return QRL_OK;
}

qrl_err qrl__dpop_verify(const char *proof, const qrl__dpop_want *want, qrl__dpop *out, char *why,
                         size_t whylen)
{
    const char *d1, *d2;
    unsigned char sig[crypto_sign_BYTES];
    json_t *h = NULL, *p = NULL;
    size_t n = proof != NULL ? strnlen(proof, QRL__DPOP_MAX_PROOF + 1) : 0;
    qrl_err rc;

    memset(out, 0, sizeof *out);
    why[0] = '\0';
    if (n == 0 || n > QRL__DPOP_MAX_PROOF)
        return refuse(why, whylen, "the DPoP proof is empty or longer than %d bytes",
                      QRL__DPOP_MAX_PROOF);
    /* Section 4.3 check 2: one JWT in compact form, header.payload.signature. */
    d1 = strchr(proof, '.');
    d2 = d1 != NULL ? strchr(d1 + 1, '.') : NULL;
    if (d2 == NULL || strchr(d2 + 1, '.') != NULL)
        return refuse(why, whylen, "the DPoP proof is not a JWT (header.payload.signature)");
    if ((h = b64url_json(proof, (size_t)(d1 - proof))) == NULL) {
        rc = refuse(why, whylen, "the DPoP proof's header is not base64url of a JSON object");
        goto out;
    }
    if ((rc = check_header(h, out, why, whylen)) != QRL_OK)
        goto out;
    /* Section 4.3 check 6: the signature, before anything the payload says is believed. */
    if (strlen(d2 + 1) !=
            sodium_base64_ENCODED_LEN(crypto_sign_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING) -
                1 ||
        b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof sig) != crypto_sign_BYTES) {
        rc = refuse(why, whylen, "the DPoP proof's signature is not 64 bytes of base64url");
        goto out;
    }
    if (crypto_sign_verify_detached(sig, (const unsigned char *)proof, (size_t)(d2 - proof),
                                    out->key) != 0) {
        rc = refuse(why, whylen, "the DPoP proof's signature does not verify with its jwk");
        goto out;
    }
    if ((p = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1))) == NULL) {
        rc = refuse(why, whylen, "the DPoP proof's payload is not base64url of a JSON object");
        goto out;
    }
    if ((rc = check_payload(p, want, out, why, whylen)) != QRL_OK)
        goto out;
    qrl__dpop_thumbprint(out->key, out->jkt);
out:
    json_decref(h);
    json_decref(p);
    if (rc != QRL_OK)
        memset(out, 0, sizeof *out);
    return rc;
}

void qrl__dpop_thumbprint(const unsigned char key[QRL_PUBKEY_BYTES], char out[QRL__JKT_BUF])
{
    /* The core's: a login request bound to a key compares thumbprints there. */
    qrl_dpop_thumbprint(key, out);
}

/* Counts the DPoP headers of a request (section 4.3 check 1: not more than one). */
static enum MHD_Result count_dpop(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    const char **found = cls;

    if (strcasecmp(key, "DPoP") != 0)
        return MHD_YES;
    if (found[0] == NULL)
        found[0] = value;
    else
        found[1] = value;
    return MHD_YES;
}

qrl_err qrl__dpop_read(qrl__req *r, const char *path, const char *access_token, qrl__dpop *out,
                       char *why, size_t whylen)
{
    const char *found[2] = {NULL, NULL};
    char url[sizeof r->srv->public_url + 64];

    memset(out, 0, sizeof *out);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_dpop, found);
    if (found[0] == NULL)
        return QRL_ERR_NOT_FOUND;
    if (found[1] != NULL)
        return refuse(why, whylen, "a request carries at most one DPoP header");
    if (snprintf(url, sizeof url, "%s%s", r->srv->public_url, path) >= (int)sizeof url)
        return refuse(why, whylen, "the request's URL is too long for a DPoP proof");
    qrl__dpop_want want = {.htm = r->method,
                           .htu = url,
                           .access_token = access_token,
                           .now_ms = qrl_core_now_ms(r->srv->core)};
    return qrl__dpop_verify(found[0], &want, out, why, whylen);
}

qrl_err qrl__dpop_use(qrl__req *r, const qrl__dpop *d, char *why, size_t whylen)
{
    qrl_err rc = qrl_dpop_jti_use(r->srv->core, d->jkt, d->jti);

    if (rc == QRL_ERR_EXISTS || rc == QRL_ERR_INVALID)
        return refuse(why, whylen,
                      "this DPoP proof was used already (its jti); make a new one "
                      "for every request");
    return rc;
}

/* An HTTP date (RFC 9110 section 5.6.7) of the core's clock. Month and day names spelled out
 * here: strftime's follow the locale. */
static void http_date(const qrl_server *srv, char out[32])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(qrl_core_now_ms(srv->core) / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, 32, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

enum MHD_Result qrl__dpop_refuse(qrl__req *r, qrl_err rc, const char *why)
{
    char date[32];
    const char *hdr[] = {"Date", date, NULL};

    if (rc != QRL_ERR_INVALID)
        return qrl__respond_err(r, rc, QRL__CTX_OAUTH);
    /* For the operator: a flood of them is a stolen token tried without its key, or a client
     * whose clock is wrong. The reason is ours; no secret is in it. */
    qrl__audit(r, "dpop_refused", &(qrl__ids){.error = "invalid_dpop_proof"});
    http_date(r->srv, date);
    return qrl__respond_json_hdr(
        r, 400, json_pack("{s:s, s:s}", "error", "invalid_dpop_proof", "error_description", why),
        hdr);
}

enum MHD_Result qrl__dpop_refuse_resource(qrl__req *r, const char *error, const char *why)
{
    char date[32], www[512], clean[256];
    const char *hdr[] = {"Date", date, "WWW-Authenticate", www, NULL};
    size_t i;

    /* The sentence goes into a quoted-string (RFC 9110 section 5.6.4): no quote, no
     * backslash, nothing outside printable ASCII. */
    for (i = 0; why[i] != '\0' && i + 1 < sizeof clean; i++)
        clean[i] =
            (why[i] == '"' || why[i] == '\\' || why[i] < 0x20 || why[i] > 0x7e) ? '\'' : why[i];
    clean[i] = '\0';
    qrl__audit(r, "dpop_refused", &(qrl__ids){.error = error});
    http_date(r->srv, date);
    snprintf(www, sizeof www, "DPoP error=\"%s\", error_description=\"%s\", algs=\"EdDSA\"", error,
             clean);
    return qrl__respond_json_hdr(
        r, 401, json_pack("{s:s, s:s}", "error", error, "error_description", why), hdr);
}

enum MHD_Result qrl__dpop_refuse_bearer(qrl__req *r)
{
    return qrl__dpop_refuse_resource(r, "invalid_token",
                                     "this access token is bound to a DPoP key: send it as "
                                     "Authorization: DPoP with a DPoP proof");
}

bool qrl__dpop_auth(qrl__req *r, const char *token, qrl_auth *auth, enum MHD_Result *ret)
{
    qrl__dpop d;
    char why[192];
    qrl_err rc = QRL_OK;

    /* Once per request: a held request authenticates again when it resumes, and its proof's
     * jti is spent by then. The key it proved stays in r. */
    if (!r->dpop) {
        rc = qrl__dpop_read(r, r->url, token, &d, why, sizeof why);
        if (rc == QRL_ERR_NOT_FOUND) {
            snprintf(why, sizeof why, "an access token sent as DPoP needs a DPoP proof header");
            rc = QRL_ERR_INVALID;
        }
    }
    if (rc == QRL_OK) {
        qrl__read_scope(r);
        rc = qrl_device_auth_dpop(r->srv->core, token, r->dpop ? r->dpop_key : d.key, r->address,
                                  auth);
    }
    if (rc == QRL_OK && !r->dpop) {
        rc = qrl__dpop_use(r, &d, why, sizeof why);
        if (rc == QRL_OK) {
            r->dpop = true;
            memcpy(r->dpop_key, d.key, sizeof r->dpop_key);
        }
    }
    if (rc == QRL_OK)
        return true;
    if (rc == QRL_ERR_INVALID)
        *ret = qrl__dpop_refuse_resource(r, "invalid_dpop_proof", why);
    else if (rc == QRL_ERR_UNAUTHORIZED)
        *ret = qrl__dpop_refuse_resource(
            r, "invalid_token", "the access token is not valid, or not bound to this proof's key");
    else
        *ret = qrl__respond_err(r, rc, QRL__CTX_API);
    return false;
}

int qrl__dpop_held_key(void *srv, void *held, unsigned char key[QRL_PUBKEY_BYTES])
{
    const qrl__req *r = held;

    (void)srv;
    if (!r->dpop)
        return 0;
    memcpy(key, r->dpop_key, QRL_PUBKEY_BYTES);
    return 1;
}
