/* SPDX-License-Identifier: MIT */
/*
 * The store interface: every piece of persistent state goes through this table of functions.
 *
 * Like SQLite's sqlite3_vfs, a backend is a versioned struct of function pointers
 * (qrl_store_methods) plus a handle whose first member is `struct qrl_store`. The core library
 * calls only these functions; no SQL or backend type leaks out of the backend's own folder
 * (lib/store/sqlite/ for SQLite).
 *
 * Rules every backend follows:
 * - Every function is one atomic unit: it either happens completely or not at all.
 * - A function that returns QRL_OK for a write has made the write durable: it survives kill -9
 *   of the process and, with the SQLite default (synchronous=FULL), a power loss. Other callers
 *   may read it a moment earlier: the SQLite backend commits a batch, then flushes it while it
 *   runs the next (docs/architecture.md, "Pipelined durability"). The writes that decide
 *   nothing may skip the flush and be lost to a power loss (never to a crash of the process):
 *   lr_create, lr_transition to SCANNED or EXPIRED, device_touch, ratelimit_hit and sweep.
 * - Every function blocks the calling thread until it is done: a read until it has its answer,
 *   a write until it is committed (and durable where the function says so). There is no other
 *   way to wait: the server calls the store from its worker threads, and a thread waiting for a
 *   commit is simply blocked. A backend that batches writes (the SQLite backend's group commit)
 *   blocks each caller until the batch holding its write is committed.
 * - Functions are safe to call from many threads at once on one handle. The SQLite backend
 *   runs reads on a few shared connections and every write on one writer thread.
 * - Changes made through one handle are reported by the core itself (qrl_config.on_change).
 *   A backend whose database other processes change too (other nodes on one PostgreSQL
 *   database) tells the core about those through the hook given to set_notify.
 * - Times are milliseconds on the core's clock (qrl_core_now_ms); the backend never reads a
 *   clock itself, so tests can move time.
 * - Secrets arrive only as qrl_hash values; a backend never sees a plain secret.
 * - Output records are caller-owned structs filled by the backend. Strings in records are
 *   fixed-size, NUL-terminated arrays; a backend truncates nothing (inputs are validated against
 *   limits.h before they get here) and returns QRL_ERR_INVALID for an over-long string.
 *
 * Errors: QRL_ERR_NOT_FOUND (no such row), QRL_ERR_EXISTS (unique key taken), QRL_ERR_CONFLICT
 * (a conditional write matched no row), QRL_ERR_STORE (backend failure; details go to the
 * backend's error log, never containing secrets), QRL_ERR_NOMEM.
 *
 * When adding a function: bump QRL_STORE_VERSION, append it at the end of the struct, implement
 * it in every backend (lib/store/), and cover it in tests/unit/lib/store/sqlite/test_store.c
 * and tests/unit/lib/store/postgres/test_store_pg.c.
 */
#ifndef QRLOGIN_STORE_H
#define QRLOGIN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "qrlogin/error.h"
#include "qrlogin/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QRL_STORE_VERSION 11
#define QRL_HASH_BYTES 32
/* crypto_pwhash_STRBYTES is 128 in libsodium. */
#define QRL_PWHASH_MAX 128
/* Ed25519 public keys of devices (crypto_sign_PUBLICKEYBYTES). */
#define QRL_PUBKEY_BYTES 32

/* Hash of a secret: BLAKE2b-256 (crypto_generichash) of the whole secret string. */
typedef struct qrl_hash {
    unsigned char b[QRL_HASH_BYTES];
} qrl_hash;

/* A passkey: a WebAuthn public key credential registered to an account (W3C WebAuthn Level 2
 * section 7.1 step 24: what the relying party stores). Store version 6. */
typedef struct qrl_passkey_rec {
    int64_t id;
    int64_t account_id;
    unsigned char cred_id[QRL_MAX_CRED_ID]; /* credential id, raw bytes */
    size_t cred_id_len;                     /* 1..QRL_MAX_CRED_ID */
    int alg;                                /* COSE algorithm: -7 ES256, -8 EdDSA, -257 RS256 */
    /* The public key in the form libfido2's *_pk_from_ptr() read: ES256 0x04 || x || y (65
     * bytes), EdDSA the raw key (32), RS256 n (256) || e (3). */
    unsigned char pubkey[QRL_MAX_PASSKEY_PUBKEY];
    size_t pubkey_len;
    uint32_t sign_count; /* the authenticator's signature counter last seen (section 6.1.1) */
    char name[QRL_MAX_DEVICE_NAME + 1];
    int64_t created_ms;
    int64_t last_used_ms; /* 0 until the first assertion */
} qrl_passkey_rec;

/* A WebAuthn challenge issued to a phone (store version 11): what a ceremony begun on one node
 * needs to finish on another. The store keeps the hash of the challenge, never the challenge. */
