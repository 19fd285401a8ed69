/* SPDX-License-Identifier: MIT */
/*
 * qrlogin client SDK: the screen side of a QR-code login, for TV, desktop and terminal apps.
 *
 * The SDK asks a qrlogin server (or any RFC 8628 server) for a login request, hands the app the
 * QR payload and the user code to show, waits for the phone's decision - pushed by the server
 * when it honours `Prefer: wait` (RFC 7240), otherwise by RFC 8628 polling - and returns the
 * access and refresh tokens. It renews an expired login request by itself, refreshes tokens with
 * rotation and can be cancelled from another thread. Each handle holds an Ed25519 key: with a
 * server that takes DPoP proofs (RFC 9449), the tokens are bound to that key and useless
 * without it (see "Proof of possession" below). docs/sdk.md walks through all of it.
 *
 * Lifecycle of a handle:
 *
 *     qrl_client_options o = {.server_url = "https://login.example.com", .client_id = "tv-app",
 *                             .on_event = show, .user = app};
 *     qrl_client *c;
 *     if (qrl_client_new(&o, &c) != QRL_OK) ...            (qrl_client_check_options says why)
 *     qrl_client_tokens t;
 *     qrl_err rc = qrl_client_login(c, &t);                (blocks; events go to show())
 *     ... later: qrl_client_refresh(c, &t); ... qrl_client_logout(c);
 *     qrl_client_tokens_clear(&t);
 *     qrl_client_free(c);
 *
 * Threading: a handle is used by one thread at a time; a second thread entering a blocking call
 * on a busy handle gets QRL_ERR_CONFLICT. The exception is qrl_client_cancel(), which any thread
 * may call at any time between qrl_client_new() and qrl_client_free(). Different handles are
 * independent. Callbacks run on the thread that called into the SDK.
 *
 * Global state: none of our own. libcurl needs curl_global_init(); the SDK calls
 * curl_global_init(CURL_GLOBAL_DEFAULT) once per process (pthread_once) from the first
 * qrl_client_new() or qrl_client_check_options(). It never calls curl_global_cleanup(): an
 * app that wants to may call it at exit, after freeing every handle.
 *
 * Ownership: the SDK copies every string passed in. Strings it returns (event fields,
 * qrl_client_last_error) are borrowed from the handle and valid until the next call on the
 * handle other than qrl_client_last_error, qrl_client_cancel and the qrl_client_qr_* renders.
 * Tokens are copied into caller-owned qrl_client_tokens structs. Rendered QR images are owned
 * by the caller and released with qrl_client_buf_free().
 *
 * Errors: every function returns a qrl_err from qrlogin/error.h (0 = QRL_OK). Describe a code
 * with qrl_client_strerror(); the handle keeps a sentence about the last failure
 * (qrl_client_last_error). How the SDK uses each code is listed at qrl_client_strerror().
 */
#ifndef QRLOGIN_CLIENT_H
#define QRLOGIN_CLIENT_H

#include <stddef.h>

#include "qrlogin/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define QRL_CLIENT_API __attribute__((visibility("default")))
#define QRL_CLIENT_NODISCARD __attribute__((warn_unused_result))
#else
#define QRL_CLIENT_API
#define QRL_CLIENT_NODISCARD
#endif

/* A blocking call that was stopped by qrl_client_cancel() returns this code. */
#define QRL_CLIENT_ERR_CANCELLED QRL_ERR_CANCELLED

/* Longest token or device code the SDK accepts. qrlogin issues 50 characters; 128 (the
 * server's own input limit) leaves room for other RFC 8628 servers and rejects garbage. */
#define QRL_CLIENT_TOKEN_MAX 128
/* Longest scope string (the server's limit, include/qrlogin/limits.h QRL_MAX_SCOPE). */
#define QRL_CLIENT_SCOPE_MAX 256
/* Longest error detail kept on a handle, including the NUL. */
#define QRL_CLIENT_ERROR_MAX 256

