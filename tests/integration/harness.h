/* SPDX-License-Identifier: MIT */
/*
 * Integration-test harness: runs the real `qrlogin serve` on 127.0.0.1 with a temporary database
 * and talks HTTP to it with libcurl, the way a screen, a phone and a resource server would.
 *
 * Lifecycle of a server: it_server_new() (temp dir + db path) -> it_account_add() ... ->
 * it_server_start() -> requests -> it_server_stop() (SIGTERM, asserts a clean exit 0) or
 * it_server_kill9() + it_server_start() again on the same database -> it_server_free() (stops a
 * running server, removes the temp dir). The fixture helpers it_setup_alice()/it_teardown() do
 * the common case for cmocka tests.
 *
 * The backend: SQLite by default. With QRL_TEST_BACKEND=postgres (tests/CMakeLists.txt sets it
 * for the integration-pg/ copies of the tests, with where the test cluster is: tests/pg/README)
 * it_server_new() gives the server a database of its own on the shared test cluster (new, or
 * one this process used before, emptied), `db` is its libpq URI, the server is started with
 * `--db URI`, it_db_count() runs its SQL through libpq, and it_server_free() gives the database
 * back (tests/pg/it_pg.h). A second server on the same database, a second node
 * behind the same load balancer, is it_server_new_on() (PostgreSQL only). Tests that open `db`
 * as a SQLite file themselves run on SQLite only (tests/pg/README lists them).
 *
 * What a server leaves behind: its stderr is copied to ours and to `log` (appended across
 * restarts). When QRL_ARTIFACT_DIR is set (tests/CMakeLists.txt sets it), it_server_free() keeps
 * the database, its -wal and -shm (on PostgreSQL a binary COPY of each table), and the log in a
 * directory of their own under it, named
 * after the test program, so that tests/scan_secrets.sh can look for secrets at rest; files a
 * test writes next to them (a phone's configuration, a QR image) are client files and stay out.
 *
 * Threading: it_http() and everything built only on it (it_form_post(), it_json_post(), the
 * it_try_* functions) are thread-safe and never call cmocka assertions, so worker threads may
 * use them; each call uses its own curl handle. Everything else asserts and belongs on the
 * main test thread.
 *
 * Ownership: every it_resp * returned is owned by the caller and freed with it_resp_free()
 * (which accepts NULL). Strings inside the flow structs are fixed buffers.
 */
#ifndef QRL_IT_HARNESS_H
#define QRL_IT_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cmocka.h>
#include <jansson.h>

#define IT_DEVICE_CODE_GRANT "urn:ietf:params:oauth:grant-type:device_code"
#define IT_INTROSPECTION_SECRET "it-introspection-secret-4f1c2a9e"
#define IT_CLIENT_ID "tv-app"
#define IT_USER "alice"
#define IT_PASSWORD "correct horse battery staple"
#define IT_DISPLAY_NAME "Alice"

/* Secrets are under 64 characters (limits.h QRL_MAX_TOKEN is 128); 160 leaves margin for
 * a server that gets it wrong without truncating what we then print. */
#define IT_SECRET_MAX 160

typedef struct it_server {
    char dir[256]; /* temporary directory, removed by it_server_free() */
    char db[300];  /* database path inside dir, or the PostgreSQL database's URI */
    char base[64]; /* "http://127.0.0.1:PORT" as printed by the server; the issuer */
    int port;
    pid_t pid;  /* 0 when not running */
    int out_fd; /* read end of the server's stdout */
    int drain_started;
    int request_ttl;               /* 0: server default (120 s) */
    int no_introspection_secret;   /* 1: start without --introspection-secret */
    int access_log;                /* 1: start with --access-log */
    const char *const *extra_args; /* NULL-terminated further `serve` arguments, or NULL */
    void *drain;                   /* thread copying later stdout lines to our stderr */
    double created_at;             /* it_now() at it_server_new(); QRL_IT_TIMING=1 prints times */
    char log[300];                 /* the server's stderr, copied here (inside dir) */
    int err_fd;                    /* read end of the server's stderr */
    void *tee;                     /* thread copying the server's stderr to ours and to log */
    int pg;                        /* 1: db is a PostgreSQL URI (QRL_TEST_BACKEND=postgres) */
    int shares_db;                 /* 1: db belongs to another server (it_server_new_on()) */
    /* NULL: the server names itself by its own address. Else its --public-url, as every node
     * behind one load balancer shares one: the server then listens on a free port the harness
     * picks (it prints the public URL, not its port), and `base` is still its own address. */
    const char *public_url;
} it_server;

