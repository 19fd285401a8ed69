/* SPDX-License-Identifier: MIT */
/*
 * Operating the server: /healthz, /readyz (and readiness while another process holds the
 * database's write lock), /metrics (its format, the counts of a known flow and of a refused
 * request, who may read it), the JSON-lines log (access lines and audit events with the
 * request ids the answers carried, no secret anywhere, reopened on SIGHUP), client addresses
 * behind a trusted proxy, and the options' usage errors.
 *
 * The options reach the harness's `qrlogin serve` through their environment variables, which
 * the child inherits. Requests whose X-Request-Id or source address matter go through
 * ops_http() below (libcurl; the source address is chosen with CURLOPT_INTERFACE, 127.0.0.2
 * being as local as 127.0.0.1); the rest through the harness.
 */
#include "harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const it_account alice[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME}, {NULL, NULL, NULL}};

/* --- a small HTTP client that keeps X-Request-Id ------------------------------------------ */

typedef struct ops_resp {
    long status;
    char *body;
    size_t len;
    json_t *json;
    char rid[64];         /* X-Request-Id */
    char retry_after[16]; /* Retry-After */
    char content_type[128];
} ops_resp;

typedef struct ops_req {
    const char *method; /* NULL: GET, or POST with a body */
    const char *path;
    const char *body;
    const char *content_type;
    const char *bearer;
    const char *header; /* one raw "Name: value", or NULL */
    const char *from;   /* source address, or NULL */
} ops_req;

static size_t ops_body(char *p, size_t size, size_t n, void *ud)
{
    ops_resp *r = ud;
    char *nb = realloc(r->body, r->len + size * n + 1);

    if (nb == NULL)
        return 0;
    memcpy(nb + r->len, p, size * n);
    r->body = nb;
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static void keep(char *dst, size_t cap, const char *line, size_t n, size_t skip)
{
    const char *v = line + skip;
    size_t vlen = n - skip;

    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
        vlen--;
    snprintf(dst, cap, "%.*s", (int)vlen, v);
}

static size_t ops_header(char *p, size_t size, size_t n, void *ud)
{
    ops_resp *r = ud;

    n *= size;
    if (n > 13 && strncasecmp(p, "X-Request-Id:", 13) == 0)
        keep(r->rid, sizeof r->rid, p, n, 13);
    if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
        keep(r->retry_after, sizeof r->retry_after, p, n, 12);
    if (n > 13 && strncasecmp(p, "Content-Type:", 13) == 0)
        keep(r->content_type, sizeof r->content_type, p, n, 13);
    return n;
}

static ops_resp *ops_http(const it_server *s, const ops_req *q)
{
    ops_resp *r = calloc(1, sizeof *r);
    struct curl_slist *h = NULL;
    char url[512], auth[300], ct[160];
    CURL *c = curl_easy_init();

    assert_non_null(r);
    assert_non_null(c);
    snprintf(url, sizeof url, "%s%s", s->base, q->path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ops_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ops_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (q->from != NULL)
        curl_easy_setopt(c, CURLOPT_INTERFACE, q->from);
    if (q->body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, q->body);
        snprintf(ct, sizeof ct, "Content-Type: %s",
                 q->content_type != NULL ? q->content_type : "application/json");
        h = curl_slist_append(h, ct);
    }
    if (q->method != NULL)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, q->method);
    if (q->bearer != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", q->bearer);
        h = curl_slist_append(h, auth);
    }
    if (q->header != NULL)
        h = curl_slist_append(h, q->header);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (curl_easy_perform(c) != CURLE_OK)
        fail_msg("request to %s failed", q->path);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r->body == NULL)
        r->body = calloc(1, 1);
    r->json = json_loads(r->body, 0, NULL);
    return r;
}

static void ops_free(ops_resp *r)
{
    if (r == NULL)
        return;
    json_decref(r->json);
    free(r->body);
    free(r);
}

static const char *jstr(const ops_resp *r, const char *key)
{
    return json_string_value(json_object_get(r->json, key));
}

