/* SPDX-License-Identifier: MIT */
/*
 * qrlogin core: login requests, tokens, accounts, devices and policy, independent of HTTP.
 *
 * Lifecycle: qrl_core_new() -> use from any number of threads -> qrl_core_free(). The core
 * borrows the store (the caller closes it after qrl_core_free). Every function is thread-safe.
 *
 * Secrets handed out by the core (device codes, scan secrets, tokens) are written into caller
 * buffers of QRL_SECRET_BUF bytes; the caller should sodium_memzero() them after use. The core
 * keeps only their hashes.
 */
#ifndef QRLOGIN_CORE_H
#define QRLOGIN_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "qrlogin/error.h"
#include "qrlogin/limits.h"
#include "qrlogin/protocol.h"
#include "qrlogin/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every secret we issue fits: "qrl_xx_" + 43 base64url characters + NUL. */
#define QRL_SECRET_BUF 64
/* "WDJB-MJHT" + NUL */
#define QRL_USER_CODE_BUF 10

typedef struct qrl_core qrl_core;

/* Called after every state change of a login request, with the request id: those this process
 * made, and those the store reports from elsewhere (store.h, set_notify: there a negative id
 * is a revoked device and 0 means "anything may have changed"). Also with qrl_notice_key() of
 * an account when a notice was recorded for it (below -2^62; see "notices").
 * Used by the server to wake held requests. Must be quick and must not call back into the
 * core. */
typedef void (*qrl_change_fn)(void *ud, int64_t lr_id);

struct qrl_tokens;

/* A screen's token request held on this node can be handed to the approval of its login
 * request, so that approval and redemption are one durable commit and the screen is answered
 * with its tokens as soon as the phone is (see qrl_lr_approve). Both functions must be quick
 * and must not call back into the core. */
typedef struct qrl_handoff {
    /* Takes one live request held for lr_id away from its other wake-ups and copies the screen's
     * address into `address`; returns it, or NULL when none is held here. */
    void *(*take)(void *ud, int64_t lr_id, char *address, size_t len);
    /* Answers a taken request exactly once: with the tokens when rc is QRL_OK; any other rc
     * puts it back to waiting (it re-reads the state). */
    void (*give)(void *ud, void *held, qrl_err rc, const struct qrl_tokens *tokens);
    void *ud;
    /* Optional (NULL: every held request is a bearer client). The DPoP key (RFC 9449) that
     * the taken request proved when it arrived: copies it into `key` and returns 1, or returns
     * 0 for a request without a proof. The redemption binds the screen's tokens to that key,
     * as qrl_token_device_code_dpop() would have. */
    int (*dpop_key)(void *ud, void *held, unsigned char key[QRL_PUBKEY_BYTES]);
} qrl_handoff;

/* A rate limit: `count` attempts at once, then one every window_s / count seconds (GCRA: no
 * span of window_s holds more than count + 1). count 0 turns it off. */
typedef struct qrl_limit {
    int64_t count;
    int64_t window_s;
} qrl_limit;

