/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: the whole HTTP request path of the server, from raw bytes on a socket
 * through libmicrohttpd, the router, every handler and the core to the SQLite store.
 *
 * Once per process (LLVMFuzzerInitialize) the real server starts in-process: a core over a
 * SQLite store in a temporary directory (removed at exit, or by the next run after a crash),
 * swept once a minute as `qrlogin serve` does; qrl_server on 127.0.0.1 port 0 with four worker
 * threads; an account "demo" with password FUZZ_PASSWORD. Password hashing is at libsodium's
 * minimum cost and the rate limits are off, so that guessing inputs neither slow the run down
 * nor lock every later input out with 429 (the limits have their own unit and integration
 * tests). The server writes its JSON log, access log included, to a file next to the database,
 * and believes X-Forwarded-For from loopback, so that inputs reach that parser too. The build
 * has no test hooks: the clock is the real one. libFuzzer's leak check after each input is off
 * for this target (no_leak_check_per_input); LeakSanitizer still checks the process at exit.
 *
 * Each input is written to a fresh TCP connection, whose sending side is then shut down, and
 * the answers are read until the server closes the connection, every request the harness could
 * frame in the input is answered, no more bytes come for 25 ms after whole answers (or from the
 * start, when the input holds no whole request), or 1 s passes. An input with a Prefer header
 * may be held (Prefer: wait, answered when its login request changes or its wait ends): it is
 * not half-closed, which the server would take for a client gone, and after 60 ms without
 * its answers its connection is parked, up to 8 of them for at most 65 s, so that later inputs
 * (an approval, a revocation) reach a live held request: the handoff of tokens, the wake-up,
 * the resumed answer. A parked connection's answers are checked when they are complete.
 * Placeholders in the input are replaced by live values first, so that inputs reach the
 * handlers behind a valid secret:
 *   @HOST@  127.0.0.1:PORT (for Host and Origin)       @PW@   the demo account's password
 *   @DC@ @SS@ @UC@ @LR@        a pending login request: device code, scan secret, user code
 *                              (as displayed), id
 *   @DC2@ @SS2@ @UC2@ @LR2@    a login request the phone below has claimed, and @NONCE2@ its
 *                              approval nonce; @SIGA@ @SIGD@ the phone's signatures approving
 *                              and denying it (qrlogin/protocol.h)
 *   @ST@ @DEV@                 a signed-in phone of demo: session token, device id; its device
 *                              key is @PK@ (base64url)
 *   @AT@ @RT@ @SCR@            a signed-in screen: access and refresh token, device id
 * Inputs use them up (approve a request, revoke the phone, rotate the refresh token): before
 * each input the harness checks, through the core, the pieces its placeholders name and
 * replaces the dead ones. A crash therefore reproduces from its input alone, against a fresh
 * server, as long as it does not depend on what earlier inputs did to the store.
 *
 * Invariants (abort() on violation):
 *   - every answer starts "HTTP/1.x NNN " with NNN in 100..599, its header block ends, every
 *     header line is "Name: value" with nothing that could split it, and answers follow each
 *     other as their Content-Length (or chunked framing) says;
 *   - an answer of the application (it carries our X-Content-Type-Options) is never a 5xx other
 *     than 503; it carries Retry-After on 429 and 503, Allow on 405, and Cache-Control:
 *     no-store when it is JSON, sets a cookie or holds anything shaped like a secret; a JSON
 *     body is one JSON object, and an error's has the RFC 6749 section 5.2 shape (string
 *     "error" and "error_description"); libmicrohttpd's own answers (malformed framing) are
 *     4xx, or 501 / 505;
 *   - no answer carries a device code, session token, access or refresh token of the fixture
 *     that the request did not carry, nor a scan secret whose request's device code or scan
 *     secret the request did not carry (the server keeps only hashes: it can only echo);
 *   - every 16 inputs, and after any whole request left unanswered for the full second, a
 *     well-formed GET /.well-known/oauth-authorization-server on a new connection is answered
 *     200 within 5 s (the server is still up, not deadlocked, its workers not stuck).
 * Asynchronous work (held requests ending, the store's group commits) runs on the server's
 * threads, and parked answers are checked late, so a failure there may be reported a few
 * inputs after the one that caused it (the report then prints the parked request).
 * Run by scripts/fuzz.sh (part of scripts/test.sh); fuzz/README.md says how to use the
 * placeholders in new seeds.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "qrlogin/core.h"
#include "qrlogin/protocol.h"
#include "qrlogin/server.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_USER "demo"
#define FUZZ_PASSWORD "fuzz-demo-password"
#define FUZZ_CLIENT "tv-app"
#define FUZZ_ADDR "127.0.0.1"
/* Longest answer kept: the largest page or QR image is a few tens of KiB. */
#define MAX_ANSWER (1u << 20)
#define READ_MS 1000
#define READ_HELD_MS 60
#define IDLE_MS 25
#define HEALTH_EVERY 16
#define HEALTH_MS 5000
#define LOG_EVERY 4096

/* The pieces of live state the placeholders name; each is checked and renewed on its own. */
enum piece { P_NONE = 0, P_A = 1, P_B = 2, P_PHONE = 4, P_SCREEN = 8 };

static struct fixture {
    char dir[64], db[96], log[96], host[32];
    qrl_store *st;
    qrl_core *core;
    qrl_server *srv;
    unsigned short port;
    unsigned long inputs;
    /* The phone. */
    qrl_session phone;
    qrl_auth auth;
    char dev[24];
    unsigned char pk[QRL_DECISION_PUBKEY_BYTES], sk[QRL_DECISION_SECKEY_BYTES];
    char pk_b64[48];
    /* Request A (pending) and B (claimed by the phone). */
    qrl_device_auth a, b;
    char lr_a[24], lr_b[24], nonce_b[QRL_MAX_NONCE + 1];
    char sig_approve[QRL_DECISION_SIG_B64_BUF], sig_deny[QRL_DECISION_SIG_B64_BUF];
    /* The signed-in screen. */
    qrl_tokens screen;
    char scr[24];
} fx;

static const struct marker {
    const char *name;
    const char *value;
    unsigned piece;
    bool secret; /* must not appear in an answer unless the request carried it */
} markers[] = {
    {"@HOST@", fx.host, P_NONE, false},
    {"@PW@", FUZZ_PASSWORD, P_NONE, false},
    {"@PK@", fx.pk_b64, P_NONE, false},
    {"@DC@", fx.a.device_code, P_A, true},
    {"@SS@", fx.a.scan_secret, P_A, false},
    {"@UC@", fx.a.user_code, P_A, false},
    {"@LR@", fx.lr_a, P_A, false},
    {"@DC2@", fx.b.device_code, P_B, true},
    {"@SS2@", fx.b.scan_secret, P_B, false},
    {"@UC2@", fx.b.user_code, P_B, false},
    {"@LR2@", fx.lr_b, P_B, false},
    {"@NONCE2@", fx.nonce_b, P_B, false},
    {"@SIGA@", fx.sig_approve, P_B, false},
    {"@SIGD@", fx.sig_deny, P_B, false},
    {"@ST@", fx.phone.session_token, P_PHONE, true},
    {"@DEV@", fx.dev, P_PHONE, false},
    {"@AT@", fx.screen.access_token, P_SCREEN, true},
    {"@RT@", fx.screen.refresh_token, P_SCREEN, true},
    {"@SCR@", fx.scr, P_SCREEN, false},
};

static void die(const char *what, qrl_err rc)
{
    fprintf(stderr, "fuzz_server: %s: %s\n", what, qrl_strerror(rc));
    abort();
}

/* --- the fixture ---------------------------------------------------------------------------- */

static void phone_new(void)
{
    qrl_err rc = qrl_session_create(fx.core, FUZZ_USER, FUZZ_PASSWORD, "Fuzz phone", NULL,
                                    FUZZ_ADDR, &fx.phone);

    if (rc != QRL_OK)
        die("phone sign-in", rc);
    if ((rc = qrl_session_auth(fx.core, fx.phone.session_token, FUZZ_ADDR, &fx.auth)) != QRL_OK)
        die("phone session", rc);
    snprintf(fx.dev, sizeof fx.dev, "%lld", (long long)fx.auth.device_id);
}

/* A signed-in phone of demo whose device key is ours. Returns true when it had to be renewed. */
static bool ensure_phone(void)
{
    bool renewed = false;
    qrl_err rc;

    if (qrl_session_auth(fx.core, fx.phone.session_token, FUZZ_ADDR, &fx.auth) != QRL_OK) {
        phone_new();
        renewed = true;
    }
    if (!fx.auth.device.has_pubkey || memcmp(fx.auth.device.pubkey, fx.pk, sizeof fx.pk) != 0) {
        rc = qrl_device_set_key(fx.core, &fx.auth, fx.pk_b64, FUZZ_PASSWORD, FUZZ_ADDR);
        if (rc != QRL_OK)
            die("device key", rc);
        renewed = true;
    }
    return renewed;
}

static void request_new(qrl_device_auth *da, char *lr, size_t len)
{
    qrl_err rc = qrl_device_authorize_platform(fx.core, FUZZ_CLIENT, "profile", "Fuzz TV", "tv",
                                               "Fuzz OS", FUZZ_ADDR, da);

    if (rc != QRL_OK)
        die("device authorization", rc);
    snprintf(lr, len, "%lld", (long long)da->lr_id);
}

/* Still waiting (pending or scanned, unexpired). */
static bool request_live(const qrl_device_auth *da)
{
    char scan[QRL_SECRET_BUF];

    return qrl_screen_scan_secret(fx.core, FUZZ_CLIENT, da->device_code, scan) == QRL_OK;
}

static void ensure_a(void)
{
    if (!request_live(&fx.a))
        request_new(&fx.a, fx.lr_a, sizeof fx.lr_a);
}

static void sign_b(qrl_decision d, char *sig)
{
    qrl_decision_msg m = {
        .lr_id = fx.b.lr_id, .decision = d, .nonce = fx.nonce_b, .user_code = fx.b.user_code};

    if (qrl_decision_sign(&m, fx.sk, sizeof fx.sk, sig) != QRL_OK)
        die("signing", QRL_ERR_CRYPTO);
}

/* B stays claimed by the phone, with its nonce, while it waits and the phone is the same: no
 * other phone can claim it. The check only reads, so that it does not wake a screen held on B
 * (an input holding it and the next approving it reach the handoff of tokens). */
static void ensure_b(bool phone_renewed)
{
    qrl_lr_view v;
    qrl_err rc;

    if (!phone_renewed && request_live(&fx.b))
        return;
    request_new(&fx.b, fx.lr_b, sizeof fx.lr_b);
    if ((rc = qrl_lr_view_claim(fx.core, &fx.auth, fx.b.scan_secret, FUZZ_ADDR, &v)) != QRL_OK)
        die("claim", rc);
    snprintf(fx.nonce_b, sizeof fx.nonce_b, "%s", v.lr.nonce);
    sign_b(QRL_DECISION_APPROVE, fx.sig_approve);
    sign_b(QRL_DECISION_DENY, fx.sig_deny);
}

static bool token_active(const char *token)
{
    qrl_introspection in;

    return qrl_introspect(fx.core, token, &in) == QRL_OK && in.active;
}

/* A screen signed in through a whole login: request, claim, approval, redemption. */
static void ensure_screen(void)
{
    const qrl_proof pw = {.password = FUZZ_PASSWORD};
    qrl_device_auth da;
    qrl_poll_result res;
    qrl_lr_view v;
    char lr[24];
    qrl_err rc;

    if (token_active(fx.screen.access_token) && token_active(fx.screen.refresh_token))
        return;
    request_new(&da, lr, sizeof lr);
    if ((rc = qrl_lr_view_claim(fx.core, &fx.auth, da.scan_secret, FUZZ_ADDR, &v)) != QRL_OK ||
        (rc = qrl_lr_approve(fx.core, &fx.auth, da.scan_secret, da.user_code, &pw, FUZZ_ADDR,
                             NULL)) != QRL_OK)
        die("approval", rc);
    rc = qrl_token_device_code(fx.core, FUZZ_CLIENT, da.device_code, 0, 0, FUZZ_ADDR, &res);
    if (rc != QRL_OK)
        die("redemption", rc);
    fx.screen = res.tokens;
    snprintf(fx.scr, sizeof fx.scr, "%lld", (long long)res.tokens.device_id);
    sodium_memzero(&da, sizeof da);
}

/* Checks the pieces an input is about to use, and renews those that earlier inputs used up. */
static void fixture_refresh(unsigned pieces)
{
    bool renewed = false;

    if (pieces & (P_PHONE | P_B | P_SCREEN))
        renewed = ensure_phone();
    if (pieces & P_A)
        ensure_a();
    if (pieces & (P_B | P_PHONE))
        ensure_b(renewed);
    if (pieces & (P_SCREEN | P_PHONE))
        ensure_screen();
}

static void remove_dir(const char *dir)
{
    char cmd[160];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "fuzz_server: could not remove %s\n", dir);
}

