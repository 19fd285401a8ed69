/* SPDX-License-Identifier: MIT */
/*
 * The signed decision of a phone (include/qrlogin/protocol.h): its canonical bytes, signing
 * for the phone, verification for the server.
 *
 * This file is the one place that writes those bytes, so a phone and the server cannot drift
 * apart. It depends on libsodium alone and is built as its own small library
 * (qrlogin_protocol): the server's core links it to verify, and the `qrlogin phone` command
 * links it to sign without linking the core. Fields are checked before they are written: a
 * newline in the nonce or a non-canonical user code would let two different decisions share
 * one message.
 *
 * It also reads the text of a scanned QR code (qrl_login_code_parse), the other thing a phone
 * and the server must agree on: where the scan secret sits in the QR code's URL.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "qrlogin/protocol.h"

#define DECISION_PREFIX "qrlogin-decision-v1\n"

_Static_assert(QRL_DECISION_PUBKEY_BYTES == crypto_sign_PUBLICKEYBYTES, "Ed25519 public key");
_Static_assert(QRL_DECISION_SECKEY_BYTES == crypto_sign_SECRETKEYBYTES, "Ed25519 secret key");
_Static_assert(QRL_DECISION_SIG_BYTES == crypto_sign_BYTES, "Ed25519 signature");
_Static_assert(QRL_DECISION_SIG_B64_BUF >= 87, "base64url of 64 bytes is 86 characters");
_Static_assert(QRL_DECISION_MSG_BUF >= sizeof DECISION_PREFIX - 1 + 19 + 1 + 7 + 1 + QRL_MAX_NONCE +
                                           1 + QRL_USER_CODE_LEN + 1 + 1,
               "the longest valid message fits");

qrl_err qrl_user_code_normalize(const char *in, char *out)
{
    size_t n = 0;

    if (in == NULL || out == NULL || strlen(in) > QRL_MAX_USER_CODE_INPUT)
        return QRL_ERR_INVALID;
    /* RFC 8628 section 6.1: ignore case and the punctuation people type. */
    for (const char *p = in; *p != '\0'; p++) {
        int c = toupper((unsigned char)*p);
        if (c == '-' || c == ' ')
            continue;
        if (strchr(QRL_USER_CODE_ALPHABET, c) == NULL || n == QRL_USER_CODE_LEN)
            return QRL_ERR_INVALID;
        out[n++] = (char)c;
    }
    if (n != QRL_USER_CODE_LEN)
        return QRL_ERR_INVALID;
    out[n] = '\0';
    return QRL_OK;
}

const char *qrl_decision_name(qrl_decision d)
{
    switch (d) {
    case QRL_DECISION_APPROVE:
        return "approve";
    case QRL_DECISION_DENY:
        return "deny";
    }
    return NULL;
}

qrl_decision qrl_decision_parse(const char *name)
{
    if (name != NULL && strcmp(name, "approve") == 0)
        return QRL_DECISION_APPROVE;
    if (name != NULL && strcmp(name, "deny") == 0)
        return QRL_DECISION_DENY;
    return (qrl_decision)0;
}

