/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the signed decision of a phone (qrlogin/protocol.h, lib/protocol/protocol.c),
 * the one message whose bytes a phone and the server must agree on, and whose signature is all
 * that stands between a stolen session token and an approval.
 *
 * The input is carved into a decision message, a key and a signature:
 *   byte 0      the decision (low two bits: 0 and 3 are no decision), the rest picks a position
 *   bytes 1-8   the request id, little-endian (negative ids included)
 *   byte 9      a byte value for the mutations below
 *   then        nonce NUL user code NUL signature NUL public key (raw bytes, to the end);
 *               a field the input does not reach is NULL.
 *
 * Invariants (abort() on violation):
 *   - qrl_user_code_normalize() agrees with an independent reading of RFC 8628 section 6.1
 *     (case and '-' / ' ' ignored, 8 letters of the alphabet, at most QRL_MAX_USER_CODE_INPUT
 *     bytes in); qrl_decision_parse() / qrl_decision_name() are inverse on the two decisions;
 *   - qrl_decision_bytes() accepts exactly the valid fields, writes nothing past the length it
 *     is given (refusing, not truncating, a short buffer), fits QRL_DECISION_MSG_BUF, and what
 *     it writes is the documented layout: a strict parser written here reads the same fields
 *     back, and the fields it reads from any text give that text again (the encoding is
 *     injective, so two different decisions never share a message);
 *   - a signature made with qrl_decision_sign() verifies, and is refused with another key,
 *     with any one character of its base64url changed, cut or extended, for any other id,
 *     decision or nonce, and for every valid message that differs from the signed one in one
 *     byte of its canonical text;
 *   - arbitrary keys and signatures are refused or verified without a crash, QRL_OK or
 *     QRL_ERR_FORBIDDEN only, and QRL_OK only when libsodium agrees directly.
 * Run by scripts/fuzz.sh (part of scripts/test.sh).
 */
#include <ctype.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "qrlogin/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant does not hold: say which check, then abort() for libFuzzer. */
#define BROKEN() broken(__LINE__)
static _Noreturn void broken(int line)
{
    fprintf(stderr, "%s:%d: this check failed\n", __FILE__, line);
    abort();
}

#define PREFIX "qrlogin-decision-v1\n"
#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define SIG_CHARS 86 /* base64url of 64 bytes, no padding */

/* The fields of a message as the strict parser reads them. */
struct fields {
    int64_t id;
    qrl_decision decision;
    char nonce[QRL_MAX_NONCE + 1];
    char code[QRL_USER_CODE_LEN + 1];
};