/* At exit the files go. The server keeps running until the process ends: stopping it would
 * wait for held requests, and nothing of it outlives the process. */
static void cleanup(void)
{
    remove_dir(fx.dir);
}

/* A crash ends the process without atexit: the directories of runs whose process is gone
 * ("qrl-fuzz-PID-XXXXXX") are removed by the next run. */
static void remove_stale_dirs(const char *base)
{
    DIR *d = opendir(base);
    struct dirent *e;
    char path[160];
    long pid;

    while (d != NULL && (e = readdir(d)) != NULL) {
        if (sscanf(e->d_name, "qrl-fuzz-%ld-", &pid) != 1 || pid <= 0 || kill((pid_t)pid, 0) == 0 ||
            errno != ESRCH)
            continue;
        snprintf(path, sizeof path, "%s/%s", base, e->d_name);
        remove_dir(path);
    }
    if (d != NULL)
        closedir(d);
}

/* Housekeeping as `qrlogin serve` does it, once a minute: without it the poll state of every
 * request the inputs create would stay in memory. */
static void sweep_now_and_then(void)
{
    static int64_t last;
    int64_t now = time(NULL);

    if (now - last >= 60) {
        last = now;
        (void)qrl_core_sweep(fx.core);
    }
}

/* libFuzzer's leak check after each input (-detect_leaks) runs an input again, and then a
 * LeakSanitizer pass, whenever it allocated more than it freed: for a server that keeps state
 * (held requests, pending login requests, caches) that is most inputs, and a pass over its heap
 * costs tens of milliseconds. So -detect_leaks=0 goes before the caller's flags (a later
 * -detect_leaks=1 still wins); LeakSanitizer still checks the whole process when it exits, where
 * the server is reachable and only real leaks show. */
