/* SPDX-License-Identifier: MIT */
/*
 * qrlogin phone: a phone in a terminal. It signs in with a password, keeps an Ed25519 device
 * key encrypted under an app PIN (Argon2id + XSalsa20-Poly1305 secretbox), and approves login
 * requests with a signature over the request, the decision and the server's nonce.
 *
 * State lives in one JSON file readable only by the user (--config, $QRLOGIN_PHONE_CONFIG, or
 * $XDG_CONFIG_HOME/qrlogin/phone.json): server URL, session token, device id, public key and
 * the encrypted private key. The PIN and the private key exist in memory only while signing.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "qrlogin/limits.h"
#include "qrlogin/protocol.h"

#define MIN_PIN 4
#define MAX_PIN 64

struct phone_opts {
    const char *server, *config, *name, *image;
    bool password_stdin, wait;
};

static void phone_usage(FILE *f)
{
    fputs("usage: qrlogin phone login --server URL [--name NAME] [--password-stdin] USER\n"
          "       qrlogin phone approve (URL | USER-CODE | --image FILE.png)\n"
          "       qrlogin phone devices\n"
          "       qrlogin phone revoke DEVICE-ID\n"
          "       qrlogin phone notifications [--wait]\n"
          "       qrlogin phone revoke-new NOTIFICATION-ID\n"
          "       qrlogin phone dismiss NOTIFICATION-ID\n"
          "  --config FILE     state file (QRLOGIN_PHONE_CONFIG; default\n"
          "                    $XDG_CONFIG_HOME/qrlogin/phone.json)\n"
          "  --server URL      the qrlogin server (login only)\n"
          "  --name NAME       this phone's device name (default: \"qrlogin phone on HOST\")\n"
          "  --password-stdin  login: read the password from the first line of standard\n"
          "                    input, even on a terminal\n"
          "  --image FILE      approve: decode the QR code from a PNG image\n"
          "  --wait            notifications: when there is none, wait until one arrives\n"
          "Prompts read from the terminal without echo or, when standard input is not a\n"
          "terminal, one line each from standard input, in this order:\n"
          "  login    the password, then the new app PIN (4-64 characters) twice\n"
          "  approve  the answer (a or d), then the app PIN when approving\n"
          "For example: printf '%s\\n' \"$PW\" 1234 1234 | qrlogin phone login --server URL USER\n"
          "Exit status: 0 done (approved), 3 declined, 1 failure, 2 usage error, 130 Ctrl-C.\n",
          f);
}

static void config_path(const struct phone_opts *o, char *out, size_t len)
{
    qrl_cli_state_path(o->config, "QRLOGIN_PHONE_CONFIG", "phone.json", out, len);
}

static json_t *config_load(const struct phone_opts *o)
{
    char path[4096];
    json_error_t je;
    json_t *c;

    config_path(o, path, sizeof path);
    c = json_load_file(path, 0, &je);
    if (c == NULL)
        qrl_cli_err("not signed in (no readable %s); run 'qrlogin phone login' first", path);
    return c;
}

static const char *cfg_str(json_t *c, const char *k)
{
    json_t *v = json_object_get(c, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Prints untrusted text from the server with control characters neutralised, so a device
 * name cannot move the cursor or rewrite what the user sees. */
static void print_safe(const char *s)
{
    for (; *s != '\0'; s++)
        fputc(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s, stderr);
}