typedef struct qrl_config {
    int64_t request_ttl_s; /* login request lifetime; default 120 */
    int64_t access_ttl_s;  /* access token lifetime; default 3600 */
    int64_t refresh_ttl_s; /* refresh token lifetime; default 30 days */
    int64_t session_ttl_s; /* phone session lifetime; default 30 days */
    /* A linked device unused this long stops working (its tokens and session are refused) and
     * is listed as expired; default 30 days, 0: never. Use is an authenticated request, a
     * refresh or an introspection of its access token. */
    int64_t device_idle_ttl_s;
    /* Refresh tokens stop this long after their device was linked, however often they were
     * rotated (the screen then signs in again); default 180 days, 0: never. */
    int64_t refresh_max_ttl_s;
    /* The notice of a new device (qrl_notices_list) offers its one-tap revoke, which needs no
     * step-up, for this long after the device was linked; later only the devices list removes
     * it. Default 3600; 0 turns the shortcut off; at most 604800 (7 days). */
    int64_t notice_revoke_window_s;
    int interval_s;        /* RFC 8628 polling interval; default 5 */
    /* User-code misses per account and per client address (an IPv6 address counts by its
     * /64); a lookup that finds its request is not counted. Defaults 5 and 20 per 15 minutes:
     * docs/security.md has the RFC 8628 section 5.1 arithmetic. */
    qrl_limit user_code_account;
    qrl_limit user_code_addr;
    /* Password failures per username and per client address (sign-in and step-up): defaults
     * 10 and 50 per 15 minutes. */
    qrl_limit sign_in_user;
    qrl_limit sign_in_addr;
    /* Device authorizations per client address (an IPv6 address counts by its /64) and per
     * client_id: defaults 120 and 60000 per 10 minutes. The address limit also caps the live
     * requests one address can have: count + request_ttl_s / (window_s / count). */
    qrl_limit device_auth_addr;
    qrl_limit device_auth_client;
    /* Approvals and denials per account (default 30 per 10 minutes) and refresh-token grants
     * per device (default 30 per 10 minutes). */
    qrl_limit approve_account;
    qrl_limit refresh_device;
    /* Detection of device-code phishing kits (lib/phishing.c, docs/security.md "Detection"),
     * each 0 to turn it off. The distinct networks (an IPv4 address counts by its /24, an IPv6
     * one by its /64) that may look up one login request by its scan secret or user code; the
     * first lookup from one more is refused and the request denied. Default 3. */
    int64_t max_lookup_networks;
    /* The distinct accounts that may approve requests started from one screen address (an
     * IPv6 address counts by its /64) within approvers_window_s; an approval by one more
     * account is refused and its request denied. Defaults 5 per 86400 s (1 to 2592000). */
    int64_t max_approvers_per_address;
    int64_t approvers_window_s;
    /* Optional (NULL: no deny list): nonzero when `address`, where a login request was started,
     * lies in a network the operator denies (qrlogin serve --deny-networks). Such a request
     * cannot be approved; the phone's view says so up front. Called from any thread; must be
     * quick and must not call back into the core. */
    int (*network_denied)(void *ud, const char *address);
    void *network_denied_ud;
    /* Argon2id cost for new password hashes; 0 = libsodium INTERACTIVE. */
    unsigned long long pwhash_ops;
    size_t pwhash_mem;
    qrl_change_fn on_change;
    void *on_change_ud;
    qrl_handoff handoff; /* optional: all NULL disables it */
} qrl_config;

/* Fills `cfg` with the defaults above. */
void qrl_config_defaults(qrl_config *cfg);
/* Turns every rate limit of `cfg` off (benchmarks from one address). */
void qrl_config_no_limits(qrl_config *cfg);

/* Nonzero when `dev` has not been used for longer than device_idle_ttl_s at now_ms: it no
 * longer works and is listed as expired. */
int qrl_device_idle(const qrl_core *core, const qrl_device_rec *dev, int64_t now_ms);

/* After a call of this thread returned QRL_ERR_RATE_LIMITED: the seconds until the limit that
 * refused it takes an attempt again (at least 1), for a Retry-After header. Like errno, it
 * belongs to the calling thread and holds until its next refusal. */
int64_t qrl_retry_after_s(void);

/* The configuration in force (borrowed; valid while the core lives). */
const qrl_config *qrl_core_config(const qrl_core *core);

/* Creates a core over a borrowed store (store version 8 or later). Initialises libsodium. Free
 * with qrl_core_free. QRL_ERR_INVALID for a bad configuration or an older store. */
qrl_err qrl_core_new(const qrl_config *cfg, qrl_store *store, qrl_core **out);
void qrl_core_free(qrl_core *core);

/* A read scope for the calling thread: the store may answer its reads up to its next
 * write, or to qrl_core_read_end(), from one snapshot instead of one each (store.h,
 * read_begin). The server opens one for each authenticated phone call. Does nothing where the
 * store has no scopes. Scopes nest; each qrl_core_read_begin() needs its qrl_core_read_end(). */
void qrl_core_read_begin(qrl_core *core);
void qrl_core_read_end(qrl_core *core);

/* The core's clock, in milliseconds since the Unix epoch. In builds with QRL_TEST_HOOKS it can
 * be moved forward with qrl_core_clock_advance(). */
int64_t qrl_core_now_ms(const qrl_core *core);
#ifdef QRL_TEST_HOOKS
void qrl_core_clock_advance(qrl_core *core, int64_t ms);
#endif

/* --- accounts --------------------------------------------------------------------------- */

/* Creates an account. Username: 1..QRL_MAX_USERNAME of [A-Za-z0-9._@-]. Password:
 * 1..QRL_MAX_PASSWORD bytes. display_name NULL means the username. */
qrl_err qrl_account_add(qrl_core *core, const char *username, const char *display_name,
                        const char *password, int64_t *id_out);
/* Sets a new password for an existing account. */
qrl_err qrl_account_set_password(qrl_core *core, const char *username, const char *password);

/* --- RFC 8628 screen side ---------------------------------------------------------------- */

