/* SPDX-License-Identifier: MIT */
/*
 * Secrets and codes: drawing them from the OS CSPRNG (through a small per-thread pool), hashing
 * them for storage, and the user_code alphabet of RFC 8628 section 6.1.
 *
 * Every secret is prefix + base64url (no padding) of random bytes; only its BLAKE2b-256 hash is
 * ever stored. A device code and a scan secret carry their login request's id in front of the
 * random part, so that the store finds the request by primary key and then compares the hash of
 * the whole string (a selector and a verifier): a new login request adds no index entry for
 * either secret, which halves the cost of writing one. The inputs are high-entropy, so a fast
 * unsalted hash is right here: there is nothing to brute-force (passwords, which are low-entropy,
 * use Argon2id in account.c).
 */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "internal.h"

/* RFC 8628 section 6.1: base-20 consonants, no vowels (no words), no easily confused letters. */
static const char user_code_alphabet[] = QRL_USER_CODE_ALPHABET;

/* Random bytes are drawn from libsodium's generator (the OS CSPRNG) a kilobyte at a time per
 * thread: libsodium 1.0.18 makes one getrandom system call per draw, and a login request needs
 * two draws, a redemption two, a claim one. Bytes are handed out once and erased as they go, so
 * the pool only ever holds bytes nobody has seen. A forked child must not hand out its parent's
 * bytes: pthread_atfork empties the forking thread's pool in the child (the only thread the
 * child has). */
#define POOL_BYTES 1024

static _Thread_local struct {
    unsigned char b[POOL_BYTES];
    size_t left; /* the last `left` bytes of b are unused */
} pool;

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forget(void)
{
    sodium_memzero(&pool, sizeof pool);
}

static void pool_init(void)
{
    (void)pthread_atfork(NULL, NULL, pool_forget);
}

void qrl__random(void *out, size_t n)
{
    unsigned char *o = out;

    pthread_once(&pool_once, pool_init);
    while (n > 0) {
        if (pool.left == 0) {
            randombytes_buf(pool.b, sizeof pool.b);
            pool.left = sizeof pool.b;
        }
        size_t take = n < pool.left ? n : pool.left;
        unsigned char *src = pool.b + sizeof pool.b - pool.left;
        memcpy(o, src, take);
        sodium_memzero(src, take);
        pool.left -= take;
        o += take;
        n -= take;
    }
}

#ifdef QRL_TEST_HOOKS
/* Test builds only: every secret drawn here carries this text, so that a scan of what a test
 * server left behind (its database, WAL and log: tests/scan_secrets.sh, which has the same
 * literal) finds any secret written in plain text. Only the hashes of secrets are stored, and a
 * hash does not keep the canary, so a hit is always a leak. The canary replaces raw bytes
 * CANARY_AT .. CANARY_AT + 8 (after the 8-byte id of the secrets that have one): a multiple of 3,
 * so its 12 base64url characters come out exactly as written and the secret keeps its length,
 * alphabet and id. That leaves 184 random bits in a token or device code and 120 in a scan
 * secret: plenty for tests. Release builds draw every byte. */
#define CANARY_TEXT "QRLCANARYtst"
#define CANARY_AT 9
#define CANARY_RAW 9

