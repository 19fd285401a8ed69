/* SPDX-License-Identifier: MIT */
/*
 * qrlogin error codes.
 *
 * One enum for the whole project, as curl's CURLcode: 0 is success, every other value names one
 * failure, and numbers are never reused or renumbered. QRL_ERR__COUNT follows the last code.
 *
 * Adding a code: give it the next number (QRL_ERR__COUNT moves with it), then add its row to
 * the three tables keyed by this enum: the description in lib/error.c, the SDK's description
 * in client/errors.c, and the HTTP answer per endpoint class in server/http_util.c. Each table
 * is written as an X-macro list whose length is checked against QRL_ERR__COUNT at compile time,
 * so a forgotten row does not build.
 */
#ifndef QRLOGIN_ERROR_H
#define QRLOGIN_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qrl_err {
    QRL_OK = 0,
    QRL_ERR_NOMEM = 1,           /* out of memory */
    QRL_ERR_INVALID = 2,         /* malformed or out-of-range input */
    QRL_ERR_NOT_FOUND = 3,       /* no such object (or not visible to the caller) */
    QRL_ERR_EXISTS = 4,          /* unique key already taken */
    QRL_ERR_CONFLICT = 5,        /* object is not in the state the operation needs */
    QRL_ERR_EXPIRED = 6,         /* login request or token lifetime is over */
    QRL_ERR_DENIED = 7,          /* login request was declined (or its approver became invalid) */
    QRL_ERR_PENDING = 8,         /* login request not decided yet */
    QRL_ERR_SLOW_DOWN = 9,       /* client polls faster than its interval */
    QRL_ERR_REDEEMED = 10,       /* login request already redeemed */
    QRL_ERR_UNAUTHORIZED = 11,   /* missing or bad credentials / token */
    QRL_ERR_FORBIDDEN = 12,      /* authenticated, but not allowed */
    QRL_ERR_RATE_LIMITED = 13,   /* too many attempts; try later */
    QRL_ERR_STORE = 14,          /* storage backend failure */
    QRL_ERR_CRYPTO = 15,         /* crypto library failure */
    QRL_ERR_TOKEN_REUSED = 16,   /* a rotated refresh token was presented again */
    QRL_ERR_CLAIMED = 17,        /* login request was scanned by another phone */
    QRL_ERR_CODE_MISMATCH = 18,  /* confirmed user code does not match the request */
    QRL_ERR_TOO_LARGE = 19,      /* input exceeds its size limit */
    QRL_ERR_INTERNAL = 20,       /* bug or unexpected condition */
    QRL_ERR_REVOKED = 21,        /* device or token was revoked */
    QRL_ERR_BUSY = 22,           /* resource temporarily exhausted */
    QRL_ERR_INVALID_CLIENT = 23, /* client_id missing or does not match the request */
    QRL_ERR_CANCELLED = 24,      /* the caller cancelled the operation (client SDK) */
    QRL_ERR_SUSPICIOUS = 25,     /* refused as a phishing kit's pattern (qrl_block_reason) */
    /* Not an error: one past the last code, the length of every table keyed by qrl_err. */
    QRL_ERR__COUNT
} qrl_err;

/* Returns a static, human-readable English description of `err`. Never NULL. */
const char *qrl_strerror(qrl_err err);

#ifdef __cplusplus
}
#endif
#endif