/* Defaults used when an option is left 0. */
#define QRL_CLIENT_DEFAULT_WAIT_S 30   /* Prefer: wait=30: far under proxy idle timeouts */
#define QRL_CLIENT_DEFAULT_RENEWALS 10 /* 11 requests of ~2 minutes: ~20 minutes of QR */
#define QRL_CLIENT_DEFAULT_RETRIES 5   /* consecutive transient failures before giving up */
#define QRL_CLIENT_DEFAULT_RETRY_BASE_MS 1000L
#define QRL_CLIENT_DEFAULT_RETRY_MAX_MS 30000L
#define QRL_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define QRL_CLIENT_DEFAULT_TIMEOUT_MS 15000L /* per request, on top of a held wait */
/* max_renewals value that turns renewal off: an expired request ends the login. */
#define QRL_CLIENT_NO_RENEWAL (-1)
/* Upper bounds of the options: keep everything bounded even when an app passes garbage. */
#define QRL_CLIENT_MAX_RENEWALS 1000
#define QRL_CLIENT_MAX_RETRIES 100

typedef struct qrl_client qrl_client;

/* What happened, for the app's screen. */
typedef enum qrl_client_event_type {
    /* qrl_client_step() only: still waiting, nothing new to show. Never sent to on_event. */
    QRL_CLIENT_EV_NONE = 0,
    /* A login request exists: show qr_payload as a QR code and user_code as text. */
    QRL_CLIENT_EV_STARTED = 1,
    /* The previous request expired unscanned and a new one replaced it (renewal number
     * `renewals`): replace the QR code and the user code on screen. */
    QRL_CLIENT_EV_RENEWED = 2,
    /* A phone scanned the code: show "Confirm on your phone". */
    QRL_CLIENT_EV_SCANNED = 3,
    /* A transient failure (network, server busy): the SDK tries again in retry_in_ms. */
    QRL_CLIENT_EV_RETRYING = 4,
    /* Signed in: the tokens are available (qrl_client_login's out, qrl_client_get_tokens). */
    QRL_CLIENT_EV_APPROVED = 5
} qrl_client_event_type;

/* One event. String members are borrowed from the handle (see Ownership above) and are never
 * NULL: "" when there is no current login request. */
typedef struct qrl_client_event {
    qrl_client_event_type type;
    const char *qr_payload;       /* verification_uri_complete: the text of the QR code */
    const char *verification_uri; /* where to type the user code by hand */
    const char *user_code;        /* "WDJB-MJHT" */
    int expires_in;               /* seconds the current login request lives (from its start) */
    int interval;                 /* current RFC 8628 polling interval in seconds */
    int renewals;                 /* renewals so far in this login */
    int push;                     /* 1 once the server has held a request (Prefer: wait) */
    qrl_err error;                /* RETRYING: the failure being retried */
    long retry_in_ms;             /* RETRYING: delay before the next attempt */
} qrl_client_event;

/* Receives events from qrl_client_login() (and RETRYING from qrl_client_refresh()). Runs on the
 * calling thread between network operations; it may call qrl_client_cancel(),
 * qrl_client_last_error(), qrl_client_dpop_jkt() and the qrl_client_qr_* renders on the same
 * handle, nothing else. */
typedef void (*qrl_client_event_fn)(void *user, const qrl_client_event *ev);

/* Replaces the SDK's sleeps (between polls and before retries) when set: called with the delay
 * in milliseconds; sleep (or not) and return. Meant for tests that drive a fake clock. The SDK
 * checks for cancellation when it returns. */
typedef void (*qrl_client_sleep_fn)(void *user, long ms);

/* Replaceable allocator for the SDK's own memory (the handle, its strings, response buffers,
 * rendered images). libcurl, jansson and libqrencode keep their own allocators. Both functions
 * are required; the SDK never reallocates (growing buffers are copied so that no secret is left
 * behind in freed memory). */
typedef struct qrl_client_allocator {
    void *(*malloc_fn)(void *ctx, size_t size);
    void (*free_fn)(void *ctx, void *ptr);
    void *ctx;
} qrl_client_allocator;

/* Options for qrl_client_new(). Zero-initialise and set what you need: every 0 / NULL means the
 * documented default. All strings are copied. */