/* A request id as the server makes them: 16 hex digits. */
static void expect_rid(const ops_resp *r)
{
    if (strlen(r->rid) != 16 || strspn(r->rid, "0123456789abcdef") != 16)
        fail_msg("X-Request-Id '%s' is not 16 hex digits", r->rid);
}

/* --- servers with options ----------------------------------------------------------------- */

/* A server with alice, the access log on and the environment variables of `env` (name, value,
 * ..., NULL) set for its start only. */
static it_server *start_with(const char *const *env)
{
    it_server *s = it_server_new_with_accounts(alice);

    s->access_log = 1;
    for (size_t i = 0; env != NULL && env[i] != NULL; i += 2)
        setenv(env[i], env[i + 1], 1);
    it_server_start(s);
    for (size_t i = 0; env != NULL && env[i] != NULL; i += 2)
        unsetenv(env[i]);
    return s;
}

/* A fresh path for a log file (the server's own directory is made only with the server). */
static void log_path(char *out, size_t len)
{
    static int n;

    snprintf(out, len, "/tmp/qrl-ops-%d-%d.jsonl", (int)getpid(), ++n);
    unlink(out);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = malloc(1 << 22);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 22) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The log's lines as JSON objects, in order; every line must parse as one object. */
static json_t *log_lines(const char *path)
{
    char *text = slurp(path);
    json_t *all = json_array();

    for (char *p = text; *p != '\0';) {
        char *nl = strchr(p, '\n');
        json_error_t err;
        json_t *o;

        if (nl == NULL)
            fail_msg("the log ends without a newline: %s", p);
        o = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &err);
        if (o == NULL || !json_is_object(o))
            fail_msg("a log line is not a JSON object (%s): %.*s", err.text, (int)(nl - p), p);
        json_array_append_new(all, o);
        p = nl + 1;
    }
    free(text);
    return all;
}

static const char *ostr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* The first line of `type` (and, when not NULL, `event`) with request id `rid`. */
static json_t *find_line(json_t *lines, const char *type, const char *event, const char *rid)
{
    size_t i;
    json_t *o;

    json_array_foreach(lines, i, o)
    {
        if (strcmp(ostr(o, "type") ? ostr(o, "type") : "", type) == 0 &&
            (event == NULL || (ostr(o, "event") && strcmp(ostr(o, "event"), event) == 0)) &&
            (rid == NULL || (ostr(o, "request_id") && strcmp(ostr(o, "request_id"), rid) == 0)))
            return o;
    }
    return NULL;
}

/* --- /metrics ------------------------------------------------------------------------------ */

/* Checks every line of an exposition: blank, a comment, or `name{labels} value`. */
static void check_exposition(const char *text)
{
    size_t len = strlen(text);

    assert_true(len > 0 && text[len - 1] == '\n');
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        char line[1024], name[256], rest[512];
        size_t n = (size_t)(nl - p);
        double v;
        char *end;

        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (n == 0 || line[0] == '#')
            continue;
        size_t k = strcspn(line, "{ ");
        snprintf(name, sizeof name, "%.*s", (int)k, line);
        if (k == 0 ||
            strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789_:") != k ||
            (name[0] >= '0' && name[0] <= '9'))
            fail_msg("bad metric name in: %s", line);
        const char *after = line + k;
        if (*after == '{') {
            const char *close = strchr(after, '}');
            if (close == NULL)
                fail_msg("unclosed labels in: %s", line);
            snprintf(rest, sizeof rest, "%.*s", (int)(close - after - 1), after + 1);
            /* label="value" pairs */
            for (char *q = rest; *q != '\0';) {
                char *eq = strchr(q, '=');
                if (eq == NULL || eq[1] != '"')
                    fail_msg("bad labels in: %s", line);
                char *vend = strchr(eq + 2, '"');
                if (vend == NULL || (vend[1] != '\0' && vend[1] != ','))
                    fail_msg("bad label value in: %s", line);
                q = vend[1] == ',' ? vend + 2 : vend + 1;
            }
            after = close + 1;
        }
        if (*after != ' ')
            fail_msg("no value in: %s", line);
        v = strtod(after + 1, &end);
        (void)v;
        if (end == after + 1 || *end != '\0')
            fail_msg("bad value in: %s", line);
    }
}