typedef struct qrl_challenge_rec {
    qrl_hash hash;      /* BLAKE2b-256 of the challenge as issued (its base64url string) */
    int64_t account_id; /* > 0 */
    int64_t device_id;  /* > 0: the phone it was issued to */
    int64_t lr_id;      /* the login request an approval challenge is for; 0 for none */
    int purpose;        /* > 0: qrl_webauthn_purpose (core.h), stored as a number */
    int64_t expires_ms;
} qrl_challenge_rec;

/* Login request states (lib/login_request.c has the transitions). Numbers are stored; never
 * renumber. */
typedef enum qrl_lr_state {
    QRL_LR_PENDING = 0,
    QRL_LR_SCANNED = 1,
    QRL_LR_APPROVED = 2,
    QRL_LR_REDEEMED = 3,
    QRL_LR_DENIED = 4,
    QRL_LR_EXPIRED = 5
} qrl_lr_state;

#define QRL_LR_BIT(s) (1u << (unsigned)(s))

typedef struct qrl_account_rec {
    int64_t id;
    char username[QRL_MAX_USERNAME + 1];
    char display_name[QRL_MAX_DISPLAY_NAME + 1];
    char pw_hash[QRL_PWHASH_MAX + 1]; /* Argon2id string (crypto_pwhash_str) */
    int64_t created_ms;
    int disabled; /* nonzero: every credential of the account is refused */
} qrl_account_rec;

typedef struct qrl_device_rec {
    int64_t id;
    int64_t account_id;
    char name[QRL_MAX_DEVICE_NAME + 1];
    char kind[QRL_MAX_DEVICE_KIND + 1];
    char address[QRL_MAX_ADDRESS + 1]; /* address it was linked from */
    int64_t created_ms;
    int64_t last_seen_ms;
    int64_t revoked_ms; /* 0 while active */
    /* The device's Ed25519 public key (store version 2), whose meaning depends on how the
     * device signed in. A phone (signed in with a password: it holds a session token) may
     * register one to sign its decisions (device_set_pubkey). A screen (made by redeeming a
     * login request: it holds access and refresh tokens, its kind is never "phone") has one
     * when it proved a DPoP key (RFC 9449) at redemption, stored by device_create and
     * lr_redeem: its access and refresh tokens are bound to that key and useless without it.
     * A screen never gets a key later. */
    int has_pubkey;
    unsigned char pubkey[QRL_PUBKEY_BYTES];
} qrl_device_rec;

/* What a notice tells (store version 11; every notice of version 10 is QRL_NOTICE_DEVICE_LINKED).
 * Never renumber: the values are stored. */
typedef enum qrl_notice_kind {
    QRL_NOTICE_DEVICE_LINKED = 1,  /* a device was linked to the account */
    QRL_NOTICE_REQUEST_BLOCKED = 2 /* a login request the account was about to approve was
                                      refused as phishing (lib/phishing.c) */
} qrl_notice_kind;

/* A notice to the devices of an account (store version 10; kinds since 11), what the API shows
 * them as a notification:
 * - QRL_NOTICE_DEVICE_LINKED ("New device linked: Living Room TV. Not you?"): one row per login
 *   that created a device; device_id is the new device, the request fields are empty.
 * - QRL_NOTICE_REQUEST_BLOCKED ("A sign-in request was blocked: it looked like phishing"): one
 *   row per refusal; device_id is the account's device (the phone) that was about to approve
 *   it, and the request fields say what was refused and why.
 * Each device of the account acknowledges a notice on its own. */
typedef struct qrl_notice_rec {
    int64_t id;         /* > 0, chosen by the caller; grows with time (the core draws it as a
                           login request id), so a client can ask for "newer than" */
    int64_t account_id; /* the account told */
    int64_t device_id;  /* DEVICE_LINKED: the new device; REQUEST_BLOCKED: the phone stopped */
    int64_t created_ms;
    qrl_notice_kind kind; /* 0 on notice_add is read as QRL_NOTICE_DEVICE_LINKED */
    /* What the new device said it runs on ("Chrome on Linux"), "" when it said nothing: a
     * device row keeps no platform, the login request did. For REQUEST_BLOCKED, the blocked
     * request's screen platform. */
    char platform[QRL_MAX_DEVICE_PLATFORM + 1];
    /* REQUEST_BLOCKED only ("" otherwise): why (qrl_block_reason_name), and the blocked
     * request's screen as it named itself and the address it came from. */
    char reason[QRL_MAX_BLOCK_REASON + 1];
    char screen_name[QRL_MAX_DEVICE_NAME + 1];
    char screen_kind[QRL_MAX_DEVICE_KIND + 1];
    char screen_address[QRL_MAX_ADDRESS + 1];
    /* Filled by notice_list and notice_get (ignored by notice_add): the row of device_id as it
     * is now (name, kind, address, revoked_ms ...). */
    qrl_device_rec device;
} qrl_notice_rec;

typedef enum qrl_token_kind {
    QRL_TOKEN_ACCESS = 1,
    QRL_TOKEN_REFRESH = 2,
    QRL_TOKEN_SESSION = 3 /* phone session bearer token */
} qrl_token_kind;

