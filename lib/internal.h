/* SPDX-License-Identifier: MIT */
/*
 * Internals shared by the core library's files (qrl__ prefix). Nothing here is public API.
 */
#ifndef QRLOGIN_LIB_INTERNAL_H
#define QRLOGIN_LIB_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "alloc.h"
#include "qrlogin/core.h"

/* Prefixes of every secret kind, so leaked ones are easy to recognise by secret scanners. */
#define QRL__PFX_DEVICE_CODE "qrl_dc_"
#define QRL__PFX_SCAN "qrl_ss_"
#define QRL__PFX_ACCESS "qrl_at_"
#define QRL__PFX_REFRESH "qrl_rt_"
#define QRL__PFX_SESSION "qrl_st_"
#define QRL__PFX_LEN 7

/* Entropy per secret kind: tokens 256 bits, scan secret 192 bits: above the 128-bit
 * floor while keeping the QR code small. */
#define QRL__TOKEN_BYTES 32
#define QRL__SCAN_BYTES 24
/* A device code and a scan secret also carry their login request's id, 8 bytes big-endian
 * before the secret part (a selector: the store reads the request by primary key). */
#define QRL__LR_ID_BYTES 8

struct qrl__polltab;
struct qrl__pending;
struct qrl__chaltab;

struct qrl_core {
    qrl_config cfg;
    qrl_store *st;
    _Atomic int64_t clock_offset_ms; /* test builds only move it */
    struct qrl__polltab *polls;      /* poll intervals (pollrate.c) */
    struct qrl__pending *pending;    /* pending-poll cache (pending.c); NULL: store has no stamps */
    struct qrl__chaltab *challenges; /* WebAuthn challenges issued by this core (passkey.c);
                                        NULL: the store keeps them */
};

/* --- secret.c --- */
/* n bytes from the OS CSPRNG (libsodium), through a per-thread pool. */
void qrl__random(void *out, size_t n);
/* Writes prefix + base64url(nbytes of CSPRNG output) into out (QRL_SECRET_BUF). */
void qrl__secret_new(const char *prefix, size_t nbytes, char out[QRL_SECRET_BUF]);
/* A new login request id: the wall clock in milliseconds times 2048 plus 11 random bits. Ids
 * grow with time, so new rows go to the end of the table, and they stay below 2^53 (exact in
 * JSON numbers read by JavaScript) until the year 2109. Two servers sharing a store can draw
 * the same id: the insert then fails with QRL_ERR_EXISTS and the caller draws again. */
int64_t qrl__lr_id_new(void);
/* A device code for request `id`: prefix + base64url(id || 256 random bits). */
void qrl__device_code_new(int64_t id, char out[QRL_SECRET_BUF]);
/* The scan secret of a device code: prefix + base64url(the same id || BLAKE2b-192 keyed by
 * the device code). False (and out = "") if device_code is not a well-formed device code. */
bool qrl__scan_from_device_code(const char *device_code, char out[QRL_SECRET_BUF]);
/* Parses a device code (QRL__PFX_DEVICE_CODE) or scan secret (QRL__PFX_SCAN): exactly the
 * length of its kind, valid base64url, an id > 0. Fills key with the id and the hash of the
 * whole string. False when malformed: the caller answers as for an unknown secret. */
bool qrl__lr_secret_key(const char *secret, const char *prefix, qrl_lr_secret_key *key);
/* BLAKE2b-256 of the whole secret string. */
void qrl__secret_hash(const char *secret, qrl_hash *out);
/* A new access, refresh or session token: prefix + base64url(a fresh qrl__lr_id_new() id ||
 * 256 random bits), 61 characters. The id only orders the token's store key (below). */
void qrl__token_new(const char *prefix, char out[QRL_SECRET_BUF]);
/* The store key of a token (qrl_token_rec.hash). For a token of qrl__token_new(): its id (8
 * bytes, big-endian), then BLAKE2b-192 of the whole string, so that keys of new tokens grow
 * with time and their inserts go to the end of the key-ordered tokens table instead of a
 * random leaf each. For any other string (tokens issued before, 50 characters): its BLAKE2b-256,
 * as they were stored, so they stay valid. */
void qrl__token_key(const char *token, qrl_hash *out);
/* True when `s` starts with `prefix` and has a plausible length for that kind. */
bool qrl__secret_has_prefix(const char *s, const char *prefix);
/* Draws a user code (8 letters, RFC 8628 section 6.1 alphabet), canonical form. */
void qrl__user_code_new(char out[QRL_USER_CODE_LEN + 1]);
/* Bounded copy that fails on truncation. */
qrl_err qrl__strcpy(char *dst, size_t dstlen, const char *src);