static void no_leak_check_per_input(int *argc, char ***argv)
{
    static char flag[] = "-detect_leaks=0";
    char **args = calloc((size_t)*argc + 2, sizeof *args);

    if (args == NULL)
        abort();
    args[0] = (*argv)[0];
    args[1] = flag;
    for (int i = 1; i < *argc; i++)
        args[i + 1] = (*argv)[i];
    (*argc)++;
    *argv = args;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    qrl_server_config scfg;
    qrl_config cfg;
    unsigned char seed[crypto_sign_SEEDBYTES] = {0};
    const char *base;
    char err[256];
    sigset_t timer_signal;
    qrl_err rc;

    no_leak_check_per_input(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* The server's threads start with SIGALRM blocked, as `qrlogin serve` blocks its signals
     * before any thread starts: libFuzzer's timer (-timeout) then interrupts only this thread,
     * whose system calls take EINTR in their stride. */
    sigemptyset(&timer_signal);
    sigaddset(&timer_signal, SIGALRM);
    pthread_sigmask(SIG_BLOCK, &timer_signal, NULL);
    if (sodium_init() < 0)
        die("libsodium", QRL_ERR_CRYPTO);
    base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    remove_stale_dirs(base);
    snprintf(fx.dir, sizeof fx.dir, "%s/qrl-fuzz-%ld-XXXXXX", base, (long)getpid());
    if (mkdtemp(fx.dir) == NULL)
        die("mkdtemp", QRL_ERR_STORE);
    atexit(cleanup);
    snprintf(fx.db, sizeof fx.db, "%s/fuzz.db", fx.dir);
    snprintf(fx.log, sizeof fx.log, "%s/server.log", fx.dir);
    if ((rc = qrl_store_sqlite_open(fx.db, &fx.st, err, sizeof err)) != QRL_OK) {
        fprintf(stderr, "fuzz_server: %s\n", err);
        die("store", rc);
    }
    qrl_server_config_defaults(&scfg);
    scfg.listen_host = FUZZ_ADDR;
    scfg.port = 0;
    scfg.threads = 4;
    scfg.connection_timeout_s = 5;
    scfg.introspection_secret = "fuzz-introspection-secret";
    /* Inputs reach the access log, the forwarded-address parsing (a proxy on loopback is
     * trusted) and the store's health in /readyz and /metrics. The log goes to a file in the
     * temporary directory, emptied now and then, not to the fuzzer's output. */
    scfg.access_log = 1;
    scfg.log_file = fx.log;
    scfg.trusted_proxies = "127.0.0.0/8";
    scfg.store = fx.st;
    if ((rc = qrl_server_new(&scfg, &fx.srv)) != QRL_OK)
        die("server", rc);
    qrl_config_defaults(&cfg);
    cfg.pwhash_ops = crypto_pwhash_OPSLIMIT_MIN;
    cfg.pwhash_mem = crypto_pwhash_MEMLIMIT_MIN;
    qrl_config_no_limits(&cfg);
    cfg.on_change = qrl_server_on_change;
    cfg.on_change_ud = fx.srv;
    qrl_server_handoff(fx.srv, &cfg.handoff);
    if ((rc = qrl_core_new(&cfg, fx.st, &fx.core)) != QRL_OK)
        die("core", rc);
    if ((rc = qrl_server_listen(fx.srv, fx.core, err, sizeof err)) != QRL_OK) {
        fprintf(stderr, "fuzz_server: %s\n", err);
        die("listen", rc);
    }
    pthread_sigmask(SIG_UNBLOCK, &timer_signal, NULL);
    fx.port = qrl_server_port(fx.srv);
    snprintf(fx.host, sizeof fx.host, "127.0.0.1:%u", (unsigned)fx.port);
    if ((rc = qrl_account_add(fx.core, FUZZ_USER, "Demo User", FUZZ_PASSWORD, NULL)) != QRL_OK)
        die("account", rc);
    if (crypto_sign_seed_keypair(fx.pk, fx.sk, seed) != 0)
        die("device key", QRL_ERR_CRYPTO);
    sodium_bin2base64(fx.pk_b64, sizeof fx.pk_b64, fx.pk, sizeof fx.pk,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    phone_new();
    fixture_refresh(P_A | P_B | P_PHONE | P_SCREEN);
    /* For writing seeds: what each placeholder stands for (and its length, which a seed's
     * Content-Length must count). */
    if (getenv("QRL_FUZZ_SHOW_FIXTURE") != NULL)
        for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++)
            fprintf(stderr, "fuzz_server: %-9s %3zu %s\n", markers[k].name,
                    strlen(markers[k].value), markers[k].value);
    return 0;
}

/* --- placeholders --------------------------------------------------------------------------- */

/* The placeholder at data[i], or NULL. */
static const struct marker *marker_at(const uint8_t *data, size_t size, size_t i)
{
    if (data[i] != '@')
        return NULL;
    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++)
        if (size - i >= strlen(markers[k].name) &&
            memcmp(data + i, markers[k].name, strlen(markers[k].name)) == 0)
            return &markers[k];
    return NULL;
}