typedef struct qrl_token_rec {
    qrl_hash hash;
    qrl_token_kind kind;
    int64_t device_id;
    int64_t created_ms;
    int64_t expires_ms;
    int64_t used_ms;    /* refresh tokens: when it was rotated; 0 while unused */
    int64_t revoked_ms; /* 0 while not revoked on its own */
    char client_id[QRL_MAX_CLIENT_ID + 1];
    char scope[QRL_MAX_SCOPE + 1];
    /* Filled by token_lookup only (ignored on insert): */
    int64_t account_id;
    int device_revoked;   /* the owning device is revoked */
    int account_disabled; /* the owning account is disabled */
} qrl_token_rec;

typedef struct qrl_lr_rec {
    int64_t id;
    qrl_hash device_code_hash;
    qrl_hash scan_hash;
    char user_code[QRL_USER_CODE_LEN + 1]; /* canonical, e.g. "WDJBMJHT" */
    char client_id[QRL_MAX_CLIENT_ID + 1];
    char scope[QRL_MAX_SCOPE + 1];
    char device_name[QRL_MAX_DEVICE_NAME + 1];
    char device_kind[QRL_MAX_DEVICE_KIND + 1];
    char address[QRL_MAX_ADDRESS + 1]; /* the screen's address */
    /* What the screen runs on, as it says ("Samsung Tizen", "Chrome on Linux"); "" when it did
     * not say (always for requests stored before schema version 6). */
    char device_platform[QRL_MAX_DEVICE_PLATFORM + 1];
    int64_t created_ms;
    int64_t expires_ms;
    int interval_s; /* polling interval given to the screen */
    qrl_lr_state state;
    int64_t updated_ms;            /* time of the last transition */
    int64_t claimed_device_id;     /* phone that scanned it (0 = none) */
    int64_t account_id;            /* account that approved it (0 = none) */
    int64_t approving_device_id;   /* phone device that approved (0 = none) */
    int64_t redeemed_device_id;    /* device created by redemption (0 = none) */
    char nonce[QRL_MAX_NONCE + 1]; /* approval nonce issued to the claiming phone ("" = none) */
    /* Version 11: the thumbprint (RFC 7638, base64url, QRL_DPOP_JKT_LEN characters) of the DPoP
     * key the screen named when it made the request (RFC 9449 dpop_jkt), "" when it named none.
     * Stored by lr_create, never changed: only a proof made with that key redeems the request,
     * and the approving phone is shown it. */
    char dpop_jkt[QRL_DPOP_JKT_LEN + 1];
} qrl_lr_rec;

/* Which key lr_find looks a login request up by. */
typedef enum qrl_lr_key {
    QRL_LR_KEY_DEVICE_CODE = 1, /* key: const qrl_lr_secret_key *, hash = device_code_hash */
    QRL_LR_KEY_SCAN = 2,        /* key: const qrl_lr_secret_key *, hash = scan_hash */
    QRL_LR_KEY_USER_CODE = 3    /* key: const char * canonical 8 letters */
} qrl_lr_key;

/* A device code and a scan secret carry their request's id (a selector) next to their secret
 * part: the request is read by primary key, and matches only if the hash of the whole secret
 * equals the stored one, compared in constant time. So a new request adds no index entry for
 * either secret. */
typedef struct qrl_lr_secret_key {
    int64_t id;
    qrl_hash hash;
} qrl_lr_secret_key;

/* A conditional state change (compare-and-set), see lr_transition. */
typedef struct qrl_lr_cas {
    int64_t id;
    unsigned from_mask; /* QRL_LR_BIT()s of states the change is legal from */
    qrl_lr_state to;
    int64_t now_ms;
    int64_t require_claimed_by;      /* nonzero: claimed_device_id must equal this */
    int64_t set_claimed_device_id;   /* nonzero: written */
    int64_t set_account_id;          /* nonzero: written */
    int64_t set_approving_device_id; /* nonzero: written */
    const char *set_nonce;           /* non-NULL: written (store version 2) */
    const char *require_nonce;       /* non-NULL: the stored nonce must equal this */
} qrl_lr_cas;

/* A poll of the token endpoint, see lr_poll_find (store version 11). It is the request's only
 * when all three match: a poll that is refused is not counted. */
typedef struct qrl_lr_poll_req {
    qrl_lr_secret_key key; /* the device code's: the request's id and device_code_hash */
    const char *client_id; /* the request's client_id */
    const char *dpop_jkt;  /* a request that names a DPoP key (dpop_jkt not "") needs this to
                              equal it; NULL: a poll without a proof */
    int64_t now_ms;
    int wait_s;   /* exempt from lr_poll's rule when >= the request's own interval_s (a client
                     held for at least the interval): -1 for a plain poll */
    int slack_ms; /* lr_poll's slack_ms, step_s and max_s */
    int step_s;
    int max_s;
} qrl_lr_poll_req;

/* A histogram of something a backend measures (qrl_store_health): count[i] counts the
 * events of at most le[i] and more than le[i - 1]; count[n] those above le[n - 1]; sum adds up
 * every event. n is at most QRL_STORE_HIST_MAX, and 0 for what the backend does not measure. */