static void canary_put(unsigned char *raw, size_t n)
{
    unsigned char c[CANARY_RAW];
    size_t got = 0;

    if (n < CANARY_AT + CANARY_RAW ||
        sodium_base642bin(c, sizeof c, CANARY_TEXT, sizeof CANARY_TEXT - 1, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        got != sizeof c)
        return;
    memcpy(raw + CANARY_AT, c, sizeof c);
}
#else
static inline void canary_put(unsigned char *raw, size_t n)
{
    (void)raw;
    (void)n;
}
#endif

void qrl__secret_new(const char *prefix, size_t nbytes, char out[QRL_SECRET_BUF])
{
    unsigned char raw[QRL__TOKEN_BYTES];
    size_t plen = strlen(prefix);

    /* Callers pass compile-time sizes that fit; 32 bytes encode to 43 characters. */
    if (nbytes > sizeof raw)
        nbytes = sizeof raw;
    qrl__random(raw, nbytes);
    canary_put(raw, nbytes);
    memcpy(out, prefix, plen);
    sodium_bin2base64(out + plen, QRL_SECRET_BUF - plen, raw, nbytes,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

/* Raw sizes of the two login-request secrets: id || secret part. */
#define DC_RAW (QRL__LR_ID_BYTES + QRL__TOKEN_BYTES)
#define SCAN_RAW (QRL__LR_ID_BYTES + QRL__SCAN_BYTES)
#define B64_LEN(n) (sodium_base64_ENCODED_LEN((n), sodium_base64_VARIANT_URLSAFE_NO_PADDING) - 1)

int64_t qrl__lr_id_new(void)
{
    struct timespec ts;
    uint16_t r;
    int64_t ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ms < 1)
        ms = 1; /* a clock set before 1970: still a valid id */
    qrl__random(&r, sizeof r);
    return (int64_t)(((uint64_t)ms << 11 | (r & 2047u)) & ((UINT64_C(1) << 53) - 1));
}

static void id_put(int64_t id, unsigned char *p)
{
    for (int i = QRL__LR_ID_BYTES - 1; i >= 0; i--, id >>= 8)
        p[i] = (unsigned char)(id & 0xff);
}

static int64_t id_get(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < QRL__LR_ID_BYTES; i++)
        v = v << 8 | p[i];
    return v > INT64_MAX ? 0 : (int64_t)v;
}

static void encode(const char *prefix, const unsigned char *raw, size_t n, char out[QRL_SECRET_BUF])
{
    memcpy(out, prefix, QRL__PFX_LEN);
    sodium_bin2base64(out + QRL__PFX_LEN, QRL_SECRET_BUF - QRL__PFX_LEN, raw, n,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Decodes prefix + base64url of exactly n bytes. */
static bool decode(const char *s, const char *prefix, unsigned char *raw, size_t n)
{
    size_t len, got = 0;
    const char *end = NULL;

    if (s == NULL || strncmp(s, prefix, QRL__PFX_LEN) != 0)
        return false;
    len = strlen(s + QRL__PFX_LEN);
    if (len != B64_LEN(n))
        return false;
    /* libsodium 1.0.18's decoder also takes some bytes above 0x7f for base64url characters
     * (found by fuzz/fuzz_secrets.c): accept the alphabet only, so that each secret has one
     * spelling. */
    if (strspn(s + QRL__PFX_LEN, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789-_") != len)
        return false;
    return sodium_base642bin(raw, n, s + QRL__PFX_LEN, len, NULL, &got, &end,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
           got == n && end == s + QRL__PFX_LEN + len;
}

void qrl__device_code_new(int64_t id, char out[QRL_SECRET_BUF])
{
    unsigned char raw[DC_RAW];

    id_put(id, raw);
    qrl__random(raw + QRL__LR_ID_BYTES, QRL__TOKEN_BYTES);
    canary_put(raw, sizeof raw);
    encode(QRL__PFX_DEVICE_CODE, raw, sizeof raw, out);
    sodium_memzero(raw, sizeof raw);
}

bool qrl__scan_from_device_code(const char *device_code, char out[QRL_SECRET_BUF])
{
    static const char label[] = "qrlogin scan secret v2";
    unsigned char dc[DC_RAW], raw[SCAN_RAW];
    size_t klen;

    out[0] = '\0';
    if (!decode(device_code, QRL__PFX_DEVICE_CODE, dc, sizeof dc) || id_get(dc) <= 0) {
        sodium_memzero(dc, sizeof dc);
        return false;
    }
    sodium_memzero(dc + QRL__LR_ID_BYTES, QRL__TOKEN_BYTES);
    memcpy(raw, dc, QRL__LR_ID_BYTES);
    /* BLAKE2b keys are at most 64 bytes; device codes are 61 characters. */
    klen = strlen(device_code);
    if (klen > crypto_generichash_KEYBYTES_MAX)
        klen = crypto_generichash_KEYBYTES_MAX;
    crypto_generichash(raw + QRL__LR_ID_BYTES, QRL__SCAN_BYTES, (const unsigned char *)label,
                       sizeof label - 1, (const unsigned char *)device_code, klen);
    canary_put(raw, sizeof raw);
    encode(QRL__PFX_SCAN, raw, sizeof raw, out);
    sodium_memzero(raw, sizeof raw);
    return true;
}

bool qrl__lr_secret_key(const char *secret, const char *prefix, qrl_lr_secret_key *key)
{
    unsigned char raw[DC_RAW > SCAN_RAW ? DC_RAW : SCAN_RAW];
    size_t n = strcmp(prefix, QRL__PFX_DEVICE_CODE) == 0 ? DC_RAW : SCAN_RAW;
    bool ok = decode(secret, prefix, raw, n);

    memset(key, 0, sizeof *key);
    if (ok)
        key->id = id_get(raw);
    sodium_memzero(raw, sizeof raw);
    if (!ok || key->id <= 0)
        return false;
    qrl__secret_hash(secret, &key->hash);
    return true;
}

void qrl__token_new(const char *prefix, char out[QRL_SECRET_BUF])
{
    unsigned char raw[DC_RAW];

    id_put(qrl__lr_id_new(), raw);
    qrl__random(raw + QRL__LR_ID_BYTES, QRL__TOKEN_BYTES);
    canary_put(raw, sizeof raw);
    encode(prefix, raw, sizeof raw, out);
    sodium_memzero(raw, sizeof raw);
}

void qrl__token_key(const char *token, qrl_hash *out)
{
    unsigned char raw[DC_RAW];

    /* Decoded with its own prefix: the caller has checked the kind. */
    if (token != NULL && decode(token, token, raw, sizeof raw) && id_get(raw) > 0) {
        memcpy(out->b, raw, QRL__LR_ID_BYTES);
        crypto_generichash(out->b + QRL__LR_ID_BYTES, sizeof out->b - QRL__LR_ID_BYTES,
                           (const unsigned char *)token, strlen(token), NULL, 0);
    } else
        qrl__secret_hash(token != NULL ? token : "", out);
    sodium_memzero(raw, sizeof raw);
}

void qrl__secret_hash(const char *secret, qrl_hash *out)
{
    crypto_generichash(out->b, sizeof out->b, (const unsigned char *)secret, strlen(secret), NULL,
                       0);
}

bool qrl__secret_has_prefix(const char *s, const char *prefix)
{
    size_t n;

    if (s == NULL || strncmp(s, prefix, QRL__PFX_LEN) != 0)
        return false;
    n = strlen(s);
    return n > QRL__PFX_LEN + 16 && n < QRL_SECRET_BUF;
}

void qrl__user_code_new(char out[QRL_USER_CODE_LEN + 1])
{
    /* Bytes of 240 and above are rejected so that every letter is exactly equally likely
     * (240 = 12 x 20); 32 bytes run out with probability ~1e-20, then we draw again. */
    unsigned char raw[32];
    size_t used = sizeof raw;
    int n = 0;

    while (n < QRL_USER_CODE_LEN) {
        if (used == sizeof raw) {
            qrl__random(raw, sizeof raw);
            used = 0;
        }
        unsigned char b = raw[used++];
        if (b < 240)
            out[n++] = user_code_alphabet[b % (sizeof user_code_alphabet - 1)];
    }
    out[QRL_USER_CODE_LEN] = '\0';
    sodium_memzero(raw, sizeof raw);
}

/* qrl_user_code_normalize() is part of the protocol (lib/protocol/protocol.c): a phone needs
 * it to sign, without the core. */

void qrl_user_code_format(const char *canonical, char *out)
{
    memcpy(out, canonical, 4);
    out[4] = '-';
    memcpy(out + 5, canonical + 4, 4);
    out[9] = '\0';
}

qrl_err qrl__strcpy(char *dst, size_t dstlen, const char *src)
{
    size_t n;

    if (src == NULL)
        src = "";
    n = strlen(src);
    if (n >= dstlen)
        return QRL_ERR_INVALID;
    memcpy(dst, src, n + 1);
    return QRL_OK;
}