static bool b64(const unsigned char *bin, size_t n, char *out, size_t len)
{
    return sodium_bin2base64(out, len, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != NULL;
}

static bool unb64(const char *s, unsigned char *bin, size_t n)
{
    size_t got = 0;
    return sodium_base642bin(bin, n, s, strlen(s), NULL, &got, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
           got == n;
}

/* Derives the key-encryption key from the PIN. */
static bool pin_key(const char *pin, const unsigned char *salt, unsigned long long ops, size_t mem,
                    unsigned char key[crypto_secretbox_KEYBYTES])
{
    return crypto_pwhash(key, crypto_secretbox_KEYBYTES, pin, strlen(pin), salt, ops, mem,
                         crypto_pwhash_ALG_ARGON2ID13) == 0;
}

/* Generates the device key, encrypts it under a new PIN and stores it in `cfg`. */
static bool make_device_key(json_t *cfg, char *pk_b64, size_t pklen)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    unsigned char salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
    unsigned char key[crypto_secretbox_KEYBYTES], box[crypto_secretbox_MACBYTES + sizeof sk];
    char pin[MAX_PIN + 2], again[MAX_PIN + 2], tmp[256];
    unsigned long long ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    size_t mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    bool ok = false;

    if (!qrl_cli_read_password("Choose an app PIN (4 or more characters): ", pin, sizeof pin) ||
        strlen(pin) < MIN_PIN) {
        qrl_cli_err("the PIN must have %d to %d characters", MIN_PIN, MAX_PIN);
        goto out;
    }
    if (!qrl_cli_read_password("Repeat the PIN: ", again, sizeof again) || strcmp(pin, again)) {
        qrl_cli_err("the PINs do not match");
        goto out;
    }
    crypto_sign_keypair(pk, sk);
    randombytes_buf(salt, sizeof salt);
    randombytes_buf(nonce, sizeof nonce);
    if (!pin_key(pin, salt, ops, mem, key)) {
        qrl_cli_err("out of memory deriving the PIN key");
        goto out;
    }
    crypto_secretbox_easy(box, sk, sizeof sk, nonce, key);
    b64(pk, sizeof pk, pk_b64, pklen);
    json_object_set_new(cfg, "public_key", json_string(pk_b64));
    b64(salt, sizeof salt, tmp, sizeof tmp);
    json_object_set_new(cfg, "key_salt", json_string(tmp));
    b64(nonce, sizeof nonce, tmp, sizeof tmp);
    json_object_set_new(cfg, "key_nonce", json_string(tmp));
    b64(box, sizeof box, tmp, sizeof tmp);
    json_object_set_new(cfg, "key_box", json_string(tmp));
    json_object_set_new(cfg, "key_opslimit", json_integer((json_int_t)ops));
    json_object_set_new(cfg, "key_memlimit", json_integer((json_int_t)mem));
    ok = true;
out:
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(key, sizeof key);
    sodium_memzero(pin, sizeof pin);
    sodium_memzero(again, sizeof again);
    return ok;
}

/* Asks for the PIN and decrypts the device key into sk. */
static bool unlock_key(json_t *cfg, unsigned char sk[crypto_sign_SECRETKEYBYTES])
{
    unsigned char salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
    unsigned char key[crypto_secretbox_KEYBYTES];
    unsigned char box[crypto_secretbox_MACBYTES + crypto_sign_SECRETKEYBYTES];
    json_int_t ops = json_integer_value(json_object_get(cfg, "key_opslimit"));
    json_int_t mem = json_integer_value(json_object_get(cfg, "key_memlimit"));
    char pin[MAX_PIN + 2];
    bool ok = false;

    if (!unb64(cfg_str(cfg, "key_salt"), salt, sizeof salt) ||
        !unb64(cfg_str(cfg, "key_nonce"), nonce, sizeof nonce) ||
        !unb64(cfg_str(cfg, "key_box"), box, sizeof box) || ops <= 0 || mem <= 0) {
        qrl_cli_err("the device key in the state file is damaged; sign in again");
        return false;
    }
    if (!qrl_cli_read_password("App PIN: ", pin, sizeof pin)) {
        qrl_cli_err("no PIN given");
        return false;
    }
    if (pin_key(pin, salt, (unsigned long long)ops, (size_t)mem, key) &&
        crypto_secretbox_open_easy(sk, box, sizeof box, nonce, key) == 0)
        ok = true;
    else
        qrl_cli_err("wrong PIN");
    sodium_memzero(pin, sizeof pin);
    sodium_memzero(key, sizeof key);
    return ok;
}

static int cmd_login(const struct phone_opts *o, const char *user)
{
    char path[4096], url[1024], pw[QRL_MAX_PASSWORD + 2], pk[64], name[QRL_MAX_DEVICE_NAME + 1];
    char host[64] = "terminal", err[256];
    qrl_cli_resp r = {0};
    json_t *cfg = NULL, *req;
    char *body = NULL, *text = NULL;
    int rc = 1;

    if (o->server == NULL) {
        qrl_cli_err("phone login needs --server URL");
        return 2;
    }
    gethostname(host, sizeof host - 1);
    snprintf(name, sizeof name, "%s", o->name != NULL ? o->name : "");
    if (o->name == NULL)
        snprintf(name, sizeof name, "qrlogin phone on %.30s", host);
    if (!qrl_cli_read_password(o->password_stdin ? NULL : "Password: ", pw, sizeof pw) ||
        pw[0] == '\0') {
        qrl_cli_err("no password given");
        return 2;
    }
    snprintf(url, sizeof url, "%s/v1/sessions", o->server);
    req = json_pack("{s:s, s:s, s:s, s:s}", "username", user, "password", pw, "device_name", name,
                    "device_kind", "phone");
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL || qrl_cli_http("POST", url, NULL, body, &r) != 0 || r.status != 201) {
        qrl_cli_resp_report("sign-in failed", &r);
        goto out;
    }
    cfg = json_pack("{s:s, s:s, s:s, s:O}", "server", o->server, "username", user, "session_token",
                    qrl_cli_resp_str(&r, "session_token"), "device_id",
                    json_object_get(r.json, "device_id"));
    qrl_cli_resp_free(&r);
    if (cfg == NULL || !make_device_key(cfg, pk, sizeof pk))
        goto out;
    /* Register the public key; the password proves it is the account holder adding it. */
    snprintf(url, sizeof url, "%s/v1/device-key", o->server);
    sodium_memzero(body, strlen(body));
    free(body);
    req = json_pack("{s:s, s:s}", "public_key", pk, "password", pw);
    body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    if (body == NULL || qrl_cli_http("PUT", url, cfg_str(cfg, "session_token"), body, &r) != 0 ||
        r.status != 204) {
        qrl_cli_resp_report("registering the device key failed", &r);
        goto out;
    }
    config_path(o, path, sizeof path);
    text = json_dumps(cfg, JSON_INDENT(2));
    if (text == NULL || !qrl_cli_write_private(path, text, err, sizeof err)) {
        qrl_cli_err("%s", text == NULL ? "out of memory" : err);
        goto out;
    }
    fprintf(stderr, "Signed in as %s; device key registered. State saved in %s\n", user, path);
    rc = 0;
out:
    qrl_cli_resp_free(&r);
    sodium_memzero(pw, sizeof pw);
    if (body != NULL)
        sodium_memzero(body, strlen(body));
    free(body);
    if (text != NULL)
        sodium_memzero(text, strlen(text));
    free(text);
    json_decref(cfg);
    return rc;
}