typedef struct qrl_client_options {
    /* Required. The server's base URL, which is its OAuth issuer (RFC 8414), e.g.
     * "https://login.example.com". Endpoints are discovered from
     * {server_url}/.well-known/oauth-authorization-server. Must be https, except for loopback
     * hosts (127.0.0.1, ::1, localhost) or when allow_insecure_http is set. */
    const char *server_url;
    /* Required. The app's public client identifier: 1-64 of [A-Za-z0-9._:-]. */
    const char *client_id;
    const char *scope;       /* space-separated scopes, up to QRL_CLIENT_SCOPE_MAX bytes */
    const char *device_name; /* shown on the phone ("Living Room TV"), up to 64 bytes UTF-8 */
    const char *device_kind; /* "tv", "browser", "desktop", "cli" or "other" */

    qrl_client_event_fn on_event; /* required by qrl_client_login() */
    void *user;                   /* passed to on_event and sleep */

    /* Seconds the server may hold each token request (Prefer: wait=N), 1-60; default 30.
     * The SDK raises it to the current polling interval when that is larger. */
    int wait_s;
    /* 1: never ask the server to hold requests; poll every `interval` seconds (RFC 8628). The
     * SDK also falls back to polling by itself when the server does not honour the request. */
    int disable_push;
    /* Renewals after expiry per login, 0-1000; 0 means the default (10), and
     * QRL_CLIENT_NO_RENEWAL turns renewal off. */
    int max_renewals;
    /* Consecutive transient failures (network errors, HTTP 429/5xx) tolerated before a call
     * gives up with QRL_ERR_BUSY, 1-100; default 5. */
    int max_retries;
    /* Exponential back-off between retries: base * 2^(n-1), capped, with jitter. */
    long retry_base_ms;      /* default 1000 */
    long retry_max_ms;       /* default 30000 */
    long connect_timeout_ms; /* default 10000 */
    long timeout_ms;         /* per request, added to any held wait; default 15000 */

    const char *ca_file;     /* CA bundle for TLS (CURLOPT_CAINFO); NULL: libcurl's default */
    int allow_insecure_http; /* 1: accept http:// for non-loopback hosts (tokens in clear!) */

    const qrl_client_allocator *allocator; /* NULL: malloc and free; copied */
    qrl_client_sleep_fn sleep;             /* NULL: real, cancellable sleeps */
} qrl_client_options;

/* Tokens, copied into caller memory. They are secrets: keep the refresh token in the platform's
 * secure storage, with the handle's key (qrl_client_get_key), and wipe copies with
 * qrl_client_tokens_clear(). */
typedef struct qrl_client_tokens {
    /* Send as "Authorization: Bearer ...", or, when qrl_client_dpop_bound(), as
     * "Authorization: DPoP ..." with a proof from qrl_client_dpop_proof(). */
    char access_token[QRL_CLIENT_TOKEN_MAX + 1];
    char refresh_token[QRL_CLIENT_TOKEN_MAX + 1]; /* "" if the server issued none */
    char scope[QRL_CLIENT_SCOPE_MAX + 1];         /* granted scope; "" if none was given */
    long expires_in;                              /* access token lifetime in seconds */
    long long expires_at; /* Unix time (seconds) the access token expires, by our clock */
} qrl_client_tokens;

/* --- handle lifecycle --------------------------------------------------------------------- */

/* Checks options without creating anything. QRL_OK, or QRL_ERR_INVALID (a bad value),
 * QRL_ERR_TOO_LARGE (an over-long string) with a sentence in `buf` (may be NULL) saying which
 * option and why. Use it to explain a failed qrl_client_new(). */
QRL_CLIENT_API qrl_err qrl_client_check_options(const qrl_client_options *opts, char *buf,
                                                size_t len);

/* Creates a handle. Does no network I/O. On success *out is a new handle owned by the caller,
 * released with qrl_client_free(); on failure *out is NULL and the result is QRL_ERR_INVALID or
 * QRL_ERR_TOO_LARGE (see qrl_client_check_options) or QRL_ERR_NOMEM. */
QRL_CLIENT_API QRL_CLIENT_NODISCARD qrl_err qrl_client_new(const qrl_client_options *opts,
                                                           qrl_client **out);

/* Frees the handle and wipes the secrets it holds. Accepts NULL. Must not race with any other
 * call on the handle, qrl_client_cancel() included. */
QRL_CLIENT_API void qrl_client_free(qrl_client *c);

/* --- signing in ---------------------------------------------------------------------------- */