/* The pieces the input's placeholders name. */
static unsigned pieces_named(const uint8_t *data, size_t size)
{
    unsigned pieces = 0;

    for (size_t i = 0; i < size; i++) {
        const struct marker *m = marker_at(data, size, i);
        if (m != NULL)
            pieces |= m->piece;
    }
    return pieces;
}

/* The input with its placeholders replaced, NUL-terminated; *len is its length. */
static char *substitute(const uint8_t *data, size_t size, size_t *len)
{
    size_t cap = size + 1, n = 0;
    char *out = malloc(cap);

    if (out == NULL)
        abort();
    for (size_t i = 0; i < size;) {
        const struct marker *m = marker_at(data, size, i);
        const char *piece = m != NULL ? m->value : (const char *)data + i;
        size_t pl = m != NULL ? strlen(m->value) : 1;
        if (n + pl + 1 > cap) {
            cap = 2 * cap + pl;
            if ((out = realloc(out, cap)) == NULL)
                abort();
        }
        memcpy(out + n, piece, pl);
        n += pl;
        i += m != NULL ? strlen(m->name) : 1;
    }
    out[n] = '\0';
    *len = n;
    return out;
}

/* --- framing ------------------------------------------------------------------------------- */

/* The requests of one input as far as the harness can frame them: the count tells the reader
 * how many answers to wait for (a request the server frames differently only costs an idle
 * wait). An answer to HEAD has a Content-Length but no body; when the input has a HEAD, an
 * answer whose body would start with another status line, or is missing at the end, is taken
 * for one (no body of this server starts "HTTP/1."). */
