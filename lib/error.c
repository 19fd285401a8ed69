/* SPDX-License-Identifier: MIT */
/*
 * qrl_strerror: the one place that turns an error code into words for the core library and the
 * server (whose OAuth and phone API answers use these words as their default
 * error_description, server/http_util.c).
 *
 * The table is an X-macro list: one row per code, in any order. The row count must equal
 * QRL_ERR__COUNT and a code named twice is an initializer override (-Woverride-init, an error
 * in our builds), so a code without a description does not compile.
 */
#include "qrlogin/error.h"

#include <stddef.h>

#define QRL__STRERROR_ROWS(X)                                                                      \
    X(QRL_OK, "success")                                                                           \
    X(QRL_ERR_NOMEM, "out of memory")                                                              \
    X(QRL_ERR_INVALID, "invalid input")                                                            \
    X(QRL_ERR_NOT_FOUND, "not found")                                                              \
    X(QRL_ERR_EXISTS, "already exists")                                                            \
    X(QRL_ERR_CONFLICT, "not in a state that allows this")                                         \
    X(QRL_ERR_EXPIRED, "expired")                                                                  \
    X(QRL_ERR_DENIED, "access denied")                                                             \
    X(QRL_ERR_PENDING, "authorization pending")                                                    \
    X(QRL_ERR_SLOW_DOWN, "polling too fast")                                                       \
    X(QRL_ERR_REDEEMED, "already redeemed")                                                        \
    X(QRL_ERR_UNAUTHORIZED, "not authenticated")                                                   \
    X(QRL_ERR_FORBIDDEN, "not allowed")                                                            \
    X(QRL_ERR_RATE_LIMITED, "too many attempts")                                                   \
    X(QRL_ERR_STORE, "storage failure")                                                            \
    X(QRL_ERR_CRYPTO, "cryptography failure")                                                      \
    X(QRL_ERR_TOKEN_REUSED, "refresh token reused")                                                \
    X(QRL_ERR_CLAIMED, "claimed by another device")                                                \
    X(QRL_ERR_CODE_MISMATCH, "code does not match")                                                \
    X(QRL_ERR_TOO_LARGE, "input too large")                                                        \
    X(QRL_ERR_INTERNAL, "internal error")                                                          \
    X(QRL_ERR_REVOKED, "revoked")                                                                  \
    X(QRL_ERR_BUSY, "temporarily unavailable")                                                     \
    X(QRL_ERR_INVALID_CLIENT, "client does not match")                                             \
    X(QRL_ERR_CANCELLED, "cancelled")                                                              \
    X(QRL_ERR_SUSPICIOUS, "blocked as suspicious")

#define QRL__ROW(code, text) [code] = text,
#define QRL__ONE(code, text) +1
static const char *const messages[QRL_ERR__COUNT] = {QRL__STRERROR_ROWS(QRL__ROW)};
_Static_assert(0 QRL__STRERROR_ROWS(QRL__ONE) == QRL_ERR__COUNT,
               "lib/error.c: every qrl_err needs exactly one description");

const char *qrl_strerror(qrl_err err)
{
    if ((unsigned)err < QRL_ERR__COUNT && messages[err] != NULL)
        return messages[err];
    return "unknown error";
}
