/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of secrets and codes: user-code alphabet and normalisation (RFC 8628 section 6.1),
 * secret prefixes and lengths, hashing, text validation, and the error table.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "internal.h"

static void test_user_code_alphabet(void **state)
{
    char code[QRL_USER_CODE_LEN + 1];
    int seen[26] = {0};

    for (int i = 0; i < 2000; i++) {
        qrl__user_code_new(code);
        assert_int_equal(strlen(code), 8);
        for (int j = 0; j < 8; j++) {
            assert_non_null(strchr("BCDFGHJKLMNPQRSTVWXZ", code[j]));
            seen[code[j] - 'A']++;
        }
    }
    /* All 20 letters show up; no vowel ever does. */
    for (const char *p = "BCDFGHJKLMNPQRSTVWXZ"; *p; p++)
        assert_true(seen[*p - 'A'] > 0);
    for (const char *p = "AEIOUY"; *p; p++)
        assert_int_equal(seen[*p - 'A'], 0);
}

static void test_user_code_normalize(void **state)
{
    char out[QRL_USER_CODE_LEN + 1];

    assert_int_equal(qrl_user_code_normalize("WDJB-MJHT", out), QRL_OK);
    assert_string_equal(out, "WDJBMJHT");
    assert_int_equal(qrl_user_code_normalize("wdjb mjht", out), QRL_OK);
    assert_string_equal(out, "WDJBMJHT");
    assert_int_equal(qrl_user_code_normalize(" w-d-j-b-m-j-h-t ", out), QRL_OK);
    assert_string_equal(out, "WDJBMJHT");
    /* Wrong length, vowels, digits, other punctuation, NULL, overlong input. */
    assert_int_equal(qrl_user_code_normalize("WDJB-MJH", out), QRL_ERR_INVALID);
    assert_int_equal(qrl_user_code_normalize("WDJB-MJHTT", out), QRL_ERR_INVALID);
    assert_int_equal(qrl_user_code_normalize("WDJB-MJHA", out), QRL_ERR_INVALID);
    assert_int_equal(qrl_user_code_normalize("WDJB-MJH1", out), QRL_ERR_INVALID);
    assert_int_equal(qrl_user_code_normalize("WDJB_MJHT", out), QRL_ERR_INVALID);
    assert_int_equal(qrl_user_code_normalize(NULL, out), QRL_ERR_INVALID);
    assert_int_equal(qrl_user_code_normalize("W - - - - - - - - - - - - - - - - DJBMJHT", out),
                     QRL_ERR_INVALID);
}

static void test_user_code_format(void **state)
{
    char out[QRL_USER_CODE_BUF];

    qrl_user_code_format("WDJBMJHT", out);
    assert_string_equal(out, "WDJB-MJHT");
}

