/* SPDX-License-Identifier: MIT */
/*
 * Errors of the client SDK: qrl_client_strerror() and the per-handle detail sentence.
 *
 * The SDK returns the project's one error enum (qrlogin/error.h) but keeps its own words for it,
 * on purpose, rather than sharing lib/error.c's table: the SDK does not link the core library
 * (which defines qrl_strerror(); the qrlogin CLI links both), and its words say what a code means
 * to an app talking to a server, which is narrower than what it means inside the server
 * (QRL_ERR_BUSY is "server unreachable" here, QRL_ERR_UNAUTHORIZED "sign in again").
 *
 * The table is an X-macro list like lib/error.c's: its row count is checked against
 * QRL_ERR__COUNT and a code named twice does not compile (-Woverride-init), so a code added to
 * error.h without a row here is a build error.
 */
#include "internal.h"

#include <stdio.h>

#define CLIENT_STRERROR_ROWS(X)                                                                    \
    X(QRL_OK, "success")                                                                           \
    X(QRL_ERR_NOMEM, "out of memory")                                                              \
    X(QRL_ERR_INVALID, "invalid argument, option or request")                                      \
    X(QRL_ERR_NOT_FOUND, "the server does not know this login request")                            \
    X(QRL_ERR_EXISTS, "already exists")                                                            \
    X(QRL_ERR_CONFLICT, "not possible in the handle's current state")                              \
    X(QRL_ERR_EXPIRED, "the login request expired")                                                \
    X(QRL_ERR_DENIED, "the sign-in was declined on the phone")                                     \
    X(QRL_ERR_PENDING, "authorization pending")                                                    \
    X(QRL_ERR_SLOW_DOWN, "polling too fast")                                                       \
    X(QRL_ERR_REDEEMED, "already redeemed")                                                        \
    X(QRL_ERR_UNAUTHORIZED, "the refresh token is no longer valid; sign in again")                 \
    X(QRL_ERR_FORBIDDEN, "not allowed")                                                            \
    X(QRL_ERR_RATE_LIMITED, "the server is rate limiting this client")                             \
    X(QRL_ERR_STORE, "storage failure")                                                            \
    X(QRL_ERR_CRYPTO, "cryptography failure")                                                      \
    X(QRL_ERR_TOKEN_REUSED, "refresh token reused")                                                \
    X(QRL_ERR_CLAIMED, "claimed by another device")                                                \
    X(QRL_ERR_CODE_MISMATCH, "code does not match")                                                \
    X(QRL_ERR_TOO_LARGE, "input or answer exceeds its size limit")                                 \
    X(QRL_ERR_INTERNAL, "unexpected answer from the server, or internal error")                    \
    X(QRL_ERR_REVOKED, "revoked")                                                                  \
    X(QRL_ERR_BUSY, "server unreachable or temporarily unavailable")                               \
    X(QRL_ERR_INVALID_CLIENT, "the server does not accept this client_id")                         \
    X(QRL_ERR_CANCELLED, "cancelled")                                                              \
    X(QRL_ERR_SUSPICIOUS, "the server blocked this login request as suspicious")

#define CLIENT_ROW(code, text) [code] = text,
#define CLIENT_ONE(code, text) +1
static const char *const messages[QRL_ERR__COUNT] = {CLIENT_STRERROR_ROWS(CLIENT_ROW)};
_Static_assert(0 CLIENT_STRERROR_ROWS(CLIENT_ONE) == QRL_ERR__COUNT,
               "client/errors.c: every qrl_err needs exactly one description");

QRL_CLIENT_API const char *qrl_client_strerror(qrl_err err)
{
    if ((unsigned)err < QRL_ERR__COUNT && messages[err] != NULL)
        return messages[err];
    return "unknown error";
}

/* The detail often quotes the server (an error code, an issuer, a URL from its metadata), and
 * apps show it and log it: every byte that is not printable ASCII becomes '?', so that a server
 * cannot put terminal escapes or line breaks into an app's screen or log (found by
 * fuzz/fuzz_client.c). */
qrl_err qrl__vfail(char *buf, size_t len, qrl_err rc, const char *fmt, va_list ap)
{
    if (buf == NULL || len == 0)
        return rc;
    vsnprintf(buf, len, fmt, ap);
    for (char *p = buf; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
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