/* RFC 8628 section 6.1 as the header states it, written independently of protocol.c. */
static bool model_normalize(const char *in, char out[QRL_USER_CODE_LEN + 1])
{
    size_t n = 0;

    if (in == NULL || strlen(in) > QRL_MAX_USER_CODE_INPUT)
        return false;
    for (; *in != '\0'; in++) {
        char c = *in >= 'a' && *in <= 'z' ? (char)(*in - 'a' + 'A') : *in;
        if (c == '-' || c == ' ')
            continue;
        if (memchr(QRL_USER_CODE_ALPHABET, c, sizeof QRL_USER_CODE_ALPHABET - 1) == NULL ||
            n == QRL_USER_CODE_LEN)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return n == QRL_USER_CODE_LEN;
}

static bool model_nonce(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    return n > 0 && n <= QRL_MAX_NONCE && strspn(s, B64URL) == n;
}

/* Reads one line of at most `max` characters of `set` (NULL: digits) ending in '\n'. */
static const char *line(const char *p, const char *end, const char *set, size_t max, char *out)
{
    size_t n = 0;

    while (p < end && *p != '\n') {
        if (n == max || *p == '\0' ||
            (set != NULL ? strchr(set, *p) == NULL : !isdigit((unsigned char)*p)))
            return NULL;
        out[n++] = *p++;
    }
    out[n] = '\0';
    return p < end && n > 0 ? p + 1 : NULL;
}

/* The documented layout, parsed strictly: false for any text no valid message has. */
static bool parse_message(const char *s, size_t n, struct fields *f)
{
    const char *p = s, *end = s + n;
    char id[21], word[8];
    unsigned long long v = 0;

    if (n < sizeof PREFIX - 1 || memcmp(s, PREFIX, sizeof PREFIX - 1) != 0)
        return false;
    p += sizeof PREFIX - 1;
    if ((p = line(p, end, NULL, 19, id)) == NULL || (id[0] == '0' && id[1] != '\0'))
        return false;
    for (const char *d = id; *d != '\0'; d++) {
        if (v > (unsigned long long)(INT64_MAX - (*d - '0')) / 10)
            return false;
        v = v * 10 + (unsigned long long)(*d - '0');
    }
    f->id = (int64_t)v;
    if ((p = line(p, end, "abcdefghijklmnopqrstuvwxyz", 7, word)) == NULL)
        return false;
    f->decision = strcmp(word, "approve") == 0 ? QRL_DECISION_APPROVE
                  : strcmp(word, "deny") == 0  ? QRL_DECISION_DENY
                                               : (qrl_decision)0;
    if (f->decision == 0 || (p = line(p, end, B64URL, QRL_MAX_NONCE, f->nonce)) == NULL ||
        (p = line(p, end, QRL_USER_CODE_ALPHABET, QRL_USER_CODE_LEN, f->code)) == NULL)
        return false;
    return strlen(f->code) == QRL_USER_CODE_LEN && p == end;
}

static qrl_decision_msg msg_of(const struct fields *f)
{
    qrl_decision_msg m = {
        .lr_id = f->id, .decision = f->decision, .nonce = f->nonce, .user_code = f->code};
    return m;
}

static void check_names(const char *s)
{
    for (int d = 0; d < 4; d++) {
        const char *name = qrl_decision_name((qrl_decision)d);
        if ((d == QRL_DECISION_APPROVE || d == QRL_DECISION_DENY) !=
            (name != NULL && qrl_decision_parse(name) == (qrl_decision)d))
            BROKEN();
    }
    qrl_decision d = qrl_decision_parse(s);
    if (d != 0 && (s == NULL || strcmp(s, qrl_decision_name(d)) != 0))
        BROKEN();
}

static void check_normalize(const char *in)
{
    char got[QRL_USER_CODE_LEN + 1], want[QRL_USER_CODE_LEN + 1];
    bool ok = qrl_user_code_normalize(in, got) == QRL_OK;

    if (ok != model_normalize(in, want) || (ok && strcmp(got, want) != 0))
        BROKEN();
}

/* qrl_decision_bytes() against the model, the parser and short buffers. Returns the length. */
static size_t check_bytes(const qrl_decision_msg *m, char buf[QRL_DECISION_MSG_BUF], size_t cut)
{
    char code[QRL_USER_CODE_LEN + 1], again[QRL_DECISION_MSG_BUF + 1], *small;
    bool valid = (m->decision == QRL_DECISION_APPROVE || m->decision == QRL_DECISION_DENY) &&
                 m->lr_id >= 0 && model_nonce(m->nonce) && model_normalize(m->user_code, code);
    size_t n = qrl_decision_bytes(m, buf, QRL_DECISION_MSG_BUF);
    struct fields f;

    if ((n > 0) != valid || n >= QRL_DECISION_MSG_BUF)
        BROKEN();
    if (n == 0)
        return 0;
    if (strlen(buf) != n || !parse_message(buf, n, &f) || f.id != m->lr_id ||
        f.decision != m->decision || strcmp(f.nonce, m->nonce) != 0 || strcmp(f.code, code) != 0)
        BROKEN();
    /* A buffer too short for the message and its NUL is refused and not written past. */
    cut %= n + 1;
    if ((small = malloc(cut + 1)) == NULL)
        BROKEN();
    small[cut] = 'X';
    if (qrl_decision_bytes(m, small, cut) != 0 || small[cut] != 'X')
        BROKEN();
    free(small);
    if (qrl_decision_bytes(m, again, n + 1) != n || memcmp(again, buf, n + 1) != 0)
        BROKEN();
    return n;
}

/* Any text the strict parser accepts is what its fields encode to. */
static void check_parse_roundtrip(const char *s, size_t n)
{
    char buf[QRL_DECISION_MSG_BUF];
    struct fields f;
    qrl_decision_msg m;

    if (!parse_message(s, n, &f))
        return;
    m = msg_of(&f);
    if (qrl_decision_bytes(&m, buf, sizeof buf) != n || memcmp(buf, s, n) != 0)
        BROKEN();
}

static void keypair(const uint8_t *data, size_t size, uint8_t salt, unsigned char pk[32],
                    unsigned char sk[64])
{
    unsigned char seed[crypto_sign_SEEDBYTES], key[crypto_generichash_KEYBYTES];

    memset(key, salt, sizeof key);
    if (crypto_generichash(seed, sizeof seed, data, size, key, sizeof key) != 0 ||
        crypto_sign_seed_keypair(pk, sk, seed) != 0)
        BROKEN();
}

static void refused(const qrl_decision_msg *m, const unsigned char *pk, const char *sig)
{
    if (qrl_decision_verify(m, pk, QRL_DECISION_PUBKEY_BYTES, sig) != QRL_ERR_FORBIDDEN)
        BROKEN();
}

/* Every one-character change of the signature, and a cut or extended one, is refused. */
static void check_sig_changes(const qrl_decision_msg *m, const unsigned char *pk, const char *sig,
                              unsigned pos, uint8_t val)
{
    char bad[QRL_DECISION_SIG_B64_BUF + 1];

    memcpy(bad, sig, SIG_CHARS + 1);
    pos %= SIG_CHARS;
    bad[pos] = (char)(val != 0 && val != (uint8_t)sig[pos] ? val : sig[pos] == 'A' ? 'B' : 'A');
    refused(m, pk, bad);
    /* The last character carries 2 bits of padding: each other value of it is refused too. */
    for (const char *c = B64URL; *c != '\0'; c++) {
        memcpy(bad, sig, SIG_CHARS + 1);
        if (*c == sig[SIG_CHARS - 1])
            continue;
        bad[SIG_CHARS - 1] = *c;
        refused(m, pk, bad);
    }
    memcpy(bad, sig, SIG_CHARS + 1);
    bad[SIG_CHARS - 1] = '\0';
    refused(m, pk, bad);
    memcpy(bad, sig, SIG_CHARS);
    memcpy(bad + SIG_CHARS, "A", 2);
    refused(m, pk, bad);
}

/* Other fields under the same signature are refused. */
static void check_field_changes(const qrl_decision_msg *m, const unsigned char *pk, const char *sig,
                                unsigned pos, uint8_t val)
{
    qrl_decision_msg o = *m;
    char nonce[QRL_MAX_NONCE + 1];
    size_t nl = strlen(m->nonce);

    o.lr_id = m->lr_id == INT64_MAX ? m->lr_id - 1 : m->lr_id + 1;
    refused(&o, pk, sig);
    o = *m;
    o.decision = m->decision == QRL_DECISION_APPROVE ? QRL_DECISION_DENY : QRL_DECISION_APPROVE;
    refused(&o, pk, sig);
    o = *m;
    memcpy(nonce, m->nonce, nl + 1);
    nonce[pos % nl] = B64URL[(strchr(B64URL, nonce[pos % nl]) - B64URL + 1 + val % 63) % 64];
    o.nonce = nonce;
    refused(&o, pk, sig);
}

/* Each valid message one byte away from the signed text is refused under its signature. */
static void check_byte_change(const char *text, size_t n, const unsigned char *pk, const char *sig,
                              const unsigned char *raw_sig, unsigned pos, uint8_t val)
{
    char other[QRL_DECISION_MSG_BUF];
    struct fields f;
    qrl_decision_msg o;

    memcpy(other, text, n + 1);
    pos %= (unsigned)n;
    other[pos] = (char)(val != (uint8_t)text[pos] ? val : val ^ 1);
    if (crypto_sign_verify_detached(raw_sig, (const unsigned char *)other, n, pk) == 0)
        BROKEN();
    if (!parse_message(other, n, &f))
        return;
    o = msg_of(&f);
    refused(&o, pk, sig);
}

static void check_roundtrip(const qrl_decision_msg *m, const char *text, size_t n,
                            const uint8_t *data, size_t size, unsigned pos, uint8_t val)
{
    unsigned char pk[32], sk[64], pk2[32], sk2[64], raw[crypto_sign_BYTES];
    char sig[QRL_DECISION_SIG_B64_BUF];
    size_t rawlen = 0;

    keypair(data, size, 0, pk, sk);
    keypair(data, size, 1, pk2, sk2);
    if (qrl_decision_sign(m, sk, sizeof sk - 1, sig) != QRL_ERR_INVALID)
        BROKEN();
    if (qrl_decision_sign(m, sk, sizeof sk, sig) != QRL_OK || strlen(sig) != SIG_CHARS ||
        strspn(sig, B64URL) != SIG_CHARS)
        BROKEN();
    if (qrl_decision_verify(m, pk, sizeof pk, sig) != QRL_OK)
        BROKEN();
    if (qrl_decision_verify(m, pk, sizeof pk - 1, sig) != QRL_ERR_FORBIDDEN ||
        qrl_decision_verify(m, NULL, sizeof pk, sig) != QRL_ERR_FORBIDDEN ||
        qrl_decision_verify(m, pk, sizeof pk, NULL) != QRL_ERR_FORBIDDEN)
        BROKEN();
    refused(m, pk2, sig);
    if (sodium_base642bin(raw, sizeof raw, sig, SIG_CHARS, NULL, &rawlen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        rawlen != sizeof raw ||
        crypto_sign_verify_detached(raw, (const unsigned char *)text, n, pk) != 0)
        BROKEN();
    check_sig_changes(m, pk, sig, pos, val);
    check_field_changes(m, pk, sig, pos, val);
    check_byte_change(text, n, pk, sig, raw, pos, val);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(sk2, sizeof sk2);
}

/* A key and a signature from the input: refused, or valid in libsodium's own judgement. */
static void check_foreign(const qrl_decision_msg *m, const char *text, size_t n,
                          const unsigned char *pk, size_t pklen, const char *sig)
{
    unsigned char raw[crypto_sign_BYTES];
    size_t rawlen = 0;
    qrl_err rc = qrl_decision_verify(m, pk, pklen, sig);

    if (rc == QRL_ERR_FORBIDDEN)
        return;
    if (rc != QRL_OK || n == 0 || pklen != crypto_sign_PUBLICKEYBYTES || sig == NULL ||
        sodium_base642bin(raw, sizeof raw, sig, strlen(sig), NULL, &rawlen, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        rawlen != sizeof raw ||
        crypto_sign_verify_detached(raw, (const unsigned char *)text, n, pk) != 0)
        BROKEN();
}

/* The next NUL-terminated field of the input, or NULL past its end. */
static const char *field(const char **p, const char *end)
{
    const char *s = *p;

    if (s >= end)
        return NULL;
    *p = s + strlen(s) + 1;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy, text[QRL_DECISION_MSG_BUF];
    const char *p, *end, *nonce, *code, *sig, *key;
    qrl_decision_msg m;
    uint64_t id = 0;
    size_t n;

    if (sodium_init() < 0)
        BROKEN();
    if (size < 10)
        return 0;
    if ((copy = malloc(size + 1)) == NULL)
        BROKEN();
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (int i = 8; i >= 1; i--)
        id = id << 8 | data[i];
    p = copy + 10;
    end = copy + size;
    nonce = field(&p, end);
    code = field(&p, end);
    sig = field(&p, end);
    key = p < end ? p : NULL;
    m = (qrl_decision_msg){.lr_id = (int64_t)id,
                           .decision = (qrl_decision)(data[0] & 3),
                           .nonce = nonce,
                           .user_code = code};

    check_names(nonce);
    check_normalize(code);
    check_parse_roundtrip(copy + 10, size - 10);
    n = check_bytes(&m, text, (size_t)data[0] >> 2);
    if (n > 0)
        check_roundtrip(&m, text, n, data, size, data[0] >> 2 | (unsigned)data[9] << 6, data[9]);
    check_foreign(&m, text, n, (const unsigned char *)key, key != NULL ? (size_t)(end - key) : 0,
                  sig);
    free(copy);
    return 0;
}