/* What the scanned QR code says of the screen's key (qrlogin/protocol.h): the short form of its
 * thumbprint ("k" in the link), none, or something that is no short form. */
struct key_hint {
    qrl_err rc; /* QRL_OK (hint), QRL_ERR_NOT_FOUND (none), QRL_ERR_INVALID */
    char hint[QRL_KEY_HINT_BUF];
};

/* Turns the argument of approve into the code the API takes: the scan secret from a QR URL's
 * fragment, or a user code as typed; and into what the QR code says of the screen's key.
 * Returns 0, or the exit status: 2 when the argument is not a code (a usage error), 1 when the
 * image cannot be read or holds something else. */
static int code_from(const struct phone_opts *o, const char *arg, char *code, size_t len,
                     struct key_hint *kh)
{
    char text[1024], err[256];
    int bad = 2;

    if (o->image != NULL) {
        if (!qrl_cli_qr_decode_png(o->image, text, sizeof text, err, sizeof err)) {
            qrl_cli_err("%s", err);
            return 1;
        }
        arg = text;
        bad = 1;
    }
    if (arg == NULL)
        return 2;
    kh->rc = qrl_login_key_hint_parse(arg, kh->hint);
    switch (qrl_login_code_parse(arg, code, len)) {
    case QRL_OK:
        return 0;
    case QRL_ERR_NOT_FOUND:
        qrl_cli_err("that URL is not a qrlogin QR code (no #qrl_ss_ part)");
        return bad;
    default:
        qrl_cli_err("not a login code: expected a QR URL, a qrl_ss_ secret or a user code");
        return bad;
    }
}