/* Runs a whole login and blocks until it ends: starts a new login request (abandoning any
 * previous one), reports STARTED, SCANNED, RENEWED and RETRYING through opts.on_event, and
 * on approval copies the tokens to *out (may be NULL; they stay on the handle too), reports
 * APPROVED and returns QRL_OK.
 *
 * Other results: QRL_ERR_DENIED (the user declined), QRL_ERR_EXPIRED (the request expired and
 * max_renewals were used up), QRL_CLIENT_ERR_CANCELLED, QRL_ERR_BUSY (server unreachable or
 * failing after max_retries attempts), QRL_ERR_RATE_LIMITED (the same, server said 429),
 * QRL_ERR_INVALID_CLIENT / QRL_ERR_INVALID (the server rejected the client_id / a parameter),
 * QRL_ERR_NOT_FOUND (the server no longer knows the request), QRL_ERR_INTERNAL (an answer
 * that breaks the protocol), QRL_ERR_TOO_LARGE, QRL_ERR_NOMEM, QRL_ERR_INVALID (no on_event
 * callback), QRL_ERR_CONFLICT (the handle is busy on another thread). qrl_client_last_error()
 * has details. */
QRL_CLIENT_API QRL_CLIENT_NODISCARD qrl_err qrl_client_login(qrl_client *c, qrl_client_tokens *out);

/* The same login, one step at a time, for apps with their own loop (each call blocks for at
 * most one held request or one polling interval). The first call starts a login request and
 * yields STARTED; later calls yield NONE (keep waiting), SCANNED, RENEWED, RETRYING or
 * APPROVED, after which the tokens are on the handle (qrl_client_get_tokens). *ev is filled on
 * QRL_OK and is type NONE otherwise. An error (as for qrl_client_login) ends the login; the
 * next call after APPROVED or an error starts a new one. on_event is not called. */
QRL_CLIENT_API QRL_CLIENT_NODISCARD qrl_err qrl_client_step(qrl_client *c, qrl_client_event *ev);

/* Makes the blocking call running on the handle return QRL_CLIENT_ERR_CANCELLED promptly (an
 * in-flight request is aborted; a sleep is cut short). If no call is running, the next
 * blocking call returns it at once. The cancellation is used up when a call returns
 * QRL_CLIENT_ERR_CANCELLED (or by qrl_client_reset). Thread-safe; not for signal handlers. */
QRL_CLIENT_API void qrl_client_cancel(qrl_client *c);

/* Forgets the current login request and any pending cancellation; keeps the tokens.
 * QRL_ERR_CONFLICT while another thread is in a blocking call on the handle. */
QRL_CLIENT_API qrl_err qrl_client_reset(qrl_client *c);

/* --- tokens -------------------------------------------------------------------------------- */

/* Copies the handle's tokens to *out. QRL_ERR_CONFLICT when it has none (not signed in, or a
 * refresh failed with QRL_ERR_UNAUTHORIZED). After qrl_client_set_refresh_token() and before
 * the first refresh, access_token is "". */
QRL_CLIENT_API qrl_err qrl_client_get_tokens(const qrl_client *c, qrl_client_tokens *out);

/* Gives the handle a refresh token saved from an earlier run (copied), replacing any tokens it
 * holds. QRL_ERR_INVALID for "" or NULL, QRL_ERR_TOO_LARGE past QRL_CLIENT_TOKEN_MAX. */
QRL_CLIENT_API qrl_err qrl_client_set_refresh_token(qrl_client *c, const char *refresh_token);

/* Trades the handle's refresh token for new tokens (RFC 6749 section 6). The server rotates
 * refresh tokens: the old one is spent, the handle keeps the new one, and *out (may be NULL)
 * receives both - persist the new refresh token. Presenting a spent token again revokes the
 * device, so the SDK retries only failures where the request never left this machine or the
 * server said it did not process it (HTTP 429, 503).
 * QRL_ERR_UNAUTHORIZED: the refresh token is no longer valid (expired, revoked, already used,
 * or bound to another key than the handle's); the handle drops its tokens and the app must sign
 * in again. QRL_ERR_INVALID: the server refused the request or its DPoP proof (the detail says
 * why; the tokens stay). Also QRL_ERR_CONFLICT (no refresh token), QRL_ERR_BUSY,
 * QRL_CLIENT_ERR_CANCELLED, QRL_ERR_INTERNAL. */