typedef struct qrl_device_auth {
    char device_code[QRL_SECRET_BUF];
    char scan_secret[QRL_SECRET_BUF];
    char user_code[QRL_USER_CODE_BUF]; /* display form, XXXX-XXXX */
    int64_t expires_in_s;
    int interval_s;
    int64_t lr_id;
    /* The thumbprint of the screen's DPoP key the request is bound to (qrl_device_authorize_dpop),
     * "" when it names none. Its short form goes into the QR code (qrlogin/protocol.h). */
    char dpop_jkt[QRL_DPOP_JKT_LEN + 1];
} qrl_device_auth;

/* RFC 8628 section 3.1/3.2. device_kind NULL means "other"; it must be one of tv, browser,
 * desktop, cli, other. device_name NULL means "Unnamed device". device_platform, what the
 * screen runs on ("Samsung Tizen", "Chrome on Linux"), is shown to the approving phone next to
 * the kind: NULL or "" means unknown (stored as ""); otherwise at most QRL_MAX_DEVICE_PLATFORM
 * bytes of UTF-8 text without control characters, like device_name. Every string is borrowed
 * for the call only. QRL_ERR_INVALID when an argument is not valid. */
qrl_err qrl_device_authorize_platform(qrl_core *core, const char *client_id, const char *scope,
                                      const char *device_name, const char *device_kind,
                                      const char *device_platform, const char *address,
                                      qrl_device_auth *out);
/* qrl_device_authorize_platform() for a screen that names its DPoP key (RFC 9449 section 10,
 * dpop_jkt, applied to the device authorization request): `dpop_jkt` is the key's RFC 7638
 * thumbprint (qrl_dpop_jkt_valid), or NULL or "" for none. The request keeps it, and only a
 * token request with a proof made with that key redeems it (qrl_token_device_code_dpop); the
 * approving phone is shown it. QRL_ERR_INVALID for a thumbprint that is not one. */
qrl_err qrl_device_authorize_dpop(qrl_core *core, const char *client_id, const char *scope,
                                  const char *device_name, const char *device_kind,
                                  const char *device_platform, const char *dpop_jkt,
                                  const char *address, qrl_device_auth *out);
/* qrl_device_authorize_platform() with no platform (device_platform NULL). */
qrl_err qrl_device_authorize(qrl_core *core, const char *client_id, const char *scope,
                             const char *device_name, const char *device_kind, const char *address,
                             qrl_device_auth *out);

typedef struct qrl_tokens {
    char access_token[QRL_SECRET_BUF];
    char refresh_token[QRL_SECRET_BUF];
    int64_t expires_in_s;
    char scope[QRL_MAX_SCOPE + 1];
    int64_t device_id;
    int64_t account_id;
    /* 1: both tokens are bound to the screen's DPoP key (RFC 9449; token_type "DPoP"), so
     * they work only with a proof made with it; 0: bearer tokens. */
    int dpop_bound;
} qrl_tokens;

/* Flags for qrl_token_device_code. */
#define QRL_POLL_WAIT 1u    /* the client asked to be held (Prefer: wait >= 1) */
#define QRL_POLL_RECHECK 2u /* re-evaluation of a held request: no rate bookkeeping */
#define QRL_POLL_FINAL 4u   /* the hold is over: answer now, never ask to hold again */
/* Answer only from memory (a plain poll of a request this process knows to be pending), never
 * touching the store: QRL_ERR_NOT_FOUND means "ask again without this flag". */
#define QRL_POLL_MEMORY 8u

typedef struct qrl_poll_result {
    int64_t lr_id;      /* known once the device code matched */
    qrl_lr_state state; /* state seen */
    int hold;           /* QRL_ERR_PENDING only: the caller may hold the request */
    int64_t expires_ms; /* the request's expiry, to bound a hold */
    int interval_s;     /* current interval (after slow_down) */
    qrl_tokens tokens;  /* QRL_OK only */
} qrl_poll_result;

/* RFC 8628 section 3.4/3.5: the device_code grant. Returns
 *   QRL_OK (tokens issued, request now REDEEMED), QRL_ERR_PENDING (res->state tells PENDING or
 *   SCANNED; res->hold says whether the server may hold it), QRL_ERR_SLOW_DOWN,
 *   QRL_ERR_DENIED, QRL_ERR_EXPIRED, QRL_ERR_REDEEMED (reuse: invalid_grant),
 *   QRL_ERR_NOT_FOUND (unknown code: invalid_grant), QRL_ERR_INVALID_CLIENT,
 *   QRL_ERR_INVALID. */
qrl_err qrl_token_device_code(qrl_core *core, const char *client_id, const char *device_code,
                              unsigned flags, int wait_s, const char *address,
                              qrl_poll_result *res);
