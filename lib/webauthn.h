/* SPDX-License-Identifier: MIT */
/*
 * WebAuthn message parsing and signature checks (W3C WebAuthn Level 2), shared by passkey.c.
 * Pure functions over caller-owned bytes: no store, no core, no clock. CBOR is read with
 * libcbor, signatures are verified with libfido2, JSON is read by a small strict reader here.
 *
 * Every parser bounds its input by limits.h and fills a caller-owned struct; pointers in the
 * structs point into the caller's input and live as long as it does (libcbor's copies of
 * byte strings are copied into the struct, never pointed at).
 */
#ifndef QRLOGIN_LIB_WEBAUTHN_H
#define QRLOGIN_LIB_WEBAUTHN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qrlogin/core.h"

/* COSE algorithm identifiers (IANA COSE Algorithms registry; WebAuthn Level 2 section 5.8.5). */
#define QRL__COSE_ES256 (-7)
#define QRL__COSE_EDDSA (-8)
#define QRL__COSE_RS256 (-257)

/* authenticatorData flags (WebAuthn Level 2 section 6.1). */
#define QRL__WA_UP 0x01u /* user present */
#define QRL__WA_UV 0x04u /* user verified */
#define QRL__WA_AT 0x40u /* attested credential data included */
#define QRL__WA_ED 0x80u /* extension data included */

/* Origins we compare against: scheme, host and port; 255 is far beyond any real one. */
#define QRL__WA_MAX_ORIGIN 255
/* The challenge, decoded: 256 bits, twice the 16 bytes section 13.4.3 asks for at least. */
#define QRL__WA_CHALLENGE_BYTES 32

/* The members of CollectedClientData (section 5.8.1) that the relying party checks. */
typedef struct qrl__wa_client {
    char type[16];                       /* "webauthn.create" or "webauthn.get" */
    char challenge[QRL_CHALLENGE_BUF];   /* base64url, as the browser copied it */
    char origin[QRL__WA_MAX_ORIGIN + 1]; /* the caller's origin */
    bool cross_origin;                   /* crossOrigin: true (false when absent) */
} qrl__wa_client;

/* Reads clientDataJSON strictly: one JSON object in UTF-8 (every string well-formed UTF-8), no
 * escaped top-level member names, type, challenge, origin and crossOrigin each at most once,
 * the string members type, challenge and origin present and free of escapes (none of them ever
 * needs one), crossOrigin a boolean when present; other members are checked for syntax (with
 * bounded nesting) and skipped. QRL_ERR_INVALID when it is not so. */
qrl_err qrl__wa_client_parse(const unsigned char *json, size_t len, qrl__wa_client *out);

/* authenticatorData (section 6.1) and, with flag AT, its attested credential data (6.5.1). */
typedef struct qrl__wa_authdata {
    const unsigned char *raw; /* the whole input */
    size_t len;
    const unsigned char *rp_id_hash; /* 32 bytes */
    uint8_t flags;
    uint32_t sign_count;
    /* Flag AT only: */
    const unsigned char *cred_id;
    size_t cred_id_len;
    int alg;                                      /* COSE algorithm of the credential public key */
    unsigned char pubkey[QRL_MAX_PASSKEY_PUBKEY]; /* libfido2's form, see qrl_passkey_rec */
    size_t pubkey_len;
} qrl__wa_authdata;

/* Parses authenticatorData; every byte must belong to a part the flags announce. With flag AT
 * the credential public key must be an ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA-2048)
 * COSE_Key. QRL_ERR_INVALID when malformed, QRL_ERR_FORBIDDEN for a well-formed key of another
 * algorithm or curve. */
qrl_err qrl__wa_authdata_parse(const unsigned char *p, size_t len, qrl__wa_authdata *out);

/* An attestationObject (section 6.5): {fmt, attStmt, authData}. */
typedef struct qrl__wa_attestation {
    char fmt[32];
    unsigned char authdata[QRL_MAX_AUTHENTICATOR_DATA];
    size_t authdata_len;
    size_t att_stmt_members; /* 0 for "none" */
    bool has_alg, has_x5c;
    int alg;                                       /* attStmt.alg ("packed") */
    unsigned char sig[QRL_MAX_WEBAUTHN_SIGNATURE]; /* attStmt.sig ("packed") */
    size_t sig_len;
} qrl__wa_attestation;

/* Parses an attestationObject with nothing after it. QRL_ERR_INVALID when malformed. */
qrl_err qrl__wa_attestation_parse(const unsigned char *p, size_t len, qrl__wa_attestation *out);

/* True when `hash` (32 bytes) is SHA-256 of `rp_id` (section 7.1 step 13, 7.2 step 15). */
bool qrl__wa_rp_id_hash_ok(const unsigned char *hash, const char *rp_id);

/* Verifies a signature by the public key (alg, pubkey) over authData || cdh, where cdh is
 * SHA-256(clientDataJSON), with libfido2, which also checks rpIdHash against `rp_id` and that UP
 * and UV are set. QRL_OK or QRL_ERR_FORBIDDEN (QRL_ERR_NOMEM when libfido2 cannot allocate). */
qrl_err qrl__wa_sig_verify(int alg, const unsigned char *pubkey, size_t pubkey_len,
                           const char *rp_id, const unsigned char *authdata, size_t authdata_len,
                           const unsigned char cdh[32], const unsigned char *sig, size_t sig_len);

/* Verifies "packed" self-attestation (section 8.2, no x5c): attStmt.sig by the new credential's
 * own key over authData || cdh, also with libfido2. QRL_OK or QRL_ERR_FORBIDDEN. */
qrl_err qrl__wa_packed_self_verify(const qrl__wa_authdata *ad, const char *rp_id,
                                   const unsigned char cdh[32], const unsigned char *sig,
                                   size_t sig_len);

/* Decodes base64url without padding into out[0..cap); false (and *len 0) when empty, malformed
 * (any character outside A-Z a-z 0-9 - _, padding, or non-zero trailing bits) or too long. */
bool qrl__wa_b64_decode(const char *in, unsigned char *out, size_t cap, size_t *len);

#endif
