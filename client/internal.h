/* SPDX-License-Identifier: MIT */
/*
 * Internals of the client SDK, shared by the files in client/. Nothing here is exported: the
 * library is built with hidden visibility and only QRL_CLIENT_API functions are public.
 * Internal names start with qrlc__ (QRLC__ for macros), not the core's qrl__: the qrlogin
 * command links the SDK and the core into one program, and a reader should know from a name
 * which of the two it belongs to.
 *
 *   client.c     options, handle lifecycle, the login state machine (step/login), tokens,
 *                notifications of new devices (qrl_client_notifications)
 *   transport.c  libcurl: one multi + one easy handle per qrl_client, cancellable transfers
 *                and sleeps, bounded response bodies, form encoding, URL checks
 *   render.c     QR renders of the current login request (through qrlogin_qr)
 *   errors.c     qrl_client_strerror and the handle's error detail
 *   dpop.c       the screen's key and its DPoP proofs (RFC 9449)
 */
#ifndef QRL_CLIENT_INTERNAL_H
#define QRL_CLIENT_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <jansson.h>

#include "qrlogin/client.h"
#include "qrlogin/limits.h"

/* Largest response body we read. Every answer of a qrlogin server is well under 2 KiB of JSON;
 * 64 KiB tolerates verbose servers and proxies' error pages while keeping a runaway or hostile
 * answer from growing memory without bound (curl's dynbuf habit). */
#define QRLC__MAX_RESPONSE (64u * 1024u)
/* Longest URL we accept from the app or from the server. qrlogin's QR URL is under 200 bytes;
 * the QR library encodes at most QRL_QR_MAX_TEXT (1024) bytes anyway. */
#define QRLC__MAX_URL 1024
/* Longest error_description we copy into the handle's detail. */
#define QRLC__MAX_DESCRIPTION 160
/* Bounds of the option values (client.h documents the defaults); client_id, device_name and
 * wait_s are bounded by the server's limits (qrlogin/limits.h). */
#define QRLC__MAX_TIMEOUT_MS 600000L
#define QRLC__MAX_PATH 4096
/* RFC 8628 section 3.2: "interval ... If no value is provided, clients MUST use 5". */
#define QRLC__DEFAULT_INTERVAL_S 5
/* A server asking for more than this between polls is treated as asking for this: a TV must
 * still notice an approval within a reasonable time. */
#define QRLC__MAX_INTERVAL_S 300

/* The public header is installed without qrlogin/limits.h, so it spells out the server's limits
 * it shares; these tie the two. */
_Static_assert(QRL_CLIENT_TOKEN_MAX == QRL_MAX_TOKEN, "the SDK accepts the tokens the server does");
_Static_assert(QRL_CLIENT_SCOPE_MAX == QRL_MAX_SCOPE, "the SDK holds the scopes the server does");

/* Ed25519 key sizes (libsodium's crypto_sign_SECRETKEYBYTES and _PUBLICKEYBYTES; dpop.c
 * checks they agree), so that this header needs no libsodium. */
#define QRLC__DPOP_SK_BYTES 64
#define QRLC__DPOP_PK_BYTES 32
/* The longest DPoP proof the SDK makes for its own requests: for a URL of QRLC__MAX_URL
 * bytes it is under 1800 characters. */
#define QRLC__DPOP_PROOF_MAX 2048

/* Whether the server holds token requests for us (Prefer: wait honoured). */
typedef enum qrlc__push { QRLC__PUSH_UNKNOWN = 0, QRLC__PUSH_YES, QRLC__PUSH_NO } qrlc__push;

/* Where the login of a handle stands. */
typedef enum qrlc__phase {
    QRLC__IDLE = 0, /* no login running: the next step starts one */
    QRLC__STARTING, /* a login began; its first login request is still to be obtained */
    QRLC__RENEWING, /* the request expired; a new one is to be obtained */
    QRLC__WAITING   /* a login request is live: ask the token endpoint */
} qrlc__phase;

/* One HTTP answer. body is allocated with the handle's allocator and wiped before release
 * (token responses hold secrets). */
typedef struct qrlc__resp {
    long status; /* HTTP status; 0 before an answer */
    char *body;  /* NUL-terminated */
    size_t len, cap;
    int too_large;          /* body passed QRLC__MAX_RESPONSE */
    json_t *json;           /* the body parsed, when it is a JSON object; else NULL */
    int preference_applied; /* a Preference-Applied header with wait= came back */
    long retry_after_s;     /* Retry-After in seconds, -1 when absent */
    long long date;         /* the Date header as Unix time, 0 when absent or unreadable */
    int sent;               /* some of the request left this machine */
} qrlc__resp;

struct qrl_client {
    qrl_client_allocator al;