/* The value of one series ("name" or "name{labels}"), 0 when it is not there (a counter that
 * has not counted yet is not written). */
static double series(const char *text, const char *s)
{
    size_t n = strlen(s);

    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, s, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return 0;
}

static char *scrape(const it_server *s, const char *from)
{
    ops_resp *r = ops_http(s, &(ops_req){.path = "/metrics", .from = from});
    char *text;

    if (r->status != 200)
        fail_msg("/metrics answered %ld: %s", r->status, r->body);
    assert_non_null(strstr(r->content_type, "text/plain; version=0.0.4"));
    check_exposition(r->body);
    text = strdup(r->body);
    ops_free(r);
    return text;
}

/* --- the tests ----------------------------------------------------------------------------- */

static void test_healthz_and_readyz(void **state)
{
    it_server *s = start_with(NULL);
    ops_resp *r;
    sqlite3 *db = NULL;
    double t0;

    (void)state;
    r = ops_http(s, &(ops_req){.path = "/healthz"});
    assert_int_equal(r->status, 200);
    assert_string_equal(jstr(r, "status"), "ok");
    expect_rid(r);
    ops_free(r);
    r = ops_http(s, &(ops_req){.path = "/readyz"});
    assert_int_equal(r->status, 200);
    assert_string_equal(jstr(r, "status"), "ready");
    ops_free(r);

    /* Another process holds the write lock: not ready (within the second a readiness answer
     * is kept), with Retry-After and the error shape; alive all the same. */
    assert_int_equal(sqlite3_open(s->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    t0 = it_now();
    for (;;) {
        r = ops_http(s, &(ops_req){.path = "/readyz"});
        if (r->status != 200 || it_now() - t0 > 5)
            break;
        ops_free(r);
        it_sleep_ms(100);
    }
    assert_int_equal(r->status, 503);
    assert_string_equal(jstr(r, "error"), "temporarily_unavailable");
    assert_non_null(jstr(r, "error_description"));
    assert_string_equal(r->retry_after, "1");
    ops_free(r);
    r = ops_http(s, &(ops_req){.path = "/healthz"});
    assert_int_equal(r->status, 200);
    ops_free(r);

    /* The lock goes: ready again. */
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    t0 = it_now();
    for (;;) {
        r = ops_http(s, &(ops_req){.path = "/readyz"});
        if (r->status == 200 || it_now() - t0 > 5)
            break;
        ops_free(r);
        it_sleep_ms(100);
    }
    assert_int_equal(r->status, 200);
    ops_free(r);
    it_server_stop(s);
    it_server_free(s);
}

/* One flow moves the login counters by one each; a refused lookup shows as a 429. */
static void test_metrics_count_a_flow(void **state)
{
    it_server *s = start_with(NULL);
    char *before, *after;
    it_devauth da;
    it_phone phone;
    it_resp *r;

    (void)state;
    before = scrape(s, NULL);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    it_device_authorization(s, IT_CLIENT_ID, "Metrics TV", "tv", NULL, &da);
    r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    /* A request is counted once its answer has been sent, which the client may see a moment
     * before the server's completion callback has run: look again until the last one shows. */
    after = scrape(s, NULL);
    for (int i = 0; i < 100 &&
                    series(after, "qrlogin_http_requests_total{route=\"token\",code=\"200\"}") < 1;
         i++) {
        free(after);
        it_sleep_ms(20);
        after = scrape(s, NULL);
    }

    static const char *const moved[] = {"created", "claimed", "approved", "redeemed"};
    for (size_t i = 0; i < 4; i++) {
        char name[96];
        snprintf(name, sizeof name, "qrlogin_login_requests_total{outcome=\"%s\"}", moved[i]);
        if (series(after, name) - series(before, name) != 1)
            fail_msg("%s moved by %g, not 1", name, series(after, name) - series(before, name));
    }
    assert_true(series(after, "qrlogin_login_requests_total{outcome=\"denied\"}") == 0);
    assert_true(series(after, "qrlogin_login_requests_total{outcome=\"expired\"}") == 0);
    assert_true(series(after, "qrlogin_http_requests_total{route=\"device_authorization\","
                              "code=\"200\"}") == 1);
    assert_true(series(after, "qrlogin_http_requests_total{route=\"token\",code=\"200\"}") == 1);
    assert_true(series(after, "qrlogin_http_requests_total{route=\"approve\",code=\"200\"}") == 1);
    assert_true(series(after, "qrlogin_http_requests_total{route=\"metrics\",code=\"200\"}") >=
                1); /* the earlier scrapes; a scrape is counted once it has ended */
    assert_true(series(after, "qrlogin_http_request_duration_seconds_count{route=\"approve\"}") ==
                1);
    assert_true(series(after, "qrlogin_held_requests") == 0);
    assert_non_null(strstr(after, "\nprocess_start_time_seconds "));
    /* The store's group commits: at least the flow's writes. */
    assert_true(series(after, "qrlogin_store_commit_duration_seconds_count") >= 3);
    assert_true(series(after, "qrlogin_store_batch_writes_sum") >= 3);
    assert_true(series(after, "qrlogin_rate_limited_total{route=\"login-request\"}") == 0);
    free(before);
    free(after);

    /* Unknown user codes until the lookup limit refuses one: exactly one 429 counted. */
    static const char alphabet[] = "BCDFGHJKLMNPQRSTVWXZ";
    int refused = 0;
    for (int i = 1; i <= 40 && !refused; i++) {
        char guess[16];
        snprintf(guess, sizeof guess, "BBBB-BB%c%c", alphabet[i / 20], alphabet[i % 20]);
        r = it_view(s, &phone, guess);
        refused = r->status == 429;
        if (!refused)
            it_expect(r, 404, "not_found");
        it_resp_free(r);
    }
    assert_true(refused);
    /* Counted when its answer has been sent: look again until it shows (see above). */
    after = scrape(s, NULL);
    for (int i = 0; i < 100 &&
                    series(after, "qrlogin_rate_limited_total{route=\"login-request\"}") < 1;
         i++) {
        free(after);
        it_sleep_ms(20);
        after = scrape(s, NULL);
    }
    assert_true(series(after, "qrlogin_rate_limited_total{route=\"login-request\"}") == 1);
    assert_true(series(after, "qrlogin_http_requests_total{route=\"login-request\","
                              "code=\"429\"}") == 1);
    assert_true(series(after, "qrlogin_http_requests_total{route=\"login-request\","
                              "code=\"404\"}") >= 1);
    free(after);
    it_server_stop(s);
    it_server_free(s);
}

/* /metrics answers only the addresses of --metrics-allow; others get the unknown path's 404. */
static void test_metrics_refused_elsewhere(void **state)
{
    static const char *const only_one[] = {"QRLOGIN_METRICS_ALLOW", "127.0.0.1/32", NULL};
    static const char *const nobody[] = {"QRLOGIN_METRICS_ALLOW", "none", NULL};
    it_server *s;
    ops_resp *r;

    (void)state;
    /* The default: this machine (127.0.0.0/8 and ::1). */
    s = start_with(NULL);
    free(scrape(s, "127.0.0.2"));
    it_server_stop(s);
    it_server_free(s);

    s = start_with(only_one);
    free(scrape(s, "127.0.0.1"));
    r = ops_http(s, &(ops_req){.path = "/metrics", .from = "127.0.0.2"});
    assert_int_equal(r->status, 404);
    assert_string_equal(jstr(r, "error"), "not_found");
    assert_null(strstr(r->body, "qrlogin_"));
    ops_free(r);
    it_server_stop(s);
    it_server_free(s);

    s = start_with(nobody);
    r = ops_http(s, &(ops_req){.path = "/metrics"});
    assert_int_equal(r->status, 404);
    ops_free(r);
    it_server_stop(s);
    it_server_free(s);
}

/* The events of a flow, each with the request id its answer carried; no secret in the log. */
static void test_log_has_the_flow(void **state)
{
    char path[320], body[512], *text;
    const char *rids[5];
    ops_resp *a, *sign, *view, *appr, *tok;
    it_server *s;
    json_t *lines, *o;

    (void)state;
    static const char *env[3] = {"QRLOGIN_LOG_FILE", NULL, NULL};
    log_path(path, sizeof path);
    env[1] = path;
    s = start_with(env);

    sign = ops_http(
        s, &(ops_req){.path = "/v1/sessions",
                      .body = "{\"username\":\"" IT_USER "\",\"password\":\"" IT_PASSWORD "\"}"});
    assert_int_equal(sign->status, 201);
    a = ops_http(s, &(ops_req){.path = "/oauth/device_authorization",
                               .body = "client_id=" IT_CLIENT_ID "&device_name=Log%20TV",
                               .content_type = "application/x-www-form-urlencoded"});
    assert_int_equal(a->status, 200);
    const char *session = jstr(sign, "session_token"), *dc = jstr(a, "device_code");
    const char *uc = jstr(a, "user_code"), *vuc = jstr(a, "verification_uri_complete");
    const char *scan = strchr(vuc, '#') + 1;
    char vpath[256];
    snprintf(vpath, sizeof vpath, "/v1/login-requests/%s", scan);
    view = ops_http(s, &(ops_req){.path = vpath, .bearer = session});
    assert_int_equal(view->status, 200);
    snprintf(vpath, sizeof vpath, "/v1/login-requests/%s/approve", scan);
    snprintf(body, sizeof body, "{\"user_code\":\"%s\",\"password\":\"%s\"}", uc, IT_PASSWORD);
    appr = ops_http(s, &(ops_req){.path = vpath, .body = body, .bearer = session});
    assert_int_equal(appr->status, 200);
    snprintf(body, sizeof body,
             "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%3Adevice_code"
             "&client_id=%s&device_code=%s",
             IT_CLIENT_ID, dc);
    tok = ops_http(s, &(ops_req){.path = "/oauth/token",
                                 .body = body,
                                 .content_type = "application/x-www-form-urlencoded"});
    assert_int_equal(tok->status, 200);
    it_server_stop(s);

    lines = log_lines(path);
    ops_resp *resp[5] = {sign, a, view, appr, tok};
    static const char *const events[5] = {"sign_in_succeeded", "login_requested", "login_claimed",
                                          "login_approved", "login_redeemed"};
    size_t last = 0;
    json_int_t lr_id = 0;
    for (int i = 0; i < 5; i++) {
        expect_rid(resp[i]);
        rids[i] = resp[i]->rid;
        o = find_line(lines, "audit", events[i], rids[i]);
        if (o == NULL)
            fail_msg("no %s event with request id %s in the log", events[i], rids[i]);
        assert_string_equal(ostr(o, "level"), "info");
        assert_string_equal(ostr(o, "address"), "127.0.0.1");
        /* In the order they happened. */
        size_t at = 0, k;
        json_t *x;
        json_array_foreach(lines, k, x) if (x == o) at = k;
        assert_true(at >= last);
        last = at;
        /* The same login request throughout, and the account that approved it. */
        if (i >= 1) {
            json_int_t id = json_integer_value(json_object_get(o, "login_request_id"));
            assert_true(id > 0);
            if (lr_id == 0)
                lr_id = id;
            assert_true(id == lr_id);
        }
        if (i == 0 || i == 2 || i == 3 || i == 4)
            assert_true(json_integer_value(json_object_get(o, "account_id")) > 0);
        /* Its access line, with the same id. */
        o = find_line(lines, "access", NULL, rids[i]);
        assert_non_null(o);
        assert_int_equal(json_integer_value(json_object_get(o, "status")), resp[i]->status);
        assert_true(json_is_number(json_object_get(o, "duration_ms")));
        assert_true(json_integer_value(json_object_get(o, "bytes")) == (json_int_t)resp[i]->len);
        assert_non_null(ostr(o, "route"));
        assert_non_null(ostr(o, "time"));
    }
    assert_string_equal(ostr(find_line(lines, "access", NULL, rids[2]), "route"), "login-request");

    /* Nothing secret, anywhere: device code, scan secret, user code (as shown and bare),
     * tokens, the session, the password. */
    text = slurp(path);
    char bare[16];
    snprintf(bare, sizeof bare, "%.4s%.4s", uc, uc + 5);
    const char *secrets[] = {dc + 7,
                             scan + 7,
                             uc,
                             bare,
                             jstr(tok, "access_token") + 7,
                             jstr(tok, "refresh_token") + 7,
                             session + 7,
                             IT_PASSWORD};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        if (strstr(text, secrets[i]) != NULL)
            fail_msg("secret %zu is in the log", i);
    free(text);
    json_decref(lines);
    ops_free(sign);
    ops_free(a);
    ops_free(view);
    ops_free(appr);
    ops_free(tok);
    unlink(path);
    it_server_free(s);
}

/* A refusal, a failed sign-in and a revocation are audit events too; SIGHUP reopens the file. */
static void test_log_refusals_and_rotation(void **state)
{
    char path[320], moved[340];
    static const char *env[5] = {"QRLOGIN_LOG_FILE", NULL, "QRLOGIN_LOG_LEVEL", "info", NULL};
    it_server *s;
    it_phone phone, second;
    ops_resp *r;
    json_t *lines, *o;

    (void)state;
    log_path(path, sizeof path);
    snprintf(moved, sizeof moved, "%s.1", path);
    env[1] = path;
    s = start_with(env);
    r = ops_http(s, &(ops_req){.path = "/v1/sessions",
                               .body = "{\"username\":\"" IT_USER "\",\"password\":\"wrong\"}"});
    assert_int_equal(r->status, 401);
    char failed_rid[64];
    snprintf(failed_rid, sizeof failed_rid, "%s", r->rid);
    ops_free(r);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "First", &phone);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, "Second", &second);
    it_resp *ir = it_revoke_device(s, &phone, second.device_id);
    it_expect(ir, 204, NULL);
    it_resp_free(ir);

    /* Rotation: the file moves away, SIGHUP, and the next lines go to a new file. */
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(kill(s->pid, SIGHUP), 0);
    double t0 = it_now();
    for (;;) {
        r = ops_http(s, &(ops_req){.path = "/healthz"});
        ops_free(r);
        if (access(path, F_OK) == 0 || it_now() - t0 > 5)
            break;
        it_sleep_ms(50);
    }
    r = ops_http(s, &(ops_req){.path = "/healthz"});
    ops_free(r);
    it_server_stop(s);

    lines = log_lines(moved);
    o = find_line(lines, "audit", "sign_in_failed", failed_rid);
    assert_non_null(o);
    assert_string_equal(ostr(o, "error"), "invalid_credentials");
    o = find_line(lines, "audit", "device_revoked", NULL);
    assert_non_null(o);
    assert_true(json_integer_value(json_object_get(o, "device_id")) == second.device_id);
    assert_true(json_integer_value(json_object_get(o, "account_id")) == phone.account_id);
    json_decref(lines);
    lines = log_lines(path);
    assert_non_null(find_line(lines, "access", NULL, NULL));
    json_decref(lines);
    unlink(path);
    unlink(moved);
    it_server_free(s);
}