#define MAX_PIPELINE 64
struct requests {
    size_t n;
    bool any_head;
};

/* The end of the line at p (its '\n', or `end`) and, in *next, where the next line starts.
 * RFC 9112 section 2.2 lets a recipient end a line with a bare LF, and libmicrohttpd does. */
static const char *line_end(const char *p, const char *end, const char **next)
{
    const char *lf = memchr(p, '\n', (size_t)(end - p));

    if (lf == NULL) {
        *next = end;
        return end;
    }
    *next = lf + 1;
    return lf > p && lf[-1] == '\r' ? lf - 1 : lf;
}

/* The end of the header block starting at p (after its empty line), or NULL. */
static const char *head_end(const char *p, const char *end)
{
    const char *next;

    while (p < end) {
        const char *eol = line_end(p, end, &next);
        if (next == end && eol == end)
            return NULL;
        if (eol == p)
            return next;
        p = next;
    }
    return NULL;
}

/* The value of header `name` in the block [p, end) (its first line is the request or status
 * line), or NULL; *vlen its length without the line end. */
static const char *field(const char *p, const char *end, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *next;

    line_end(p, end, &next);
    for (p = next; p < end; p = next) {
        const char *eol = line_end(p, end, &next);
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
    }
    return NULL;
}

/* The end of a chunked body starting at p (after its last chunk and trailers), or NULL when it
 * is not all there. The buffer has a NUL at `end`. */
static const char *chunked_end(const char *p, const char *end)
{
    for (;;) {
        const char *crlf = memmem(p, (size_t)(end - p), "\r\n", 2), *t;
        char *after;
        unsigned long long sz = strtoull(p, &after, 16);

        if (crlf == NULL || after == p)
            return NULL;
        if (sz == 0) {
            t = memmem(crlf, (size_t)(end - crlf), "\r\n\r\n", 4);
            return t != NULL ? t + 4 : NULL;
        }
        if ((size_t)(end - crlf) < 4 || sz > (size_t)(end - crlf) - 4)
            return NULL;
        p = crlf + 2 + sz + 2;
    }
}

static void frame_requests(const char *p, size_t n, struct requests *rq)
{
    const char *end = p + n;

    memset(rq, 0, sizeof *rq);
    rq->any_head = memmem(p, n, "HEAD ", 5) != NULL;
    while (rq->n < MAX_PIPELINE) {
        const char *eoh, *body, *v;
        size_t vlen;
        /* RFC 9112 section 2.2: empty lines before a request line are ignored. */
        while (p < end && (*p == '\r' || *p == '\n'))
            p++;
        if (p == end || (eoh = head_end(p, end)) == NULL)
            return;
        body = eoh;
        if (field(p, eoh, "Transfer-Encoding", &vlen) != NULL) {
            if ((body = chunked_end(body, end)) == NULL)
                return;
        } else if ((v = field(p, eoh, "Content-Length", &vlen)) != NULL) {
            unsigned long long cl = strtoull(v, NULL, 10);
            if (cl > (size_t)(end - body))
                return;
            body += cl;
        }
        rq->n++;
        p = body;
    }
}

/* --- checking answers ----------------------------------------------------------------------- */

/* The exchange being checked, for the failure report. */
static struct {
    const char *req, *ans;
    size_t req_len, ans_len;
    bool late; /* a held request of an earlier input */
} exchanged;

struct answer {
    int status;
    const char *head, *body; /* the header block (status line included) and the body */
    size_t head_len, body_len;
    bool headless; /* taken for the answer to a HEAD: headers only */
};

static const char *header(const struct answer *a, const char *name, size_t *vlen)
{
    return field(a->head, a->head + a->head_len, name, vlen);
}

static bool header_is(const struct answer *a, const char *name, const char *want)
{
    size_t vlen;
    const char *v = header(a, name, &vlen);

    return v != NULL && vlen == strlen(want) && strncasecmp(v, want, vlen) == 0;
}

static bool token_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Prints up to 2000 bytes of p, escaping what is not printable. */
static void dump(const char *what, const char *p, size_t n)
{
    fprintf(stderr, "fuzz_server: %s (%zu bytes):\n", what, n);
    for (size_t i = 0; i < n && i < 2000; i++)
        if (p[i] == '\n' || (p[i] >= ' ' && p[i] < 0x7f))
            fputc(p[i], stderr);
        else if (p[i] != '\r')
            fprintf(stderr, "\\x%02x", (unsigned char)p[i]);
    fputc('\n', stderr);
}

