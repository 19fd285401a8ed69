/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the parsers of everything a client can send as a login-request secret or
 * a user code (lib/secret.c). Any input must be refused or accepted without a crash, and what
 * is accepted must be exactly what the server issues:
 *   - a device code or scan secret accepted by qrl__lr_secret_key() has its kind's prefix and
 *     length, an id > 0, and the hash of the whole string;
 *   - the scan secret derived from an accepted device code is itself accepted, under the same id;
 *   - a user code accepted by qrl_user_code_normalize() is 8 letters of the RFC 8628 alphabet,
 *     and formatting it and normalizing again gives it back.
 * Run by scripts/fuzz.sh (part of scripts/test.sh).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_secret(const char *s, const char *prefix)
{
    qrl_lr_secret_key key;
    qrl_hash h;

    if (!qrl__lr_secret_key(s, prefix, &key))
        return;
    if (strncmp(s, prefix, QRL__PFX_LEN) != 0 || key.id <= 0 ||
        strlen(s) != strlen(prefix) + (strcmp(prefix, QRL__PFX_DEVICE_CODE) == 0 ? 54 : 43))
        abort();
    qrl__secret_hash(s, &h);
    if (memcmp(h.b, key.hash.b, sizeof h.b) != 0)
        abort();
}

static void check_user_code(const char *s)
{
    char canon[QRL_USER_CODE_LEN + 1], shown[QRL_USER_CODE_BUF], again[QRL_USER_CODE_LEN + 1];

    if (qrl_user_code_normalize(s, canon) != QRL_OK)
        return;
    if (strlen(canon) != QRL_USER_CODE_LEN ||
        strspn(canon, "BCDFGHJKLMNPQRSTVWXZ") != QRL_USER_CODE_LEN)
        abort();
    qrl_user_code_format(canon, shown);
    if (qrl_user_code_normalize(shown, again) != QRL_OK || strcmp(again, canon) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    char scan[QRL_SECRET_BUF];
    qrl_lr_secret_key dc, ss;

    if (s == NULL || sodium_init() < 0)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    check_secret(s, QRL__PFX_DEVICE_CODE);
    check_secret(s, QRL__PFX_SCAN);
    check_user_code(s);
    if (qrl__scan_from_device_code(s, scan)) {
        if (!qrl__lr_secret_key(s, QRL__PFX_DEVICE_CODE, &dc) ||
            !qrl__lr_secret_key(scan, QRL__PFX_SCAN, &ss) || dc.id != ss.id)
            abort();
    } else if (scan[0] != '\0') {
        abort();
    }
    free(s);
    return 0;
}
