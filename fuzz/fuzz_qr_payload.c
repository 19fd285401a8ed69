/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what a phone does with the text of a scanned QR code or a typed code
 * (qrl_login_code_parse() in lib/protocol/protocol.c, used by `qrlogin phone approve`), and
 * the short form of the screen's key it reads from the same text (qrl_login_key_hint_parse()).
 * The input is that text; the code it gives goes into the path of GET /v1/login-requests/{code},
 * the short form is compared with the key the server names for the request.
 *
 * Invariants (abort() on violation):
 *   - only QRL_OK, QRL_ERR_NOT_FOUND or QRL_ERR_INVALID, and QRL_ERR_NOT_FOUND exactly for an
 *     http(s) URL without a "#qrl_ss_" fragment;
 *   - an accepted code is non-empty, terminated within the buffer, and made of ASCII letters,
 *     digits, '-' and '_' only (nothing that could change the path: no '/', '%', '?', '#',
 *     space or control character); nothing is written past the buffer, and a buffer one byte
 *     too short is refused rather than truncated;
 *   - from a URL the code is its fragment from the first '#', which starts with "qrl_ss_";
 *     from any other text the code is that text with spaces as '-';
 *   - reading an accepted code again gives it back unchanged;
 *   - the server's view agrees: a scan secret the server accepts (qrl__lr_secret_key) comes out
 *     of "https://host/s#<secret>" unchanged, and a user code the server accepts as typed
 *     (qrl_user_code_normalize) comes out as a code that normalizes to the same user code;
 *   - the key's short form: only QRL_OK, QRL_ERR_NOT_FOUND or QRL_ERR_INVALID, "" unless QRL_OK,
 *     NOT_FOUND for any text that is no http(s) URL; an accepted one is exactly
 *     QRL_KEY_HINT_LEN base64url characters that stand as "k=<them>" in the URL's query (after
 *     the first '?', before the first '#'), nothing is written past the buffer, and the code read
 *     from the same text is as it would be without the query;
 *   - the server's view of a key agrees: for a thumbprint it accepts (qrl_dpop_jkt_valid), the
 *     link it makes (qrl_key_hint, "https://host/s?k=<short form>#qrl_ss_...") gives the short
 *     form back, which qrl_key_hint_matches() takes for that thumbprint and not for one that
 *     differs in its first characters, and both give one fingerprint ("KEY XXXX-XXXX").
 * Run by scripts/fuzz.sh (part of scripts/test.sh).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"
#include "qrlogin/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant does not hold: say which check, then abort() for libFuzzer. */
#define BROKEN() broken(__LINE__)
static _Noreturn void broken(int line)
{
    fprintf(stderr, "%s:%d: this check failed\n", __FILE__, line);
    abort();
}

/* Every code the server accepts fits (a scan secret is 50 characters, a typed user code at most
 * QRL_MAX_USER_CODE_INPUT). */
#define CODE_BUF (QRL_MAX_TOKEN + 1)

static bool is_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

/* Parses into a buffer of exactly `len` bytes followed by a guard byte that must stay. */
static qrl_err parse(const char *text, char *out, size_t len)
{
    char *buf = malloc(len + 1);
    qrl_err rc;

    if (buf == NULL)
        BROKEN();
    buf[len] = 'X';
    rc = qrl_login_code_parse(text, buf, len);
    if (buf[len] != 'X')
        BROKEN();
    if (rc != QRL_OK && rc != QRL_ERR_NOT_FOUND && rc != QRL_ERR_INVALID)
        BROKEN();
    if (rc != QRL_OK && len > 0 && buf[0] != '\0')
        BROKEN();
    if (rc == QRL_OK) {
        if (len == 0 || strnlen(buf, len) == len)
            BROKEN();
        memcpy(out, buf, strlen(buf) + 1);
    }
    free(buf);
    return rc;
}

