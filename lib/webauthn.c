/* SPDX-License-Identifier: MIT */
/*
 * WebAuthn parsing and signature checks (W3C WebAuthn Level 2): clientDataJSON (section 5.8.1),
 * authenticatorData (6.1), attested credential data and the COSE_Key in it (6.5.1, RFC 8152
 * section 13), attestationObject (6.5) and signatures over authData || SHA-256(clientData)
 * (6.3.3 step 11, 7.2 step 20).
 *
 * Everything here reads bytes that an attacker chose, so every reader is strict and bounded:
 * inputs are capped by limits.h before they get here, each length field is checked against what
 * is left, and a message with bytes that belong to no announced part is refused. libcbor reads
 * CBOR (it builds items with an explicit stack, not recursion, so nesting cannot exhaust ours);
 * libfido2 verifies signatures. The JSON reader is ours: the core does not link a JSON library,
 * and clientDataJSON needs three string members of a flat object.
 */
#include <string.h>

#include <cbor.h>
#include <fido.h>
#include <fido/eddsa.h>
#include <fido/es256.h>
#include <fido/rs256.h>
#include <pthread.h>
#include <sodium.h>

#include "webauthn.h"

/* --- base64url ------------------------------------------------------------------------------ */

/* The base64url alphabet (RFC 4648 section 5). */
static bool b64url_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool qrl__wa_b64_decode(const char *in, unsigned char *out, size_t cap, size_t *len)
{
    size_t n = in != NULL ? strnlen(in, cap / 3 * 4 + 8) : 0;

    *len = 0;
    /* Longer than any encoding of cap bytes: refuse before decoding. */
    if (n == 0 || n > cap / 3 * 4 + 4)
        return false;
    /* The alphabet is checked here: some libsodium releases (1.0.18) decode every byte from 0x80
     * up as if it were '_', so "\x80\x80\x80\x80" would pass for "____". */
    for (size_t i = 0; i < n; i++)
        if (!b64url_char((unsigned char)in[i]))
            return false;
    if (sodium_base642bin(out, cap, in, n, NULL, len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        *len == 0) {
        /* libsodium leaves the length of what it decoded before a bad character. */
        *len = 0;
        return false;
    }
    return true;
}

/* --- clientDataJSON (RFC 8259 grammar, strict) ------------------------------------------------ */

/* Nesting we follow in members we skip. Browsers send a flat object (tokenBinding, where
 * present, one level deeper); 8 is generous and keeps the recursion shallow. */
#define JSON_MAX_DEPTH 8

typedef struct jreader {
    const unsigned char *p, *end;
} jreader;

static void j_ws(jreader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool j_lit(jreader *r, const char *lit)
{
    size_t n = strlen(lit);

    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
        return false;
    r->p += n;
    return true;
}

static bool is_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* The length of the well-formed UTF-8 sequence at p[0..n) (RFC 3629 section 4), 0 when there is
 * none: a stray continuation byte, a truncated sequence, an overlong form, a surrogate or a code
 * point above U+10FFFF. RFC 8259 section 8.1 asks for UTF-8, and a reader that lets broken
 * sequences through could be read differently by another one (a decoder that takes the bytes
 * after a lead byte on trust would swallow a closing quote). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0], cp;
    size_t len;

    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0)
        len = 2, cp = c & 0x1f;
    else if ((c & 0xf0) == 0xe0)
        len = 3, cp = c & 0x0f;
    else if ((c & 0xf8) == 0xf0)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

/* A string at r->p. On success *s and *n span its raw contents (between the quotes) and *escaped
 * says whether it holds an escape. */
static bool j_string(jreader *r, const unsigned char **s, size_t *n, bool *escaped)
{
    if (r->p >= r->end || *r->p != '"')
        return false;
    r->p++;
    *s = r->p;
    *escaped = false;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = *r->p;
        if (c < 0x20)
            return false;
        if (c == '\\') {
            *escaped = true;
            if (r->end - r->p < 2)
                return false;
            c = r->p[1];
            if (c == 'u') {
                if (r->end - r->p < 6 || !is_hex(r->p[2]) || !is_hex(r->p[3]) || !is_hex(r->p[4]) ||
                    !is_hex(r->p[5]))
                    return false;
                r->p += 6;
                continue;
            }
            if (strchr("\"\\/bfnrt", c) == NULL || c == '\0')
                return false;
            r->p += 2;
            continue;
        }
        size_t len = utf8_seq(r->p, (size_t)(r->end - r->p));
        if (len == 0)
            return false;
        r->p += len;
    }
    if (r->p >= r->end)
        return false;
    *n = (size_t)(r->p - *s);
    r->p++;
    return true;
}

