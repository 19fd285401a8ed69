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
 * It also holds the other things both sides read the same way: where the scan secret sits in a
 * QR code's text, and how a QR code names the key of the screen that made it (below, "The
 * screen's key in the QR code").
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

/* --- the screen's key in the QR code -------------------------------------------------------
 *
 * A screen that holds a DPoP key (RFC 9449) names it when it asks for a login request: the
 * request keeps the key's RFC 7638 thumbprint ("dpop_jkt", QRL_DPOP_JKT_LEN characters of
 * base64url), only a proof made with that key redeems it, and the request's QR code carries the
 * thumbprint's first QRL_KEY_HINT_LEN characters, its short form, as the query parameter "k":
 *
 *     https://host/s?k=kPrK_qmx#qrl_ss_...
 *
 * The phone compares that short form with the thumbprint the server gives for the request the
 * scan secret opened (qrl_key_hint_matches). They agree when the QR code was made for the
 * request by whoever made the request; they differ when a QR code pairs a request with the
 * short form of another key (one copied from a genuine screen's QR code, say, so that the
 * approval looks as if it goes to that screen), or names a key while the request has none.
 * Then the phone must not offer to approve: the credential would go to another key than the
 * one the QR code names.
 *
 * Why 8 characters: they are the thumbprint's first 48 bits. A key whose thumbprint starts with
 * the same 48 bits as a given one takes about 2^47 key generations and SHA-256 runs to find,
 * far beyond a request's lifetime of minutes, while the QR code grows by 11 characters only
 * (at most one QR version). Why the query and not the fragment: the fragment is the scan secret
 * and nothing else, as every reader of our QR codes takes it; the short form is no secret, and
 * in the query it leaves those readers as they are.
 *
 * For people, qrl_key_fingerprint() turns a thumbprint (or its short form) into
 * "KEY 3F7A-91C2": the thumbprint's first 4 bytes in hexadecimal. A screen may show it next to
 * its user code, and a phone shows it with the approval; hex digits are never mistaken for a
 * user code, which has letters only. */

/* Characters of the QR code's short form of a key: base64url of the thumbprint's first 6 bytes. */
#define QRL_KEY_HINT_LEN 8
#define QRL_KEY_HINT_BUF (QRL_KEY_HINT_LEN + 1)
/* "KEY 3F7A-91C2" and the NUL. */
#define QRL_KEY_FINGERPRINT_BUF 14

/* Nonzero when `jkt` is an RFC 7638 SHA-256 thumbprint as RFC 9449 writes it: exactly
 * QRL_DPOP_JKT_LEN characters of base64url without padding that decode to 32 bytes (the last
 * character carries 4 bits, its 2 unused bits zero). */
int qrl_dpop_jkt_valid(const char *jkt);

/* Writes the short form of thumbprint `jkt` (its first QRL_KEY_HINT_LEN characters) and a NUL
 * into `hint`. QRL_ERR_INVALID (and "") when qrl_dpop_jkt_valid() refuses `jkt`. */
qrl_err qrl_key_hint(const char *jkt, char hint[QRL_KEY_HINT_BUF]);

/* Nonzero when `hint` is a short form (QRL_KEY_HINT_LEN characters of base64url) and `jkt` a
 * valid thumbprint that starts with it. */
int qrl_key_hint_matches(const char *hint, const char *jkt);

/* Writes "KEY XXXX-XXXX" and a NUL into `out`: the first 4 bytes of the thumbprint in upper-case
 * hexadecimal. `key` is a thumbprint or its short form (both begin with those bytes, so both
 * give the same fingerprint). QRL_ERR_INVALID (and "") for anything else. */
qrl_err qrl_key_fingerprint(const char *key, char out[QRL_KEY_FINGERPRINT_BUF]);

/* Reads the short form of the screen's key from the text of a scanned QR code: the value of
 * the parameter "k" in the query of an http(s) URL (after the first '?' and before the first
 * '#'). QRL_OK with it and a NUL in `hint`; QRL_ERR_NOT_FOUND when `text` is no http(s) URL or
 * its query has no "k" (a QR code of a request that names no key, or a typed code: the phone
 * then has nothing to compare, and shows the key the server names, if any); QRL_ERR_INVALID
 * when "k" is there but is not QRL_KEY_HINT_LEN characters of base64url, or is there twice (a
 * phone treats that as a short form that does not match). `hint` holds "" unless QRL_OK. */
qrl_err qrl_login_key_hint_parse(const char *text, char hint[QRL_KEY_HINT_BUF]);

#ifdef __cplusplus
}
#endif
#endif