static void check_text(const char *text)
{
    char code[CODE_BUF], again[CODE_BUF], want[CODE_BUF];
    const char *src = text, *hash = strchr(text, '#');
    bool url = is_url(text);
    size_t n;
    qrl_err rc = parse(text, code, sizeof code);

    if ((rc == QRL_ERR_NOT_FOUND) != (url && (hash == NULL || strncmp(hash, "#qrl_ss_", 8) != 0)))
        BROKEN();
    if (rc != QRL_OK)
        return;
    n = strlen(code);
    if (n == 0 ||
        strspn(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != n)
        BROKEN();
    if (url) {
        if (strncmp(code, "qrl_ss_", 7) != 0)
            BROKEN();
        src = hash + 1;
    }
    if (strlen(src) != n)
        BROKEN();
    for (size_t i = 0; i <= n; i++)
        want[i] = src[i] == ' ' ? '-' : src[i];
    if (strcmp(code, want) != 0)
        BROKEN();
    /* Idempotent, and exactly n + 1 bytes are needed. */
    if (parse(code, again, sizeof again) != QRL_OK || strcmp(again, code) != 0)
        BROKEN();
    if (parse(text, again, n + 1) != QRL_OK || strcmp(again, code) != 0 ||
        parse(text, again, n) != QRL_ERR_INVALID)
        BROKEN();
}

static bool b64url_only(const char *s, size_t n)
{
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == n;
}

/* The short form of the screen's key that the text names, if any. */
static void check_key_hint(const char *text)
{
    char hint[QRL_KEY_HINT_BUF + 1], again[QRL_KEY_HINT_BUF], url[64 + QRL_KEY_HINT_BUF];
    char code[CODE_BUF], code2[CODE_BUF], *bare;
    const char *q, *end, *at;
    qrl_err rc;

    hint[QRL_KEY_HINT_BUF] = 'X';
    rc = qrl_login_key_hint_parse(text, hint);
    if (hint[QRL_KEY_HINT_BUF] != 'X')
        BROKEN();
    if (rc != QRL_OK && rc != QRL_ERR_NOT_FOUND && rc != QRL_ERR_INVALID)
        BROKEN();
    if (rc != QRL_OK && hint[0] != '\0')
        BROKEN();
    if (!is_url(text) && rc != QRL_ERR_NOT_FOUND)
        BROKEN();
    if (rc != QRL_OK)
        return;
    if (strlen(hint) != QRL_KEY_HINT_LEN || !b64url_only(hint, QRL_KEY_HINT_LEN))
        BROKEN();
    end = text + strcspn(text, "#");
    q = memchr(text, '?', (size_t)(end - text));
    if (q == NULL)
        BROKEN();
    /* "k=<hint>" is one item of the query: after '?' or '&', before '&', '#' or the end. */
    bool found = false;
    for (at = strstr(q, "k="); at != NULL && at < end; at = strstr(at + 1, "k=")) {
        if ((at[-1] == '?' || at[-1] == '&') && strncmp(at + 2, hint, QRL_KEY_HINT_LEN) == 0 &&
            (at + 2 + QRL_KEY_HINT_LEN == end || at[2 + QRL_KEY_HINT_LEN] == '&'))
            found = true;
    }
    if (!found)
        BROKEN();
    /* The same link with the query taken out gives the same code. */
    bare = malloc(strlen(text) + 1);
    if (bare == NULL)
        BROKEN();
    memcpy(bare, text, (size_t)(q - text));
    memcpy(bare + (q - text), end, strlen(end) + 1);
    if (parse(text, code, sizeof code) != parse(bare, code2, sizeof code2))
        BROKEN();
    if (parse(text, code, sizeof code) == QRL_OK && strcmp(code, code2) != 0)
        BROKEN();
    free(bare);
    /* Read again from the link a server makes, it is the same. */
    snprintf(url, sizeof url, "https://login.example/s?k=%s#qrl_ss_x", hint);
    if (qrl_login_key_hint_parse(url, again) != QRL_OK || strcmp(again, hint) != 0)
        BROKEN();
}

/* A thumbprint as the server keeps it: its link, the phone's check and the fingerprints agree. */
static void check_jkt(const char *text)
{
    char hint[QRL_KEY_HINT_BUF], back[QRL_KEY_HINT_BUF], url[96], other[QRL_DPOP_JKT_LEN + 1];
    char fp1[QRL_KEY_FINGERPRINT_BUF], fp2[QRL_KEY_FINGERPRINT_BUF];
    bool valid = qrl_dpop_jkt_valid(text);

    if (valid != (qrl_key_hint(text, hint) == QRL_OK))
        BROKEN();
    if (!valid)
        return;
    if (strlen(text) != QRL_DPOP_JKT_LEN || !b64url_only(text, QRL_DPOP_JKT_LEN))
        BROKEN();
    snprintf(url, sizeof url, "https://login.example/s?k=%s#qrl_ss_x", hint);
    if (qrl_login_key_hint_parse(url, back) != QRL_OK || strcmp(back, hint) != 0 ||
        !qrl_key_hint_matches(back, text))
        BROKEN();
    if (qrl_key_fingerprint(text, fp1) != QRL_OK || qrl_key_fingerprint(hint, fp2) != QRL_OK ||
        strcmp(fp1, fp2) != 0 || strlen(fp1) != QRL_KEY_FINGERPRINT_BUF - 1 ||
        strncmp(fp1, "KEY ", 4) != 0 || fp1[8] != '-')
        BROKEN();
    /* Another key's thumbprint, differing in the first characters, does not match. */
    memcpy(other, text, sizeof other);
    other[0] = other[0] == 'A' ? 'B' : 'A';
    if (qrl_key_hint_matches(hint, other))
        BROKEN();
}

/* The text as the server would read the code: both sides must agree. */
static void check_server_view(const char *text)
{
    char url[CODE_BUF + 32], code[CODE_BUF], a[QRL_USER_CODE_LEN + 1], b[QRL_USER_CODE_LEN + 1];
    qrl_lr_secret_key key;

    if (strlen(text) < CODE_BUF && qrl__lr_secret_key(text, QRL__PFX_SCAN, &key)) {
        memcpy(url, "https://login.example/s#", 24);
        memcpy(url + 24, text, strlen(text) + 1);
        if (parse(url, code, sizeof code) != QRL_OK || strcmp(code, text) != 0)
            BROKEN();
    }
    if (qrl_user_code_normalize(text, a) == QRL_OK) {
        if (parse(text, code, sizeof code) != QRL_OK ||
            qrl_user_code_normalize(code, b) != QRL_OK || strcmp(a, b) != 0)
            BROKEN();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1), code[CODE_BUF];

    if (text == NULL || sodium_init() < 0)
        BROKEN();
    memcpy(text, data, size);
    text[size] = '\0';
    check_text(text);
    check_server_view(text);
    check_key_hint(text);
    check_jkt(text);
    if (qrl_login_code_parse(NULL, code, sizeof code) != QRL_ERR_INVALID ||
        qrl_login_code_parse(text, NULL, 0) != QRL_ERR_INVALID)
        BROKEN();
    free(text);
    return 0;
}