#define QRL_STORE_HIST_MAX 16
typedef struct qrl_store_hist {
    size_t n;
    uint64_t le[QRL_STORE_HIST_MAX];
    uint64_t count[QRL_STORE_HIST_MAX + 1];
    uint64_t sum;
} qrl_store_hist;

/* What a backend tells an operator about its writes (the `health` method). */
typedef struct qrl_store_health {
    qrl_store_hist commit_us;    /* each commit of a batch of writes, in microseconds */
    qrl_store_hist sync_us;      /* each flush to the disk done apart from a commit, in us */
    qrl_store_hist batch_writes; /* writes in each committed batch */
} qrl_store_health;

typedef struct qrl_store qrl_store;

typedef struct qrl_store_methods {
    int version; /* QRL_STORE_VERSION the backend was written for */
    const char *name;

    /* Closes every connection and frees the handle. Accepts NULL. */
    void (*close)(qrl_store *st);

    /* --- accounts --- */
    /* Inserts acc (id ignored) and sets acc->id. QRL_ERR_EXISTS when the username is taken. */
    qrl_err (*account_create)(qrl_store *st, qrl_account_rec *acc);
    qrl_err (*account_get)(qrl_store *st, int64_t id, qrl_account_rec *out);
    /* Exact, case-sensitive match on username. */
    qrl_err (*account_by_name)(qrl_store *st, const char *username, qrl_account_rec *out);
    qrl_err (*account_set_password)(qrl_store *st, int64_t id, const char *pw_hash);

    /* --- devices --- */
    /* Inserts dev (id ignored; account_id, name, kind, address, created_ms used, and pubkey when
     * has_pubkey; last_seen_ms = created_ms; revoked_ms = 0) and, in the same transaction, the
     * `ntok` tokens with their device_id set to the new id. Sets dev->id. lr_redeem and
     * lr_approve_redeem insert their device the same way. */
    qrl_err (*device_create)(qrl_store *st, qrl_device_rec *dev, qrl_token_rec *tok, size_t ntok);
    qrl_err (*device_get)(qrl_store *st, int64_t id, qrl_device_rec *out);
    /* Active (not revoked) devices of an account, oldest first, at most `max`. Fills out[0..*n). */
    qrl_err (*device_list)(qrl_store *st, int64_t account_id, qrl_device_rec *out, size_t max,
                           size_t *n);
    /* Sets last_seen_ms (and address when non-NULL) of an active device. Not durable-critical:
     * a backend may group these. */
    qrl_err (*device_touch)(qrl_store *st, int64_t device_id, int64_t now_ms, const char *address);
    /* Revokes device `device_id` of account `account_id` (sets revoked_ms = now_ms and revoked_ms
     * of all its tokens). QRL_ERR_NOT_FOUND when the device does not exist or belongs to another
     * account. Revoking an already revoked device returns QRL_OK and changes nothing. */
    qrl_err (*device_revoke)(qrl_store *st, int64_t account_id, int64_t device_id, int64_t now_ms);

    /* --- tokens --- */
    qrl_err (*token_insert)(qrl_store *st, const qrl_token_rec *tok);
    /* Finds a token by hash and fills every field, including account_id, device_revoked and
     * account_disabled. It does not judge expiry or revocation: the caller does. */
    qrl_err (*token_lookup)(qrl_store *st, const qrl_hash *h, qrl_token_rec *out);
    /* Refresh-token rotation, one transaction (RFC 6749 section 10.4 / OAuth 2.1 rotation):
     * - no refresh token with hash `old`: QRL_ERR_NOT_FOUND;
     * - token revoked, expired (expires_ms <= now_ms), device revoked or account disabled:
     *   QRL_ERR_REVOKED (or QRL_ERR_EXPIRED for expiry), nothing changes;
     * - token already used (used_ms != 0): reuse of a rotated token. The whole device is revoked
     *   (as device_revoke), that is committed, and QRL_ERR_TOKEN_REUSED is returned;
     * - otherwise used_ms = now_ms and the `n` new tokens are inserted with device_id set to the
     *   old token's device (written back into new_tok[i].device_id); QRL_OK.
     * Checks run in the order revoked, expired, reused. `old_out`, when non-NULL, receives the
     * old token's record (client_id, scope, device_id) whenever a refresh token was found. */
    qrl_err (*token_rotate)(qrl_store *st, const qrl_hash *old, int64_t now_ms,
                            qrl_token_rec *new_tok, size_t n, qrl_token_rec *old_out);
    /* Sets revoked_ms of one token (no-op if already revoked). QRL_ERR_NOT_FOUND if none. */
    qrl_err (*token_revoke)(qrl_store *st, const qrl_hash *h, int64_t now_ms);

    /* --- login requests --- */
    /* Inserts lr (state must be PENDING) under the id the caller chose (lr->id > 0: the
     * device code and scan secret carry it). QRL_ERR_EXISTS when the id is taken, or an
     * unexpired login request (expires_ms > lr->created_ms) in a non-terminal state already has
     * the same user_code; the caller draws a new id and new codes and retries. */
    qrl_err (*lr_create)(qrl_store *st, qrl_lr_rec *lr);
    qrl_err (*lr_get)(qrl_store *st, int64_t id, qrl_lr_rec *out);
    /* Looks up by one key. For QRL_LR_KEY_USER_CODE only requests with expires_ms > now_ms
     * match (the newest if several); the secret keys match whatever the expiry (the caller
     * reports expired_token), and QRL_ERR_NOT_FOUND when the id exists but its hash differs. */
    qrl_err (*lr_find)(qrl_store *st, qrl_lr_key kind, const void *key, int64_t now_ms,
                       qrl_lr_rec *out);
    /* The one compare-and-set that performs every state change except redemption:
     *   UPDATE ... SET state = to, updated_ms = now, [claimed/account/approving ids when nonzero]
     *   WHERE id = ? AND state IN from_mask
     *     AND (to == EXPIRED ? expires_ms <= now : expires_ms > now)
     *     AND (require_claimed_by == 0 OR claimed_device_id = require_claimed_by)
     *     AND (require_nonce IS NULL OR nonce = require_nonce)
     * QRL_OK when exactly one row changed, QRL_ERR_CONFLICT when none did (lost a race, wrong
     * state, expired or wrong claimer: the caller re-reads to tell which).
     * Durable (on disk before it returns) except a move to SCANNED or EXPIRED, which decides
     * nothing: like lr_create, such a change survives the process's crash but a backend may
     * lose it on a power loss. A lost claim sends the phone back to scanning; a lost expiry is
     * made again from expires_ms. */
    qrl_err (*lr_transition)(qrl_store *st, const qrl_lr_cas *cas);
    /* Redemption, one transaction:
     * - state != APPROVED: QRL_ERR_CONFLICT, nothing changes (*state_out = current state);
     * - expires_ms <= now_ms: QRL_ERR_EXPIRED, nothing changes;
     * - approving account disabled or approving device revoked: state becomes DENIED (committed),
     *   QRL_ERR_DENIED;
     * - otherwise state = REDEEMED, a device is created from `dev` with account_id = the
     *   request's account_id (dev->id and dev->account_id are set), the `ntok` tokens are inserted
     *   for it, redeemed_device_id is set; QRL_OK.
     * `state_out` may be NULL. */
    qrl_err (*lr_redeem)(qrl_store *st, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                         qrl_token_rec *tok, size_t ntok, qrl_lr_state *state_out);
    /* Ids of login requests in SCANNED or APPROVED state whose claimed_device_id or
     * approving_device_id is `device_id`, at most `max`. */
    qrl_err (*lr_by_device)(qrl_store *st, int64_t device_id, int64_t *ids, size_t max, size_t *n);

    /* --- rate limits (fixed windows; shared by every node using the store) --- */
    /* Adds one hit to `key` and sets *count to the hits in the current window. A window starts
     * at the first hit and lasts window_ms; a hit after it starts a new window at count 1. */
    qrl_err (*ratelimit_hit)(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                             int64_t *count);
    /* Hits of `key` in its current window (0 when none or the window is over). */
    qrl_err (*ratelimit_peek)(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                              int64_t *count);

    /* Deletes login requests that expired more than `keep_ms` ago, those that expired
     * undecided (pending, scanned or expired: nobody answered them) more than a minute ago,
     * and rate-limit rows whose windows ended more than `keep_ms` ago; since version 11 also
     * the WebAuthn challenges that have expired (expires_ms <= now_ms). */
    qrl_err (*sweep)(qrl_store *st, int64_t now_ms, int64_t keep_ms);

    /* --- version 2 --- */
    /* Sets (or replaces) the Ed25519 public key of active device `device_id` of account
     * `account_id`. QRL_ERR_NOT_FOUND when there is no such active device of that account. */
    qrl_err (*device_set_pubkey)(qrl_store *st, int64_t account_id, int64_t device_id,
                                 const unsigned char pubkey[QRL_PUBKEY_BYTES]);
    /* Approval and redemption as one atomic unit, for a screen already waiting: performs `cas`
     * (which must move the request to APPROVED) and then exactly what lr_redeem does. Either
     * both happen or neither: QRL_ERR_CONFLICT when the compare-and-set matched no row, or
     * lr_redeem's error (then the approval is undone too). */
    qrl_err (*lr_approve_redeem)(qrl_store *st, const qrl_lr_cas *cas, qrl_device_rec *dev,
                                 qrl_token_rec *tok, size_t ntok);
    /* --- version 4 --- */
    /* What token_lookup finds, with the token's account and device, read together (one
     * lookup per authenticated request instead of three). QRL_ERR_NOT_FOUND if no token has
     * hash `h`. Like token_lookup it does not judge expiry or revocation. */
    qrl_err (*token_auth)(qrl_store *st, const qrl_hash *h, qrl_token_rec *tok,
                          qrl_account_rec *acc, qrl_device_rec *dev);
    /* --- version 5 --- */
    /* A read scope on the calling thread (both may be NULL: reads then stand alone). The reads
     * this thread makes between read_begin and read_end may share one snapshot of the store,
     * taken at the first of them, instead of one each. A write from this thread ends the scope
     * before it waits, for good: the reads after it stand alone again and see the write. A
     * scope belongs to the thread that began it: other threads' reads never share it, and it
     * ends on that thread. Scopes nest, and read_end ends the outermost one. read_begin fails
     * only with QRL_ERR_INVALID (st NULL); read_end without a scope does nothing. */
    qrl_err (*read_begin)(qrl_store *st);
    void (*read_end)(qrl_store *st);
    /* --- version 6: passkeys --- */
    /* Inserts pk (id and last_used_ms ignored: last_used_ms = 0) and sets pk->id.
     * QRL_ERR_EXISTS when a passkey with the same cred_id exists (in any account: a credential
     * id names one credential, W3C WebAuthn Level 2 section 7.1 step 22); QRL_ERR_INVALID when
     * a length is 0 or over its array. Durable. */
    qrl_err (*passkey_add)(qrl_store *st, qrl_passkey_rec *pk);
    /* Passkeys of an account, oldest first, at most `max`. Fills out[0..*n). */
    qrl_err (*passkey_list)(qrl_store *st, int64_t account_id, qrl_passkey_rec *out, size_t max,
                            size_t *n);
    /* The passkey with this credential id (exact bytes). QRL_ERR_NOT_FOUND if none. */
    qrl_err (*passkey_get)(qrl_store *st, const unsigned char *cred_id, size_t cred_id_len,
                           qrl_passkey_rec *out);
    /* Records an assertion: sign_count = new_count and last_used_ms = now_ms, only if
     * sign_count is still old_count (a compare-and-set, so two assertions that raced with the
     * same counter cannot both be accepted). QRL_ERR_CONFLICT when it did not match,
     * QRL_ERR_NOT_FOUND when there is no such passkey. Durable. */
    qrl_err (*passkey_use)(qrl_store *st, int64_t id, uint32_t old_count, uint32_t new_count,
                           int64_t now_ms);
    /* Deletes passkey `id` of account `account_id`. QRL_ERR_NOT_FOUND when it does not exist or
     * belongs to another account. Durable. */
    qrl_err (*passkey_delete)(qrl_store *st, int64_t account_id, int64_t id);
    /* --- version 7: changes made elsewhere --- */
    /* Installs the hook through which the backend reports a login request changed by someone
     * other than this handle's callers (another node's approval, seen through PostgreSQL
     * LISTEN/NOTIFY for example): fn(ud, lr_id) once per such change, from any thread, at any
     * time from here until the next set_notify or close returns. qrl_notice_key(a) (core.h,
     * below -2^62) reports a new device's notice for account a; another negative value -d reports
     * that device d was revoked (what the server's held requests of a signed-in screen wait
     * for); 0 reports that anything may have changed (the backend lost its view of changes
     * for a while, e.g. its notification connection dropped and came back), so everything
     * waiting must look again. A backend may also report changes made through this handle
     * (they are reported twice, which is harmless). fn does not call the store and
     * returns quickly (it wakes whoever waits for lr_id). fn NULL removes the hook. A backend
     * that sees no changes but its own callers' accepts the hook and never calls it: the core
     * reports those changes itself. The SQLite backend does so (a second process writing the
     * same file is not reported; its changes show at the next read, and through lr_stamp).
     * Fails only with QRL_ERR_INVALID (st NULL). */
    qrl_err (*set_notify)(qrl_store *st, void (*fn)(void *ud, int64_t lr_id), void *ud);
    /* --- version 8: change stamps, rate limits under concurrency, health --- */
    /* A stamp of login request `id`: a number that differs from every earlier stamp of it once
     * a change of its row has been committed by any process using the database, no later than
     * when the write method that made the change returns. Different requests may share a
     * stamp (a change of one then also moves the others': harmless, they are read again).
     * What it is for: a caller that took the stamp BEFORE a read of the row (a read outside a
     * read scope) may keep what it read while the stamp stays equal, and so answer the same
     * question again without reading the store; this is how the core answers polls of pending
     * requests from memory, correctly when several processes share one database. It must cost
     * far less than a read (the SQLite backend: one atomic load from memory that every process
     * on the database maps). A backend that cannot tell sets it NULL; the core then reads the
     * store for every poll. */
    uint64_t (*lr_stamp)(qrl_store *st, int64_t id);
    /* Rate limits that hold under concurrency (GCRA, the generic cell rate algorithm): `key`
     * allows `limit` attempts at once and then one every window_ms / limit, so that no span of
     * window_ms ever holds more than `limit` + 1 of them. ratelimit_take takes one attempt
     * atomically: QRL_OK, or QRL_ERR_RATE_LIMITED with *retry_ms (may be NULL) set to the
     * milliseconds until one would be taken. ratelimit_give returns one taken attempt (an
     * attempt that turned out not to count, such as a correct password). Both lazy: a power
     * loss only forgives some attempts. Keys and windows as for ratelimit_hit; limit >= 1. The
     * keys of these two and of ratelimit_hit/_peek must differ (the SQLite backend keeps them
     * in one table). */
    qrl_err (*ratelimit_take)(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                              int64_t limit, int64_t *retry_ms);
    qrl_err (*ratelimit_give)(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                              int64_t limit);
    /* Operating (the server's /readyz and /metrics): */
    /* Fills *out (unless NULL) with the statistics of the backend's writes since it opened.
     * With `probe` nonzero, also checks that the database would take a write at this moment,
     * without writing and without waiting more than about a tenth of a second: QRL_ERR_BUSY
     * when something else holds its write lock (another process in a write transaction, a
     * backup), QRL_ERR_STORE when it cannot be reached. Without `probe` it only reads counters
     * and returns QRL_OK. The SQLite backend counts the writes of every SQLite store of the
     * process together (a server has one). NULL when the backend has neither. */
    qrl_err (*health)(qrl_store *st, int probe, qrl_store_health *out);
    /* --- version 9: several nodes on one database --- */
    /* The RFC 8628 section 3.5 bookkeeping of one poll of request `id`, kept in the database
     * by a backend that several nodes share (one node's memory cannot see the polls another
     * node answered). Atomically: when `exempt` is 0 and the previous recorded poll of the
     * request lies less than interval * 1000 - slack_ms before now_ms, the interval grows by
     * step_s (to at most max_s) and QRL_ERR_SLOW_DOWN is returned; otherwise QRL_OK. Unless
     * `exempt`, the poll is recorded at now_ms either way. *interval_s (may be NULL) gets the
     * interval in force afterwards; a request starts at its own interval_s. QRL_ERR_NOT_FOUND
     * when there is no such request. Lazy. A backend for one node (SQLite) sets it NULL: the
     * core keeps this in memory, which is faster. */
    qrl_err (*lr_poll)(qrl_store *st, int64_t id, int64_t now_ms, int exempt, int slack_ms,
                       int step_s, int max_s, int *interval_s);
    /* --- version 10: notices of new devices (qrl_notice_rec) --- */
    /* A backend leaves all four NULL when it keeps no notices: the core then turns the feature
     * off (no notice is recorded, the API answers that there are none to read). The core wakes
     * the requests waiting for an account's notices with the change id -(2^62 + account_id)
     * (qrl_notice_key in core.h), through on_change for its own notice_add; a backend shared by
     * several nodes reports other nodes' notice_add the same way through set_notify (a value
     * below -2^62 is then not a revoked device but that account's notices).
     *
     * Records notice `n` (id, account_id, device_id, created_ms, kind, platform and, since
     * version 11, reason and the screen fields; the id is the caller's, > 0) and, in the same
     * transaction, deletes the notices of n->account_id created
     * before `older_than_ms` together with their acknowledgements, so that an account's list
     * stays short without a sweep. QRL_ERR_EXISTS when the id is taken (the caller draws
     * another), QRL_ERR_INVALID for an id <= 0, an unknown kind or an over-long string. Lazy: a notice lost to
     * a power loss costs the warning, never a credential; it survives a crash of the process. */
    qrl_err (*notice_add)(qrl_store *st, const qrl_notice_rec *n, int64_t older_than_ms);
    /* The notices device `device_id` of account `account_id` has not acknowledged, newest (the
     * highest id) first, at most `max`, with their devices' rows: those of the account created
     * at or after `since_ms` that are REQUEST_BLOCKED (every device of the account is told,
     * the stopped phone too), or DEVICE_LINKED of a device that is another than `device_id` and
     * is not revoked.
     *   SELECT ... FROM notices n JOIN devices d ON d.id = n.device_id
     *   WHERE n.account_id = ? AND n.created_ms >= ?
     *     AND (n.kind = 2 OR (n.device_id != ? AND d.revoked_ms = 0))
     *     AND no acknowledgement (n.id, device_id) exists ORDER BY n.id DESC LIMIT max
     * Fills out[0..*n). */
    qrl_err (*notice_list)(qrl_store *st, int64_t account_id, int64_t device_id, int64_t since_ms,
                           qrl_notice_rec *out, size_t max, size_t *n);
    /* Notice `id` of account `account_id` with its device's row (revoked or not, acknowledged
     * or not). QRL_ERR_NOT_FOUND when there is none, or it is another account's. */
    qrl_err (*notice_get)(qrl_store *st, int64_t account_id, int64_t id, qrl_notice_rec *out);
    /* Device `device_id` acknowledges notice `id` of account `account_id` at now_ms: it is no
     * longer in that device's notice_list. Acknowledging twice is QRL_OK and changes nothing.
     * QRL_ERR_NOT_FOUND when the account has no notice `id`. Lazy: a lost acknowledgement
     * shows the notice once more. */
    qrl_err (*notice_ack)(qrl_store *st, int64_t account_id, int64_t id, int64_t device_id,
                          int64_t now_ms);
    /* --- version 11: WebAuthn challenges --- */
    /* The challenges of passkey ceremonies (qrl_challenge_rec), kept in the database so that a
     * ceremony begun on one node finishes on any node that shares it. A backend leaves both
     * NULL when it keeps none: the core then keeps them in its own memory, and a ceremony must
     * end on the node that began it.
     *
     * Records challenge `c` and, in the same transaction, makes room for it: deletes the
     * challenges of c->device_id that have expired (expires_ms <= now_ms) and, of its live
     * ones, all but the QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE - 1 that expire last, so that
     * a device never holds more than QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE: nobody fills the
     * table, whatever they ask for. The bound holds for puts racing on several nodes too.
     * QRL_ERR_INVALID for an account or device id <= 0, lr_id < 0, purpose <= 0 or
     * expires_ms <= now_ms; QRL_ERR_EXISTS when a challenge with the same hash exists. Lazy: a
     * challenge lost to a power loss makes the browser ask for a new one; it survives a crash
     * of the process. */
    qrl_err (*challenge_put)(qrl_store *st, const qrl_challenge_rec *c, int64_t now_ms);
    /* Takes the challenge whose hash is `h`: deletes it and fills *out (may be NULL) with what
     * it was issued for, in one atomic step, so that of any number of takes of one live
     * challenge, on any nodes at once, exactly one gets QRL_OK. QRL_ERR_NOT_FOUND when there is
     * none, or it has expired (expires_ms <= now_ms: deleted all the same, never returned).
     * Durable: a challenge once taken never comes back, so that whatever was presented with it
     * is verified at most once. */
    qrl_err (*challenge_take)(qrl_store *st, const qrl_hash *h, int64_t now_ms,
                              qrl_challenge_rec *out);
    /* --- version 11: one statement where a backend shared by several nodes made two --- */
    /* A poll of the token endpoint (qrl_lr_poll_req): lr_find by device code and lr_poll of
     * the request found, as one atomic unit, and only if the request is the poll's (its hash,
     * client and DPoP key match). QRL_OK or QRL_ERR_SLOW_DOWN as lr_poll returns them, with
     * *out filled either way and *interval_s (may be NULL) the interval in force afterwards;
     * QRL_ERR_NOT_FOUND, with nothing recorded, when no request matches (the caller reads with
     * lr_find to say why). Lazy. A backend that leaves lr_poll NULL leaves this NULL too; one
     * that has lr_poll may leave it NULL, and the core then calls lr_find and lr_poll. */
    qrl_err (*lr_poll_find)(qrl_store *st, const qrl_lr_poll_req *poll, qrl_lr_rec *out,
                            int *interval_s);
    /* A distinct thing counted once per window, atomically: when `seen_key` is seen for the
     * first time in window_ms (ratelimit_take of seen_key with limit 1 takes its attempt),
     * ratelimit_hit of `count_key` with the same window, *count set to its hits, and QRL_OK;
     * otherwise QRL_ERR_EXISTS and nothing changes. The two keys differ; lazy, as both are.
     * NULL: the core calls the two methods itself (lib/phishing.c). */
    qrl_err (*ratelimit_first_hit)(qrl_store *st, const char *seen_key, const char *count_key,
                                   int64_t now_ms, int64_t window_ms, int64_t *count);
} qrl_store_methods;

