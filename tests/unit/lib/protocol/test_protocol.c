/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the phone-server protocol (qrlogin/protocol.h): the canonical bytes of a
 * signed decision for fixed inputs, a fixed Ed25519 signature over them (so a phone written in
 * another language can check itself against the same vector), a sign/verify round trip, and
 * verification refusing every changed field, a bad key and a signature of the wrong length.
 * tests/unit/lib/test_secret.c tests the user-code normalisation the message uses.
 *
 * Only the public protocol header is included: what a phone needs must not depend on the core.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "qrlogin/protocol.h"

/* The vector: key pair from the seed 00 01 02 ... 1f, request 3660000000000123, the nonce
 * base64url(00 01 ... 0f), the user code as displayed. The signature was checked with a
 * second, independent Ed25519 implementation. */
#define VEC_ID INT64_C(3660000000000123)
#define VEC_NONCE "AAECAwQFBgcICQoLDA0ODw"
#define VEC_CODE "wdjb-mjht"
#define VEC_BYTES                                                                                  \
    "qrlogin-decision-v1\n3660000000000123\napprove\nAAECAwQFBgcICQoLDA0ODw\nWDJBMJHT\n"
#define VEC_SIG                                                                                    \
    "fGSalIYOxUs8nexNdXazH88Ms_LvFeSniUdo3CmxtgE0WSKks0zFrlOXxgUPz54KP8wkzOM1WVyhO_1a-8LBAw"

struct keys {
    unsigned char pk[QRL_DECISION_PUBKEY_BYTES];
    unsigned char sk[QRL_DECISION_SECKEY_BYTES];
};

static void vector_keys(struct keys *k)
{
    unsigned char seed[crypto_sign_SEEDBYTES];

    for (size_t i = 0; i < sizeof seed; i++)
        seed[i] = (unsigned char)i;
    assert_int_equal(crypto_sign_seed_keypair(k->pk, k->sk, seed), 0);
}

static qrl_decision_msg vector_msg(void)
{
    qrl_decision_msg m = {.lr_id = VEC_ID,
                          .decision = QRL_DECISION_APPROVE,
                          .nonce = VEC_NONCE,
                          .user_code = VEC_CODE};
    return m;
}

static void test_bytes_vector(void **state)
{
    qrl_decision_msg m = vector_msg();
    char buf[QRL_DECISION_MSG_BUF];

    assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), strlen(VEC_BYTES));
    assert_string_equal(buf, VEC_BYTES);
    /* The canonical user code gives the same bytes as the displayed one. */
    m.user_code = "WDJBMJHT";
    assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), strlen(VEC_BYTES));
    assert_string_equal(buf, VEC_BYTES);
    m.decision = QRL_DECISION_DENY;
    assert_true(qrl_decision_bytes(&m, buf, sizeof buf) > 0);
    assert_string_equal(buf,
                        "qrlogin-decision-v1\n3660000000000123\ndeny\n" VEC_NONCE "\nWDJBMJHT\n");
    /* A buffer one byte short of the message and its NUL is refused, not truncated. */
    m = vector_msg();
    assert_int_equal(qrl_decision_bytes(&m, buf, strlen(VEC_BYTES)), 0);
    assert_int_equal(qrl_decision_bytes(&m, buf, strlen(VEC_BYTES) + 1), strlen(VEC_BYTES));
}