QRL_CLIENT_API QRL_CLIENT_NODISCARD qrl_err qrl_client_refresh(qrl_client *c,
                                                               qrl_client_tokens *out);

/* Signs this device out: revokes the refresh token at the server (RFC 7009; this ends the
 * device's access token too) and wipes the tokens on the handle. The tokens are wiped even when
 * revocation fails (QRL_ERR_BUSY ...): the result says whether the server heard it.
 * QRL_ERR_CONFLICT when there are no tokens. */
QRL_CLIENT_API qrl_err qrl_client_logout(qrl_client *c);

/* Wipes a tokens struct (explicit_bzero). Accepts NULL. */
QRL_CLIENT_API void qrl_client_tokens_clear(qrl_client_tokens *t);

/* --- proof of possession (DPoP, RFC 9449) --------------------------------------------------- */

/* Every handle holds an Ed25519 key pair, made by qrl_client_new() from the OS's random
 * source. When the server's metadata lists EdDSA in dpop_signing_alg_values_supported (a
 * qrlogin server does), each token request carries a DPoP proof of that key, and the server
 * binds the tokens to it: the refresh token and the access token are useless to anyone without
 * the key. Other servers get no proofs and issue bearer tokens as before.
 *
 * The key is named from the start: each login request the handle asks for of such a server
 * carries the key's thumbprint (dpop_jkt, RFC 9449 section 10), so the request is bound to the
 * key, only a token request proving it redeems the request, and its QR code (qr_payload)
 * carries the thumbprint's short form ("?k=...") for the approving phone to check against the
 * key the server names. A key replaced (qrl_client_set_key) while a login request is on screen
 * cannot redeem that request: set the key before qrl_client_login or the first step.
 *
 * Keep the key with the refresh token, in the same secure storage: after a restart, restore
 * both (qrl_client_set_key, then qrl_client_set_refresh_token). A refresh with another key is
 * refused as an invalid grant (QRL_ERR_UNAUTHORIZED: sign in again). A proof's time is the
 * local clock corrected by the server's (learnt from the Date of a refused proof, which the
 * SDK then retries once), so a screen with a wrong clock keeps working. */

/* Bytes for a saved key, the NUL included: the key is 43 characters of base64url. */
#define QRL_CLIENT_KEY_MAX 64
/* Bytes enough for a proof for a URL of up to 1024 bytes (qrl_client_dpop_proof). */
#define QRL_CLIENT_PROOF_MAX 2048

/* Writes the handle's key (its 32-byte Ed25519 seed, base64url) into out, NUL-terminated. It is
 * a secret like the refresh token. QRL_ERR_TOO_LARGE when len is under 44 bytes. */
QRL_CLIENT_API qrl_err qrl_client_get_key(const qrl_client *c, char *out, size_t len);

/* Replaces the handle's key with one saved by qrl_client_get_key (copied; wipe yours). Tokens
 * on the handle that were bound to the old key no longer count as bound. QRL_ERR_INVALID for
 * anything else, QRL_ERR_CONFLICT while a blocking call runs on the handle. */
QRL_CLIENT_API qrl_err qrl_client_set_key(qrl_client *c, const char *key);

/* Bytes for a key's thumbprint, the NUL included: 43 characters of base64url. */
#define QRL_CLIENT_JKT_MAX 44

/* Writes the RFC 7638 thumbprint of the handle's public key (the dpop_jkt the SDK sends, the
 * cnf.jkt of its bound tokens), NUL-terminated, into out. It is no secret: an app may show it,
 * or the fingerprint a phone shows for it ("KEY " and the hexadecimal of the thumbprint's first
 * 4 bytes, "KEY 3F7A-91C2"), next to the user code. May be called from on_event.
 * QRL_ERR_TOO_LARGE when len is under QRL_CLIENT_JKT_MAX. */
QRL_CLIENT_API qrl_err qrl_client_dpop_jkt(const qrl_client *c, char *out, size_t len);

/* 1 when the handle's tokens are bound to its key (the server answered token_type DPoP): send
 * the access token as "Authorization: DPoP <token>" with a "DPoP: <proof>" header from
 * qrl_client_dpop_proof() on every request. 0 for bearer tokens, or no tokens. After
 * qrl_client_set_refresh_token() it is 0 until the first refresh. */