static bool j_digits(jreader *r)
{
    const unsigned char *start = r->p;

    while (r->p < r->end && *r->p >= '0' && *r->p <= '9')
        r->p++;
    return r->p > start;
}

static bool j_number(jreader *r)
{
    if (r->p < r->end && *r->p == '-')
        r->p++;
    if (r->p < r->end && *r->p == '0')
        r->p++;
    else if (!j_digits(r))
        return false;
    if (r->p < r->end && *r->p == '.') {
        r->p++;
        if (!j_digits(r))
            return false;
    }
    if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
        r->p++;
        if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
            r->p++;
        if (!j_digits(r))
            return false;
    }
    return true;
}

static bool j_value(jreader *r, int depth);

/* An object or array after its opening bracket, up to and including the closing one. */
static bool j_container(jreader *r, int depth, bool object)
{
    const unsigned char *s;
    size_t n;
    bool esc;

    j_ws(r);
    if (r->p < r->end && *r->p == (object ? '}' : ']')) {
        r->p++;
        return true;
    }
    for (;;) {
        j_ws(r);
        if (object) {
            if (!j_string(r, &s, &n, &esc))
                return false;
            j_ws(r);
            if (r->p >= r->end || *r->p != ':')
                return false;
            r->p++;
        }
        if (!j_value(r, depth + 1))
            return false;
        j_ws(r);
        if (r->p < r->end && *r->p == ',') {
            r->p++;
            continue;
        }
        if (r->p < r->end && *r->p == (object ? '}' : ']')) {
            r->p++;
            return true;
        }
        return false;
    }
}

static bool j_value(jreader *r, int depth)
{
    const unsigned char *s;
    size_t n;
    bool esc;

    if (depth > JSON_MAX_DEPTH)
        return false;
    j_ws(r);
    if (r->p >= r->end)
        return false;
    switch (*r->p) {
    case '"':
        return j_string(r, &s, &n, &esc);
    case '{':
    case '[':
        return j_container(r, depth, *r->p++ == '{');
    case 't':
        return j_lit(r, "true");
    case 'f':
        return j_lit(r, "false");
    case 'n':
        return j_lit(r, "null");
    default:
        return j_number(r);
    }
}

/* Copies a captured string member into dst (cap bytes with NUL); false when it does not fit,
 * holds an escape or a NUL. */