static void test_secrets(void **state)
{
    char a[QRL_SECRET_BUF], b[QRL_SECRET_BUF];
    qrl_hash ha, hb, ha2;

    qrl__secret_new(QRL__PFX_ACCESS, QRL__TOKEN_BYTES, a);
    qrl__secret_new(QRL__PFX_ACCESS, QRL__TOKEN_BYTES, b);
    assert_int_equal(strncmp(a, "qrl_at_", 7), 0);
    /* 32 bytes = 256 bits -> 43 base64url characters. */
    assert_int_equal(strlen(a), 7 + 43);
    assert_string_not_equal(a, b);
    assert_true(strspn(a + 7, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                43);
    qrl__secret_new(QRL__PFX_SCAN, QRL__SCAN_BYTES, b);
    assert_int_equal(strlen(b), 7 + 32); /* 192 bits */
    assert_true(qrl__secret_has_prefix(a, QRL__PFX_ACCESS));
    assert_false(qrl__secret_has_prefix(a, QRL__PFX_REFRESH));
    assert_false(qrl__secret_has_prefix("qrl_at_short", QRL__PFX_ACCESS));

    qrl__secret_hash(a, &ha);
    qrl__secret_hash(a, &ha2);
    qrl__secret_hash(b, &hb);
    assert_memory_equal(ha.b, ha2.b, QRL_HASH_BYTES);
    assert_memory_not_equal(ha.b, hb.b, QRL_HASH_BYTES);
    /* The hash is not the secret. */
    assert_null(memmem(ha.b, QRL_HASH_BYTES, a + 7, 8));
}

/* Tokens carry an id that orders their store keys; a token issued before them (no id) keeps the
 * plain hash it was stored under. */
static void test_token_keys(void **state)
{
    char a[QRL_SECRET_BUF], b[QRL_SECRET_BUF], old[QRL_SECRET_BUF];
    qrl_hash ka, ka2, kb, kold, hold, ha;
    struct timespec ts;
    uint64_t id = 0;
    int64_t now_ms;

    (void)state;
    qrl__token_new(QRL__PFX_ACCESS, a);
    usleep(3000); /* a later millisecond: a larger id */
    qrl__token_new(QRL__PFX_ACCESS, b);
    assert_int_equal(strncmp(a, "qrl_at_", 7), 0);
    assert_int_equal(strlen(a), 7 + 54); /* 8 + 32 bytes */
    assert_true(strspn(a + 7, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                54);
    assert_string_not_equal(a, b);
    assert_true(qrl__secret_has_prefix(a, QRL__PFX_ACCESS));

    qrl__token_key(a, &ka);
    qrl__token_key(a, &ka2);
    qrl__token_key(b, &kb);
    assert_memory_equal(ka.b, ka2.b, QRL_HASH_BYTES);
    /* The key begins with the id: the wall clock in milliseconds times 2048, plus 11 bits. */
    for (int i = 0; i < 8; i++)
        id = id << 8 | ka.b[i];
    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    assert_in_range((int64_t)(id >> 11), now_ms - 10000, now_ms);
    assert_true(memcmp(ka.b, kb.b, 8) < 0);
    /* The rest is a hash of the whole string: it is not the plain hash, and it is not the
     * secret. */
    qrl__secret_hash(a, &ha);
    assert_memory_not_equal(ka.b, ha.b, QRL_HASH_BYTES);
    assert_memory_not_equal(ka.b + 8, kb.b + 8, QRL_HASH_BYTES - 8);

    /* A token of the earlier format (32 random bytes, 50 characters): its BLAKE2b-256. */
    qrl__secret_new(QRL__PFX_SESSION, QRL__TOKEN_BYTES, old);
    qrl__token_key(old, &kold);
    qrl__secret_hash(old, &hold);
    assert_memory_equal(kold.b, hold.b, QRL_HASH_BYTES);
    /* The new length without valid base64url is hashed like any other string. */
    memcpy(old, a, sizeof old);
    old[20] = '*';
    qrl__token_key(old, &kold);
    qrl__secret_hash(old, &hold);
    assert_memory_equal(kold.b, hold.b, QRL_HASH_BYTES);
}

/* Device codes and scan secrets carry their request id (a selector) before the secret part. */
static void test_lr_secrets(void **state)
{
    char dc[QRL_SECRET_BUF], dc2[QRL_SECRET_BUF], scan[QRL_SECRET_BUF], scan2[QRL_SECRET_BUF];
    char bad[QRL_SECRET_BUF + 8];
    qrl_lr_secret_key k, k2;
    qrl_hash h;
    int64_t id = qrl__lr_id_new(), id2;
    struct timespec ts;

    (void)state;
    /* Ids: the wall clock in ms times 2048, plus 11 bits; exact in a JavaScript number. */
    clock_gettime(CLOCK_REALTIME, &ts);
    assert_true(id > 0 && id < (INT64_C(1) << 53));
    assert_true(llabs((id >> 11) - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000)) < 1000);
    usleep(3000);
    id2 = qrl__lr_id_new();
    assert_true(id2 > id); /* later requests sort after earlier ones */

    qrl__device_code_new(id, dc);
    qrl__device_code_new(id, dc2);
    assert_string_not_equal(dc, dc2); /* 256 random bits each */
    /* 8 + 32 bytes = 54 base64url characters. */
    assert_int_equal(strlen(dc), 7 + 54);
    assert_int_equal(strncmp(dc, "qrl_dc_", 7), 0);
    assert_true(qrl__lr_secret_key(dc, QRL__PFX_DEVICE_CODE, &k));
    assert_int_equal(k.id, id);
    qrl__secret_hash(dc, &h);
    assert_memory_equal(k.hash.b, h.b, QRL_HASH_BYTES);
    assert_true(qrl__lr_secret_key(dc2, QRL__PFX_DEVICE_CODE, &k2));
    assert_int_equal(k2.id, id);
    assert_memory_not_equal(k.hash.b, k2.hash.b, QRL_HASH_BYTES);

    /* The scan secret: same id, derived (the same device code gives the same secret), 8 + 24
     * bytes = 43 characters, and not a device code. */
    assert_true(qrl__scan_from_device_code(dc, scan));
    assert_true(qrl__scan_from_device_code(dc, scan2));
    assert_string_equal(scan, scan2);
    assert_int_equal(strlen(scan), 7 + 43);
    assert_true(qrl__lr_secret_key(scan, QRL__PFX_SCAN, &k2));
    assert_int_equal(k2.id, id);
    assert_false(qrl__lr_secret_key(scan, QRL__PFX_DEVICE_CODE, &k2));
    assert_false(qrl__lr_secret_key(dc, QRL__PFX_SCAN, &k2));
    assert_true(qrl__scan_from_device_code(dc2, scan2));
    assert_string_not_equal(scan, scan2);
    assert_false(qrl__scan_from_device_code("qrl_dc_short", scan2));
    assert_string_equal(scan2, "");

    /* Malformed: one character more or less, a character outside base64url, the length of
     * the old format (no id), an id of 0, a different prefix, nothing. */
    snprintf(bad, sizeof bad, "%sA", dc);
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    snprintf(bad, sizeof bad, "%s", dc);
    bad[strlen(bad) - 1] = '\0';
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    snprintf(bad, sizeof bad, "%s", dc);
    bad[20] = '+';
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    qrl__secret_new(QRL__PFX_DEVICE_CODE, QRL__TOKEN_BYTES, bad);
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    qrl__device_code_new(0, bad);
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    assert_false(qrl__scan_from_device_code(bad, scan2));
    assert_string_equal(scan2, "");
    /* Bytes above 0x7f, which libsodium's decoder takes for base64url characters (found by
     * fuzz/fuzz_secrets.c): in the id, where they decoded to a negative id, and in the rest. */
    snprintf(bad, sizeof bad, "%s", dc);
    memset(bad + 7, 0xbf, 8);
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    assert_false(qrl__scan_from_device_code(bad, scan2));
    snprintf(bad, sizeof bad, "%s", dc);
    bad[30] = (char)0xbf;
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    assert_false(qrl__scan_from_device_code(bad, scan2));
    snprintf(bad, sizeof bad, "qrl_at_%s", dc + 7);
    assert_false(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    assert_false(qrl__lr_secret_key("", QRL__PFX_DEVICE_CODE, &k2));
    /* Another character in the secret part: same id, another hash (the store refuses it). */
    snprintf(bad, sizeof bad, "%s", dc);
    bad[strlen(bad) - 5] = bad[strlen(bad) - 5] == 'A' ? 'B' : 'A';
    assert_true(qrl__lr_secret_key(bad, QRL__PFX_DEVICE_CODE, &k2));
    assert_int_equal(k2.id, id);
    assert_memory_not_equal(k.hash.b, k2.hash.b, QRL_HASH_BYTES);
}

static void test_text_valid(void **state)
{
    assert_true(qrl__text_valid("Living Room TV", 64));
    assert_true(qrl__text_valid("Wohnzimmer-Fernseher \xc3\xa4\xc3\xb6", 64));
    assert_true(qrl__text_valid("\xf0\x9f\x93\xba TV", 64));
    assert_false(qrl__text_valid("tab\there", 64));
    assert_false(qrl__text_valid("line\nbreak", 64));
    assert_false(qrl__text_valid("\xc3", 64));             /* truncated sequence */
    assert_false(qrl__text_valid("\xc0\xaf", 64));         /* overlong '/' */
    assert_false(qrl__text_valid("\xed\xa0\x80", 64));     /* surrogate */
    assert_false(qrl__text_valid("\xf4\x90\x80\x80", 64)); /* > U+10FFFF */
    assert_false(qrl__text_valid("0123456789", 9));
}

static void test_strerror_complete(void **state)
{
    for (int e = QRL_OK; e <= QRL_ERR_CANCELLED; e++) {
        const char *m = qrl_strerror((qrl_err)e);
        assert_non_null(m);
        assert_string_not_equal(m, "unknown error");
    }
    assert_string_equal(qrl_strerror((qrl_err)9999), "unknown error");
}

/* Random bytes come from a per-thread pool: never handed out twice, across threads too, and a
 * forked child never repeats what its parent draws next. */
#define DRAWS 3000

static void *draw_secrets(void *arg)
{
    char(*out)[QRL_SECRET_BUF] = arg;

    for (int i = 0; i < DRAWS; i++)
        qrl__secret_new("qrl_dc_", QRL__TOKEN_BYTES, out[i]);
    return NULL;
}

static int cmp_secret(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_random_pool(void **state)
{
    static char got[2 * DRAWS][QRL_SECRET_BUF];
    pthread_t th;
    unsigned char parent[32], child[32];
    int fds[2];
    pid_t pid;
    int st;

    (void)state;
    assert_int_equal(pthread_create(&th, NULL, draw_secrets, got[DRAWS]), 0);
    draw_secrets(got);
    pthread_join(th, NULL);
    qsort(got, 2 * DRAWS, QRL_SECRET_BUF, cmp_secret);
    for (int i = 1; i < 2 * DRAWS; i++)
        assert_string_not_equal(got[i - 1], got[i]);

    qrl__random(parent, 1); /* the pool now holds unused bytes */
    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        qrl__random(child, sizeof child);
        _exit(write(fds[1], child, sizeof child) == (ssize_t)sizeof child ? 0 : 1);
    }
    qrl__random(parent, sizeof parent);
    assert_int_equal(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_memory_not_equal(parent, child, sizeof parent);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_pool),
        cmocka_unit_test(test_token_keys),
        cmocka_unit_test(test_user_code_alphabet),
        cmocka_unit_test(test_user_code_normalize),
        cmocka_unit_test(test_user_code_format),
        cmocka_unit_test(test_secrets),
        cmocka_unit_test(test_lr_secrets),
        cmocka_unit_test(test_text_valid),
        cmocka_unit_test(test_strerror_complete),
    };
    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