struct qrl_store {
    const qrl_store_methods *m;
};

/* Opens (creating if needed, migrating to the current schema) the SQLite store at `path`.
 * On failure returns an error and, when `errbuf` is non-NULL, a message in it. The handle is
 * freed with st->m->close(st). Thread-safe: reads share a few connections, every write runs on
 * the store's writer thread. The store writes its WAL through a VFS shim (walbuf) only with an
 * SQLite library version the shim was tested with; with any other it uses SQLite's own VFS and
 * says so once per process on stderr. */
qrl_err qrl_store_sqlite_open(const char *path, qrl_store **out, char *errbuf, size_t errlen);

/* Opens the PostgreSQL store at `conninfo`, a libpq connection URI
 * (postgresql://user@host:port/dbname) or key=value string, creating its tables or migrating
 * them (once, when several nodes start together) and refusing a schema newer than this build.
 * Several processes ("nodes") may open one database: every guarantee of this header holds
 * across them, and each node hears of the others' changes through set_notify. Errors and
 * handle as for qrl_store_sqlite_open; a message never holds the URI's password. Thread-safe:
 * each method leases a connection of the handle's pool (QRLOGIN_PG_POOL, default 16). */
qrl_err qrl_store_postgres_open(const char *conninfo, qrl_store **out, char *errbuf,
                                size_t errlen);

/* Opens the store `spec` names: PostgreSQL for a URI starting with postgres:// or
 * postgresql://, else the SQLite database file at that path. As the two functions above. */
qrl_err qrl_store_open(const char *spec, qrl_store **out, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