QRL_CLIENT_API int qrl_client_dpop_bound(const qrl_client *c);

/* A DPoP proof of the handle's key for one request of the app (RFC 9449 section 4.2): `method`
 * ("GET", "POST", ...) and `url` (its query and fragment are left out of the proof, as the RFC
 * says), with the hash of `access_token` (the "ath" claim) when not NULL. Make a new proof for
 * every request: a server takes each proof once. Writes the proof, NUL-terminated, into out
 * (QRL_CLIENT_PROOF_MAX bytes are enough for a URL of up to 1024 bytes). QRL_ERR_INVALID (a
 * bad method or URL), QRL_ERR_TOO_LARGE (the URL, or len too small), QRL_ERR_CONFLICT (a
 * blocking call runs on the handle; not from on_event either), QRL_ERR_NOMEM. */
QRL_CLIENT_API qrl_err qrl_client_dpop_proof(qrl_client *c, const char *method, const char *url,
                                             const char *access_token, char *out, size_t len);

/* --- QR code of the current login request --------------------------------------------------- */

/* Render the current qr_payload (QRL_ERR_CONFLICT when there is no login request). Output is
 * allocated with the handle's allocator and owned by the caller: release it with
 * qrl_client_buf_free(c, buf). May be called from on_event. */
/* Terminal text (UTF-8 half blocks, two modules per cell, with the quiet zone). `ansi` = 1 sets
 * black-on-white colours so the code scans on dark terminals; 0 emits no escape codes. *out is
 * NUL-terminated; *len excludes the NUL. */
QRL_CLIENT_API qrl_err qrl_client_qr_terminal(qrl_client *c, int ansi, char **out, size_t *len);
/* SVG document, `scale` (1-64) user units per module. NUL-terminated; *len excludes the NUL. */
QRL_CLIENT_API qrl_err qrl_client_qr_svg(qrl_client *c, int scale, char **out, size_t *len);
/* 8-bit grayscale PNG, `scale` (1-64) pixels per module. */
QRL_CLIENT_API qrl_err qrl_client_qr_png(qrl_client *c, int scale, unsigned char **out,
                                         size_t *len);
/* Releases a buffer returned by a qrl_client_qr_* function of the same handle. Accepts NULL. */
QRL_CLIENT_API void qrl_client_buf_free(qrl_client *c, void *buf);

/* --- notifications (a qrlogin server's GET /v1/notifications) ------------------------------ */

/* Sizes of a notification's strings (the server's limits, qrlogin/limits.h), without the NUL. */
#define QRL_CLIENT_DEVICE_NAME_MAX 64
#define QRL_CLIENT_DEVICE_KIND_MAX 15
#define QRL_CLIENT_DEVICE_PLATFORM_MAX 64
#define QRL_CLIENT_ADDRESS_MAX 63
#define QRL_CLIENT_BLOCK_REASON_MAX 31
#define QRL_CLIENT_COUNTRY_NAME_MAX 63

/* What a notification tells (the server's "kind"). */
typedef enum qrl_client_notification_kind {
    /* A kind this SDK does not know (a newer server): id, times and, when the server sent
     * them, the device fields are filled; show nothing you cannot explain, or acknowledge it. */
    QRL_CLIENT_NOTICE_OTHER = 0,
    /* "A new device was linked to your account": the device_* fields are the new device. */
    QRL_CLIENT_NOTICE_DEVICE_LINKED = 1,
    /* "We stopped a sign-in request": a login request that a phone of the account was about
     * to approve was refused as phishing. The device_* fields are that phone (device_current:
     * it is this very device); reason and screen_* say what was stopped and why. Nothing was
     * linked: there is nothing to remove. */
    QRL_CLIENT_NOTICE_REQUEST_BLOCKED = 2
} qrl_client_notification_kind;

/* A notification to the devices of the account this screen is signed in to: a device linked
 * to it (after every approval that links a device, the account's other devices are told), or a
 * sign-in request stopped as phishing (every device of the account is told). Strings are
 * untrusted text from the server (UTF-8 without control characters): show them as text, names
 * in quotes. */