    /* Options, copied. server_url has no trailing '/'. */
    char *server_url, *client_id, *scope, *device_name, *device_kind, *ca_file;
    qrl_client_event_fn on_event;
    qrl_client_sleep_fn sleep_fn;
    void *user;
    int wait_s, disable_push, max_renewals, max_retries, allow_insecure_http;
    long retry_base_ms, retry_max_ms, connect_timeout_ms, timeout_ms;

    /* Transport. `cancel` is the only member another thread touches (with curl_multi_wakeup,
     * which libcurl documents as callable from any thread). */
    CURLM *multi;
    CURL *easy;
    atomic_int cancel;
    atomic_flag busy; /* set while a blocking call runs: one thread per handle */
    uint64_t rng;     /* xorshift state for back-off jitter */

    /* Endpoints from RFC 8414 metadata; NULL until discovered. */
    char *token_ep, *devauth_ep, *revoke_ep;

    /* The login in progress. */
    qrlc__phase phase;
    qrlc__push push;
    char device_code[QRL_CLIENT_TOKEN_MAX + 1];
    char user_code[QRL_MAX_USER_CODE_INPUT + 1];
    char qr_payload[QRLC__MAX_URL + 1];
    char verification_uri[QRLC__MAX_URL + 1];
    int expires_in, interval_s, scanned, renewals;
    int failures;  /* consecutive transient failures */
    long delay_ms; /* sleep before the next request of a step */

    int have_tokens;
    qrl_client_tokens tok;

    /* DPoP (dpop.c). The key is the handle's from qrl_client_new() on; dpop_sk is wiped by
     * qrl_client_free(). */
    unsigned char dpop_sk[QRLC__DPOP_SK_BYTES];
    unsigned char dpop_pk[QRLC__DPOP_PK_BYTES];
    int dpop;         /* the server's metadata says it takes EdDSA proofs: token requests do */
    int proof_sent;   /* the last token request carried a proof: a DPoP answer may come */
    int dpop_bound;   /* the tokens on the handle are bound to the key (token_type DPoP) */
    long long skew_s; /* the server's clock minus ours, from the Date of a refused proof */

    char err[QRL_CLIENT_ERROR_MAX];
};

/* --- memory (client.c) ------------------------------------------------------------------ */
void *qrlc__alloc(qrl_client *c, size_t n);
void qrlc__free(qrl_client *c, void *p);
char *qrlc__strdup(qrl_client *c, const char *s);
/* Wipes `n` bytes of `p` (a secret) in a way the compiler may not remove. */
void qrlc__wipe(void *p, size_t n);