static void fail(const struct answer *a, const char *why)
{
    fprintf(stderr, "fuzz_server: %s\n", why);
    if (a != NULL)
        dump("the answer's head", a->head, a->head_len);
    if (exchanged.req != NULL) {
        if (exchanged.late)
            fprintf(stderr, "fuzz_server: the request is a held one of an earlier input, kept "
                            "open since; run that input, then the current one\n");
        dump("what was sent", exchanged.req, exchanged.req_len);
        dump("what came back", exchanged.ans, exchanged.ans_len);
    }
    abort();
}

/* After the status line, every header line is "Name: value": a token, a colon, and no CR, LF or
 * NUL in the value, so that nothing the server copies into a header can split it. */
static void check_header_lines(const struct answer *a)
{
    const char *end = a->head + a->head_len, *p = memmem(a->head, a->head_len, "\r\n", 2) + 2;

    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2), *q = p;
        while (q < eol && token_char(*q))
            q++;
        if (q == p || q == eol || *q != ':')
            fail(a, "a header line is not Name: value");
        for (; q < eol; q++)
            if (*q == '\r' || *q == '\n' || *q == '\0')
                fail(a, "a header value holds CR, LF or NUL");
        p = eol + 2;
    }
}

static void check_json(const struct answer *a)
{
    json_error_t err;
    json_t *j = json_loadb(a->body, a->body_len, 0, &err);

    if (j == NULL || !json_is_object(j))
        fail(a, "an answer of type application/json is not one JSON object");
    if (a->status >= 400 && (!json_is_string(json_object_get(j, "error")) ||
                             !json_is_string(json_object_get(j, "error_description"))))
        fail(a, "an error answer lacks the string members error and error_description");
    json_decref(j);
}

static bool secret_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Whether the answer holds something shaped like one of our secrets: "qrl_xx_" and at least 20
 * secret characters (the shortest we issue has 43). */
static bool carries_secret(const struct answer *a)
{
    const char *p = a->head, *end = a->body + a->body_len;

    while ((p = memmem(p, (size_t)(end - p), "qrl_", 4)) != NULL) {
        size_t n = 0;
        if (end - p >= 7 + 20 && p[6] == '_')
            while (p + 7 + n < end && secret_char(p[7 + n]))
                n++;
        if (n >= 20)
            return true;
        p += 4;
    }
    return false;
}

static void check_answer(const struct answer *a)
{
    size_t vlen;
    const char *ctype = header(a, "Content-Type", &vlen);
    bool json = ctype != NULL && vlen >= 16 && strncasecmp(ctype, "application/json", 16) == 0;

    check_header_lines(a);
    if (a->status < 200)
        return; /* 100 Continue, libmicrohttpd's */
    if (!header_is(a, "X-Content-Type-Options", "nosniff")) {
        /* libmicrohttpd's own answer to a request it could not read. */
        if (a->status < 400 || (a->status >= 500 && a->status != 501 && a->status != 505))
            fail(a, "libmicrohttpd answered by itself with an unexpected status");
        return;
    }
    if (a->status >= 500 && a->status != 503)
        fail(a, "a 5xx answer other than 503");
    if ((json || carries_secret(a) || header(a, "Set-Cookie", &vlen) != NULL) &&
        !header_is(a, "Cache-Control", "no-store"))
        fail(a, "an answer with a secret, a cookie or JSON without Cache-Control: no-store");
    if ((a->status == 429 || a->status == 503) && header(a, "Retry-After", &vlen) == NULL)
        fail(a, "a 429 or 503 answer without Retry-After");
    if (a->status == 405 && header(a, "Allow", &vlen) == NULL)
        fail(a, "a 405 answer without Allow");
    if (json && !a->headless)
        check_json(a);
}

/* Reads the answers at p: returns how many whole final answers there are (1xx interim answers
 * do not count) and in *used the bytes they take. `closed`: the server closed the connection, so
 * a body without length ends at the end. `check`: check each whole answer, and fail on bytes
 * that cannot start one. */
