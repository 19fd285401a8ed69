/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the WebAuthn readers of bytes a phone's browser sends at passkey
 * registration and approval (lib/webauthn.c). Every input goes to each reader, which must accept
 * or refuse it without a crash, a leak or reading outside it, and what is accepted must have the
 * documented shape:
 *   - qrl__wa_client_parse(): type, challenge and origin are terminated within their arrays and
 *     hold no quote, backslash or control character; and the input is JSON that an independent
 *     parser (jansson) reads as an object with exactly those three strings and crossOrigin as
 *     read (the reader is stricter than jansson, never laxer; the only differences allowed are
 *     what RFC 8259 leaves to implementations: huge numbers, lone surrogate escapes, "\u0000"
 *     in a member name);
 *   - qrl__wa_authdata_parse(): 37 to QRL_MAX_AUTHENTICATOR_DATA bytes; rpIdHash, flags and the
 *     counter are the input's; with flag AT the credential id lies inside the input where its
 *     length says, 1 to QRL_MAX_CRED_ID bytes, and the key is ES256 (0x04 || x || y), EdDSA (32)
 *     or RS256 (259); without AT there is no credential; with neither AT nor ED exactly 37
 *     bytes; QRL_ERR_FORBIDDEN only for a credential key;
 *   - qrl__wa_attestation_parse(): fmt is non-empty text shorter than its array, authData and
 *     the signature fit theirs, and the authData it holds goes through the checks above (as
 *     registration does);
 *   - qrl__wa_b64_decode(): what decodes is 1 to cap bytes and encodes back to the input.
 * Run by scripts/fuzz.sh (part of scripts/test.sh).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "webauthn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A captured member: terminated inside its array, no character that would need an escape. */
static void check_plain(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);

    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == '\\')
            abort();
}

static void check_member(json_t *o, const char *key, const char *want)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_string(v) || strcmp(json_string_value(v), want) != 0)
        abort();
}

static void check_client(const uint8_t *data, size_t size)
{
    qrl__wa_client c;
    json_error_t err;
    json_t *o, *cross;
    qrl_err rc = qrl__wa_client_parse(data, size, &c);

    if (rc == QRL_ERR_INVALID)
        return;
    if (rc != QRL_OK || size > QRL_MAX_CLIENT_DATA_JSON)
        abort();
    check_plain(c.type, sizeof c.type);
    check_plain(c.challenge, sizeof c.challenge);
    check_plain(c.origin, sizeof c.origin);
    o = json_loadb((const char *)data, size, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
    if (o == NULL) {
        if (strstr(err.text, "real number overflow") == NULL &&
            strstr(err.text, "invalid Unicode") == NULL &&
            strstr(err.text, "NUL byte in object key") == NULL)
            abort();
        return;
    }
    if (!json_is_object(o))
        abort();
    check_member(o, "type", c.type);
    check_member(o, "challenge", c.challenge);
    check_member(o, "origin", c.origin);
    cross = json_object_get(o, "crossOrigin");
    if (cross == NULL ? c.cross_origin
                      : !json_is_boolean(cross) || json_is_true(cross) != c.cross_origin)
        abort();
    json_decref(o);
}

static void check_authdata(const uint8_t *data, size_t size)
{
    qrl__wa_authdata ad;
    qrl_err rc = qrl__wa_authdata_parse(data, size, &ad);

    if (rc == QRL_ERR_INVALID)
        return;
    if (rc == QRL_ERR_FORBIDDEN) {
        if (size < 37 || (data[32] & QRL__WA_AT) == 0)
            abort();
        return;
    }
    if (rc != QRL_OK || size < 37 || size > QRL_MAX_AUTHENTICATOR_DATA || ad.raw != data ||
        ad.len != size || ad.rp_id_hash != data || ad.flags != data[32] ||
        ad.sign_count != ((uint32_t)data[33] << 24 | (uint32_t)data[34] << 16 |
                          (uint32_t)data[35] << 8 | data[36]))
        abort();
    if ((ad.flags & (QRL__WA_AT | QRL__WA_ED)) == 0 && size != 37)
        abort();
    if ((ad.flags & QRL__WA_AT) == 0) {
        if (ad.cred_id != NULL || ad.cred_id_len != 0 || ad.pubkey_len != 0 || ad.alg != 0)
            abort();
        return;
    }
    if (size < 37 + 18 || ad.cred_id != data + 37 + 18 ||
        ad.cred_id_len != ((size_t)data[53] << 8 | data[54]) || ad.cred_id_len == 0 ||
        ad.cred_id_len > QRL_MAX_CRED_ID || ad.cred_id_len > size - 37 - 18)
        abort();
    if (!((ad.alg == QRL__COSE_ES256 && ad.pubkey_len == 65 && ad.pubkey[0] == 0x04) ||
          (ad.alg == QRL__COSE_EDDSA && ad.pubkey_len == 32) ||
          (ad.alg == QRL__COSE_RS256 && ad.pubkey_len == 259)))
        abort();
}

static void check_attestation(const uint8_t *data, size_t size)
{
    qrl__wa_attestation *at = malloc(sizeof *at);
    qrl_err rc;
    size_t n;

    if (at == NULL)
        abort();
    rc = qrl__wa_attestation_parse(data, size, at);
    if (rc != QRL_OK && rc != QRL_ERR_INVALID)
        abort();
    if (rc == QRL_OK) {
        n = strnlen(at->fmt, sizeof at->fmt);
        if (size > QRL_MAX_ATTESTATION_OBJECT || n == 0 || n == sizeof at->fmt ||
            at->authdata_len > sizeof at->authdata || at->sig_len > sizeof at->sig ||
            at->att_stmt_members < (size_t)at->has_alg + at->has_x5c + (at->sig_len != 0))
            abort();
        check_authdata(at->authdata, at->authdata_len);
    }
    free(at);
}

static void check_b64(const uint8_t *data, size_t size, size_t cap)
{
    char *in = malloc(size + 1), *again;
    unsigned char *out = malloc(cap);
    size_t len = 0;

    if (in == NULL || out == NULL)
        abort();
    memcpy(in, data, size);
    in[size] = '\0';
    if (qrl__wa_b64_decode(in, out, cap, &len)) {
        size_t elen = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (len == 0 || len > cap || (again = malloc(elen)) == NULL)
            abort();
        sodium_bin2base64(again, elen, out, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        if (strcmp(again, in) != 0)
            abort();
        free(again);
    } else if (len != 0) {
        abort();
    }
    free(out);
    free(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    check_client(data, size);
    check_authdata(data, size);
    check_attestation(data, size);
    check_b64(data, size, QRL_MAX_CRED_ID);
    check_b64(data, size, QRL_MAX_CLIENT_DATA_JSON);
    return 0;
}