static bool j_capture(jreader *r, char *dst, size_t cap)
{
    const unsigned char *s;
    size_t n;
    bool esc;

    j_ws(r);
    if (!j_string(r, &s, &n, &esc) || esc || n >= cap || memchr(s, '\0', n) != NULL)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

enum { SEEN_TYPE = 1, SEEN_CHALLENGE = 2, SEEN_ORIGIN = 4, SEEN_CROSS = 8 };

/* One member of the top-level object: its name, then its value (captured or skipped). */
static bool client_member(jreader *r, qrl__wa_client *out, unsigned *seen)
{
    const unsigned char *k;
    size_t n;
    bool esc;
    unsigned bit = 0;

    if (!j_string(r, &k, &n, &esc) || esc)
        return false;
    j_ws(r);
    if (r->p >= r->end || *r->p != ':')
        return false;
    r->p++;
    if (n == 4 && memcmp(k, "type", 4) == 0)
        bit = SEEN_TYPE;
    else if (n == 9 && memcmp(k, "challenge", 9) == 0)
        bit = SEEN_CHALLENGE;
    else if (n == 6 && memcmp(k, "origin", 6) == 0)
        bit = SEEN_ORIGIN;
    else if (n == 11 && memcmp(k, "crossOrigin", 11) == 0)
        bit = SEEN_CROSS;
    if (bit == 0)
        return j_value(r, 1);
    /* A repeated member could be read differently by another parser: refuse it. */
    if (*seen & bit)
        return false;
    *seen |= bit;
    switch (bit) {
    case SEEN_TYPE:
        return j_capture(r, out->type, sizeof out->type);
    case SEEN_CHALLENGE:
        return j_capture(r, out->challenge, sizeof out->challenge);
    case SEEN_ORIGIN:
        return j_capture(r, out->origin, sizeof out->origin);
    default:
        j_ws(r);
        if (j_lit(r, "true"))
            out->cross_origin = true;
        else if (!j_lit(r, "false"))
            return false;
        return true;
    }
}

qrl_err qrl__wa_client_parse(const unsigned char *json, size_t len, qrl__wa_client *out)
{
    jreader r = {.p = json, .end = json + len};
    unsigned seen = 0;

    memset(out, 0, sizeof *out);
    if (json == NULL || len > QRL_MAX_CLIENT_DATA_JSON)
        return QRL_ERR_INVALID;
    j_ws(&r);
    if (r.p >= r.end || *r.p != '{')
        return QRL_ERR_INVALID;
    r.p++;
    j_ws(&r);
    if (r.p < r.end && *r.p == '}') {
        r.p++;
    } else {
        for (;;) {
            j_ws(&r);
            if (!client_member(&r, out, &seen))
                return QRL_ERR_INVALID;
            j_ws(&r);
            if (r.p < r.end && *r.p == ',') {
                r.p++;
                continue;
            }
            if (r.p < r.end && *r.p == '}') {
                r.p++;
                break;
            }
            return QRL_ERR_INVALID;
        }
    }
    j_ws(&r);
    if (r.p != r.end || (seen & (SEEN_TYPE | SEEN_CHALLENGE | SEEN_ORIGIN)) !=
                            (SEEN_TYPE | SEEN_CHALLENGE | SEEN_ORIGIN))
        return QRL_ERR_INVALID;
    return QRL_OK;
}

/* --- CBOR helpers --------------------------------------------------------------------------- */

/* An integer item as int64 (CBOR major types 0 and 1); false for anything else or out of range. */
static bool cb_int(const cbor_item_t *it, int64_t *v)
{
    uint64_t u;

    if (cbor_isa_uint(it)) {
        u = cbor_get_int(it);
        if (u > INT64_MAX)
            return false;
        *v = (int64_t)u;
        return true;
    }
    if (cbor_isa_negint(it)) {
        u = cbor_get_int(it); /* the value is -1 - u */
        if (u > INT64_MAX)
            return false;
        *v = -1 - (int64_t)u;
        return true;
    }
    return false;
}

static bool cb_bytes(const cbor_item_t *it, const unsigned char **p, size_t *n)
{
    if (!cbor_isa_bytestring(it) || !cbor_bytestring_is_definite(it))
        return false;
    *p = cbor_bytestring_handle(it);
    *n = cbor_bytestring_length(it);
    return true;
}

static bool cb_text_is(const cbor_item_t *it, const char *s)
{
    size_t n = strlen(s);

    return cbor_isa_string(it) && cbor_string_is_definite(it) && cbor_string_length(it) == n &&
           memcmp(cbor_string_handle(it), s, n) == 0;
}

/* Whether every definite length and count in the CBOR item headers of p[0..len) fits in the
 * bytes that follow it (RFC 8949 section 3). libcbor allocates an array's or a map's slots as
 * soon as it reads the header, before it has seen one item, so a header of a few bytes could
 * make it ask for gigabytes (found by fuzz/fuzz_webauthn.c: 35 GB for a map in an
 * attestationObject). Each array item takes at least one byte and each map pair two, so a
 * count that the rest of the input cannot hold is refused here, and libcbor's allocations stay
 * a small multiple of the input, which limits.h bounds. The walk reads the headers one after
 * another (the items inside an array or a map simply follow it), so it needs no stack; anything
 * malformed that it lets through is libcbor's to refuse. */
static bool cb_sizes_fit(const unsigned char *p, size_t len)
{
    size_t off = 0;

    while (off < len) {
        unsigned major = p[off] >> 5, ai = p[off] & 0x1fu;
        uint64_t v = ai;

        off++;
        if (ai >= 24 && ai <= 27) {
            size_t n = (size_t)1 << (ai - 24); /* 1, 2, 4 or 8 bytes of argument */
            if (len - off < n)
                return false;
            v = 0;
            for (size_t i = 0; i < n; i++)
                v = v << 8 | p[off + i];
            off += n;
        } else if (ai >= 28 && ai <= 30) {
            return false; /* reserved */
        } else if (ai == 31) {
            continue; /* indefinite length or "break": nothing is allocated up front */
        }
        switch (major) {
        case 2: /* byte string */
        case 3: /* text string */
            if (v > len - off)
                return false;
            off += (size_t)v;
            break;
        case 4: /* array */
            if (v > len - off)
                return false;
            break;
        case 5: /* map */
            if (v > (len - off) / 2)
                return false;
            break;
        default: /* integers, tags, simple values and floats allocate nothing */
            break;
        }
    }
    return true;
}

/* Loads one CBOR item from p[0..len); *used gets its length. NULL when malformed. */
static cbor_item_t *cb_load(const unsigned char *p, size_t len, size_t *used)
{
    struct cbor_load_result res;
    cbor_item_t *it;

    if (len == 0 || !cb_sizes_fit(p, len))
        return NULL;
    it = cbor_load(p, len, &res);
    if (it == NULL)
        return NULL;
    if (res.error.code != CBOR_ERR_NONE || res.read == 0 || res.read > len) {
        cbor_decref(&it);
        return NULL;
    }
    *used = res.read;
    return it;
}

/* --- COSE_Key (RFC 8152 section 13; WebAuthn Level 2 section 6.5.1.1) ----------------------- */

/* COSE_Key labels and values. */
#define COSE_KTY 1
#define COSE_ALG 3
#define COSE_CRV (-1) /* EC2, OKP */
#define COSE_X (-2)   /* EC2, OKP */
#define COSE_Y (-3)   /* EC2 */
#define COSE_N (-1)   /* RSA */
#define COSE_E (-2)   /* RSA */
#define KTY_OKP 1
#define KTY_EC2 2
#define KTY_RSA 3
#define CRV_P256 1
#define CRV_ED25519 6

/* The members of a COSE_Key we read, each at most once. */
struct cose {
    int64_t kty, alg, crv;
    const unsigned char *m1, *m2, *m3; /* byte-string values of labels -1, -2, -3 */
    size_t l1, l2, l3;
    unsigned seen;
};

static bool cose_member(const struct cbor_pair *pr, struct cose *k)
{
    int64_t label, v;
    unsigned bit;

    /* Credential public keys use integer labels only (section 6.5.1.1). */
    if (!cb_int(pr->key, &label))
        return false;
    /* Labels we do not read (kid 2, key_ops 4, ...) may be present. */
    if (label < -3 || label > 3 || label == 0 || label == 2)
        return true;
    bit = 1u << (unsigned)(label + 3);
    if (k->seen & bit)
        return false;
    k->seen |= bit;
    if (label > 0) {
        if (!cb_int(pr->value, &v))
            return false;
        if (label == COSE_KTY)
            k->kty = v;
        else
            k->alg = v;
        return true;
    }
    /* Label -1 is crv (an integer) for EC2/OKP and n (bytes) for RSA. */
    if (label == -1 && cb_int(pr->value, &v)) {
        k->crv = v;
        return true;
    }
    if (label == -1)
        return cb_bytes(pr->value, &k->m1, &k->l1);
    if (label == -2)
        return cb_bytes(pr->value, &k->m2, &k->l2);
    return cb_bytes(pr->value, &k->m3, &k->l3);
}

/* Checks that libfido2 accepts the key (a P-256 point on the curve, a 2048-bit modulus). */
static bool key_loads(int alg, const unsigned char *pk, size_t len)
{
    bool ok = false;

    if (alg == QRL__COSE_ES256) {
        es256_pk_t *k = es256_pk_new();
        ok = k != NULL && es256_pk_from_ptr(k, pk, len) == FIDO_OK;
        es256_pk_free(&k);
    } else if (alg == QRL__COSE_EDDSA) {
        eddsa_pk_t *k = eddsa_pk_new();
        ok = k != NULL && eddsa_pk_from_ptr(k, pk, len) == FIDO_OK;
        eddsa_pk_free(&k);
    } else if (alg == QRL__COSE_RS256) {
        rs256_pk_t *k = rs256_pk_new();
        ok = k != NULL && rs256_pk_from_ptr(k, pk, len) == FIDO_OK;
        rs256_pk_free(&k);
    }
    return ok;
}

/* Reads the COSE_Key item into out->alg/pubkey. */
static qrl_err cose_key(const cbor_item_t *it, qrl__wa_authdata *out)
{
    struct cose k = {0};
    struct cbor_pair *pr;
    unsigned char *pk = out->pubkey;

    if (!cbor_isa_map(it) || !cbor_map_is_definite(it))
        return QRL_ERR_INVALID;
    pr = cbor_map_handle(it);
    for (size_t i = 0; i < cbor_map_size(it); i++)
        if (!cose_member(&pr[i], &k))
            return QRL_ERR_INVALID;
    /* kty and alg are required here (section 6.5.1.1: alg must be present). */
    if ((k.seen & (1u << (COSE_KTY + 3))) == 0 || (k.seen & (1u << (COSE_ALG + 3))) == 0)
        return QRL_ERR_INVALID;
    if (k.kty == KTY_EC2 && k.alg == QRL__COSE_ES256 && k.crv == CRV_P256 && k.m1 == NULL &&
        k.l2 == 32 && k.l3 == 32) {
        pk[0] = 0x04; /* SEC1 uncompressed point */
        memcpy(pk + 1, k.m2, 32);
        memcpy(pk + 33, k.m3, 32);
        out->pubkey_len = 65;
    } else if (k.kty == KTY_OKP && k.alg == QRL__COSE_EDDSA && k.crv == CRV_ED25519 &&
               k.m1 == NULL && k.l2 == 32 && k.m3 == NULL) {
        memcpy(pk, k.m2, 32);
        out->pubkey_len = 32;
    } else if (k.kty == KTY_RSA && k.alg == QRL__COSE_RS256 && k.m1 != NULL && k.l1 == 256 &&
               k.m2 != NULL && k.l2 >= 1 && k.l2 <= 3 && k.m3 == NULL) {
        /* libfido2 reads n as 256 bytes and e as 3, big-endian: pad e on the left. */
        memcpy(pk, k.m1, 256);
        memset(pk + 256, 0, 3);
        memcpy(pk + 256 + 3 - k.l2, k.m2, k.l2);
        out->pubkey_len = 259;
    } else {
        /* Well formed but not a key we verify: another algorithm, curve or size. */
        return QRL_ERR_FORBIDDEN;
    }
    out->alg = (int)k.alg;
    return key_loads(out->alg, pk, out->pubkey_len) ? QRL_OK : QRL_ERR_FORBIDDEN;
}

/* --- authenticatorData ---------------------------------------------------------------------- */

/* rpIdHash (32) || flags (1) || signCount (4, big-endian): section 6.1. */
#define AUTHDATA_FIXED 37
/* aaguid (16) || credentialIdLength (2, big-endian): section 6.5.1. */
#define ATTCRED_FIXED 18

qrl_err qrl__wa_authdata_parse(const unsigned char *p, size_t len, qrl__wa_authdata *out)
{
    size_t off = AUTHDATA_FIXED, used = 0;
    cbor_item_t *it = NULL;
    qrl_err rc = QRL_ERR_INVALID;

    memset(out, 0, sizeof *out);
    if (p == NULL || len < AUTHDATA_FIXED || len > QRL_MAX_AUTHENTICATOR_DATA)
        return QRL_ERR_INVALID;
    out->raw = p;
    out->len = len;
    out->rp_id_hash = p;
    out->flags = p[32];
    out->sign_count = (uint32_t)p[33] << 24 | (uint32_t)p[34] << 16 | (uint32_t)p[35] << 8 | p[36];
    if (out->flags & QRL__WA_AT) {
        if (len - off < ATTCRED_FIXED)
            goto out;
        out->cred_id_len = (size_t)p[off + 16] << 8 | p[off + 17];
        off += ATTCRED_FIXED;
        if (out->cred_id_len == 0 || out->cred_id_len > QRL_MAX_CRED_ID ||
            len - off < out->cred_id_len)
            goto out;
        out->cred_id = p + off;
        off += out->cred_id_len;
        if ((it = cb_load(p + off, len - off, &used)) == NULL)
            goto out;
        off += used;
        if ((rc = cose_key(it, out)) != QRL_OK)
            goto out;
        cbor_decref(&it);
        rc = QRL_ERR_INVALID;
    }
    if (out->flags & QRL__WA_ED) {
        /* Extension outputs (section 9): a CBOR map we do not act on, but it must be one. */
        if ((it = cb_load(p + off, len - off, &used)) == NULL || !cbor_isa_map(it))
            goto out;
        off += used;
    }
    /* Nothing may follow what the flags announce. */
    if (off == len)
        rc = QRL_OK;
out:
    if (it != NULL)
        cbor_decref(&it);
    return rc;
}

/* --- attestationObject ---------------------------------------------------------------------- */

/* The members of a "packed" (or any) attStmt we look at. */
static bool att_stmt(const cbor_item_t *m, qrl__wa_attestation *out)
{
    struct cbor_pair *pr;
    const unsigned char *b;
    int64_t v;

    if (!cbor_isa_map(m) || !cbor_map_is_definite(m))
        return false;
    out->att_stmt_members = cbor_map_size(m);
    pr = cbor_map_handle(m);
    for (size_t i = 0; i < out->att_stmt_members; i++) {
        if (cb_text_is(pr[i].key, "alg")) {
            if (out->has_alg || !cb_int(pr[i].value, &v) || v < INT32_MIN || v > INT32_MAX)
                return false;
            out->has_alg = true;
            out->alg = (int)v;
        } else if (cb_text_is(pr[i].key, "sig")) {
            if (out->sig_len != 0 || !cb_bytes(pr[i].value, &b, &out->sig_len) ||
                out->sig_len == 0 || out->sig_len > sizeof out->sig)
                return false;
            memcpy(out->sig, b, out->sig_len);
        } else if (cb_text_is(pr[i].key, "x5c")) {
            out->has_x5c = true;
        }
    }
    return true;
}

/* One member of the attestationObject; `seen` keeps each to one occurrence. */
static bool att_member(const struct cbor_pair *pr, qrl__wa_attestation *out, unsigned *seen)
{
    const cbor_item_t *v = pr->value;
    const unsigned char *b;
    size_t n;

    if (cb_text_is(pr->key, "fmt") && !(*seen & 1)) {
        *seen |= 1;
        if (!cbor_isa_string(v) || !cbor_string_is_definite(v) ||
            (n = cbor_string_length(v)) == 0 || n >= sizeof out->fmt)
            return false;
        memcpy(out->fmt, cbor_string_handle(v), n);
        out->fmt[n] = '\0';
        return strlen(out->fmt) == n;
    }
    if (cb_text_is(pr->key, "attStmt") && !(*seen & 2)) {
        *seen |= 2;
        return att_stmt(v, out);
    }
    if (cb_text_is(pr->key, "authData") && !(*seen & 4)) {
        *seen |= 4;
        if (!cb_bytes(v, &b, &n) || n > sizeof out->authdata)
            return false;
        memcpy(out->authdata, b, n);
        out->authdata_len = n;
        return true;
    }
    return false;
}

qrl_err qrl__wa_attestation_parse(const unsigned char *p, size_t len, qrl__wa_attestation *out)
{
    cbor_item_t *it = NULL;
    struct cbor_pair *pr;
    size_t used = 0;
    unsigned seen = 0;
    qrl_err rc = QRL_ERR_INVALID;

    memset(out, 0, sizeof *out);
    if (p == NULL || len > QRL_MAX_ATTESTATION_OBJECT || (it = cb_load(p, len, &used)) == NULL)
        return QRL_ERR_INVALID;
    /* Section 6.5: exactly fmt, attStmt and authData, and nothing after the map. */
    if (used != len || !cbor_isa_map(it) || !cbor_map_is_definite(it) || cbor_map_size(it) != 3)
        goto out;
    pr = cbor_map_handle(it);
    for (size_t i = 0; i < 3; i++)
        if (!att_member(&pr[i], out, &seen))
            goto out;
    rc = QRL_OK;
out:
    cbor_decref(&it);
    return rc;
}

/* --- signatures ----------------------------------------------------------------------------- */

bool qrl__wa_rp_id_hash_ok(const unsigned char *hash, const char *rp_id)
{
    unsigned char h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, (const unsigned char *)rp_id, strlen(rp_id));
    return sodium_memcmp(h, hash, sizeof h) == 0;
}