/* --- pollrate.c: in-memory per-request poll bookkeeping (RFC 8628 section 3.5) --- */
/* A poll arriving this much earlier than the interval is still on time: network jitter and the
 * client's timer granularity must not turn a compliant client into a "too fast" one. */
#define QRL__POLL_SLACK_MS 1000
struct qrl__polltab *qrl__polltab_new(void);
void qrl__polltab_free(struct qrl__polltab *t);
/* Decides about a poll arriving at `now`. Returns QRL_ERR_SLOW_DOWN when too fast (and grows
 * the interval by 5 s), else QRL_OK. *interval_s gets the current interval; *last_state the
 * state this client was last told (PENDING if never). */
qrl_err qrl__poll_arrive(struct qrl__polltab *t, int64_t lr_id, int64_t now_ms, int base_interval_s,
                         int exempt, int *interval_s, qrl_lr_state *last_state);
/* Records that the client was answered `state` at `now`. */
void qrl__poll_answered(struct qrl__polltab *t, int64_t lr_id, int64_t now_ms, qrl_lr_state state);
/* The state this client was last told (PENDING if never). */
qrl_lr_state qrl__poll_last_state(struct qrl__polltab *t, int64_t lr_id);
void qrl__poll_forget(struct qrl__polltab *t, int64_t lr_id);
/* Drops entries not touched since `before_ms`. */
void qrl__poll_sweep(struct qrl__polltab *t, int64_t before_ms);
/* A plain poll (no hold) of a request the caller knows to be in `state` (PENDING or SCANNED):
 * QRL_ERR_SLOW_DOWN when too fast (and grows the interval), else QRL_OK, recording that the
 * client is answered `state` now. *interval_s gets the current interval either way. */
qrl_err qrl__poll_answer(struct qrl__polltab *t, int64_t lr_id, int64_t now_ms, int base_interval_s,
                         qrl_lr_state state, int *interval_s);

/* --- pending.c: the pending-poll cache (what the store said of pending requests) --- */
typedef struct qrl__pending_hit {
    uint64_t stamp; /* the store's lr_stamp taken before the read the entry came from */
    int64_t expires_ms;
    qrl_lr_state state; /* PENDING or SCANNED */
    int interval_s;     /* the request's base interval */
} qrl__pending_hit;
struct qrl__pending *qrl__pending_new(void);
void qrl__pending_free(struct qrl__pending *t);
/* Remembers a PENDING or SCANNED request read from the store (or just created) with the
 * store's stamp of it taken BEFORE that read or creation. Other states, and requests bound to a
 * DPoP key, are ignored. */
void qrl__pending_learn(struct qrl__pending *t, const qrl_lr_rec *lr, uint64_t stamp);
/* The entry for a device code: QRL_OK (hit filled), QRL_ERR_INVALID_CLIENT (the code belongs to
 * another client), or QRL_ERR_NOT_FOUND (unknown, another code, or past its expiry). The caller
 * uses a hit only while the store's lr_stamp still equals hit->stamp. */
qrl_err qrl__pending_find(struct qrl__pending *t, const qrl_lr_secret_key *key,
                          const char *client_id, int64_t now_ms, qrl__pending_hit *hit);
void qrl__pending_forget(struct qrl__pending *t, int64_t lr_id);
/* Drops entries expired at `now_ms`. */
void qrl__pending_sweep(struct qrl__pending *t, int64_t now_ms);

/* --- login_request.c --- */
/* Moves a request to DENIED because the phone that scanned or approved it was revoked. */
void qrl__lr_deny_for_device(qrl_core *core, int64_t device_id);
/* Checks that `s` is valid UTF-8 of at most `max` bytes without control characters (C0, C1)
 * or the invisible format characters that reorder or hide text (bidirectional overrides and
 * isolates, zero-width space, BOM): what the phone shows must read as it is. */
bool qrl__text_valid(const char *s, size_t max);
/* Finds the request named by `code` (scan secret or user code, user-code misses counted against
 * `address` as in qrl_lr_approve) and checks that this phone may approve it now: SCANNED by
 * auth->device_id and unexpired. Sets *lr_id. Errors as qrl_lr_approve's before its proof. */
qrl_err qrl__lr_claimed(qrl_core *core, const qrl_auth *auth, const char *code, const char *address,
                        int64_t *lr_id);