/* A rate limit hit is an audit event (warn-level logs leave the info events out). */
static void test_log_rate_limit_event(void **state)
{
    char path[320];
    static const char *env[3] = {"QRLOGIN_LOG_FILE", NULL, NULL};
    it_server *s;
    it_phone phone;
    json_t *lines, *o;

    (void)state;
    log_path(path, sizeof path);
    env[1] = path;
    s = start_with(env);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    for (int i = 0; i < 40; i++) {
        char guess[16];
        snprintf(guess, sizeof guess, "CCCC-CC%c%c", "BCDFGHJKLM"[i / 10], "BCDFGHJKLM"[i % 10]);
        it_resp *r = it_view(s, &phone, guess);
        int done = r->status == 429;
        it_resp_free(r);
        if (done)
            break;
    }
    it_server_stop(s);
    lines = log_lines(path);
    o = find_line(lines, "audit", "rate_limited", NULL);
    assert_non_null(o);
    assert_string_equal(ostr(o, "route"), "login-request");
    assert_string_equal(ostr(o, "address"), "127.0.0.1");
    json_decref(lines);
    unlink(path);
    it_server_free(s);
}

/* Behind a trusted proxy the client is the address the proxy names: in the log and in what the
 * phone is shown of the requesting screen. An untrusted peer's header changes nothing. */