/* The name of a country member of the view ({"code", "name"}), or NULL when it is null, absent
 * (a server without a country database) or not what the API says. */
static const char *country_name(json_t *view, const char *key)
{
    return json_string_value(json_object_get(json_object_get(view, key), "name"));
}

/* Where the request comes from and where this phone is, when the server knows (--geoip); a
 * warning that cannot be missed when those are two countries. */
static void show_countries(json_t *j)
{
    const char *from = country_name(j, "request_country"), *here = country_name(j, "phone_country");

    if (from == NULL)
        return;
    fputs("  This request comes from ", stderr);
    print_safe(from);
    if (here != NULL) {
        fputs(", you are in ", stderr);
        print_safe(here);
    }
    fputs(".\n", stderr);
    if (!json_is_false(json_object_get(j, "same_country")) || here == NULL)
        return;
    fputs("\n  !!! WARNING: this request comes from another country (", stderr);
    print_safe(from);
    fputs(") than this phone (", stderr);
    print_safe(here);
    fputs(").\n  !!! Someone may be trying to sign in to your account with a code they sent "
          "you.\n  !!! If you did not start this sign-in yourself, on a screen in front of you, "
          "answer d.\n",
          stderr);
}

/* How the key the server names for the request (dpop_jkt) stands to the QR code's short form:
 * KEY_NONE neither names one, KEY_NAMED the request is bound to a key and there is nothing to
 * compare it with (a typed code, a link without "k"), KEY_MATCH the QR code names that key,
 * KEY_MISMATCH it names another one, or a key while the request has none: the code was not made
 * by the screen that asked, and this phone does not approve. */
enum key_check { KEY_NONE, KEY_NAMED, KEY_MATCH, KEY_MISMATCH };

static enum key_check key_check(const qrl_cli_resp *r, const struct key_hint *kh)
{
    const char *jkt = qrl_cli_resp_str(r, "dpop_jkt");
    bool bound = jkt != NULL && qrl_dpop_jkt_valid(jkt);

    if (kh->rc == QRL_ERR_NOT_FOUND)
        return bound ? KEY_NAMED : KEY_NONE;
    return kh->rc == QRL_OK && bound && qrl_key_hint_matches(kh->hint, jkt) ? KEY_MATCH
                                                                            : KEY_MISMATCH;
}

/* The key line of the request, or the warning that replaces the approval. */
static void show_key(const qrl_cli_resp *r, enum key_check kc)
{
    char fp[QRL_KEY_FINGERPRINT_BUF] = "";
    const char *kind = qrl_cli_resp_str(r, "device_kind");

    (void)qrl_key_fingerprint(qrl_cli_resp_str(r, "dpop_jkt"), fp);
    if (kc == KEY_MATCH || kc == KEY_NAMED) {
        fputs("  The sign-in goes only to this ", stderr);
        fputs(kind != NULL && strcmp(kind, "tv") == 0 ? "TV" : "screen", stderr);
        fprintf(stderr, "'s key %s%s\n", fp + 4,
                kc == KEY_MATCH ? " - it matches the code you scanned." : ".");
    } else if (kc == KEY_MISMATCH) {
        fputs("\n  !!! DO NOT APPROVE: this QR code was not made by the screen that asked.\n"
              "  !!! The key it names is not the key this sign-in is bound to",
              stderr);
        if (fp[0] != '\0')
            fprintf(stderr, " (%s)", fp + 4);
        fputs(".\n  !!! Someone may be trying to get into your account. Answer d to decline it,\n"
              "  !!! then start again on the screen in front of you.\n",
              stderr);
    }
}