static void test_bytes_refuse_fields(void **state)
{
    qrl_decision_msg m;
    char buf[QRL_DECISION_MSG_BUF];
    char long_nonce[QRL_MAX_NONCE + 2];

    m = vector_msg();
    m.decision = (qrl_decision)0;
    assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), 0);
    m = vector_msg();
    m.lr_id = -1;
    assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), 0);
    /* A nonce may not be empty, too long, or carry a newline that would shift the fields. */
    const char *bad_nonces[] = {NULL, "", "abc\nWDJBMJHT", "a b", "a=", "a/b+"};
    for (size_t i = 0; i < sizeof bad_nonces / sizeof bad_nonces[0]; i++) {
        m = vector_msg();
        m.nonce = bad_nonces[i];
        assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), 0);
    }
    memset(long_nonce, 'A', sizeof long_nonce - 1);
    long_nonce[sizeof long_nonce - 1] = '\0';
    m = vector_msg();
    m.nonce = long_nonce;
    assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), 0);
    long_nonce[QRL_MAX_NONCE] = '\0';
    assert_true(qrl_decision_bytes(&m, buf, sizeof buf) > 0);
    const char *bad_codes[] = {NULL, "", "WDJB-MJH", "WDJB-MJHTT", "WDJB-MJHA", "WDJB\nMJHT"};
    for (size_t i = 0; i < sizeof bad_codes / sizeof bad_codes[0]; i++) {
        m = vector_msg();
        m.user_code = bad_codes[i];
        assert_int_equal(qrl_decision_bytes(&m, buf, sizeof buf), 0);
    }
    assert_int_equal(qrl_decision_bytes(NULL, buf, sizeof buf), 0);
    m = vector_msg();
    assert_int_equal(qrl_decision_bytes(&m, NULL, 0), 0);
}

static void test_names(void **state)
{
    assert_string_equal(qrl_decision_name(QRL_DECISION_APPROVE), "approve");
    assert_string_equal(qrl_decision_name(QRL_DECISION_DENY), "deny");
    assert_null(qrl_decision_name((qrl_decision)7));
    assert_int_equal(qrl_decision_parse("approve"), QRL_DECISION_APPROVE);
    assert_int_equal(qrl_decision_parse("deny"), QRL_DECISION_DENY);
    assert_int_equal(qrl_decision_parse("Approve"), 0);
    assert_int_equal(qrl_decision_parse(NULL), 0);
}

static void test_sign_vector(void **state)
{
    struct keys k;
    qrl_decision_msg m = vector_msg();
    char sig[QRL_DECISION_SIG_B64_BUF];

    vector_keys(&k);
    assert_int_equal(qrl_decision_sign(&m, k.sk, sizeof k.sk, sig), QRL_OK);
    assert_string_equal(sig, VEC_SIG);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, VEC_SIG), QRL_OK);
    /* Signing refuses a key of the wrong length and a message it cannot write. */
    assert_int_equal(qrl_decision_sign(&m, k.sk, 32, sig), QRL_ERR_INVALID);
    m.nonce = "";
    assert_int_equal(qrl_decision_sign(&m, k.sk, sizeof k.sk, sig), QRL_ERR_INVALID);
    sodium_memzero(&k, sizeof k);
}