/* qrl_token_device_code() for a screen that proved a DPoP key (RFC 9449; NULL: none): a
 * redemption stores the key in the new device (store.h, qrl_device_rec.pubkey) and the tokens
 * are bound to it (res->tokens.dpop_bound). The caller has verified the proof; the key is
 * borrowed for the call. A request that named a key at device authorization (its dpop_jkt)
 * answers only a proof of that very key, in every state: QRL_ERR_UNAUTHORIZED without a proof,
 * QRL_ERR_FORBIDDEN with a proof of another key (both invalid_dpop_proof for the client). Such a
 * refusal comes before the poll is counted, so nothing changes: the request stays as it was, to
 * be redeemed with the right key. */
qrl_err qrl_token_device_code_dpop(qrl_core *core, const char *client_id, const char *device_code,
                                   unsigned flags, int wait_s, const char *address,
                                   const unsigned char *dpop_key, qrl_poll_result *res);

/* RFC 6749 section 6 with rotation. client_id NULL: the refresh token's own client (public
 * clients need not send it); a client_id that is given must be the token's.
 * QRL_ERR_TOKEN_REUSED revokes the device. */
qrl_err qrl_token_refresh(qrl_core *core, const char *client_id, const char *refresh_token,
                          qrl_tokens *out);
/* qrl_token_refresh() with the DPoP key the request proved (NULL: none). A refresh token bound
 * to a key (RFC 9449 section 5: its device has one) needs a proof with that very key:
 * QRL_ERR_UNAUTHORIZED without one, QRL_ERR_FORBIDDEN with another key; either way nothing is
 * rotated or counted. The new pair stays bound (out->dpop_bound). A device linked without a
 * key keeps bearer tokens whether or not a proof comes: binding happens at sign-in only. */
qrl_err qrl_token_refresh_dpop(qrl_core *core, const char *client_id, const char *refresh_token,
                               const unsigned char *dpop_key, qrl_tokens *out);

/* --- phone side ------------------------------------------------------------------------- */

typedef struct qrl_auth {
    int64_t account_id;
    int64_t device_id;
    qrl_account_rec account;
    qrl_device_rec device;
} qrl_auth;

typedef struct qrl_session {
    char session_token[QRL_SECRET_BUF];
    int64_t device_id;
    int64_t expires_in_s;
    qrl_account_rec account;
} qrl_session;

/* POST /v1/sessions: password sign-in of a phone. Creates a device of kind `device_kind`
 * (default "phone"). Rate-limited per username and address. */
qrl_err qrl_session_create(qrl_core *core, const char *username, const char *password,
                           const char *device_name, const char *device_kind, const char *address,
                           qrl_session *out);

/* Authenticates a phone session bearer token. QRL_ERR_UNAUTHORIZED when unknown, expired,
 * revoked, or the device/account is no longer valid. Updates the device's last-seen time. */
qrl_err qrl_session_auth(qrl_core *core, const char *token, const char *address, qrl_auth *out);
/* As qrl_session_auth, but also accepts a screen's access token (for read-only calls such as
 * GET /v1/me, which a signed-in TV uses to greet the user). Never use it where a phone acts.
 * An access token bound to a DPoP key is no bearer token (RFC 9449 section 7.2): it is refused
 * with QRL_ERR_FORBIDDEN (QRL_ERR_UNAUTHORIZED for every other refusal), so that the caller
 * can tell the client to use DPoP. */
qrl_err qrl_device_auth_any(qrl_core *core, const char *token, const char *address, qrl_auth *out);
/* A screen's access token presented with a DPoP proof (RFC 9449 section 7.1) whose key the
 * caller has verified: accepted only when the token is bound to exactly that key.
 * QRL_ERR_UNAUTHORIZED otherwise (a session token, a bearer token, another key). */
qrl_err qrl_device_auth_dpop(qrl_core *core, const char *token,
                             const unsigned char dpop_key[QRL_PUBKEY_BYTES], const char *address,
                             qrl_auth *out);

/* Why a login request was blocked as a phishing kit's (QRL_ERR_SUSPICIOUS; docs/security.md,
 * "Detection"). Numbers are never reused. */
typedef enum qrl_block_reason {
    QRL_BLOCK_NONE = 0,
    QRL_BLOCK_MANY_NETWORKS = 1,  /* its code was looked up from too many networks */
    QRL_BLOCK_DENIED_NETWORK = 2, /* it was started from a network on the deny list */
    QRL_BLOCK_MANY_ACCOUNTS = 3   /* its screen's address is approved by too many accounts */
} qrl_block_reason;