static size_t parse_answers(const char *p, size_t n, const struct requests *rq, bool closed,
                            bool check, size_t *used)
{
    const char *start = p, *end = p + n;
    size_t k = 0;

    *used = 0;
    while (p < end) {
        struct answer a = {.head = p};
        const char *eoh, *v;
        size_t vlen;

        if ((size_t)(end - p) < 13 ||
            (memcmp(p, "HTTP/1.1 ", 9) != 0 && memcmp(p, "HTTP/1.0 ", 9) != 0)) {
            if (check && !rq->any_head &&
                ((size_t)(end - p) >= 13 ||
                 (memcmp(p, "HTTP/1.1 ", (size_t)(end - p) < 9 ? (size_t)(end - p) : 9) != 0)))
                fail(NULL, "bytes that do not start an HTTP/1.x answer");
            break;
        }
        for (int i = 9; i < 12; i++)
            a.status = a.status * 10 + (p[i] - '0');
        if (p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
            p[12] != ' ') {
            if (check)
                fail(NULL, "a status line without a three-digit status");
            break;
        }
        if ((eoh = memmem(p, (size_t)(end - p), "\r\n\r\n", 4)) == NULL)
            break;
        a.head_len = (size_t)(eoh + 2 - p);
        a.body = eoh + 4;
        /* libmicrohttpd 0.9.75 sends the head of its own answer to a Content-Length it refuses
         * (400, 413) twice, the first time without the body: an upstream bug, not ours. */
        if ((size_t)(end - a.body) >= a.head_len + 2 && memcmp(a.body, p, a.head_len + 2) == 0 &&
            !header_is(&a, "X-Content-Type-Options", "nosniff")) {
            p = a.body;
            continue;
        }
        a.headless =
            a.status >= 200 && rq->any_head &&
            (a.body == end || ((size_t)(end - a.body) >= 7 && memcmp(a.body, "HTTP/1.", 7) == 0));
        if (a.status < 200 || a.status == 204 || a.status == 304 || a.headless)
            a.body_len = 0;
        else if (header(&a, "Transfer-Encoding", &vlen) != NULL) {
            const char *e = chunked_end(a.body, end);
            if (e == NULL)
                break;
            a.body_len = (size_t)(e - a.body);
        } else if ((v = header(&a, "Content-Length", &vlen)) != NULL) {
            a.body_len = strtoull(v, NULL, 10);
            if (a.body_len > (size_t)(end - a.body))
                break;
        } else if (closed) {
            a.body_len = (size_t)(end - a.body);
        } else {
            break;
        }
        if (check)
            check_answer(&a);
        if (a.status >= 200)
            k++;
        p = a.body + a.body_len;
        *used = (size_t)(p - start);
    }
    return k;
}

/* --- one exchange --------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* After connect() failed: whether it was only interrupted by a signal (libFuzzer's timer) and
 * the connection completed anyway. */
static bool connected(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;

    if (errno != EINTR)
        return false;
    while (poll(&p, 1, HEALTH_MS) < 0)
        if (errno != EINTR)
            return false;
    return getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
}

/* Opens a connection and sends `req`; shuts down the sending side when `half_close`. */
static int conn_send(const char *req, size_t len, bool half_close)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(fx.port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    size_t sent = 0;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && !connected(fd))) {
        perror("fuzz_server: connect");
        abort();
    }
    while (sent < len) {
        ssize_t w = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* the server closed early (an error answer): read what it said */
        sent += (size_t)w;
    }
    if (half_close)
        shutdown(fd, SHUT_WR);
    return fd;
}

/* Reads more of the answers into `out` (MAX_ANSWER bytes and a NUL, *got of them there already)
 * until the server closes, all of `rq` is answered, nothing more comes for IDLE_MS after whole
 * answers, or `ms` pass. libmicrohttpd keeps a keep-alive connection open after a half-close,
 * so the count of answers is what usually ends the wait. Returns the whole answers read. */
static size_t conn_read(int fd, const struct requests *rq, char *out, size_t *got, int ms,
                        bool *closed)
{
    int64_t deadline = now_ms() + ms;
    size_t used = 0, answers = parse_answers(out, *got, rq, false, false, &used);

    while (!*closed && (rq->n == 0 || answers < rq->n) && *got < MAX_ANSWER) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - now_ms();
        ssize_t r;
        int rc;
        /* Whole answers in and nothing more framed to wait for, or no whole request to wait
         * for (libmicrohttpd may keep such a connection open until its timeout). */
        if (((answers > 0 && used == *got) || rq->n == 0) && left > IDLE_MS)
            left = IDLE_MS;
        if (left < 0)
            break;
        /* libFuzzer's timer interrupts system calls with a signal: try again. */
        if ((rc = poll(&p, 1, (int)left)) < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        if ((r = recv(fd, out + *got, MAX_ANSWER - *got, 0)) < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *closed = true;
            break;
        }
        *got += (size_t)r;
        out[*got] = '\0';
        answers = parse_answers(out, *got, rq, false, false, &used);
    }
    return answers;
}