typedef struct it_resp {
    long status; /* HTTP status, 0 on transport failure */
    char *body;  /* NUL-terminated raw body (never NULL after a completed request) */
    size_t body_len;
    json_t *json; /* parsed body, NULL if it was not JSON */
    char cache_control[128];
    char pragma[64];
    char preference_applied[64];
    char retry_after[32];
    char www_authenticate[256];
    char allow[128];
    char content_type[128];
    char csp[512];            /* Content-Security-Policy */
    char referrer_policy[64]; /* Referrer-Policy */
    char nosniff[64];         /* X-Content-Type-Options */
    char set_cookie[6][512];  /* every Set-Cookie header, in order */
    int n_set_cookie;
    double elapsed_s; /* wall time from sending to the complete response */
    char curl_error[256];
} it_resp;

/* One HTTP request. Zero-initialise and fill what is needed. */
typedef struct it_req {
    const char *method;       /* NULL: GET, or POST when body is set */
    const char *path;         /* appended to the server's base URL */
    const char *content_type; /* Content-Type header, NULL for none */
    const char *body;         /* NULL: no body */
    size_t body_len;          /* 0: strlen(body) */
    const char *bearer;       /* Authorization: Bearer ... */
    const char *basic_user;   /* HTTP Basic (with basic_pass) */
    const char *basic_pass;
    int prefer_wait;            /* > 0: Prefer: wait=N */
    const char *extra_header;   /* one raw "Name: value" header */
    const char *const *headers; /* NULL-terminated raw "Name: value" headers, or NULL */
    long timeout_ms;            /* 0: 10 s, plus the wait when prefer_wait is set */
    const char *source;         /* local address to connect from ("127.0.0.2"), or NULL */
} it_req;

/* --- time and misc -------------------------------------------------------------------- */

double it_now(void); /* CLOCK_MONOTONIC in seconds */
void it_sleep_ms(long ms);

/* --- server lifecycle (main thread) ----------------------------------------------------- */

it_server *it_server_new(void);
/* A new server (not started) on the database of `first`, as a second node behind the same load
 * balancer would be: its own temp dir, log and port, the same database, which stays `first`'s
 * (freeing this one leaves it; free this one before `first`). PostgreSQL only: fails the test
 * on SQLite, where one database file takes one server. */
it_server *it_server_new_on(const it_server *first);
void it_account_add(it_server *s, const char *user, const char *password, const char *display_name);
void it_server_start(it_server *s);
void it_server_stop(it_server *s);  /* SIGTERM, waitpid, asserts exit status 0 */
void it_server_kill9(it_server *s); /* SIGKILL, waitpid */
/* For a server expected to die by itself (a crash point): waits up to timeout_ms for it to end
 * and returns its wait status; fails the test when it is still running then. */
int it_server_wait_exit(it_server *s, long timeout_ms);
void it_server_free(it_server *s); /* stops if running (no assertion), removes the temp dir */

/* Accounts for it_server_new_with_accounts(); arrays end with an entry whose user is NULL. */
typedef struct it_account {
    const char *user;
    const char *password;
    const char *display_name;
} it_account;

/* A new server (not started) whose database already holds `accounts`. The accounts are created
 * with `qrlogin account add` once per process and per array (the array's address is the key, so
 * pass a static array); later calls copy that template database. This keeps the Argon2id cost of
 * account creation out of every test. */
it_server *it_server_new_with_accounts(const it_account *accounts);

/* cmocka fixtures: a fresh server with account alice (display name Alice), started. */
int it_setup_alice(void **state);
int it_teardown(void **state);

/* --- HTTP (thread-safe, non-asserting) -------------------------------------------------- */

it_resp *it_http(const it_server *s, const it_req *req);
void it_resp_free(it_resp *r);

/* application/x-www-form-urlencoded body from a NULL-terminated key, value, key, value ...
 * array, each part escaped with curl_easy_escape. Keys may repeat. Free with free(). */
char *it_form(const char *const *kv);
/* POST a form; `opt` (may be NULL) supplies extra headers such as bearer or prefer_wait. */
it_resp *it_form_post(const it_server *s, const char *path, const char *const *kv,
                      const it_req *opt);
/* Send a JSON body (stolen reference, may be NULL for no body) with a bearer token (may be
 * NULL). */
it_resp *it_json_send(const it_server *s, const char *method, const char *path, const char *bearer,
                      json_t *body);

/* The device-code token request, optionally held with Prefer: wait=N (wait_s > 0). */
it_resp *it_try_token_poll(const it_server *s, const char *client_id, const char *device_code,
                           int wait_s);
it_resp *it_try_approve(const it_server *s, const char *session, const char *code,
                        const char *user_code, const char *password);

/* --- response accessors ------------------------------------------------------------------ */