/* --- errors (errors.c) ------------------------------------------------------------------ */
/* Formats the handle's detail message; returns `rc` for `return qrlc__fail(c, rc, ...)`. */
qrl_err qrlc__fail(qrl_client *c, qrl_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
qrl_err qrlc__vfail(char *buf, size_t len, qrl_err rc, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* errors.c still spells these two with the core's prefix; the aliases make its definitions
 * the qrlc__ functions above, so no qrl__ symbol is left in the SDK. Delete them once errors.c
 * says qrlc__ itself. */
#define qrl__fail qrlc__fail
#define qrl__vfail qrlc__vfail

/* --- transport (transport.c) -------------------------------------------------------------- */
/* One libcurl initialisation per process, thread-safe. */
qrl_err qrlc__curl_global(void);
qrl_err qrlc__transport_init(qrl_client *c);
void qrlc__transport_free(qrl_client *c);
/* Sends a POST with the form `body` (or a GET when body is NULL) to `url`, with
 * `Prefer: wait=N` when prefer_wait > 0, and fills *r. QRL_OK whenever an HTTP answer arrived,
 * whatever its status. QRL_ERR_BUSY: no answer (r->sent tells whether the request left this
 * machine; the detail names the libcurl error); QRL_CLIENT_ERR_CANCELLED; QRL_ERR_TOO_LARGE;
 * QRL_ERR_NOMEM. Release *r with qrlc__resp_free in every case. */
qrl_err qrlc__http(qrl_client *c, const char *url, const char *body, int prefer_wait,
                   qrlc__resp *r);
/* The same with the access token `bearer` (NULL: none) in the Authorization header: as
 * `Bearer <token>`, or, when the handle's tokens are bound to its key, as `DPoP <token>` with a
 * new DPoP proof for this request (RFC 9449 section 7.1). The header is wiped after. */
qrl_err qrlc__http_bearer(qrl_client *c, const char *url, const char *body, const char *bearer,
                          int prefer_wait, qrlc__resp *r);
/* A token request: qrlc__http() with a new DPoP proof of the handle's key when the server takes
 * proofs (c->dpop). */
qrl_err qrlc__http_proof(qrl_client *c, const char *url, const char *body, int prefer_wait,
                         qrlc__resp *r);
void qrlc__resp_free(qrl_client *c, qrlc__resp *r);
/* Sleeps `ms` (through opts.sleep when set); returns early with QRL_CLIENT_ERR_CANCELLED. */
qrl_err qrlc__sleep(qrl_client *c, long ms);
/* Nonzero when a cancellation is pending (does not use it up). */
int qrlc__cancelled(qrl_client *c);
/* application/x-www-form-urlencoded from NULL-terminated key, value pairs; a NULL value skips
 * the pair. *out is allocated with the handle's allocator; wipe and free it with
 * qrlc__form_free (forms carry device codes and refresh tokens). */
qrl_err qrlc__form(qrl_client *c, const char *const *kv, char **out);
void qrlc__form_free(qrl_client *c, char *form);
/* Checks an http(s) URL: scheme, host, no user info, query or fragment. Sets *loopback when
 * the host is 127.0.0.1, ::1 or localhost. Plain http is refused unless loopback or
 * allow_http. Returns QRL_ERR_INVALID with a sentence in buf. */
qrl_err qrlc__check_url(const char *what, const char *url, int allow_http, char *buf, size_t len);
/* Milliseconds of CLOCK_MONOTONIC. */
int64_t qrlc__mono_ms(void);

/* --- reading answers (transport.c, client.c) ------------------------------------------------
 * The parsing half of each exchange, apart from the network so that fuzz/fuzz_client.c can feed
 * it arbitrary answers. None of them sends a request. */
/* The body as a JSON object (duplicate members refused): a new reference, or NULL when the body
 * is empty, not JSON or not an object. */
json_t *qrlc__json_object(const char *body, size_t len);
/* Reads one header line of `n` bytes (as libcurl hands it, CRLF included) into r: a status line
 * starts a new block, then Preference-Applied, Retry-After and Date. */
void qrlc__resp_header(qrlc__resp *r, const char *line, size_t n);
/* The RFC 8414 metadata answer `r` of `url`: checks the issuer against server_url and takes the
 * endpoints into c (all three NULL on failure). */
qrl_err qrlc__parse_metadata(qrl_client *c, const qrlc__resp *r, const char *url);
/* A token answer (RFC 6749 section 5.1) into c->tok; on failure c->tok is left as it was. */
qrl_err qrlc__take_tokens(qrl_client *c, const qrlc__resp *r, int refreshing);
/* A device authorization answer (RFC 8628 section 3.2) into the login request fields of c. */
qrl_err qrlc__parse_device_auth(qrl_client *c, json_t *o);
/* The "error" member of an OAuth error answer ("" when absent; borrowed from r) and its
 * description, made printable, into the handle's detail. */
const char *qrlc__oauth_error(qrl_client *c, const qrlc__resp *r, const char *what);
/* A 4xx answer of the device-code grant: QRL_OK to keep waiting (c->delay_ms, c->interval_s,
 * a SCANNED event in *ev), QRL_ERR_EXPIRED to renew the request, or the failure. */
qrl_err qrlc__grant_error(qrl_client *c, const qrlc__resp *r, int held, int64_t sent_ms,
                          qrl_client_event *ev);

/* --- DPoP (dpop.c) ------------------------------------------------------------------------ */
/* Makes the handle's key (libsodium initialised first). QRL_ERR_INTERNAL if libsodium cannot
 * start. */
qrl_err qrlc__dpop_init(qrl_client *c);
/* Wipes the secret key (qrl_client_free). */
void qrlc__dpop_wipe(qrl_client *c);
/* A proof for `method` and `url` (its query and fragment left out), with the hash of
 * `access_token` when not NULL, into out (len bytes, QRLC__DPOP_PROOF_MAX is enough for our
 * URLs). QRL_ERR_INVALID, QRL_ERR_TOO_LARGE, QRL_ERR_NOMEM; sets no detail. */
qrl_err qrlc__dpop_proof(qrl_client *c, const char *method, const char *url,
                         const char *access_token, char *out, size_t len);
/* After a refused proof: takes the server's clock from r's Date. 1 when the skew changed enough
 * that a new proof may pass, 0 when the clock is not the problem. */
int qrlc__dpop_learn_skew(qrl_client *c, const qrlc__resp *r);
/* Base64url of 32 bytes without padding, and the NUL: a key's RFC 7638 thumbprint. */
#define QRLC__JKT_BUF 44
/* The RFC 7638 thumbprint of the handle's key (RFC 9449 dpop_jkt) into out. */
void qrlc__dpop_jkt(const qrl_client *c, char out[QRLC__JKT_BUF]);

#endif