typedef struct qrl_client_notification {
    long long id;           /* grows with time: pass the highest seen as `after` */
    long long created_at;   /* Unix time (seconds) of the event, by the server's clock */
    long long age_s;        /* seconds since, by the server's clock (trust it over yours) */
    long long revoke_until; /* Unix time until a phone can remove it with one tap; 0: not */
    long long device_id;
    char device_name[QRL_CLIENT_DEVICE_NAME_MAX + 1];
    char device_kind[QRL_CLIENT_DEVICE_KIND_MAX + 1];         /* tv, browser, desktop, cli ... */
    char device_platform[QRL_CLIENT_DEVICE_PLATFORM_MAX + 1]; /* "" when it said nothing */
    char device_address[QRL_CLIENT_ADDRESS_MAX + 1];          /* where it was linked from */
    /* Since the kinds: */
    qrl_client_notification_kind kind;
    int device_current; /* 1: device_* is this screen itself */
    /* QRL_CLIENT_NOTICE_REQUEST_BLOCKED only ("" otherwise): why ("many_networks": the code
     * was opened from many places; "denied_network": the request came from a network the
     * server denies; "many_accounts": its screen had signed in to many accounts; or a reason
     * this SDK does not know), and the screen that made the stopped request, as it named
     * itself, with the country of its address when the server knows it ("BR", "Brazil"). */
    char reason[QRL_CLIENT_BLOCK_REASON_MAX + 1];
    char screen_name[QRL_CLIENT_DEVICE_NAME_MAX + 1];
    char screen_kind[QRL_CLIENT_DEVICE_KIND_MAX + 1];
    char screen_platform[QRL_CLIENT_DEVICE_PLATFORM_MAX + 1];
    char screen_address[QRL_CLIENT_ADDRESS_MAX + 1];
    char screen_country[3]; /* ISO 3166-1 alpha-2, "" when unknown */
    char screen_country_name[QRL_CLIENT_COUNTRY_NAME_MAX + 1];
} qrl_client_notification;

/* The notifications this device has not acknowledged, newest first, into out[0..*n) (at most
 * `max`; the server lists 20 at most), asked with the handle's access token. With wait_s > 0
 * (at most 60) the server holds the request until one with an id above `after` arrives or
 * wait_s seconds pass, so a loop of calls that passes the highest id it has seen costs one
 * request a minute while nothing happens and hears of a new device or a stopped request at
 * once. Only a qrlogin
 * server has this endpoint ({server_url}/v1/notifications).
 * QRL_ERR_UNAUTHORIZED: the access token expired or the device was removed (qrl_client_refresh,
 * then call again; if that fails too, sign in again). QRL_ERR_CONFLICT: no access token on the
 * handle. QRL_ERR_NOT_FOUND: the server keeps no notifications. Also QRL_ERR_BUSY,
 * QRL_ERR_RATE_LIMITED (no retries here: the caller's loop is the retry), QRL_ERR_INVALID,
 * QRL_CLIENT_ERR_CANCELLED, QRL_ERR_INTERNAL (an answer that is not one). */
QRL_CLIENT_API QRL_CLIENT_NODISCARD qrl_err qrl_client_notifications(qrl_client *c, long long after,
                                                                     int wait_s,
                                                                     qrl_client_notification *out,
                                                                     size_t max, size_t *n);

/* Acknowledges notification `id` for this device: it is not listed to it again. Errors as
 * above; QRL_ERR_NOT_FOUND also for an id the account does not have. */
QRL_CLIENT_API qrl_err qrl_client_notification_ack(qrl_client *c, long long id);

/* --- errors -------------------------------------------------------------------------------- */

/* A sentence about the last failure on this handle ("" if none): the server's
 * error_description, the libcurl message, or what was wrong with an answer. Borrowed: valid
 * until the next call on the handle. Never NULL. */
QRL_CLIENT_API const char *qrl_client_last_error(const qrl_client *c);

/* Describes `err` as the SDK uses it (QRL_ERR_BUSY: "server unreachable or unavailable",
 * QRL_CLIENT_ERR_CANCELLED: "cancelled", ...). Static string, never NULL. (The SDK does not
 * export qrl_strerror, so that apps linking the core library too get no duplicate symbol.) */
QRL_CLIENT_API const char *qrl_client_strerror(qrl_err err);

#ifdef __cplusplus
}
#endif
#endif
