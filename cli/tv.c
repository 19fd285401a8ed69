/* SPDX-License-Identifier: MIT */
/*
 * qrlogin tv: a screen in a terminal, built only on the client SDK (include/qrlogin/client.h)
 * and, for the fingerprint of its key, qrlogin/protocol.h.
 * It shows the QR code, the user code and a countdown, renews the code when it expires, says
 * when a phone has scanned it, and on approval stores the credential in a file only the user
 * can read. `qrlogin tv whoami` and `qrlogin tv logout` use that file.
 *
 * The credential holds the terminal's key (the SDK's, made for each sign-in) next to the
 * tokens: with a server that takes DPoP proofs (RFC 9449) the tokens are bound to that key, so
 * the file's tokens alone are of no use, and every use of them proves the key.
 *
 * Threads: the login runs on the main thread inside qrl_client_login(); a signal thread turns
 * Ctrl-C into qrl_client_cancel(); on a terminal a countdown thread redraws one status line
 * once a second.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "qrlogin/client.h"
#include "qrlogin/protocol.h"

#define DEFAULT_CLIENT_ID "qrlogin-tv"

struct tv_opts {
    const char *server, *name, *kind, *client_id, *scope, *credentials, *qr_png;
};

struct tv_state {
    qrl_client *c;
    const struct tv_opts *o;
    bool tty;
    pthread_mutex_t mu;
    time_t deadline; /* expiry of the code on screen */
    const char *status;
    bool done;
    int signal; /* the signal that cancelled the login, 0 if none */
};

static void tv_usage(FILE *f)
{
    fputs("usage: qrlogin tv --server URL [--name NAME] [options]   sign this terminal in\n"
          "       qrlogin tv whoami [--credentials FILE]             who is signed in here\n"
          "       qrlogin tv logout [--credentials FILE]             sign out (revokes it)\n"
          "  --server URL        the qrlogin server (QRLOGIN_SERVER)\n"
          "  --name NAME         device name shown on the phone (default \"qrlogin tv\")\n"
          "  --kind KIND         tv, browser, desktop, cli or other (default tv)\n"
          "  --client-id ID      OAuth client id (default " DEFAULT_CLIENT_ID ")\n"
          "  --scope SCOPE       scopes to ask for\n"
          "  --credentials FILE  where the credential is kept (QRLOGIN_TV_CREDENTIALS; default\n"
          "                      $XDG_CONFIG_HOME/qrlogin/tv.json)\n"
          "  --qr-png FILE       also write each QR code as a PNG image to FILE\n"
          "Signing in again replaces the stored credential and signs the old one out.\n"
          "Exit status: 0 signed in, 3 declined on the phone, 4 code expired, 1 other errors,\n"
          "2 usage error, 130 cancelled with Ctrl-C.\n",
          f);
}

static void cred_path(const struct tv_opts *o, char *out, size_t len)
{
    qrl_cli_state_path(o->credentials, "QRLOGIN_TV_CREDENTIALS", "tv.json", out, len);
}

static void write_png(struct tv_state *s)
{
    unsigned char *png = NULL;
    size_t len = 0;
    char tmp[4096];
    FILE *f;

    if (s->o->qr_png == NULL || qrl_client_qr_png(s->c, 8, &png, &len) != QRL_OK)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmp", s->o->qr_png);
    f = fopen(tmp, "wb");
    if (f != NULL && fwrite(png, 1, len, f) == len && fclose(f) == 0)
        rename(tmp, s->o->qr_png);
    else if (f != NULL)
        fclose(f);
    qrl_client_buf_free(s->c, png);
}

/* When the login request is bound to this terminal's key (the server took the SDK's dpop_jkt
 * and the QR code names the key), the fingerprint the phone will show for it, for the person to
 * compare (qrlogin/protocol.h). From our own key: the QR code only says that it is named. */
static void show_key(struct tv_state *s, const qrl_client_event *ev)
{
    char hint[QRL_KEY_HINT_BUF], jkt[QRL_CLIENT_JKT_MAX], fp[QRL_KEY_FINGERPRINT_BUF];

    if (qrl_login_key_hint_parse(ev->qr_payload, hint) != QRL_OK ||
        qrl_client_dpop_jkt(s->c, jkt, sizeof jkt) != QRL_OK || !qrl_key_hint_matches(hint, jkt) ||
        qrl_key_fingerprint(jkt, fp) != QRL_OK)
        return;
    /* fp + 4: the digits, as the phone writes them after "key". */
    printf("The sign-in goes only to this terminal's key, which your phone shows as  %s\n", fp + 4);
}