/* "many_networks", "denied_network", "many_accounts"; "" for QRL_BLOCK_NONE. Never NULL. */
const char *qrl_block_reason_name(qrl_block_reason reason);
/* After a call of this thread returned QRL_ERR_SUSPICIOUS: why. Like qrl_retry_after_s(), it
 * belongs to the calling thread and holds until its next such refusal: a refusal's detail for
 * the caller's answer and audit line, without a new argument on every decision function. */
qrl_block_reason qrl_last_block_reason(void);

typedef struct qrl_lr_view {
    qrl_lr_rec lr;
    char user_code[QRL_USER_CODE_BUF]; /* display form */
    int same_network;
    int64_t age_s;
    int64_t expires_in_s;
    /* QRL_BLOCK_DENIED_NETWORK when the request was started from a denied network: it cannot
     * be approved, and the phone says so before anyone tries; else QRL_BLOCK_NONE. */
    qrl_block_reason blocked;
} qrl_lr_view;

/* Looks up a login request by scan secret ("qrl_ss_...") or user code (any case, dashes,
 * spaces) and claims it for the calling phone (PENDING -> SCANNED). Viewing a request this
 * phone already claimed is allowed again. QRL_ERR_CLAIMED if another phone claimed it,
 * QRL_ERR_NOT_FOUND, QRL_ERR_EXPIRED, QRL_ERR_CONFLICT (decided already; view->lr.state says),
 * QRL_ERR_RATE_LIMITED, QRL_ERR_SUSPICIOUS (the code was looked up from more networks than
 * max_lookup_networks: the request is now DENIED; qrl_last_block_reason() says why). */
qrl_err qrl_lr_view_claim(qrl_core *core, const qrl_auth *auth, const char *code,
                          const char *address, qrl_lr_view *out);

/* --- passkeys (W3C WebAuthn Level 2) ------------------------------------------------------ */

/* base64url (no padding) of a 32-byte challenge is 43 characters; + NUL, rounded up. */
#define QRL_CHALLENGE_BUF 48

typedef enum qrl_webauthn_purpose {
    QRL_WEBAUTHN_REGISTER = 1, /* navigator.credentials.create(): qrl_passkey_register */
    QRL_WEBAUTHN_APPROVE = 2   /* navigator.credentials.get(): qrl_lr_approve with a passkey */
} qrl_webauthn_purpose;

/* The relying party as the browser sees it: the RP ID (a registrable domain, no port, e.g.
 * "localhost") and the exact origin of the pages ("http://localhost:8080"). Borrowed. */
typedef struct qrl_rp {
    const char *id;
    const char *origin;
} qrl_rp;

/* Issues a one-time WebAuthn challenge (32 random bytes) into `out` as base64url. It is valid
 * for 120 s, for one use, and only for this account, this phone (auth->device_id) and this
 * purpose; for QRL_WEBAUTHN_APPROVE also only for the login request named by `code` (scan
 * secret or user code), which this phone must have claimed (SCANNED by auth->device_id;
 * errors then as for qrl_lr_approve: QRL_ERR_NOT_FOUND, QRL_ERR_EXPIRED, QRL_ERR_CLAIMED,
 * QRL_ERR_CONFLICT, QRL_ERR_RATE_LIMITED for user-code guessing, counted against `address`).
 * `code` must be NULL for QRL_WEBAUTHN_REGISTER. Challenges are kept in the store (store
 * version 11: its hash, never the challenge), so the ceremony may end on any node sharing it;
 * store errors pass through. A phone holds at most QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE live
 * ones: a new one replaces its oldest. With a store written for an older version they live in
 * this core's memory instead (the ceremony must end on this node): at most
 * QRL_MAX_WEBAUTHN_CHALLENGES unexpired ones, QRL_ERR_BUSY beyond. */
qrl_err qrl_webauthn_challenge(qrl_core *core, const qrl_auth *auth, qrl_webauthn_purpose purpose,
                               const char *code, const char *address, char out[QRL_CHALLENGE_BUF]);

/* Registers a passkey for the caller's account from a navigator.credentials.create() result:
 * clientDataJSON and attestationObject, base64url without padding. Needs the account password,
 * checked and rate-limited like qrl_device_set_key's (per username and `address`), so a stolen
 * session token alone cannot add a passkey. Verifies W3C WebAuthn Level 2 section 7.1: type
 * "webauthn.create", a challenge issued by qrl_webauthn_challenge(QRL_WEBAUTHN_REGISTER) to
 * this account and phone (consumed), the exact origin rp->origin, not cross-origin, rpIdHash,
 * flags UP, UV and AT, COSE algorithm -7, -8 or -257, attestation format "none" or "packed"
 * self-attestation. `name` NULL or "" means "Passkey" (else text of at most
 * QRL_MAX_DEVICE_NAME bytes). `id_out` (may be NULL) receives the new passkey's id.
 * QRL_ERR_INVALID malformed input, QRL_ERR_UNAUTHORIZED wrong password,
 * QRL_ERR_RATE_LIMITED, QRL_ERR_FORBIDDEN verification failed, QRL_ERR_EXISTS credential
 * already registered (to any account), QRL_ERR_TOO_LARGE the account has QRL_MAX_PASSKEYS. */