static void show_request(const qrl_cli_resp *r, enum key_check kc)
{
    json_t *j = r->json;
    long long age = json_integer_value(json_object_get(j, "age_seconds"));
    long long left = json_integer_value(json_object_get(j, "expires_in"));

    fputs("\nSign in on \"", stderr);
    print_safe(qrl_cli_resp_str(r, "device_name") ? qrl_cli_resp_str(r, "device_name") : "?");
    fputs("\" (", stderr);
    print_safe(qrl_cli_resp_str(r, "device_kind") ? qrl_cli_resp_str(r, "device_kind") : "?");
    fputs(")?\n  requested from ", stderr);
    print_safe(qrl_cli_resp_str(r, "address") ? qrl_cli_resp_str(r, "address") : "?");
    fprintf(stderr, " (%s), %lld s ago; expires in %lld s\n",
            json_is_true(json_object_get(j, "same_network")) ? "your network" : "NOT your network",
            age, left);
    fputs("  app: ", stderr);
    print_safe(qrl_cli_resp_str(r, "client_id") ? qrl_cli_resp_str(r, "client_id") : "?");
    fputs("\n", stderr);
    show_countries(j);
    show_key(r, kc);
    if (kc == KEY_MISMATCH)
        return;
    fputs("\nThe screen shows a code. Check that it is ", stderr);
    print_safe(qrl_cli_resp_str(r, "user_code") ? qrl_cli_resp_str(r, "user_code") : "?");
    fputs(".\n", stderr);
}

/* Signs the decision with the device key (asks for the PIN), over the request as the server's
 * view describes it (qrlogin/protocol.h). */
static bool sign_decision(json_t *cfg, const qrl_cli_resp *view, qrl_decision decision,
                          char sig_b64[QRL_DECISION_SIG_B64_BUF])
{
    unsigned char sk[QRL_DECISION_SECKEY_BYTES];
    char msg[QRL_DECISION_MSG_BUF];
    qrl_decision_msg m = {
        .lr_id = (int64_t)json_integer_value(json_object_get(view->json, "id")),
        .decision = decision,
        .nonce = qrl_cli_resp_str(view, "nonce"),
        .user_code = qrl_cli_resp_str(view, "user_code"),
    };
    qrl_err rc;

    /* Check the view before asking for the PIN: an answer we cannot sign is not worth it. */
    if (qrl_decision_bytes(&m, msg, sizeof msg) == 0) {
        qrl_cli_err("the server's answer is incomplete");
        return false;
    }
    if (!unlock_key(cfg, sk))
        return false;
    rc = qrl_decision_sign(&m, sk, sizeof sk, sig_b64);
    sodium_memzero(sk, sizeof sk);
    if (rc != QRL_OK)
        qrl_cli_err("cannot sign the decision with the device key in the state file");
    return rc == QRL_OK;
}

static int cmd_approve(const struct phone_opts *o, const char *arg)
{
    char code[QRL_MAX_TOKEN + 1], url[1024], sig[QRL_DECISION_SIG_B64_BUF];
    qrl_cli_resp view = {0}, r = {0};
    json_t *cfg, *req = NULL;
    const char *server, *tok;
    struct key_hint kh = {0};
    enum key_check kc;
    char *body = NULL;
    int rc, key;

    if ((rc = code_from(o, arg, code, sizeof code, &kh)) != 0)
        return rc;
    if ((cfg = config_load(o)) == NULL)
        return 1;
    rc = 1;
    server = cfg_str(cfg, "server");
    tok = cfg_str(cfg, "session_token");
    snprintf(url, sizeof url, "%s/v1/login-requests/%s", server, code);
    if (qrl_cli_http("GET", url, tok, NULL, &view) != 0 || view.status != 200) {
        qrl_cli_resp_report("cannot open the login request", &view);
        goto out;
    }
    kc = key_check(&view, &kh);
    show_request(&view, kc);
    key = qrl_cli_read_key(kc == KEY_MISMATCH ? "[d] decline   [q] leave it: "
                                              : "[a] approve   [d] decline: ");
    if (key == 'd' || key == 'D') {
        snprintf(url, sizeof url, "%s/v1/login-requests/%s/deny", server, code);
        if (qrl_cli_http("POST", url, tok, "{}", &r) != 0 || r.status != 200) {
            qrl_cli_resp_report("declining failed", &r);
            goto out;
        }
        fputs("Declined.\n", stderr);
        rc = 3;
        goto out;
    }
    if (kc == KEY_MISMATCH) {
        qrl_cli_err("not approved: the QR code names another key than this sign-in goes to");
        goto out;
    }
    if (key != 'a' && key != 'A') {
        qrl_cli_err("nothing was decided (answer a or d)");
        goto out;
    }
    if (!sign_decision(cfg, &view, QRL_DECISION_APPROVE, sig))
        goto out;
    req = json_pack("{s:s, s:s}", "user_code", qrl_cli_resp_str(&view, "user_code"), "signature",
                    sig);
    body = json_dumps(req, JSON_COMPACT);
    snprintf(url, sizeof url, "%s/v1/login-requests/%s/approve", server, code);
    if (body == NULL || qrl_cli_http("POST", url, tok, body, &r) != 0 || r.status != 200) {
        qrl_cli_resp_report("approving failed", &r);
        goto out;
    }
    fputs("Approved. The screen is signing in.\n", stderr);
    rc = 0;
out:
    sodium_memzero(code, sizeof code);
    free(body);
    json_decref(req);
    qrl_cli_resp_free(&view);
    qrl_cli_resp_free(&r);
    json_decref(cfg);
    return rc;
}