const char *it_jstr(const it_resp *r, const char *key); /* NULL if absent or not a string */
long long it_jint(const it_resp *r, const char *key);   /* -1 if absent or not an integer */
int it_jbool(const it_resp *r, const char *key);        /* -1 absent, 0 false, 1 true */
int it_has_prefix(const char *s, const char *prefix);
/* Case-insensitive substring check for header values; NULL-safe. */
int it_contains_ci(const char *haystack, const char *needle);

/* Asserts the status and, when `error` is non-NULL, the JSON "error" member; prints the body
 * on mismatch. */
#define it_expect(r, status, error) it_expect_((r), (status), (error), __FILE__, __LINE__)
void it_expect_(const it_resp *r, long status, const char *error, const char *file, int line);
/* Asserts an error body with the RFC 6749 section 5.2 shape (error + error_description). */
#define it_expect_error_shape(r) it_expect_error_shape_((r), __FILE__, __LINE__)
void it_expect_error_shape_(const it_resp *r, const char *file, int line);

/* Asserts a 400 /oauth/token error `error` in RFC 6749 5.2 shape with Cache-Control: no-store
 * and Pragma: no-cache (docs/api.md: every /oauth/token response has them). */
#define it_expect_oauth_error(r, error) it_expect_oauth_error_((r), (error), __FILE__, __LINE__)
void it_expect_oauth_error_(const it_resp *r, const char *error, const char *file, int line);

/* --- flow steps (main thread, asserting) -------------------------------------------------- */

typedef struct it_devauth {
    char device_code[IT_SECRET_MAX];
    char user_code[32];
    char verification_uri[256];
    char verification_uri_complete[512];
    char scan_secret[IT_SECRET_MAX]; /* the part of verification_uri_complete after '#' */
    long long expires_in;
    long long interval;
} it_devauth;

typedef struct it_phone {
    char session[IT_SECRET_MAX];
    long long device_id;
    long long account_id;
} it_phone;

typedef struct it_tokens {
    char access_token[IT_SECRET_MAX];
    char refresh_token[IT_SECRET_MAX];
    long long expires_in;
} it_tokens;

/* POST /oauth/device_authorization; asserts 200 and fills `out`. name/kind/scope may be NULL. */
void it_device_authorization(const it_server *s, const char *client_id, const char *name,
                             const char *kind, const char *scope, it_devauth *out);
/* POST /v1/sessions; asserts 201. device_name may be NULL. */
void it_phone_sign_in(const it_server *s, const char *user, const char *password,
                      const char *device_name, it_phone *out);
/* GET /v1/login-requests/{code} (code is URL-escaped). */
it_resp *it_view(const it_server *s, const it_phone *p, const char *code);
/* POST /v1/login-requests/{code}/approve with {"user_code", "password"}. */
it_resp *it_approve(const it_server *s, const it_phone *p, const char *code, const char *user_code,
                    const char *password);
/* POST /v1/login-requests/{code}/deny with {}. */
it_resp *it_deny(const it_server *s, const it_phone *p, const char *code);
/* Device-code token request for IT_CLIENT_ID-style callers; wait_s > 0 adds Prefer: wait. */
it_resp *it_token_poll(const it_server *s, const char *client_id, const char *device_code,
                       int wait_s);
it_resp *it_refresh(const it_server *s, const char *client_id, const char *refresh_token);
/* POST /oauth/introspect authenticated with the introspection secret (Bearer). */
it_resp *it_introspect(const it_server *s, const char *token);
/* Asserts 200 and returns the "active" member (0 or 1). */
int it_introspect_active(const it_server *s, const char *token);
/* DELETE /v1/devices/{id}. */
it_resp *it_revoke_device(const it_server *s, const it_phone *p, long long device_id);
/* POST /_test/clock {"advance_ms": ms}; asserts 200. */
void it_clock_advance(const it_server *s, long long ms);

/* Runs a query that yields one integer (SELECT count(*) ...) on the server's database,
 * read-only, from outside the server as another process would; asserts it can. The SQL must
 * mean the same to SQLite and PostgreSQL: the PostgreSQL copies of the tests run it too. */
long long it_db_count(const it_server *s, const char *sql);

/* Copies access/refresh tokens out of a 200 token response, asserting their shape
 * (prefixes, token_type Bearer, Cache-Control: no-store). */
void it_expect_tokens(const it_resp *r, it_tokens *out);

/* The whole happy path for IT_CLIENT_ID: device authorization (kind tv, name "Living Room TV",
 * scope "profile"), view by scan secret, approve, redeem. Returns the tokens, the phone used,
 * and the screen's device id (from /v1/devices). */
void it_login_screen(const it_server *s, const it_phone *p, it_tokens *out,
                     long long *device_id_out);
/* Finds the device id with `name` in GET /v1/devices; -1 if not listed. */
long long it_find_device(const it_server *s, const it_phone *p, const char *name);

#endif