static pthread_once_t fido_once = PTHREAD_ONCE_INIT;

/* libfido2 asks for fido_init() before any other call; 0: no debug output. */
static void fido_start(void)
{
    fido_init(0);
}

/* A libfido2 public key object for (alg, pubkey), freed with key_free. NULL when it does not
 * load. */
static void *key_new(int alg, const unsigned char *pk, size_t len)
{
    if (alg == QRL__COSE_ES256) {
        es256_pk_t *k = es256_pk_new();
        if (k != NULL && es256_pk_from_ptr(k, pk, len) != FIDO_OK)
            es256_pk_free(&k);
        return k;
    }
    if (alg == QRL__COSE_EDDSA) {
        eddsa_pk_t *k = eddsa_pk_new();
        if (k != NULL && eddsa_pk_from_ptr(k, pk, len) != FIDO_OK)
            eddsa_pk_free(&k);
        return k;
    }
    if (alg == QRL__COSE_RS256) {
        rs256_pk_t *k = rs256_pk_new();
        if (k != NULL && rs256_pk_from_ptr(k, pk, len) != FIDO_OK)
            rs256_pk_free(&k);
        return k;
    }
    return NULL;
}

static void key_free(int alg, void *k)
{
    if (alg == QRL__COSE_ES256) {
        es256_pk_t *e = k;
        es256_pk_free(&e);
    } else if (alg == QRL__COSE_EDDSA) {
        eddsa_pk_t *e = k;
        eddsa_pk_free(&e);
    } else if (alg == QRL__COSE_RS256) {
        rs256_pk_t *r = k;
        rs256_pk_free(&r);
    }
}