static void conn_close(int fd, bool closed)
{
    if (!closed) {
        /* Reset rather than close politely: nothing more is wanted from this connection, and no
         * TIME_WAIT is left behind for each input. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
}

/* Secrets of the fixture in the answer that the request did not carry. */
static void check_secrets(const char *req, size_t req_len, const char *ans, size_t ans_len)
{
    const struct {
        const char *ss, *dc;
    } scans[] = {{fx.a.scan_secret, fx.a.device_code}, {fx.b.scan_secret, fx.b.device_code}};

    for (size_t k = 0; k < sizeof markers / sizeof markers[0]; k++) {
        const char *v = markers[k].value;
        if (markers[k].secret && v[0] != '\0' && memmem(ans, ans_len, v, strlen(v)) != NULL &&
            memmem(req, req_len, v, strlen(v)) == NULL) {
            fprintf(stderr, "fuzz_server: the answer carries %s, which the request did not\n",
                    markers[k].name);
            abort();
        }
    }
    for (size_t k = 0; k < 2; k++)
        if (memmem(ans, ans_len, scans[k].ss, strlen(scans[k].ss)) != NULL &&
            memmem(req, req_len, scans[k].ss, strlen(scans[k].ss)) == NULL &&
            memmem(req, req_len, scans[k].dc, strlen(scans[k].dc)) == NULL) {
            fprintf(stderr, "fuzz_server: the answer carries a scan secret it was not given\n");
            abort();
        }
}

static void check_health(void)
{
    static char ans[MAX_ANSWER + 1];
    const struct requests one = {.n = 1};
    char req[160];
    bool closed = false;
    size_t got = 0;
    int n = snprintf(req, sizeof req,
                     "GET /.well-known/oauth-authorization-server HTTP/1.1\r\nHost: %s\r\n"
                     "Connection: close\r\n\r\n",
                     fx.host);
    int fd = conn_send(req, (size_t)n, true);

    conn_read(fd, &one, ans, &got, HEALTH_MS, &closed);
    conn_close(fd, closed);
    if (got < 13 || memcmp(ans, "HTTP/1.1 200 ", 13) != 0) {
        fprintf(stderr, "fuzz_server: the server no longer answers its metadata (%zu bytes%s)\n",
                got, closed ? "" : ", timed out");
        abort();
    }
}

static bool has_ci(const char *s, size_t n, const char *word)
{
    size_t wl = strlen(word);

    for (size_t i = 0; i + wl <= n; i++)
        if (strncasecmp(s + i, word, wl) == 0)
            return true;
    return false;
}

/* --- connections and held requests --------------------------------------------------------- */

/* One input's connection: what was sent and what came back. */
struct conn {
    int fd;
    char *req, *ans; /* ans: MAX_ANSWER bytes and a NUL */
    size_t req_len, got;
    struct requests rq;
    bool closed;
    int64_t until; /* parked: when to give up waiting */
};

/* Connections of held requests (Prefer: wait) kept open after their input, so that later
 * inputs can change the login request they wait on and the server answers a live client:
 * approvals hand tokens to them (qrl_handoff), changes wake them, and their answers are checked
 * when they come. A held request waits 60 s at most. */
#define MAX_PARKED 8
#define PARK_MS 65000
static struct conn *parked[MAX_PARKED];

/* Checks what came back on `c` and closes it. `late`: it was parked. */
static void conn_finish(struct conn *c, bool late)
{
    size_t used;

    exchanged.late = late;
    exchanged.req = c->req;
    exchanged.req_len = c->req_len;
    exchanged.ans = c->ans;
    exchanged.ans_len = c->got;
    parse_answers(c->ans, c->got, &c->rq, c->closed, true, &used);
    if (c->closed && used != c->got && !c->rq.any_head)
        fail(NULL, "the server closed the connection in the middle of an answer");
    check_secrets(c->req, c->req_len, c->ans, c->got);
    exchanged.req = NULL;
    conn_close(c->fd, c->closed);
    free(c->req);
    c->req = NULL;
}

static void parked_finish(size_t i)
{
    struct conn *c = parked[i];

    parked[i] = NULL;
    conn_finish(c, true);
    free(c->ans);
    free(c);
}

/* Reads what the parked connections have received; finishes those whose answers are complete,
 * whose server closed, or that waited too long. */
static void parked_poll(void)
{
    for (size_t i = 0; i < MAX_PARKED; i++) {
        struct conn *c = parked[i];
        if (c == NULL)
            continue;
        if (conn_read(c->fd, &c->rq, c->ans, &c->got, 0, &c->closed) >= c->rq.n || c->closed ||
            now_ms() > c->until)
            parked_finish(i);
    }
}

/* Keeps the connection of `cur` open (a copy of it; `cur` is left empty). */
static void park(struct conn *cur)
{
    struct conn *c = malloc(sizeof *c);
    size_t oldest = 0;

    if (c == NULL || (*c = *cur, c->ans = malloc(MAX_ANSWER + 1)) == NULL)
        abort();
    memcpy(c->ans, cur->ans, cur->got + 1);
    cur->req = NULL;
    for (size_t i = 0; i < MAX_PARKED; i++) {
        if (parked[i] == NULL) {
            oldest = i;
            break;
        }
        if (parked[i]->until < parked[oldest]->until)
            oldest = i;
    }
    if (parked[oldest] != NULL)
        parked_finish(oldest);
    c->until = now_ms() + PARK_MS;
    parked[oldest] = c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char ans[MAX_ANSWER + 1];
    struct conn cur = {.ans = ans}, *c = &cur;
    bool held, hung;
    size_t answers;

    sweep_now_and_then();
    parked_poll();
    fixture_refresh(pieces_named(data, size));
    c->req = substitute(data, size, &c->req_len);
    frame_requests(c->req, c->req_len, &c->rq);
    /* A held request is not half-closed: the server would take the client for gone. */
    held = has_ci(c->req, c->req_len, "prefer");
    c->fd = conn_send(c->req, c->req_len, !held);
    c->ans[0] = '\0';
    answers = conn_read(c->fd, &c->rq, c->ans, &c->got, held ? READ_HELD_MS : READ_MS, &c->closed);
    hung = !c->closed && answers == 0 && c->rq.n > 0 && !held;
    if (held && !c->closed && answers < c->rq.n)
        park(c);
    else
        conn_finish(c, false);
    if (++fx.inputs % HEALTH_EVERY == 0 || hung)
        check_health();
    if (fx.inputs % LOG_EVERY == 0 && truncate(fx.log, 0) != 0)
        perror("fuzz_server: emptying the server's log");
    return 0;
}
