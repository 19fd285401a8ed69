/* SPDX-License-Identifier: MIT */
/*
 * The phone-server protocol of qrlogin that both sides must compute byte for byte: the signed
 * decision on a login request.
 *
 * A phone with a registered device key (Ed25519) approves or declines a login request by
 * signing one short message, and the server verifies that signature against the key it keeps
 * for the phone. The message binds the request id, the decision, the single-use nonce the server
 * issued when this phone claimed the request, and the user code the person confirmed:
 *
 *     "qrlogin-decision-v1\n<id>\n<decision>\n<nonce>\n<USERCODE>\n"
 *
 * with the id in decimal, the decision "approve" or "deny", the nonce as the server sent it
 * (base64url), and the user code in canonical form (8 letters, no dash). A captured signature
 * therefore cannot be replayed (the nonce is used once), turned into the other decision, or
 * moved to another request. The "-v1" names this layout: a change of layout is a new version
 * string, never a silent change of these bytes.
 *
 * This header is the whole contract. It depends on libsodium only, not on the server's core,
 * so a phone (the `qrlogin phone` command, or an app) links the small qrlogin_protocol library
 * and nothing else of the server. qrl_decision_sign() and qrl_decision_verify() call
 * sodium_init() themselves (it is idempotent); the other functions need no initialisation.
 *
 * Ownership: every function takes caller-owned buffers and borrowed strings, valid for the call
 * only; nothing is allocated and nothing is kept. Every function is thread-safe.
 */
#ifndef QRLOGIN_PROTOCOL_H
#define QRLOGIN_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "qrlogin/error.h"
#include "qrlogin/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define QRL_PROTOCOL_NODISCARD __attribute__((warn_unused_result))
#else
#define QRL_PROTOCOL_NODISCARD
#endif

/* The letters of a user code: RFC 8628 section 6.1's base-20 alphabet, without vowels (no
 * words) and without letters easily mistaken for digits. */
#define QRL_USER_CODE_ALPHABET "BCDFGHJKLMNPQRSTVWXZ"

/* Ed25519 (libsodium crypto_sign): public key, secret key (seed and public key) and signature
 * sizes. */
#define QRL_DECISION_PUBKEY_BYTES 32
#define QRL_DECISION_SECKEY_BYTES 64
#define QRL_DECISION_SIG_BYTES 64
/* A signature travels as base64url without padding: 86 characters + NUL. */
#define QRL_DECISION_SIG_B64_BUF 88
/* A buffer that holds every valid message and its NUL. The longest is 91 bytes: the prefix
 * line (20), an id of 19 digits, "approve", a nonce of QRL_MAX_NONCE, the user code
 * and their four newlines, and the NUL. */
#define QRL_DECISION_MSG_BUF 112

typedef enum qrl_decision { QRL_DECISION_APPROVE = 1, QRL_DECISION_DENY = 2 } qrl_decision;

/* The fields a decision signature covers. All borrowed for the call. */
typedef struct qrl_decision_msg {
    int64_t lr_id;         /* the login request's id, as the server's view gives it */
    qrl_decision decision; /* approve or deny */
    const char *nonce;     /* the nonce from the server's view of the claimed request */
    const char *user_code; /* the user code, canonical or as displayed ("WDJB-MJHT") */
} qrl_decision_msg;

/* Canonicalises a typed user code (RFC 8628 section 6.1): uppercase, dashes and spaces dropped;
 * it must then be exactly QRL_USER_CODE_LEN letters of QRL_USER_CODE_ALPHABET, and the input at
 * most QRL_MAX_USER_CODE_INPUT bytes. `out` has QRL_USER_CODE_LEN + 1 bytes and receives the
 * code with a NUL. QRL_ERR_INVALID otherwise (then `out` holds nothing useful). */
qrl_err qrl_user_code_normalize(const char *in, char *out);

/* Writes the canonical bytes of `m` (the layout above, user code canonicalised) and a NUL into
 * `buf`, which has `len` bytes (QRL_DECISION_MSG_BUF is always enough). Returns the number of
 * bytes of the message, without the NUL, or 0 when `len` is too small or a field is invalid: an
 * unknown decision, a negative id, a nonce that is empty, longer than QRL_MAX_NONCE or
 * not base64url, or a user code that qrl_user_code_normalize() refuses. */
size_t qrl_decision_bytes(const qrl_decision_msg *m, char *buf, size_t len);

/* For the phone: signs the decision with the device's Ed25519 secret key `seckey` of
 * `seckey_len` (QRL_DECISION_SECKEY_BYTES) bytes, and writes the signature as base64url
 * without padding into `sig_b64` (QRL_DECISION_SIG_B64_BUF bytes). The secret key stays the
 * caller's to wipe (sodium_memzero) after use. QRL_OK, QRL_ERR_INVALID when the message or the
 * key length is invalid, QRL_ERR_CRYPTO when libsodium cannot be initialised. */
qrl_err qrl_decision_sign(const qrl_decision_msg *m, const unsigned char *seckey, size_t seckey_len,
                          char sig_b64[QRL_DECISION_SIG_B64_BUF]);

/* For the server: verifies `sig_b64` (base64url, no padding, as the phone sends it) over the
 * canonical bytes of `m` with the phone's public key `pubkey` of `pubkey_len`
 * (QRL_DECISION_PUBKEY_BYTES) bytes. QRL_OK only when the signature is valid; QRL_ERR_FORBIDDEN
 * for any refusal: a key or signature of the wrong length, a signature that is not base64url,
 * a message that qrl_decision_bytes() refuses, or a signature that does not verify (libsodium
 * also refuses small-order keys). The result must be checked. */
QRL_PROTOCOL_NODISCARD qrl_err qrl_decision_verify(const qrl_decision_msg *m,
                                                   const unsigned char *pubkey, size_t pubkey_len,
                                                   const char *sig_b64);

/* "approve" or "deny"; NULL for any other value. Static strings. */
const char *qrl_decision_name(qrl_decision d);
/* The decision named "approve" or "deny"; 0 (no decision) for anything else, NULL included. */
qrl_decision qrl_decision_parse(const char *name);

/* What a phone does with the text of a scanned QR code, or with a code the user typed: turns
 * it into the {code} of GET /v1/login-requests/{code}. A qrlogin QR code holds an http(s) URL
 * whose fragment is the scan secret ("https://host/s#qrl_ss_..."): the fragment is taken and
 * the rest of the URL ignored (the phone asks its own server, never the URL's host). Any other
 * text is taken as a typed user code or scan secret. Spaces become '-' (the server ignores
 * dashes in user codes), so the code is safe in a URL path. Writes the code and a NUL into
 * `code` of `len` bytes (QRL_MAX_TOKEN + 1 holds every code the server accepts) and returns
 * QRL_OK; QRL_ERR_NOT_FOUND when `text` is an http(s) URL without a "#qrl_ss_" fragment (a QR
 * code of something else); QRL_ERR_INVALID when the code is empty, does not fit, or holds
 * anything but ASCII letters, digits, '-', '_' and spaces (then `code` holds "" when len > 0). */
qrl_err qrl_login_code_parse(const char *text, char *code, size_t len);

#ifdef __cplusplus
}
#endif
#endif