static int cmd_devices(const struct phone_opts *o)
{
    char url[1024];
    qrl_cli_resp r = {0};
    json_t *cfg = config_load(o), *arr, *d;
    size_t i;
    int rc = 1;

    if (cfg == NULL)
        return 1;
    snprintf(url, sizeof url, "%s/v1/devices", cfg_str(cfg, "server"));
    if (qrl_cli_http("GET", url, cfg_str(cfg, "session_token"), NULL, &r) != 0 || r.status != 200) {
        qrl_cli_resp_report("cannot list devices", &r);
        goto out;
    }
    arr = json_object_get(r.json, "devices");
    printf("%-6s %-8s %-20s %-24s %s\n", "ID", "KIND", "LAST SEEN (UTC)", "FROM", "NAME");
    json_array_foreach(arr, i, d)
    {
        char seen[32];
        time_t t = (time_t)json_integer_value(json_object_get(d, "last_seen_at"));
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(seen, sizeof seen, "%Y-%m-%d %H:%M", &tm);
        printf("%-6lld %-8s %-20s %-24s ", (long long)json_integer_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "kind")), seen,
               json_string_value(json_object_get(d, "address")));
        fflush(stdout);
        for (const char *p = json_string_value(json_object_get(d, "name")); p && *p; p++)
            putchar(((unsigned char)*p < 0x20 || *p == 0x7f) ? '?' : *p);
        printf("%s\n", json_is_true(json_object_get(d, "current")) ? "  (this phone)" : "");
    }
    rc = 0;
out:
    qrl_cli_resp_free(&r);
    json_decref(cfg);
    return rc;
}

static int cmd_revoke(const struct phone_opts *o, const char *id)
{
    char url[1024];
    qrl_cli_resp r = {0};
    json_t *cfg;
    long long v;
    int rc = 1;

    if (!qrl_cli_parse_seconds(id, 1, INT64_MAX, &v)) {
        qrl_cli_err("revoke takes a device id (a number, see 'qrlogin phone devices')");
        return 2;
    }
    if ((cfg = config_load(o)) == NULL)
        return 1;
    snprintf(url, sizeof url, "%s/v1/devices/%lld", cfg_str(cfg, "server"), v);
    if (qrl_cli_http("DELETE", url, cfg_str(cfg, "session_token"), NULL, &r) != 0 ||
        r.status != 204) {
        qrl_cli_resp_report("revoking failed", &r);
        goto out;
    }
    printf("Device %lld revoked.\n", v);
    rc = 0;
out:
    qrl_cli_resp_free(&r);
    json_decref(cfg);
    return rc;
}

/* Untrusted text from the server on standard output, control characters neutralised. */
static void put_safe(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        putchar(((unsigned char)*s < 0x20 || *s == 0x7f) ? '?' : *s);
}

/* "45 s", "3 min", "2 h", "4 days": how long ago, or how long still. */
static void span(long long s, char *out, size_t len)
{
    if (s < 90)
        snprintf(out, len, "%lld s", s < 0 ? 0 : s);
    else if (s < 90 * 60)
        snprintf(out, len, "%lld min", (s + 30) / 60);
    else if (s < 48 * 3600)
        snprintf(out, len, "%lld h", (s + 1800) / 3600);
    else
        snprintf(out, len, "%lld days", (s + 43200) / 86400);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : "";
}