qrl_err qrl_passkey_register(qrl_core *core, const qrl_auth *auth, const char *password,
                             const qrl_rp *rp, const char *client_data_json_b64,
                             const char *attestation_object_b64, const char *name,
                             const char *address, int64_t *id_out);
/* The caller's passkeys, oldest first; `out` has room for `max` (QRL_MAX_PASSKEYS is enough). */
qrl_err qrl_passkey_list(qrl_core *core, const qrl_auth *auth, qrl_passkey_rec *out, size_t max,
                         size_t *n);
/* Deletes a passkey of the caller's account; QRL_ERR_NOT_FOUND when it is not theirs. */
qrl_err qrl_passkey_delete(qrl_core *core, const qrl_auth *auth, int64_t id);

/* A passkey assertion as the browser returns it from navigator.credentials.get() (rawId,
 * response.clientDataJSON, response.authenticatorData, response.signature: base64url, no
 * padding; the ES256 signature DER-encoded as browsers send it). All borrowed. */
typedef struct qrl_passkey_assertion {
    const char *credential_id;
    const char *client_data_json;
    const char *authenticator_data;
    const char *signature;
    const qrl_rp *rp;
} qrl_passkey_assertion;

/* The step-up proof of a decision, exactly one of: the account password; a signature by the
 * phone's registered device key over qrl_decision_bytes() (base64url, no padding); or a
 * passkey assertion over a challenge from qrl_webauthn_challenge(QRL_WEBAUTHN_APPROVE). */
typedef struct qrl_proof {
    const char *password;
    const char *signature;
    const qrl_passkey_assertion *passkey;
} qrl_proof;

/* Approves a request this phone claimed. `user_code` is what the user confirmed (any format).
 * With a passkey, W3C WebAuthn Level 2 section 7.2 is verified first: a challenge issued for
 * approving this very request by this phone and account (consumed by the first assertion that
 * names it, whatever the outcome), type "webauthn.get", the exact origin, a credential of this
 * account, rpIdHash, UP and UV, the signature, and a signature counter that grew (or stayed
 * zero); any failure is QRL_ERR_FORBIDDEN (QRL_ERR_INVALID when the input cannot be decoded).
 * QRL_ERR_INVALID unless exactly one proof is given.
 * QRL_ERR_UNAUTHORIZED (wrong password), QRL_ERR_FORBIDDEN (bad signature or no device key),
 * QRL_ERR_CODE_MISMATCH, QRL_ERR_CLAIMED, QRL_ERR_CONFLICT (not SCANNED), QRL_ERR_EXPIRED,
 * QRL_ERR_NOT_FOUND, QRL_ERR_RATE_LIMITED, QRL_ERR_SUSPICIOUS (looked up from too many
 * networks, started from a denied network, or one account too many for its screen's address:
 * the request is now DENIED; qrl_last_block_reason() says which). `out` (may be NULL) receives
 * the request as last read: its id, and its state (the new one on success, the current one on
 * QRL_ERR_CONFLICT). */
qrl_err qrl_lr_approve(qrl_core *core, const qrl_auth *auth, const char *code,
                       const char *user_code, const qrl_proof *proof, const char *address,
                       qrl_lr_rec *out);
/* Declines a request (PENDING, or SCANNED by this phone). No step-up is needed to decline;
 * a signature, when given (proof->signature), must verify. `proof` may be NULL. */
qrl_err qrl_lr_deny(qrl_core *core, const qrl_auth *auth, const char *code, const qrl_proof *proof,
                    const char *address, qrl_lr_rec *out);

/* The exact bytes a phone signs for a decision ("approve" or "deny"): qrl_decision_bytes()
 * of qrlogin/protocol.h, which says what they are and why, with the decision named by a
 * string. Kept for callers of the core; a phone uses protocol.h alone. Returns the length
 * written (excluding NUL), or 0 if `len` is too small or an argument is invalid. */
size_t qrl_decision_message(int64_t lr_id, const char *decision, const char *nonce,
                            const char *user_code, char *buf, size_t len);