/* --- notice.c --- */
/* Records that `dev` (its id and account_id set by the redemption that created it), which said
 * it runs on `platform` (may be NULL), was linked at now_ms, and wakes the requests waiting for
 * the account's notices. Does nothing where notices are off. A failure is not the caller's:
 * the device is linked either way, and only the notice is lost. */
void qrl__notice_linked(qrl_core *core, const qrl_device_rec *dev, const char *platform,
                        int64_t now_ms);
/* Records that `lr` was refused as phishing (`why`) at now_ms while the phone of `auth` was
 * about to approve it, and wakes the requests waiting for the account's notices: every device
 * of the account is told. One notice per request and account, however often it is refused.
 * Does nothing where notices are off; a failure loses the notice only, the refusal stands. */
void qrl__notice_blocked(qrl_core *core, const qrl_auth *auth, const qrl_lr_rec *lr,
                         qrl_block_reason why, int64_t now_ms);

/* --- phishing.c: the patterns of phishing kits (docs/security.md, "Detection") --- */
/* Denies `lr` (when still PENDING or SCANNED; lr->state follows) and wakes its screen,
 * remembers `why` for qrl_last_block_reason(), and tells the account of `auth`, whose phone was
 * stopped, on all its devices (qrl__notice_blocked). Returns QRL_ERR_SUSPICIOUS. */
qrl_err qrl__phish_block(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr,
                         qrl_block_reason why, int64_t now);
/* The phone of `auth` at `address` looks up `lr` by its code: counts the address's network
 * among those that looked it up (a live request only). QRL_OK, QRL_ERR_SUSPICIOUS when it is one
 * network more than max_lookup_networks (the request is then denied), or a store error. */
qrl_err qrl__phish_lookup(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr,
                          const char *address, int64_t now);
/* QRL_BLOCK_DENIED_NETWORK when lr was started from a network the operator denies. */
qrl_block_reason qrl__phish_denied(qrl_core *core, const qrl_lr_rec *lr);
/* The account of `auth` is about to approve `lr`: counts it among the accounts that approved
 * requests of lr's screen address. QRL_OK, QRL_ERR_SUSPICIOUS when it is one account more than
 * max_approvers_per_address (the request is then denied), or a store error. */
qrl_err qrl__phish_approver(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr, int64_t now);

/* --- passkey.c --- */
/* True when the store keeps the WebAuthn challenges (store version 11); else this core keeps
 * them in a table of its own. */
bool qrl__challenges_in_store(const qrl_store *st);
struct qrl__chaltab *qrl__chaltab_new(void);
void qrl__chaltab_free(struct qrl__chaltab *t);
/* Verifies a passkey assertion approving login request `lr_id` (W3C WebAuthn Level 2 section
 * 7.2) and records its signature counter. QRL_OK, QRL_ERR_FORBIDDEN, QRL_ERR_INVALID
 * (undecodable input), or a store error. */
qrl_err qrl__passkey_assert(qrl_core *core, const qrl_auth *auth, int64_t lr_id,
                            const qrl_passkey_assertion *a);

/* --- token.c --- */
/* Draws an access + refresh pair into `out` and fills the two records for the store. */
void qrl__tokens_draw(qrl_core *core, const char *client_id, const char *scope, int64_t now_ms,
                      qrl_tokens *out, qrl_token_rec rec[2]);

/* --- account.c --- */
/* Checks `password` against the account's hash, counting failures against the account and
 * address; QRL_ERR_UNAUTHORIZED or QRL_ERR_RATE_LIMITED on failure. */
qrl_err qrl__password_check(qrl_core *core, const qrl_account_rec *acc, const char *password,
                            const char *address);

/* --- core.c --- */
void qrl__notify(qrl_core *core, int64_t lr_id);
/* Rate limits over the store (GCRA, store.h ratelimit_take): takes one attempt of `key`,
 * which allows `count` per window_s (0: no limit). QRL_ERR_RATE_LIMITED remembers the wait for
 * qrl_retry_after_s(). */
qrl_err qrl__limit_take(qrl_core *core, const char *key, int64_t count, int64_t window_s);
/* The part of a client address that address limits count by: an IPv4 address as it is, an
 * IPv6 address by its /64 ("2001:0db8:0001:0002::/64"), an IPv4-mapped IPv6 address as IPv4.
 * `out` of at least QRL_MAX_ADDRESS + 1 bytes. */
void qrl__address_key(const char *address, char *out, size_t len);
/* Gives back an attempt taken with the same arguments (it turned out not to count). */
void qrl__limit_give(qrl_core *core, const char *key, int64_t count, int64_t window_s);

#endif
