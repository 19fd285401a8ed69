/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the server's own parsers of untrusted text (server/http_util.c).
 *   - qrl__form_parse(): any body is parsed or refused without a crash; what it returns are
 *     NUL-terminated strings, at most QRL__MAX_PARAMS of them, and qrl__form_get() finds the
 *     first key it returned.
 *   - qrl__log_redact(): the output is terminated within its buffer, and no login secret
 *     survives it: it never contains "qrl_" + two secret characters + "_" followed by a secret
 *     character (a secret's body), whatever the input and the buffer size.
 * Run by scripts/fuzz.sh (part of scripts/test.sh).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool secret_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void check_form(const char *body, size_t len)
{
    qrl__form f;

    if (qrl__form_parse(body, len, &f) == QRL_OK) {
        if (f.n > QRL__MAX_PARAMS)
            abort();
        for (size_t i = 0; i < f.n; i++)
            if (f.key[i] == NULL || f.val[i] == NULL)
                abort();
        if (f.n > 0 && qrl__form_get(&f, f.key[0]) != f.val[0])
            abort();
    }
    qrl__form_clear(&f);
}

static void check_redact(const char *in, size_t outlen)
{
    char *out = malloc(outlen + 1);
    size_t n;

    if (out == NULL)
        abort();
    out[outlen] = 'X'; /* a byte past the buffer it was given: must stay */
    qrl__log_redact(in, out, outlen);
    if (out[outlen] != 'X')
        abort();
    if (outlen > 0) {
        n = strnlen(out, outlen);
        if (n == outlen)
            abort(); /* not terminated */
        for (size_t i = 0; i + 7 < n; i++)
            if (strncmp(out + i, "qrl_", 4) == 0 && secret_char(out[i + 4]) &&
                secret_char(out[i + 5]) && out[i + 6] == '_' && secret_char(out[i + 7]))
                abort();
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    check_form(s, size);
    check_redact(s, 512);
    check_redact(s, size % 64); /* small buffers: truncation in the middle of anything */
    free(s);
    return 0;
}