/* Registers (or replaces) the Ed25519 public key (base64url, 32 bytes) of the calling phone.
 * Needs the account password, so a stolen session token alone cannot add a key. */
qrl_err qrl_device_set_key(qrl_core *core, const qrl_auth *auth, const char *pubkey_b64,
                           const char *password, const char *address);

/* For the screen's QR endpoint: checks that `device_code` belongs to `client_id` and is still
 * waiting (PENDING or SCANNED, unexpired), and writes its scan secret into `scan` (of
 * QRL_SECRET_BUF bytes). The scan secret is derived from the device code by a keyed hash, so
 * the server can rebuild the QR from the device code alone and nobody can get from the scan
 * secret to the device code. Errors as for qrl_token_device_code. */
qrl_err qrl_screen_scan_secret(qrl_core *core, const char *client_id, const char *device_code,
                               char *scan);
/* qrl_screen_scan_secret() that also writes the thumbprint of the DPoP key the request is bound
 * to into `dpop_jkt` ("" when none), whose short form the QR code carries (qrlogin/protocol.h). */
qrl_err qrl_screen_qr_secret(qrl_core *core, const char *client_id, const char *device_code,
                             char *scan, char dpop_jkt[QRL_DPOP_JKT_LEN + 1]);

/* Active devices of the caller's account; out has room for `max`. */
qrl_err qrl_devices_list(qrl_core *core, const qrl_auth *auth, qrl_device_rec *out, size_t max,
                         size_t *n);
/* Revokes a device of the caller's account. Ends its sessions and tokens at once, and declines
 * the login requests it claimed or approved but that are not redeemed. */
qrl_err qrl_device_revoke(qrl_core *core, const qrl_auth *auth, int64_t device_id);

/* --- notices ("New device linked. Not you?", "We stopped a sign-in request") -------------- */

/* After every approval that links a device, the account's other devices are told: a notice
 * (store.h, qrl_notice_rec, QRL_NOTICE_DEVICE_LINKED) each of them lists until it acknowledges
 * it, and that offers to remove the new device with one tap, without the step-up, for
 * notice_revoke_window_s after the link. When a login request a phone of the account was
 * opening or approving is refused as phishing (QRL_ERR_SUSPICIOUS), every device of the
 * account, that phone included, is told likewise (QRL_NOTICE_REQUEST_BLOCKED: the request's
 * screen, the reason, the phone that was stopped; once per request and account; nothing to
 * remove). The store must keep notices (store version 10 with the four notice methods, 11 for
 * blocked requests); where it does not, nothing is recorded and the functions below answer
 * QRL_ERR_NOT_FOUND (qrl_notices_enabled says which). */

/* The change id (qrl_change_fn, store.h set_notify) under which the notices of an account
 * change: -(2^62 + account_id). Login request ids are positive (below 2^53) and a revoked device
 * is -device_id (ids far below 2^62), so the three kinds of ids never meet. */
#define QRL_NOTICE_KEY_BASE ((int64_t)1 << 62)
static inline int64_t qrl_notice_key(int64_t account_id)
{
    return -(QRL_NOTICE_KEY_BASE + account_id);
}

typedef struct qrl_notice {
    qrl_notice_rec rec;      /* the notice (rec.kind says which), with the row of its device
                                (the new device, or the phone stopped) as it is now */
    int64_t revoke_until_ms; /* qrl_notice_revoke works before this time; 0: not at all (always
                                0 for a blocked request) */
} qrl_notice;

/* Nonzero when the store keeps notices. */
int qrl_notices_enabled(const qrl_core *core);
/* The notices the calling device has not acknowledged, newest (highest id) first, recorded
 * after the caller itself was linked and at most 30 days ago: of devices linked to its account,
 * other than the caller and not revoked since, and of requests blocked while a phone of the
 * account (the caller too) was about to approve them. `out` has room for `max` (QRL_MAX_NOTICES_LISTED is what the
 * server lists). A phone session or a screen's access token may ask (qrl_device_auth_any). */
qrl_err qrl_notices_list(qrl_core *core, const qrl_auth *auth, qrl_notice *out, size_t max,
                         size_t *n);
/* The calling device acknowledges notice `id`: it is not listed to this device again (other
 * devices still see it). Twice is fine. QRL_ERR_NOT_FOUND when the account has no notice `id`. */
