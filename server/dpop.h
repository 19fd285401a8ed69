/* SPDX-License-Identifier: MIT */
/*
 * DPoP proofs (RFC 9449) in the HTTP layer: reading the DPoP header, verifying a proof, the
 * RFC 7638 thumbprint of its key, and the answers that refuse one. The core sees only the key
 * (32 bytes) and the proof's identifier (qrl_dpop_jti_use); no JSON Web Token reaches it.
 *
 * Lifecycle of a proof in a handler: qrl__dpop_read() (the header and every check that needs
 * no store: structure, signature, method, URL, time, access-token hash), then the handler's
 * own lookups, then qrl__dpop_use() (the one write: the proof's jti is used up in the store),
 * so a proof that fails anything else costs no write. qrl__dpop_verify() is the pure part of
 * qrl__dpop_read(), for the unit tests and fuzzing.
 *
 * Only EdDSA proofs with Ed25519 keys are accepted: what the SDK and `qrlogin tv` make, and
 * what libsodium verifies. An ES256 or RS256 proof is refused with a sentence saying so.
 */
#ifndef QRLOGIN_SERVER_DPOP_H
#define QRLOGIN_SERVER_DPOP_H

#include <stdbool.h>
#include <stdint.h>

#include "http.h"

/* The longest DPoP header we read. An Ed25519 proof for one of our URLs is about 500 bytes;
 * 4 KiB leaves room for a long public URL and a client's extra members, and bounds the work
 * of a hostile one (libmicrohttpd's connection buffer bounds it anyway). */
#define QRL__DPOP_MAX_PROOF 4096
/* RFC 7638 thumbprint: base64url of SHA-256, 43 characters, and the NUL. */
#define QRL__JKT_BUF (QRL_DPOP_JKT_LEN + 1)

/* A proof that verified. */
typedef struct qrl__dpop {
    unsigned char key[QRL_PUBKEY_BYTES]; /* the Ed25519 public key of its jwk */
    char jkt[QRL__JKT_BUF];              /* that key's RFC 7638 thumbprint */
    char jti[QRL_DPOP_MAX_JTI + 1];
    int64_t iat_s;
} qrl__dpop;

/* What the request a proof came with was. All borrowed. */
typedef struct qrl__dpop_want {
    const char *htm;          /* the request's method */
    const char *htu;          /* the URL it was sent to: public URL + path, no query */
    const char *access_token; /* non-NULL: the proof must carry its hash (ath) */
    int64_t now_ms;           /* the core's clock */
} qrl__dpop_want;

/* Verifies `proof` (a DPoP header's value) against `want` (RFC 9449 section 4.3, checks 2 to
 * 12 but the replay check): QRL_OK with *out filled, or QRL_ERR_INVALID with a sentence for
 * the client in `why` (which never holds a secret). Touches no store and no clock. */
qrl_err qrl__dpop_verify(const char *proof, const qrl__dpop_want *want, qrl__dpop *out, char *why,
                         size_t whylen);

/* The RFC 7638 thumbprint of an Ed25519 key: base64url(SHA-256('{"crv":"Ed25519","kty":"OKP",
 * "x":"<base64url of the key>"}')), the members RFC 8037 section 2 requires, in order. */
void qrl__dpop_thumbprint(const unsigned char key[QRL_PUBKEY_BYTES], char out[QRL__JKT_BUF]);

/* Reads r's DPoP header and verifies it for `path` (the URL is the public URL + path) and
 * `access_token` (NULL: none): QRL_OK with *out, QRL_ERR_NOT_FOUND when there is no DPoP
 * header, QRL_ERR_INVALID with `why` (also for two DPoP headers, section 4.3 check 1). */
qrl_err qrl__dpop_read(qrl__req *r, const char *path, const char *access_token, qrl__dpop *out,
                       char *why, size_t whylen);
/* Uses up a verified proof's jti in the store (qrl_dpop_jti_use): QRL_OK, QRL_ERR_INVALID
 * with `why` for a replayed proof, or a store error. */
qrl_err qrl__dpop_use(qrl__req *r, const qrl__dpop *d, char *why, size_t whylen);

/* The token endpoint's refusal of a proof (RFC 9449 section 5): 400 invalid_dpop_proof with
 * `why`, or the usual answer of a store error rc. It carries a Date of the core's clock, so
 * that a client whose clock is off can make its next proof on the server's time. */
enum MHD_Result qrl__dpop_refuse(qrl__req *r, qrl_err rc, const char *why);
/* A resource's refusal (RFC 9449 section 7.1): 401 with WWW-Authenticate: DPoP naming
 * `error` (invalid_token or invalid_dpop_proof) and `why`, the same in the body, and the Date
 * of the core's clock. */
enum MHD_Result qrl__dpop_refuse_resource(qrl__req *r, const char *error, const char *why);

/* The 401 for an access token bound to a key that came as a bearer token (RFC 9449 section
 * 7.2), for a caller of qrl_device_auth_any() that got QRL_ERR_FORBIDDEN. */
enum MHD_Result qrl__dpop_refuse_bearer(qrl__req *r);

/* Authenticates "Authorization: DPoP <token>" (RFC 9449 section 7.1) on an endpoint that takes
 * a screen's access token: the request's proof (method, URL, the token's hash) is checked, then
 * the token (it must be bound to the proof's key: qrl_device_auth_dpop), then the proof is used
 * up. Answers 401 itself (invalid_dpop_proof or invalid_token, with the DPoP challenge) and
 * returns false on failure. A held request may call it again when it resumes: the proof is
 * checked and spent once, and its key kept in r (r->dpop). */
bool qrl__dpop_auth(qrl__req *r, const char *token, qrl_auth *auth, enum MHD_Result *ret);

/* qrl_handoff.dpop_key for the core: the key a held token request proved (r->dpop). */
int qrl__dpop_held_key(void *srv, void *held, unsigned char key[QRL_PUBKEY_BYTES]);

#endif