static void on_event(void *user, const qrl_client_event *ev)
{
    struct tv_state *s = user;
    char *qr = NULL;
    size_t len;

    pthread_mutex_lock(&s->mu);
    switch (ev->type) {
    case QRL_CLIENT_EV_STARTED:
    case QRL_CLIENT_EV_RENEWED:
        if (qrl_client_qr_terminal(s->c, s->tty, &qr, &len) == QRL_OK) {
            printf("%s%s", s->tty ? "\r\033[K\n" : "\n", qr);
            qrl_client_buf_free(s->c, qr);
        }
        printf("%sScan the code with your phone, or open %s\nand enter the code  %s\n",
               ev->type == QRL_CLIENT_EV_RENEWED ? "The code was renewed. " : "",
               ev->verification_uri, ev->user_code);
        show_key(s, ev);
        if (!s->tty)
            printf("The code expires in %d seconds.\n", ev->expires_in);
        s->deadline = time(NULL) + ev->expires_in;
        s->status = "Waiting for a phone";
        write_png(s);
        break;
    case QRL_CLIENT_EV_SCANNED:
        printf("%sScanned - confirm on your phone.\n", s->tty ? "\r\033[K" : "");
        s->status = "Scanned - confirm on your phone";
        break;
    case QRL_CLIENT_EV_RETRYING:
        printf("%sThe server is not answering (%s); trying again in %ld s.\n",
               s->tty ? "\r\033[K" : "", qrl_client_strerror(ev->error),
               (ev->retry_in_ms + 999) / 1000);
        break;
    default:
        break;
    }
    fflush(stdout);
    pthread_mutex_unlock(&s->mu);
}

/* Redraws "<status> - expires in m:ss" once a second on a terminal. */
static void *countdown_main(void *arg)
{
    struct tv_state *s = arg;

    for (;;) {
        pthread_mutex_lock(&s->mu);
        if (s->done) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        if (s->deadline != 0) {
            long left = (long)(s->deadline - time(NULL));
            printf("\r\033[K%s - code expires in %ld:%02ld", s->status, left > 0 ? left / 60 : 0,
                   left > 0 ? left % 60 : 0);
            fflush(stdout);
        }
        pthread_mutex_unlock(&s->mu);
        sleep(1);
    }
}

/* Turns SIGINT/SIGTERM into a cancellation of the running login. */
static void *signal_main(void *arg)
{
    struct tv_state *s = arg;
    sigset_t set;
    int sig;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigwait(&set, &sig) == 0) {
        pthread_mutex_lock(&s->mu);
        if (!s->done)
            s->signal = sig;
        pthread_mutex_unlock(&s->mu);
        qrl_client_cancel(s->c);
    }
    return NULL;
}

static qrl_err client_for(const struct tv_opts *o, const char *server, const char *client_id,
                          void *user, qrl_client **out)
{
    qrl_client_options co = {
        .server_url = server,
        .client_id = client_id,
        .scope = o->scope,
        .device_name = o->name != NULL ? o->name : "qrlogin tv",
        .device_kind = o->kind != NULL ? o->kind : "tv",
        .on_event = on_event,
        .user = user,
    };
    char why[256] = "";
    qrl_err rc = qrl_client_new(&co, out);

    if (rc != QRL_OK) {
        (void)qrl_client_check_options(&co, why, sizeof why);
        qrl_cli_err("%s", why[0] ? why : qrl_client_strerror(rc));
    }
    return rc;
}

/* Largest answer of GET /v1/me we read: it is a few hundred bytes. */
#define ME_MAX 16384

struct me_buf {
    char p[ME_MAX + 1];
    size_t n;
};

static size_t me_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct me_buf *b = ud;
    size_t add = size * nmemb;

    if (add > ME_MAX - b->n)
        return 0;
    memcpy(b->p + b->n, ptr, add);
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

/* GET /v1/me with an access token bound to the terminal's key (RFC 9449 section 7.1):
 * "Authorization: DPoP <token>" and a proof of the key made by the SDK for this request. The
 * other requests of the terminal roles take bearer tokens (cli/http.c), which this one is not.
 * Fills r as qrl_cli_http() does; returns 0 when an answer arrived. */