/* Whether the n characters of s are all of the base64url alphabet (RFC 4648 section 5). */
static int b64url_only(const char *s, size_t n)
{
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

/* The server's nonces are base64url without padding. */
static int nonce_valid(const char *s)
{
    size_t n;

    if (s == NULL)
        return 0;
    n = strlen(s);
    return n > 0 && n <= QRL_MAX_NONCE && b64url_only(s, n);
}

size_t qrl_decision_bytes(const qrl_decision_msg *m, char *buf, size_t len)
{
    char code[QRL_USER_CODE_LEN + 1];
    const char *name;
    int n;

    if (m == NULL || buf == NULL || len == 0)
        return 0;
    name = qrl_decision_name(m->decision);
    if (name == NULL || m->lr_id < 0 || !nonce_valid(m->nonce) ||
        qrl_user_code_normalize(m->user_code, code) != QRL_OK)
        return 0;
    n = snprintf(buf, len, DECISION_PREFIX "%lld\n%s\n%s\n%s\n", (long long)m->lr_id, name,
                 m->nonce, code);
    return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

qrl_err qrl_decision_sign(const qrl_decision_msg *m, const unsigned char *seckey, size_t seckey_len,
                          char sig_b64[QRL_DECISION_SIG_B64_BUF])
{
    unsigned char sig[crypto_sign_BYTES];
    char msg[QRL_DECISION_MSG_BUF];
    size_t n;

    if (seckey == NULL || seckey_len != crypto_sign_SECRETKEYBYTES || sig_b64 == NULL)
        return QRL_ERR_INVALID;
    if (sodium_init() < 0)
        return QRL_ERR_CRYPTO;
    n = qrl_decision_bytes(m, msg, sizeof msg);
    if (n == 0)
        return QRL_ERR_INVALID;
    if (crypto_sign_detached(sig, NULL, (const unsigned char *)msg, n, seckey) != 0)
        return QRL_ERR_CRYPTO;
    sodium_bin2base64(sig_b64, QRL_DECISION_SIG_B64_BUF, sig, sizeof sig,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return QRL_OK;
}

qrl_err qrl_decision_verify(const qrl_decision_msg *m, const unsigned char *pubkey,
                            size_t pubkey_len, const char *sig_b64)
{
    unsigned char sig[crypto_sign_BYTES];
    char msg[QRL_DECISION_MSG_BUF];
    size_t siglen = 0, n;

    if (pubkey == NULL || pubkey_len != crypto_sign_PUBLICKEYBYTES || sig_b64 == NULL ||
        sodium_init() < 0)
        return QRL_ERR_FORBIDDEN;
    /* Decoding into exactly 64 bytes refuses a longer signature (the buffer is full before the
     * input ends); siglen refuses a shorter one. The alphabet is checked first: libsodium 1.0.18
     * decodes every byte from 0x80 up as if it were '_' (found by fuzz/fuzz_approval.c), and a
     * signature must have one spelling only. */
    if (!b64url_only(sig_b64, strlen(sig_b64)) ||
        sodium_base642bin(sig, sizeof sig, sig_b64, strlen(sig_b64), NULL, &siglen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        siglen != sizeof sig)
        return QRL_ERR_FORBIDDEN;
    n = qrl_decision_bytes(m, msg, sizeof msg);
    if (n == 0 || crypto_sign_verify_detached(sig, (const unsigned char *)msg, n, pubkey) != 0)
        return QRL_ERR_FORBIDDEN;
    return QRL_OK;
}

qrl_err qrl_login_code_parse(const char *text, char *code, size_t len)
{
    const char *hash;
    size_t n;

    if (code != NULL && len > 0)
        code[0] = '\0';
    if (text == NULL || code == NULL)
        return QRL_ERR_INVALID;
    /* The scan secret travels in the URL's fragment, which a browser never sends to a server
     * (docs/api.md, device authorization): the first '#' starts it. */
    if (strncmp(text, "http://", 7) == 0 || strncmp(text, "https://", 8) == 0) {
        hash = strchr(text, '#');
        if (hash == NULL || strncmp(hash + 1, "qrl_ss_", 7) != 0)
            return QRL_ERR_NOT_FOUND;
        text = hash + 1;
    }
    n = strlen(text);
    if (n == 0 || n >= len ||
        strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_ ") != n)
        return QRL_ERR_INVALID;
    for (size_t i = 0; i <= n; i++)
        code[i] = text[i] == ' ' ? '-' : text[i];
    return QRL_OK;
}

/* Base64url characters whose 6 bits end in two zero bits: the only ones that may end 32 bytes
 * (42 characters carry 252 bits, the 43rd the last 4 and two unused bits). */
#define B64URL_LAST_OF_32 "AEIMQUYcgkosw048"

int qrl_dpop_jkt_valid(const char *jkt)
{
    return jkt != NULL && strnlen(jkt, QRL_DPOP_JKT_LEN + 1) == QRL_DPOP_JKT_LEN &&
           b64url_only(jkt, QRL_DPOP_JKT_LEN) &&
           strchr(B64URL_LAST_OF_32, jkt[QRL_DPOP_JKT_LEN - 1]) != NULL;
}

static int hint_valid(const char *hint)
{
    return hint != NULL && strnlen(hint, QRL_KEY_HINT_LEN + 1) == QRL_KEY_HINT_LEN &&
           b64url_only(hint, QRL_KEY_HINT_LEN);
}

qrl_err qrl_key_hint(const char *jkt, char hint[QRL_KEY_HINT_BUF])
{
    if (hint == NULL)
        return QRL_ERR_INVALID;
    hint[0] = '\0';
    if (!qrl_dpop_jkt_valid(jkt))
        return QRL_ERR_INVALID;
    memcpy(hint, jkt, QRL_KEY_HINT_LEN);
    hint[QRL_KEY_HINT_LEN] = '\0';
    return QRL_OK;
}

int qrl_key_hint_matches(const char *hint, const char *jkt)
{
    return hint_valid(hint) && qrl_dpop_jkt_valid(jkt) && memcmp(hint, jkt, QRL_KEY_HINT_LEN) == 0;
}

qrl_err qrl_key_fingerprint(const char *key, char out[QRL_KEY_FINGERPRINT_BUF])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char b[6];
    size_t got = 0;

    if (out == NULL)
        return QRL_ERR_INVALID;
    out[0] = '\0';
    if (!hint_valid(key) && !qrl_dpop_jkt_valid(key))
        return QRL_ERR_INVALID;
    /* The first 8 characters are exactly the first 6 bytes, whichever of the two `key` is. */
    if (sodium_base642bin(b, sizeof b, key, QRL_KEY_HINT_LEN, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != sizeof b)
        return QRL_ERR_INVALID;
    memcpy(out, "KEY ", 4);
    for (int i = 0, o = 4; i < 4; i++) {
        if (i == 2)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[QRL_KEY_FINGERPRINT_BUF - 1] = '\0';
    return QRL_OK;
}

qrl_err qrl_login_key_hint_parse(const char *text, char hint[QRL_KEY_HINT_BUF])
{
    const char *q, *end, *found = NULL;

    if (hint == NULL)
        return QRL_ERR_INVALID;
    hint[0] = '\0';
    if (text == NULL)
        return QRL_ERR_INVALID;
    if (strncmp(text, "http://", 7) != 0 && strncmp(text, "https://", 8) != 0)
        return QRL_ERR_NOT_FOUND;
    /* The query runs from the first '?' to the fragment; a '?' inside the fragment is the
     * fragment's. */
    end = text + strcspn(text, "#");
    q = memchr(text, '?', (size_t)(end - text));
    if (q == NULL)
        return QRL_ERR_NOT_FOUND;
    for (const char *p = q + 1; p < end;) {
        size_t n = strcspn(p, "&#");
        if (n >= 2 && p[0] == 'k' && p[1] == '=') {
            /* Twice is no answer: which one would the phone believe? */
            if (found != NULL)
                return QRL_ERR_INVALID;
            found = p + 2;
            if (n - 2 != QRL_KEY_HINT_LEN || !b64url_only(found, QRL_KEY_HINT_LEN))
                return QRL_ERR_INVALID;
        } else if (n == 1 && p[0] == 'k') {
            return QRL_ERR_INVALID;
        }
        p += n;
        if (p < end && *p == '&')
            p++;
    }
    if (found == NULL)
        return QRL_ERR_NOT_FOUND;
    memcpy(hint, found, QRL_KEY_HINT_LEN);
    hint[QRL_KEY_HINT_LEN] = '\0';
    return QRL_OK;
}