qrl_err qrl__wa_sig_verify(int alg, const unsigned char *pubkey, size_t pubkey_len,
                           const char *rp_id, const unsigned char *authdata, size_t authdata_len,
                           const unsigned char cdh[32], const unsigned char *sig, size_t sig_len)
{
    fido_assert_t *as = NULL;
    void *key = NULL;
    qrl_err rc = QRL_ERR_FORBIDDEN;

    pthread_once(&fido_once, fido_start);
    if (authdata_len == 0 || authdata_len > QRL_MAX_AUTHENTICATOR_DATA || sig_len == 0 ||
        sig_len > QRL_MAX_WEBAUTHN_SIGNATURE)
        return QRL_ERR_FORBIDDEN;
    if ((key = key_new(alg, pubkey, pubkey_len)) == NULL)
        goto out;
    if ((as = fido_assert_new()) == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    /* fido_assert_verify checks rpIdHash = SHA-256(rp_id), the UP and UV flags we ask for
     * (section 7.2 steps 15-17), and the signature over authData || cdh (step 20). */
    if (fido_assert_set_count(as, 1) != FIDO_OK ||
        fido_assert_set_clientdata_hash(as, cdh, 32) != FIDO_OK ||
        fido_assert_set_rp(as, rp_id) != FIDO_OK ||
        fido_assert_set_authdata_raw(as, 0, authdata, authdata_len) != FIDO_OK ||
        fido_assert_set_sig(as, 0, sig, sig_len) != FIDO_OK ||
        fido_assert_set_up(as, FIDO_OPT_TRUE) != FIDO_OK ||
        fido_assert_set_uv(as, FIDO_OPT_TRUE) != FIDO_OK)
        goto out;
    if (fido_assert_verify(as, 0, alg, key) == FIDO_OK)
        rc = QRL_OK;
out:
    fido_assert_free(&as);
    key_free(alg, key);
    return rc;
}

qrl_err qrl__wa_packed_self_verify(const qrl__wa_authdata *ad, const char *rp_id,
                                   const unsigned char cdh[32], const unsigned char *sig,
                                   size_t sig_len)
{
    fido_cred_t *cred = NULL;
    qrl_err rc = QRL_ERR_FORBIDDEN;

    pthread_once(&fido_once, fido_start);
    if ((cred = fido_cred_new()) == NULL)
        return QRL_ERR_NOMEM;
    /* fido_cred_verify_self reads the credential key from authData itself, checks rpIdHash and
     * the flags, and verifies attStmt.sig by that key over authData || cdh (section 8.2,
     * "If x5c is not present, self attestation is in use"). */
    if (fido_cred_set_type(cred, ad->alg) == FIDO_OK &&
        fido_cred_set_clientdata_hash(cred, cdh, 32) == FIDO_OK &&
        fido_cred_set_rp(cred, rp_id, NULL) == FIDO_OK &&
        fido_cred_set_authdata_raw(cred, ad->raw, ad->len) == FIDO_OK &&
        fido_cred_set_fmt(cred, "packed") == FIDO_OK &&
        fido_cred_set_sig(cred, sig, sig_len) == FIDO_OK &&
        fido_cred_set_uv(cred, FIDO_OPT_TRUE) == FIDO_OK && fido_cred_verify_self(cred) == FIDO_OK)
        rc = QRL_OK;
    fido_cred_free(&cred);
    return rc;
}
