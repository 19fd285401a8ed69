/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: what a phone does with the text of a scanned QR code or a typed code
 * (qrl_login_code_parse() in lib/protocol/protocol.c, used by `qrlogin phone approve`). The
 * input is that text; the code it gives goes into the path of GET /v1/login-requests/{code}.
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
 *     (qrl_user_code_normalize) comes out as a code that normalizes to the same user code.
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
    if (qrl_login_code_parse(NULL, code, sizeof code) != QRL_ERR_INVALID ||
        qrl_login_code_parse(text, NULL, 0) != QRL_ERR_INVALID)
        BROKEN();
    free(text);
    return 0;
}