static void test_trusted_proxy(void **state)
{
    char path[320];
    static const char *env[5] = {"QRLOGIN_TRUSTED_PROXY", "127.0.0.1/32", "QRLOGIN_LOG_FILE", NULL,
                                 NULL};
    static const char *untrusting[7] = {"QRLOGIN_TRUSTED_PROXY",
                                        "10.0.0.0/8",
                                        "QRLOGIN_CLIENT_IP_HEADER",
                                        "X-Real-IP",
                                        "QRLOGIN_LOG_FILE",
                                        NULL,
                                        NULL};
    it_server *s;
    it_phone phone;
    ops_resp *a, *b, *v;
    json_t *lines, *o;
    char vpath[256];

    (void)state;
    log_path(path, sizeof path);
    env[3] = path;
    s = start_with(env);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    /* What the client wrote (203.0.113.50) is left of what our proxy saw (198.51.100.7). */
    a = ops_http(s, &(ops_req){.path = "/oauth/device_authorization",
                               .body = "client_id=" IT_CLIENT_ID,
                               .content_type = "application/x-www-form-urlencoded",
                               .header = "X-Forwarded-For: 203.0.113.50, 198.51.100.7"});
    assert_int_equal(a->status, 200);
    snprintf(vpath, sizeof vpath, "/v1/login-requests/%s",
             strchr(jstr(a, "verification_uri_complete"), '#') + 1);
    v = ops_http(s, &(ops_req){.path = vpath, .bearer = phone.session});
    assert_int_equal(v->status, 200);
    assert_string_equal(jstr(v, "address"), "198.51.100.7");
    assert_true(json_is_false(json_object_get(v->json, "same_network")));
    ops_free(v);
    /* From 127.0.0.2, which is no trusted proxy, the same header is ignored. */
    b = ops_http(s, &(ops_req){.path = "/oauth/device_authorization",
                               .body = "client_id=" IT_CLIENT_ID,
                               .content_type = "application/x-www-form-urlencoded",
                               .header = "X-Forwarded-For: 198.51.100.7",
                               .from = "127.0.0.2"});
    assert_int_equal(b->status, 200);
    snprintf(vpath, sizeof vpath, "/v1/login-requests/%s",
             strchr(jstr(b, "verification_uri_complete"), '#') + 1);
    v = ops_http(s, &(ops_req){.path = vpath, .bearer = phone.session});
    assert_int_equal(v->status, 200);
    assert_string_equal(jstr(v, "address"), "127.0.0.2");
    ops_free(v);
    it_server_stop(s);
    lines = log_lines(path);
    o = find_line(lines, "audit", "login_requested", a->rid);
    assert_non_null(o);
    assert_string_equal(ostr(o, "address"), "198.51.100.7");
    assert_string_equal(ostr(o, "peer"), "127.0.0.1");
    o = find_line(lines, "access", NULL, b->rid);
    assert_non_null(o);
    assert_string_equal(ostr(o, "address"), "127.0.0.2");
    assert_null(json_object_get(o, "peer"));
    json_decref(lines);
    ops_free(a);
    ops_free(b);
    unlink(path);
    it_server_free(s);

    /* A server that trusts only 10.0.0.0/8: our 127.0.0.1 is not a proxy to it. */
    log_path(path, sizeof path);
    untrusting[5] = path;
    s = start_with(untrusting);
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    a = ops_http(s, &(ops_req){.path = "/oauth/device_authorization",
                               .body = "client_id=" IT_CLIENT_ID,
                               .content_type = "application/x-www-form-urlencoded",
                               .header = "X-Real-IP: 198.51.100.7"});
    assert_int_equal(a->status, 200);
    snprintf(vpath, sizeof vpath, "/v1/login-requests/%s",
             strchr(jstr(a, "verification_uri_complete"), '#') + 1);
    v = ops_http(s, &(ops_req){.path = vpath, .bearer = phone.session});
    assert_int_equal(v->status, 200);
    assert_string_equal(jstr(v, "address"), "127.0.0.1");
    assert_true(json_is_true(json_object_get(v->json, "same_network")));
    ops_free(v);
    it_server_stop(s);
    lines = log_lines(path);
    o = find_line(lines, "audit", "login_requested", a->rid);
    assert_non_null(o);
    assert_string_equal(ostr(o, "address"), "127.0.0.1");
    assert_null(json_object_get(o, "peer"));
    json_decref(lines);
    ops_free(a);
    unlink(path);
    it_server_free(s);
}