qrl_err qrl_notice_ack(qrl_core *core, const qrl_auth *auth, int64_t id);
/* The one-tap revoke of a notice: revokes the device it names exactly as qrl_device_revoke()
 * does, without any step-up, if the notice was recorded less than notice_revoke_window_s ago,
 * and acknowledges the notice for the caller. QRL_ERR_FORBIDDEN when the window is over or off
 * (nothing changes: the devices list is the way then), QRL_ERR_CONFLICT for a notice of a
 * blocked request (it linked nothing to remove: acknowledge it), QRL_ERR_NOT_FOUND when the
 * account has no notice `id`, or its device is the caller itself or already revoked. `out` (may be NULL)
 * receives the notice as it was read. Meant for a phone: the server accepts only a phone
 * session for it. */
qrl_err qrl_notice_revoke(qrl_core *core, const qrl_auth *auth, int64_t id, qrl_notice *out);

/* --- resource-server side --------------------------------------------------------------- */

typedef struct qrl_introspection {
    int active;
    qrl_token_kind kind;
    int64_t device_id;
    int64_t account_id;
    int64_t iat_s, exp_s;
    char client_id[QRL_MAX_CLIENT_ID + 1];
    char scope[QRL_MAX_SCOPE + 1];
    char username[QRL_MAX_USERNAME + 1];
    /* An access or refresh token bound to a DPoP key (RFC 9449 section 6.2): 1 and the key's
     * Ed25519 public key; a resource server must then check a proof made with it. */
    int dpop_bound;
    unsigned char dpop_key[QRL_PUBKEY_BYTES];
} qrl_introspection;

/* RFC 7662: never fails for an unknown token, it is just inactive. */
qrl_err qrl_introspect(qrl_core *core, const char *token, qrl_introspection *out);

/* --- DPoP (RFC 9449): proofs of possession of a screen's key ---------------------------- */

/* How far a proof's creation time (iat) may lie from the core's clock, either way: clocks of
 * TVs drift, and a proof older than this is refused, so a captured one is useless soon. */
#define QRL_DPOP_MAX_SKEW_S 60
/* How long a proof's jti is remembered: the whole span in which its iat is accepted (twice the
 * skew) and one second more, so that a use at one end of that span and a replay at the other
 * cannot both be taken. */
#define QRL_DPOP_JTI_WINDOW_S (2 * QRL_DPOP_MAX_SKEW_S + 1)
/* Longest jti accepted: a proof's identifier is a random string (ours 22 characters). */
#define QRL_DPOP_MAX_JTI 128

/* Uses up the identifier `jti` of a proof made with the key of thumbprint `jkt` (RFC 9449
 * section 11.1, replay): QRL_OK the first time, QRL_ERR_EXISTS when it was used in the last
 * QRL_DPOP_JTI_WINDOW_S seconds, by this node or any other on the same store. It is kept in the
 * store's rate-limit table as a limit of one use per window (store.h, ratelimit_take), under a
 * key made of a hash of both, so that every backend refuses the second use atomically and old
 * entries leave with the sweep. QRL_ERR_INVALID for an empty or over-long jti; store errors. */
qrl_err qrl_dpop_jti_use(qrl_core *core, const char *jkt, const char *jti);

/* The RFC 7638 thumbprint of an Ed25519 key, as RFC 9449 names keys (dpop_jkt, cnf.jkt):
 * base64url without padding of the SHA-256 of '{"crv":"Ed25519","kty":"OKP","x":"<base64url of
 * the key>"}', the members RFC 8037 section 2 requires, in order. Writes QRL_DPOP_JKT_LEN
 * characters and a NUL. */
void qrl_dpop_thumbprint(const unsigned char key[QRL_PUBKEY_BYTES],
                         char out[QRL_DPOP_JKT_LEN + 1]);

/* RFC 7009: revokes an access or refresh token (a refresh token revokes its whole device, as
 * RFC 7009 section 2.1 allows). Unknown tokens are not an error. */
qrl_err qrl_revoke_token(qrl_core *core, const char *token);

/* Housekeeping: deletes long-expired rows and forgets poll state of finished requests. */
qrl_err qrl_core_sweep(qrl_core *core);

/* --- helpers shared with the server ------------------------------------------------------- */

/* qrl_user_code_normalize() (canonical user codes) is in qrlogin/protocol.h. */
/* "WDJBMJHT" -> "WDJB-MJHT"; `out` has QRL_USER_CODE_BUF bytes. */
void qrl_user_code_format(const char *canonical, char *out);
/* Validates a device kind word. */
int qrl_device_kind_valid(const char *kind);
/* Whether qrl_device_authorize_platform() accepts `platform`: NULL, or at most
 * QRL_MAX_DEVICE_PLATFORM bytes of UTF-8 text without control characters. */
int qrl_device_platform_valid(const char *platform);
const char *qrl_lr_state_name(qrl_lr_state s);

#ifdef __cplusplus
}
#endif
#endif