static void test_round_trip_and_changed_fields(void **state)
{
    struct keys k;
    qrl_decision_msg m = {.lr_id = 42,
                          .decision = QRL_DECISION_DENY,
                          .nonce = "cGhvbmUtbm9uY2UtMTIzNA",
                          .user_code = "BCDF-GHJK"};
    qrl_decision_msg x;
    char sig[QRL_DECISION_SIG_B64_BUF];

    crypto_sign_keypair(k.pk, k.sk);
    assert_int_equal(qrl_decision_sign(&m, k.sk, sizeof k.sk, sig), QRL_OK);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, sig), QRL_OK);
    /* The user code in any typed form is the same message. */
    x = m;
    x.user_code = "bcdf ghjk";
    assert_int_equal(qrl_decision_verify(&x, k.pk, sizeof k.pk, sig), QRL_OK);

    x = m;
    x.lr_id = 43;
    assert_int_equal(qrl_decision_verify(&x, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    x = m;
    x.decision = QRL_DECISION_APPROVE;
    assert_int_equal(qrl_decision_verify(&x, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    x = m;
    x.nonce = "cGhvbmUtbm9uY2UtMTIzNQ";
    assert_int_equal(qrl_decision_verify(&x, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    x = m;
    x.user_code = "BCDF-GHJL";
    assert_int_equal(qrl_decision_verify(&x, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    x = m;
    x.user_code = "not a code";
    assert_int_equal(qrl_decision_verify(&x, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    sodium_memzero(&k, sizeof k);
}

static void test_verify_refuses_keys_and_lengths(void **state)
{
    struct keys k, other;
    qrl_decision_msg m = vector_msg();
    unsigned char raw[QRL_DECISION_SIG_BYTES + 1];
    char sig[QRL_DECISION_SIG_B64_BUF + 4];
    size_t rawlen = 0;

    vector_keys(&k);
    crypto_sign_keypair(other.pk, other.sk);
    /* Another phone's key, a key of the wrong length, an all-zero (small-order) key. */
    assert_int_equal(qrl_decision_verify(&m, other.pk, sizeof other.pk, VEC_SIG),
                     QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk - 1, VEC_SIG), QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk + 1, VEC_SIG), QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, NULL, sizeof k.pk, VEC_SIG), QRL_ERR_FORBIDDEN);
    memset(other.pk, 0, sizeof other.pk);
    assert_int_equal(qrl_decision_verify(&m, other.pk, sizeof other.pk, VEC_SIG),
                     QRL_ERR_FORBIDDEN);

    /* Signatures of 63 and 65 bytes, one changed bit, not base64url, padded, absent. */
    assert_int_equal(sodium_base642bin(raw, sizeof raw, VEC_SIG, strlen(VEC_SIG), NULL, &rawlen,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    assert_int_equal(rawlen, QRL_DECISION_SIG_BYTES);
    sodium_bin2base64(sig, sizeof sig, raw, QRL_DECISION_SIG_BYTES - 1,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    raw[QRL_DECISION_SIG_BYTES] = 0;
    sodium_bin2base64(sig, sizeof sig, raw, QRL_DECISION_SIG_BYTES + 1,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    raw[10] ^= 1;
    sodium_bin2base64(sig, sizeof sig, raw, QRL_DECISION_SIG_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, "not base64url!"),
                     QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, VEC_SIG "=="), QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, ""), QRL_ERR_FORBIDDEN);
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, NULL), QRL_ERR_FORBIDDEN);
    sodium_memzero(&k, sizeof k);
    sodium_memzero(&other, sizeof other);
}

/* libsodium 1.0.18 decodes every byte from 0x80 up as if it were '_': a signature with a '_'
 * changed into such a byte must not verify (found by fuzz/fuzz_approval.c). */
static void test_verify_refuses_bytes_outside_base64url(void **state)
{
    struct keys k;
    qrl_decision_msg m = vector_msg();
    char sig[sizeof VEC_SIG];
    const char *underscore = strchr(VEC_SIG, '_');

    vector_keys(&k);
    assert_non_null(underscore);
    for (unsigned c = 0x80; c <= 0xff; c++) {
        memcpy(sig, VEC_SIG, sizeof sig);
        sig[underscore - VEC_SIG] = (char)c;
        assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, sig), QRL_ERR_FORBIDDEN);
    }
    assert_int_equal(qrl_decision_verify(&m, k.pk, sizeof k.pk, VEC_SIG), QRL_OK);
    sodium_memzero(&k, sizeof k);
}

/* What a phone takes from a scanned QR code or a typed code. */
static void test_login_code_parse(void **state)
{
    char code[QRL_MAX_TOKEN + 1];

    assert_int_equal(
        qrl_login_code_parse("https://login.example/s#qrl_ss_AbC-_9", code, sizeof code), QRL_OK);
    assert_string_equal(code, "qrl_ss_AbC-_9");
    assert_int_equal(qrl_login_code_parse("http://h:8080/s?x=1#qrl_ss_Z#x", code, sizeof code),
                     QRL_ERR_INVALID);
    assert_int_equal(qrl_login_code_parse("wdjb mjht", code, sizeof code), QRL_OK);
    assert_string_equal(code, "wdjb-mjht");
    assert_int_equal(qrl_login_code_parse("qrl_ss_abc", code, sizeof code), QRL_OK);
    assert_string_equal(code, "qrl_ss_abc");
    /* A URL without the fragment is another QR code; anything else is not a code. */
    assert_int_equal(qrl_login_code_parse("https://example.com/", code, sizeof code),
                     QRL_ERR_NOT_FOUND);
    assert_int_equal(qrl_login_code_parse("https://example.com/#abc", code, sizeof code),
                     QRL_ERR_NOT_FOUND);
    const char *bad[] = {"", "WDJB/MJHT", "..%2f", "a\nb", "qrl_ss_a?b", "ftp://x#qrl_ss_a"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qrl_login_code_parse(bad[i], code, sizeof code), QRL_ERR_INVALID);
        assert_string_equal(code, "");
    }
    /* A code that does not fit is refused, not cut. */
    assert_int_equal(qrl_login_code_parse("WDJBMJHT", code, 9), QRL_OK);
    assert_int_equal(qrl_login_code_parse("WDJBMJHT", code, 8), QRL_ERR_INVALID);
    assert_int_equal(qrl_login_code_parse(NULL, code, sizeof code), QRL_ERR_INVALID);
    assert_int_equal(qrl_login_code_parse("WDJBMJHT", NULL, 0), QRL_ERR_INVALID);
}

/* The screen's key in the QR code: RFC 8037's example key, whose RFC 7638 thumbprint is
 * kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k (its first bytes: 90 FA CA FE). */
#define VEC_JKT "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"

static void test_key_hint_and_fingerprint(void **state)
{
    char hint[QRL_KEY_HINT_BUF], fp[QRL_KEY_FINGERPRINT_BUF], jkt[QRL_DPOP_JKT_LEN + 2];

    assert_true(qrl_dpop_jkt_valid(VEC_JKT));
    assert_int_equal(qrl_key_hint(VEC_JKT, hint), QRL_OK);
    assert_string_equal(hint, "kPrK_qmx");
    assert_true(qrl_key_hint_matches(hint, VEC_JKT));
    assert_int_equal(qrl_key_fingerprint(VEC_JKT, fp), QRL_OK);
    assert_string_equal(fp, "KEY 90FA-CAFE");
    /* The short form gives the same fingerprint: the phone may show it from the QR code. */
    assert_int_equal(qrl_key_fingerprint(hint, fp), QRL_OK);
    assert_string_equal(fp, "KEY 90FA-CAFE");

    /* Not thumbprints: a character short or over, padding, base64's own characters, unused
     * bits set in the last character (no 32 bytes end so), nothing. */
    const char *bad[] = {"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4",
                         VEC_JKT "A",
                         "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4=",
                         "kPrK+qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
                         "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4l",
                         "",
                         NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_false(qrl_dpop_jkt_valid(bad[i]));
        assert_int_equal(qrl_key_hint(bad[i], hint), QRL_ERR_INVALID);
        assert_string_equal(hint, "");
        assert_false(qrl_key_hint_matches("kPrK_qmx", bad[i]));
    }
    /* Every character that can end 32 bytes does; no other. */
    memcpy(jkt, VEC_JKT, sizeof VEC_JKT);
    for (int c = 1; c < 256; c++) {
        jkt[QRL_DPOP_JKT_LEN - 1] = (char)c;
        assert_int_equal(qrl_dpop_jkt_valid(jkt), strchr("AEIMQUYcgkosw048", c) != NULL);
    }
    /* The short form must be the thumbprint's start, exactly 8 base64url characters. */
    assert_false(qrl_key_hint_matches("kPrK_qmy", VEC_JKT));
    assert_false(qrl_key_hint_matches("kPrK_qm", VEC_JKT));
    assert_false(qrl_key_hint_matches("kPrK_qmxV", VEC_JKT));
    assert_false(qrl_key_hint_matches("kPrK+qmx", VEC_JKT));
    assert_false(qrl_key_hint_matches(NULL, VEC_JKT));
    assert_int_equal(qrl_key_fingerprint("kPrK_qm", fp), QRL_ERR_INVALID);
    assert_string_equal(fp, "");
    assert_int_equal(qrl_key_fingerprint("kPrK_qmx=", fp), QRL_ERR_INVALID);
    assert_int_equal(qrl_key_fingerprint(NULL, fp), QRL_ERR_INVALID);
}

/* What a phone reads of the key from a scanned QR code: "k" in the URL's query. */
static void test_login_key_hint_parse(void **state)
{
    char hint[QRL_KEY_HINT_BUF], code[QRL_MAX_TOKEN + 1];
    const char *url = "https://login.example/s?k=kPrK_qmx#qrl_ss_AbC-_9";

    assert_int_equal(qrl_login_key_hint_parse(url, hint), QRL_OK);
    assert_string_equal(hint, "kPrK_qmx");
    /* The scan secret is read as ever: the query does not change it. */
    assert_int_equal(qrl_login_code_parse(url, code, sizeof code), QRL_OK);
    assert_string_equal(code, "qrl_ss_AbC-_9");
    assert_int_equal(qrl_login_key_hint_parse("http://h:8080/s?a=1&k=-_0aZ9zA&b#qrl_ss_x", hint),
                     QRL_OK);
    assert_string_equal(hint, "-_0aZ9zA");

    /* None: no query, no "k" in it, a "k" only in the fragment, not a URL, a typed code. */
    const char *none[] = {"https://login.example/s#qrl_ss_AbC",
                          "https://login.example/s?kk=kPrK_qmx&x=k#qrl_ss_AbC",
                          "https://login.example/s#qrl_ss_AbC?k=kPrK_qmx",
                          "https://login.example/s?#qrl_ss_AbC",
                          "qrl_ss_AbC",
                          "WDJB-MJHT",
                          "ftp://h/s?k=kPrK_qmx#qrl_ss_AbC"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        assert_int_equal(qrl_login_key_hint_parse(none[i], hint), QRL_ERR_NOT_FOUND);
        assert_string_equal(hint, "");
    }
    /* A "k" that is there but is no short form, or is there twice: no answer to trust. */
    const char *bad[] = {"https://h/s?k=kPrK_qm#qrl_ss_AbC",
                         "https://h/s?k=kPrK_qmxV#qrl_ss_AbC",
                         "https://h/s?k=kPrK%5Fqmx#qrl_ss_AbC",
                         "https://h/s?k=kPrK+qmx#qrl_ss_AbC",
                         "https://h/s?k=#qrl_ss_AbC",
                         "https://h/s?k#qrl_ss_AbC",
                         "https://h/s?k=kPrK_qmx&k=kPrK_qmx#qrl_ss_AbC",
                         "https://h/s?k=kPrK_qmx&k=AAAAAAAA#qrl_ss_AbC"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(qrl_login_key_hint_parse(bad[i], hint), QRL_ERR_INVALID);
        assert_string_equal(hint, "");
    }
    assert_int_equal(qrl_login_key_hint_parse(NULL, hint), QRL_ERR_INVALID);
    assert_int_equal(qrl_login_key_hint_parse(url, NULL), QRL_ERR_INVALID);
}

/* The alphabet the protocol accepts is the one the server draws codes from (test_codes.c
 * tests the normalisation itself): 20 consonants, every one accepted in either case. */
static void test_user_code_alphabet(void **state)
{
    char in[QRL_USER_CODE_LEN + 1], out[QRL_USER_CODE_LEN + 1];

    assert_int_equal(strlen(QRL_USER_CODE_ALPHABET), 20);
    assert_null(strpbrk(QRL_USER_CODE_ALPHABET, "AEIOUY"));
    for (const char *p = QRL_USER_CODE_ALPHABET; *p != '\0'; p++) {
        memset(in, *p + ('a' - 'A'), QRL_USER_CODE_LEN);
        in[QRL_USER_CODE_LEN] = '\0';
        assert_int_equal(qrl_user_code_normalize(in, out), QRL_OK);
        assert_int_equal(out[0], *p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_vector),
        cmocka_unit_test(test_bytes_refuse_fields),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_sign_vector),
        cmocka_unit_test(test_round_trip_and_changed_fields),
        cmocka_unit_test(test_verify_refuses_keys_and_lengths),
        cmocka_unit_test(test_verify_refuses_bytes_outside_base64url),
        cmocka_unit_test(test_login_code_parse),
        cmocka_unit_test(test_key_hint_and_fingerprint),
        cmocka_unit_test(test_login_key_hint_parse),
        cmocka_unit_test(test_user_code_alphabet),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