static int me_dpop(qrl_client *c, const char *url, const char *access, qrl_cli_resp *r)
{
    char auth[256], proof[QRL_CLIENT_PROOF_MAX + 8];
    struct curl_slist *h = NULL, *t;
    struct me_buf *b = calloc(1, sizeof *b);
    CURL *e = curl_easy_init();
    int rc = -1;

    memset(r, 0, sizeof *r);
    snprintf(proof, sizeof proof, "DPoP: ");
    if (b == NULL || e == NULL ||
        qrl_client_dpop_proof(c, "GET", url, access, proof + 6, sizeof proof - 6) != QRL_OK) {
        snprintf(r->error, sizeof r->error, "cannot make a DPoP proof");
        goto out;
    }
    snprintf(auth, sizeof auth, "Authorization: DPoP %s", access);
    h = curl_slist_append(NULL, auth);
    if (h == NULL || curl_slist_append(h, proof) == NULL) {
        snprintf(r->error, sizeof r->error, "out of memory");
        goto out;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, me_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    CURLcode cc = curl_easy_perform(e);
    if (cc != CURLE_OK) {
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    if (b->n > 0)
        r->json = json_loadb(b->p, b->n, JSON_REJECT_DUPLICATES, NULL);
    rc = 0;
out:
    sodium_memzero(auth, sizeof auth);
    for (t = h; t != NULL; t = t->next)
        sodium_memzero(t->data, strlen(t->data));
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    if (b != NULL)
        sodium_memzero(b, sizeof *b);
    free(b);
    return rc;
}

/* Asks the server who the access token belongs to; prints "Signed in as ...". With `dpop`
 * (the token is bound to c's key) the request proves the key. */
static int greet(qrl_client *c, bool dpop, const char *server, const char *access,
                 const char *prefix)
{
    char url[1024];
    qrl_cli_resp r = {0};
    json_t *acc, *dev;

    snprintf(url, sizeof url, "%s/v1/me", server);
    if ((dpop ? me_dpop(c, url, access, &r) : qrl_cli_http("GET", url, access, NULL, &r)) != 0 ||
        r.status != 200) {
        int status = (int)r.status;
        qrl_cli_resp_free(&r);
        return status == 401 ? 401 : -1;
    }
    acc = json_object_get(r.json, "account");
    dev = json_object_get(r.json, "device");
    printf("%s%s (%s) on device \"%s\"\n", prefix,
           json_string_value(json_object_get(acc, "display_name")),
           json_string_value(json_object_get(acc, "username")),
           json_string_value(json_object_get(dev, "name")));
    qrl_cli_resp_free(&r);
    return 0;
}

/* Stores the credential: the tokens of `c` in `t` and, when they are bound to it, c's key
 * ("dpop_key", with "token_type" DPoP), without which they are of no use. */
static bool save_credentials(const struct tv_opts *o, const char *server, const char *client_id,
                             qrl_client *c, const qrl_client_tokens *t)
{
    char path[4096], err[256], key[QRL_CLIENT_KEY_MAX];
    bool bound = qrl_client_dpop_bound(c) && qrl_client_get_key(c, key, sizeof key) == QRL_OK;
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "server", server, "client_id", client_id,
                  "access_token", t->access_token, "refresh_token", t->refresh_token, "expires_at",
                  (json_int_t)t->expires_at, "token_type", bound ? "DPoP" : "Bearer");
    if (j != NULL && bound)
        json_object_set_new(j, "dpop_key", json_string(key));
    sodium_memzero(key, sizeof key);
    char *text = j != NULL ? json_dumps(j, JSON_INDENT(2)) : NULL;
    bool ok;

    json_decref(j);
    cred_path(o, path, sizeof path);
    ok = text != NULL && qrl_cli_write_private(path, text, err, sizeof err);
    if (!ok)
        qrl_cli_err("cannot save the credential: %s", text != NULL ? err : "out of memory");
    if (text != NULL)
        sodium_memzero(text, strlen(text));
    free(text);
    return ok;
}

static json_t *load_credentials(const struct tv_opts *o);
static const char *jget(json_t *j, const char *k);

/* A client for the stored credential `j`: its server and client id, and its key when the
 * credential has one. NULL (with the reason printed) when it cannot be made. */
static qrl_client *client_for_stored(const struct tv_opts *o, json_t *j)
{
    qrl_client *c = NULL;

    if (client_for(o, jget(j, "server"), jget(j, "client_id"), NULL, &c) != QRL_OK)
        return NULL;
    if (jget(j, "dpop_key")[0] != '\0' && qrl_client_set_key(c, jget(j, "dpop_key")) != QRL_OK) {
        qrl_cli_err("the stored credential's key is damaged");
        qrl_client_free(c);
        return NULL;
    }
    return c;
}

/* Whether the stored credential's tokens are bound to its key. */
static bool stored_bound(json_t *j)
{
    return jget(j, "dpop_key")[0] != '\0';
}

/* The credential stored before this sign-in, if any: once the new one is saved, the old one is
 * revoked (RFC 7009), so that signing in again leaves one device in the user's list, not an
 * orphan that nobody can sign out any more. */
static json_t *previous_credentials(const struct tv_opts *o)
{
    char path[4096];
    json_t *j;

    cred_path(o, path, sizeof path);
    if (access(path, F_OK) != 0)
        return NULL;
    j = json_load_file(path, 0, NULL);
    if (j != NULL && jget(j, "refresh_token")[0] == '\0') {
        json_decref(j);
        j = NULL;
    }
    return j;
}

static void revoke_previous(const struct tv_opts *o, json_t *prev)
{
    qrl_client *c = NULL;
    qrl_err e;

    if (prev == NULL)
        return;
    if ((c = client_for_stored(o, prev)) == NULL ||
        qrl_client_set_refresh_token(c, jget(prev, "refresh_token")) != QRL_OK) {
        qrl_cli_err("the previous credential of this terminal could not be signed out");
    } else if ((e = qrl_client_logout(c)) != QRL_OK) {
        qrl_cli_err("the previous credential of this terminal could not be signed out at %s: "
                    "%s",
                    jget(prev, "server"), qrl_client_last_error(c));
    } else {
        printf("The previous sign-in of this terminal was signed out.\n");
    }
    qrl_client_free(c);
}

static int cmd_login(const struct tv_opts *o)
{
    struct tv_state s = {.o = o, .tty = isatty(STDOUT_FILENO), .status = "Waiting"};
    pthread_t sig_thread, cd_thread;
    bool cd_started = false;
    qrl_client_tokens t;
    json_t *prev;
    sigset_t set;
    int rc = 1;
    qrl_err e;

    if (o->server == NULL) {
        qrl_cli_err("tv needs --server URL (or QRLOGIN_SERVER)");
        return 2;
    }
    pthread_mutex_init(&s.mu, NULL);
    if (client_for(o, o->server, o->client_id, &s, &s.c) != QRL_OK) {
        pthread_mutex_destroy(&s.mu);
        return 2;
    }
    /* SIGINT and SIGTERM go to the signal thread only; block them before it starts. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_create(&sig_thread, NULL, signal_main, &s);
    if (s.tty)
        cd_started = pthread_create(&cd_thread, NULL, countdown_main, &s) == 0;
    e = qrl_client_login(s.c, &t);
    pthread_mutex_lock(&s.mu);
    s.done = true;
    /* Clear the countdown line and flush, so that what follows, on stdout or stderr, starts
     * at the beginning of a line. */
    if (s.tty)
        printf("\r\033[K");
    fflush(stdout);
    pthread_mutex_unlock(&s.mu);
    if (cd_started)
        pthread_join(cd_thread, NULL);
    switch (e) {
    case QRL_OK:
        prev = previous_credentials(o);
        if (save_credentials(o, o->server, o->client_id, s.c, &t)) {
            if (greet(s.c, qrl_client_dpop_bound(s.c), o->server, t.access_token,
                      "Signed in as ") == 0)
                rc = 0;
            revoke_previous(o, prev); /* replaced in the file: nobody could sign it out later */
        }
        json_decref(prev);
        break;
    case QRL_CLIENT_ERR_CANCELLED:
        qrl_cli_err("cancelled");
        rc = 128 + (s.signal != 0 ? s.signal : SIGINT);
        break;
    case QRL_ERR_DENIED:
        qrl_cli_err("the sign-in was declined on the phone");
        rc = 3;
        break;
    case QRL_ERR_EXPIRED:
        qrl_cli_err("the code expired; run qrlogin tv again");
        rc = 4;
        break;
    default:
        qrl_cli_err("sign-in failed: %s (%s)", qrl_client_strerror(e), qrl_client_last_error(s.c));
        break;
    }
    qrl_client_tokens_clear(&t);
    pthread_kill(sig_thread, SIGTERM);
    pthread_join(sig_thread, NULL);
    qrl_client_free(s.c);
    pthread_mutex_destroy(&s.mu);
    return rc;
}

static json_t *load_credentials(const struct tv_opts *o)
{
    char path[4096];
    json_t *j;

    cred_path(o, path, sizeof path);
    j = json_load_file(path, 0, NULL);
    if (j == NULL || !json_is_string(json_object_get(j, "refresh_token")))
        qrl_cli_err("not signed in (no credential in %s)", path);
    return j;
}

static const char *jget(json_t *j, const char *k)
{
    json_t *v = json_object_get(j, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

static int cmd_whoami(const struct tv_opts *o)
{
    json_t *j = load_credentials(o);
    qrl_client *c = NULL;
    qrl_client_tokens t;
    int g, rc = 1;

    if (j == NULL)
        return 1;
    if ((c = client_for_stored(o, j)) == NULL)
        goto out;
    g = greet(c, stored_bound(j), jget(j, "server"), jget(j, "access_token"), "Signed in as ");
    if (g == 0) {
        rc = 0;
        goto out;
    }
    if (g != 401) {
        qrl_cli_err("cannot reach %s", jget(j, "server"));
        goto out;
    }
    /* The access token expired or was revoked: try the refresh token once (with the key it is
     * bound to, which the client already holds). */
    if (qrl_client_set_refresh_token(c, jget(j, "refresh_token")) != QRL_OK)
        goto out;
    if (qrl_client_refresh(c, &t) != QRL_OK) {
        qrl_cli_err("not signed in any more (%s)", qrl_client_last_error(c));
        goto out;
    }
    if (save_credentials(o, jget(j, "server"), jget(j, "client_id"), c, &t) &&
        greet(c, qrl_client_dpop_bound(c), jget(j, "server"), t.access_token, "Signed in as ") == 0)
        rc = 0;
    qrl_client_tokens_clear(&t);
out:
    qrl_client_free(c);
    json_decref(j);
    return rc;
}

static int cmd_logout(const struct tv_opts *o)
{
    json_t *j = load_credentials(o);
    qrl_client *c = NULL;
    char path[4096];
    qrl_err e;
    int rc = 1;

    if (j == NULL)
        return 1;
    if ((c = client_for_stored(o, j)) == NULL ||
        qrl_client_set_refresh_token(c, jget(j, "refresh_token")) != QRL_OK)
        goto out;
    e = qrl_client_logout(c);
    cred_path(o, path, sizeof path);
    unlink(path);
    if (e != QRL_OK) {
        qrl_cli_err("signed out here, but the server could not be told: %s",
                    qrl_client_last_error(c));
        goto out;
    }
    printf("Signed out.\n");
    rc = 0;
out:
    qrl_client_free(c);
    json_decref(j);
    return rc;
}

int qrl_cli_tv(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"name", required_argument, NULL, 'n'},
        {"kind", required_argument, NULL, 'k'},
        {"client-id", required_argument, NULL, 'c'},
        {"scope", required_argument, NULL, 'S'},
        {"credentials", required_argument, NULL, 'f'},
        {"qr-png", required_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct tv_opts o = {.server = qrl_cli_env("QRLOGIN_SERVER", NULL),
                        .client_id = DEFAULT_CLIENT_ID};
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.server = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 'k':
            o.kind = optarg;
            break;
        case 'c':
            o.client_id = optarg;
            break;
        case 'S':
            o.scope = optarg;
            break;
        case 'f':
            o.credentials = optarg;
            break;
        case 'q':
            o.qr_png = optarg;
            break;
        case 'h':
            tv_usage(stdout);
            return 0;
        default:
            tv_usage(stderr);
            return 2;
        }
    }
    if (sodium_init() < 0)
        return 1;
    if (optind == argc)
        return cmd_login(&o);
    if (argc - optind == 1 && strcmp(argv[optind], "whoami") == 0)
        return cmd_whoami(&o);
    if (argc - optind == 1 && strcmp(argv[optind], "logout") == 0)
        return cmd_logout(&o);
    tv_usage(stderr);
    return 2;
}
