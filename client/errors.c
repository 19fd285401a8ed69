/* SPDX-License-Identifier: MIT */
/*
 * Errors of the client SDK: qrl_client_strerror() and the per-handle detail sentence.
 *
 * The SDK returns the project's one error enum (qrlogin/error.h) but does not export
 * qrl_strerror(): the core library defines it, and the qrlogin CLI links both. Its own table
 * also says what each code means to an app, which is narrower than what it means in the
 * server (QRL_ERR_BUSY is "server unreachable" here). Keep the table in enum order; when a
 * code is added to error.h, add its row here and the test in tests/sdk/test_client.c that
 * checks every code has a description will remind you.
 */
#include "internal.h"

#include <stdio.h>

static const char *const messages[] = {
    [QRL_OK] = "success",
    [QRL_ERR_NOMEM] = "out of memory",
    [QRL_ERR_INVALID] = "invalid argument, option or request",
    [QRL_ERR_NOT_FOUND] = "the server does not know this login request",
    [QRL_ERR_EXISTS] = "already exists",
    [QRL_ERR_CONFLICT] = "not possible in the handle's current state",
    [QRL_ERR_EXPIRED] = "the login request expired",
    [QRL_ERR_DENIED] = "the sign-in was declined on the phone",
    [QRL_ERR_PENDING] = "authorization pending",
    [QRL_ERR_SLOW_DOWN] = "polling too fast",
    [QRL_ERR_REDEEMED] = "already redeemed",
    [QRL_ERR_UNAUTHORIZED] = "the refresh token is no longer valid; sign in again",
    [QRL_ERR_FORBIDDEN] = "not allowed",
    [QRL_ERR_RATE_LIMITED] = "the server is rate limiting this client",
    [QRL_ERR_STORE] = "storage failure",
    [QRL_ERR_CRYPTO] = "cryptography failure",
    [QRL_ERR_TOKEN_REUSED] = "refresh token reused",
    [QRL_ERR_CLAIMED] = "claimed by another device",
    [QRL_ERR_CODE_MISMATCH] = "code does not match",
    [QRL_ERR_TOO_LARGE] = "input or answer exceeds its size limit",
    [QRL_ERR_INTERNAL] = "unexpected answer from the server, or internal error",
    [QRL_ERR_REVOKED] = "revoked",
    [QRL_ERR_BUSY] = "server unreachable or temporarily unavailable",
    [QRL_ERR_INVALID_CLIENT] = "the server does not accept this client_id",
    [QRL_ERR_CANCELLED] = "cancelled",
};

QRL_CLIENT_API const char *qrl_client_strerror(qrl_err err)
{
    if ((unsigned)err < sizeof messages / sizeof messages[0] && messages[err] != NULL)
        return messages[err];
    return "unknown error";
}

qrl_err qrl__vfail(char *buf, size_t len, qrl_err rc, const char *fmt, va_list ap)
{
    if (buf != NULL && len > 0)
        vsnprintf(buf, len, fmt, ap);
    return rc;
}

qrl_err qrl__fail(qrl_client *c, qrl_err rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    qrl__vfail(c->err, sizeof c->err, rc, fmt, ap);
    va_end(ap);
    return rc;
}

QRL_CLIENT_API const char *qrl_client_last_error(const qrl_client *c)
{
    return c != NULL ? c->err : "no handle";
}