/* Why a request was stopped, in words (the reasons of a request_blocked notification). */
static const char *blocked_why(const char *reason)
{
    if (strcmp(reason, "many_networks") == 0)
        return "the code was opened from many places";
    if (strcmp(reason, "denied_network") == 0)
        return "it came from a network that may not sign in here";
    if (strcmp(reason, "many_accounts") == 0)
        return "the screen that made it had signed in to many accounts";
    return "it matched a pattern of phishing kits";
}

/* A sign-in request the server stopped as phishing while a phone of the account was about to
 * approve it: which screen, from where, when, why, and what to do. Nothing to remove. */
static void show_blocked(json_t *n)
{
    json_t *scr = json_object_get(n, "screen"), *d = json_object_get(n, "device");
    json_t *country = json_object_get(scr, "country");
    long long id = (long long)json_integer_value(json_object_get(n, "id"));
    char ago[32];

    span((long long)json_integer_value(json_object_get(n, "age_seconds")), ago, sizeof ago);
    fputs("Sign-in request stopped: \"", stdout);
    put_safe(jstr(scr, "name"));
    fputs("\" (", stdout);
    put_safe(jstr(scr, "kind"));
    if (jstr(scr, "platform")[0] != '\0') {
        fputs(", ", stdout);
        put_safe(jstr(scr, "platform"));
    }
    fputs("), from ", stdout);
    if (jstr(country, "name")[0] != '\0') {
        put_safe(jstr(country, "name"));
        fputs(" (", stdout);
        put_safe(jstr(scr, "address"));
        fputs(")", stdout);
    } else {
        put_safe(jstr(scr, "address"));
    }
    printf(", %s ago.\n", ago);
    if (json_is_true(json_object_get(d, "current"))) {
        fputs("  This phone was about to approve it.", stdout);
    } else {
        fputs("  \"", stdout);
        put_safe(jstr(d, "name"));
        fputs("\" was about to approve it.", stdout);
    }
    printf(" It looked like a phishing attempt: %s.\n", blocked_why(jstr(n, "reason")));
    puts("  If someone asked you to scan a code, do not. Nothing was linked to your account.");
    printf("  Seen it: qrlogin phone dismiss %lld\n", id);
}

/* One notification, and what the user can do about it. */
static void show_notification(json_t *n)
{
    json_t *d = json_object_get(n, "device");
    long long id = (long long)json_integer_value(json_object_get(n, "id"));
    long long left = (long long)json_integer_value(json_object_get(n, "revoke_in"));
    char ago[32], still[32];

    if (strcmp(jstr(n, "kind"), "request_blocked") == 0) {
        show_blocked(n);
        return;
    }
    if (jstr(n, "kind")[0] != '\0' && strcmp(jstr(n, "kind"), "device_linked") != 0) {
        /* A kind of a newer server. */
        fputs("A notification this qrlogin cannot show (", stdout);
        put_safe(jstr(n, "kind"));
        printf("); a newer qrlogin can.\n  Seen it: qrlogin phone dismiss %lld\n", id);
        return;
    }
    span((long long)json_integer_value(json_object_get(n, "age_seconds")), ago, sizeof ago);
    span(left, still, sizeof still);
    fputs("New device linked: \"", stdout);
    put_safe(jstr(d, "name"));
    fputs("\" (", stdout);
    put_safe(jstr(d, "kind"));
    if (jstr(d, "platform")[0] != '\0') {
        fputs(", ", stdout);
        put_safe(jstr(d, "platform"));
    }
    fputs("), from ", stdout);
    put_safe(jstr(d, "address"));
    printf(", %s ago.\n", ago);
    if (left > 0)
        printf("  Not you? qrlogin phone revoke-new %lld   (works for %s more)\n", id, still);
    else
        printf("  Not you? qrlogin phone revoke %lld   (the device; see qrlogin phone devices)\n",
               (long long)json_integer_value(json_object_get(d, "id")));
    printf("  Seen it: qrlogin phone dismiss %lld\n", id);
}

/* Longest hold asked of the server per request (it caps Prefer: wait at 60 s). */
#define NOTIFY_WAIT_S 60