/* Runs `qrlogin serve` with `args` and the variable `env` (name=value, or NULL); returns its
 * exit status and its standard error in `err`. */
static int serve_status(const char *const *args, const char *env, char *err, size_t errlen)
{
    const char *bin = getenv("QRLOGIN_BIN");
    int pipefd[2], status = 0;
    pid_t pid;
    size_t n = 0;

    assert_non_null(bin);
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *argv[16] = {bin,           "serve", "--listen",
                                "127.0.0.1:0", "--db",  "/nonexistent-dir/never.db"};
        size_t i = 6;
        for (size_t k = 0; args[k] != NULL && i < 15; k++)
            argv[i++] = args[k];
        argv[i] = NULL;
        if (env != NULL)
            putenv((char *)env);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    for (ssize_t k; n + 1 < errlen && (k = read(pipefd[0], err + n, errlen - n - 1)) > 0;)
        n += (size_t)k;
    err[n] = '\0';
    close(pipefd[0]);
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Bad values of the new options are usage errors (exit 2) that name the option or variable. */
static void test_bad_options(void **state)
{
    static const struct {
        const char *args[4];
        const char *env;
        const char *says;
    } cases[] = {
        {{"--trusted-proxy", "10.0.0.0/33", NULL}, NULL, "--trusted-proxy"},
        {{"--trusted-proxy", "10.0.0.0/8,proxy.example", NULL}, NULL, "'proxy.example'"},
        {{NULL}, "QRLOGIN_TRUSTED_PROXY=10.0.0.1/99", "QRLOGIN_TRUSTED_PROXY"},
        {{"--client-ip-header", "X-Real-IP", NULL}, NULL, "--trusted-proxy"},
        {{"--trusted-proxy", "10.0.0.1", "--client-ip-header", "X Real"},
         NULL,
         "--client-ip-header"},
        {{"--metrics-allow", "everyone", NULL}, NULL, "--metrics-allow"},
        {{"--log-level", "loud", NULL}, NULL, "--log-level"},
    };
    char err[2048];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = serve_status(cases[i].args, cases[i].env, err, sizeof err);
        if (st != 2 || strstr(err, cases[i].says) == NULL)
            fail_msg("case %zu: exit %d, stderr: %s", i, st, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_healthz_and_readyz),
        cmocka_unit_test(test_metrics_count_a_flow),
        cmocka_unit_test(test_metrics_refused_elsewhere),
        cmocka_unit_test(test_log_has_the_flow),
        cmocka_unit_test(test_log_refusals_and_rotation),
        cmocka_unit_test(test_log_rate_limit_event),
        cmocka_unit_test(test_trusted_proxy),
        cmocka_unit_test(test_bad_options),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    rc = cmocka_run_group_tests_name("integration/ops", tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
