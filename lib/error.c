/* SPDX-License-Identifier: MIT */
/*
 * qrl_strerror: the one place that turns an error code into words. Keep the table in enum
 * order; tests/unit/test_core.c checks every code has a description.
 */
#include "qrlogin/error.h"

#include <stddef.h>

static const char *const messages[] = {
    [QRL_OK] = "success",
    [QRL_ERR_NOMEM] = "out of memory",
    [QRL_ERR_INVALID] = "invalid input",
    [QRL_ERR_NOT_FOUND] = "not found",
    [QRL_ERR_EXISTS] = "already exists",
    [QRL_ERR_CONFLICT] = "not in a state that allows this",
    [QRL_ERR_EXPIRED] = "expired",
    [QRL_ERR_DENIED] = "access denied",
    [QRL_ERR_PENDING] = "authorization pending",
    [QRL_ERR_SLOW_DOWN] = "polling too fast",
    [QRL_ERR_REDEEMED] = "already redeemed",
    [QRL_ERR_UNAUTHORIZED] = "not authenticated",
    [QRL_ERR_FORBIDDEN] = "not allowed",
    [QRL_ERR_RATE_LIMITED] = "too many attempts",
    [QRL_ERR_STORE] = "storage failure",
    [QRL_ERR_CRYPTO] = "cryptography failure",
    [QRL_ERR_TOKEN_REUSED] = "refresh token reused",
    [QRL_ERR_CLAIMED] = "claimed by another device",
    [QRL_ERR_CODE_MISMATCH] = "code does not match",
    [QRL_ERR_TOO_LARGE] = "input too large",
    [QRL_ERR_INTERNAL] = "internal error",
    [QRL_ERR_REVOKED] = "revoked",
    [QRL_ERR_BUSY] = "temporarily unavailable",
    [QRL_ERR_INVALID_CLIENT] = "client does not match",
    [QRL_ERR_CANCELLED] = "cancelled",
};

const char *qrl_strerror(qrl_err err)
{
    if ((unsigned)err < sizeof messages / sizeof messages[0] && messages[err] != NULL)
        return messages[err];
    return "unknown error";
}