static int cmd_notifications(const struct phone_opts *o)
{
    char url[1024];
    qrl_cli_resp r = {0};
    json_t *cfg = config_load(o), *arr = NULL, *n;
    size_t i;
    int rc = 1;

    if (cfg == NULL)
        return 1;
    snprintf(url, sizeof url, "%s/v1/notifications", cfg_str(cfg, "server"));
    /* With --wait, held requests one after the other until one brings something. */
    for (;;) {
        if (qrl_cli_http_wait("GET", url, cfg_str(cfg, "session_token"), NULL,
                              o->wait ? NOTIFY_WAIT_S : 0, &r) != 0 ||
            r.status != 200 || !json_is_array(json_object_get(r.json, "notifications"))) {
            qrl_cli_resp_report("cannot read the notifications", &r);
            goto out;
        }
        arr = json_object_get(r.json, "notifications");
        if (!o->wait || json_array_size(arr) > 0)
            break;
        qrl_cli_resp_free(&r);
    }
    json_array_foreach(arr, i, n)
    {
        show_notification(n);
    }
    if (json_array_size(arr) == 0)
        puts("Nothing new: no device linked, no sign-in request stopped.");
    rc = 0;
out:
    qrl_cli_resp_free(&r);
    json_decref(cfg);
    return rc;
}

/* POST /v1/notifications/ID/VERB (ack or revoke); 0 when the server answered 204. */
static int notification_post(const struct phone_opts *o, const char *id, const char *verb,
                             const char *failed)
{
    char url[1024];
    qrl_cli_resp r = {0};
    json_t *cfg;
    long long v;
    int rc = 1;

    if (!qrl_cli_parse_seconds(id, 1, INT64_MAX, &v)) {
        qrl_cli_err("%s takes a notification id (a number, see 'qrlogin phone notifications')",
                    strcmp(verb, "ack") == 0 ? "dismiss" : "revoke-new");
        return 2;
    }
    if ((cfg = config_load(o)) == NULL)
        return 1;
    snprintf(url, sizeof url, "%s/v1/notifications/%lld/%s", cfg_str(cfg, "server"), v, verb);
    if (qrl_cli_http("POST", url, cfg_str(cfg, "session_token"), "{}", &r) != 0 || r.status != 204)
        qrl_cli_resp_report(failed, &r);
    else
        rc = 0;
    qrl_cli_resp_free(&r);
    json_decref(cfg);
    return rc;
}

int qrl_cli_phone(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, 's'},
        {"config", required_argument, NULL, 'c'},
        {"name", required_argument, NULL, 'n'},
        {"image", required_argument, NULL, 'i'},
        {"password-stdin", no_argument, NULL, 'p'},
        {"wait", no_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct phone_opts o = {0};
    const char *verb;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.server = optarg;
            break;
        case 'c':
            o.config = optarg;
            break;
        case 'n':
            o.name = optarg;
            break;
        case 'i':
            o.image = optarg;
            break;
        case 'p':
            o.password_stdin = true;
            break;
        case 'w':
            o.wait = true;
            break;
        case 'h':
            phone_usage(stdout);
            return 0;
        default:
            phone_usage(stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        phone_usage(stderr);
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    verb = argv[optind];
    if (strcmp(verb, "login") == 0 && argc - optind == 2)
        return cmd_login(&o, argv[optind + 1]);
    if (strcmp(verb, "approve") == 0 && argc - optind == (o.image != NULL ? 1 : 2))
        return cmd_approve(&o, o.image != NULL ? NULL : argv[optind + 1]);
    if (strcmp(verb, "devices") == 0 && argc - optind == 1)
        return cmd_devices(&o);
    if (strcmp(verb, "revoke") == 0 && argc - optind == 2)
        return cmd_revoke(&o, argv[optind + 1]);
    if (strcmp(verb, "notifications") == 0 && argc - optind == 1)
        return cmd_notifications(&o);
    if (strcmp(verb, "revoke-new") == 0 && argc - optind == 2) {
        int rc = notification_post(&o, argv[optind + 1], "revoke", "removing the device failed");
        if (rc == 0)
            puts("Removed: the new device is signed out.");
        return rc;
    }
    if (strcmp(verb, "dismiss") == 0 && argc - optind == 2)
        return notification_post(&o, argv[optind + 1], "ack", "dismissing failed");
    phone_usage(stderr);
    return 2;
}
