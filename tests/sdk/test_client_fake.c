/* SPDX-License-Identifier: MIT */
/*
 * The client SDK against a scripted fake server, for the answers the real qrlogin server never
 * gives: a server that ignores `Prefer: wait` (the SDK must fall back to polling), a held
 * request answered early, 429/503 with Retry-After, garbled or oversized answers, and a
 * connection that drops after a refresh request was sent (which must not be repeated: the
 * server would take the second use of a rotated refresh token for theft).
 *
 * The fake is a tiny HTTP/1.1 server on 127.0.0.1 in a thread: one request per connection,
 * `Connection: close`, token answers taken in order from a script. The SDK runs on the main
 * thread with a sleep hook that records delays instead of sleeping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "qrlogin/client.h"

#define MAX_SCRIPT 16
#define MAX_LOG 64

typedef struct canned {
    int status;          /* 0: read the request, then close without answering */
    const char *headers; /* extra header lines, each ending in \r\n */
    const char *body;
    size_t big; /* > 0: a body of this many bytes instead */
} canned;

typedef struct fake {
    int lfd, port;
    char base[64];
    pthread_t th;
    int stop;
    pthread_mutex_t mu;
    canned token[MAX_SCRIPT];
    int ntoken, next_token;
    const char *devauth_body; /* NULL: a good answer with interval 7 */
    struct {
        char path[64];
        int prefer;
    } log[MAX_LOG];
    int nlog;
} fake;

#define PENDING "{\"error\":\"authorization_pending\",\"status\":\"pending\"}"
#define TOKENS                                                                                     \
    "{\"access_token\":\"qrl_at_fake\",\"token_type\":\"bearer\",\"expires_in\":60,"               \
    "\"refresh_token\":\"qrl_rt_fake2\"}"
#define DEVAUTH                                                                                    \
    "{\"device_code\":\"qrl_dc_fake\",\"user_code\":\"BCDF-GHJK\",\"verification_uri\":"           \
    "\"http://127.0.0.1/device\",\"verification_uri_complete\":\"http://127.0.0.1/s#x\","          \
    "\"expires_in\":120,\"interval\":7}"

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void answer(int fd, const canned *a)
{
    char head[512];
    char *big = NULL;
    const char *body = a->body != NULL ? a->body : "";
    size_t len = strlen(body);

    if (a->status == 0)
        return;
    if (a->big > 0) {
        big = malloc(a->big);
        if (big == NULL)
            return;
        memset(big, ' ', a->big);
        big[0] = '{';
        big[a->big - 1] = '}';
        body = big;
        len = a->big;
    }
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d Fake\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\nConnection: close\r\n%s\r\n",
                     a->status, len, a->headers != NULL ? a->headers : "");
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
    free(big);
}

/* Reads one request; fills path and whether it asked to be held. */
static int read_request(int fd, char *path, size_t cap, int *prefer)
{
    char buf[8192];
    size_t n = 0;
    char *end = NULL;

    while (end == NULL && n + 1 < sizeof buf) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL)
        return -1;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t want = cl != NULL ? strtoul(cl + 17, NULL, 10) : 0;
    size_t have = n - (size_t)(end + 4 - buf);
    while (have < want) {
        char tmp[1024];
        ssize_t r = recv(fd, tmp, sizeof tmp, 0);
        if (r <= 0)
            return -1;
        have += (size_t)r;
    }
    *prefer = strcasestr(buf, "\r\nPrefer: wait=") != NULL;
    if (sscanf(buf, "%*s %63s", path) != 1)
        return -1;
    path[cap - 1] = '\0';
    return 0;
}

static void serve_one(fake *f, int fd)
{
    char path[64] = "", body[1024];
    int prefer = 0;
    canned a = {.status = 404, .body = "{\"error\":\"not_found\"}"};

    if (read_request(fd, path, sizeof path, &prefer) != 0)
        return;
    pthread_mutex_lock(&f->mu);
    if (f->nlog < MAX_LOG) {
        snprintf(f->log[f->nlog].path, sizeof f->log[f->nlog].path, "%s", path);
        f->log[f->nlog++].prefer = prefer;
    }
    if (strcmp(path, "/.well-known/oauth-authorization-server") == 0) {
        snprintf(body, sizeof body,
                 "{\"issuer\":\"%s\",\"device_authorization_endpoint\":\"%s/device\","
                 "\"token_endpoint\":\"%s/token\",\"revocation_endpoint\":\"%s/revoke\"}",
                 f->base, f->base, f->base, f->base);
        a = (canned){.status = 200, .body = body};
    } else if (strcmp(path, "/device") == 0) {
        a = (canned){.status = 200, .body = f->devauth_body != NULL ? f->devauth_body : DEVAUTH};
    } else if (strcmp(path, "/token") == 0) {
        a = f->next_token < f->ntoken
                ? f->token[f->next_token++]
                : (canned){.status = 500, .body = "{\"error\":\"script_exhausted\"}"};
    }
    pthread_mutex_unlock(&f->mu);
    answer(fd, &a);
}

static void *fake_main(void *arg)
{
    fake *f = arg;
    while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
        struct pollfd p = {.fd = f->lfd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        serve_one(f, fd);
        close(fd);
    }
    return NULL;
}

static fake *fake_start(void)
{
    fake *f = calloc(1, sizeof *f);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;

    assert_non_null(f);
    pthread_mutex_init(&f->mu, NULL);
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->lfd, 16), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&a, &alen), 0);
    f->port = ntohs(a.sin_port);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->port);
    assert_int_equal(pthread_create(&f->th, NULL, fake_main, f), 0);
    return f;
}

/* Stops serving and closes the port: later connections are refused. */
static void fake_stop(fake *f)
{
    if (f->lfd < 0)
        return;
    __atomic_store_n(&f->stop, 1, __ATOMIC_RELEASE);
    pthread_join(f->th, NULL);
    close(f->lfd);
    f->lfd = -1;
}

static void fake_free(fake *f)
{
    fake_stop(f);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static void script(fake *f, const canned *answers, int n)
{
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < n; i++)
        f->token[f->ntoken++] = answers[i];
    pthread_mutex_unlock(&f->mu);
}

/* Token-endpoint requests seen, in order: 'P' held (Prefer: wait), 'p' plain. */
static void token_log(fake *f, char *out, size_t cap)
{
    size_t n = 0;
    pthread_mutex_lock(&f->mu);
    for (int i = 0; i < f->nlog && n + 1 < cap; i++)
        if (strcmp(f->log[i].path, "/token") == 0)
            out[n++] = f->log[i].prefer ? 'P' : 'p';
    pthread_mutex_unlock(&f->mu);
    out[n] = '\0';
}

/* --- the app side -------------------------------------------------------------------------- */

typedef struct app {
    qrl_client_event_type types[32];
    qrl_err errors[32];
    long retry_in[32];
    int push[32];
    int nev;
    long sleeps[32];
    int nsleep;
} app;

static void on_event(void *user, const qrl_client_event *ev)
{
    app *a = user;
    if (a->nev < 32) {
        a->types[a->nev] = ev->type;
        a->errors[a->nev] = ev->error;
        a->retry_in[a->nev] = ev->retry_in_ms;
        a->push[a->nev++] = ev->push;
    }
}

static void on_sleep(void *user, long ms)
{
    app *a = user;
    if (a->nsleep < 32)
        a->sleeps[a->nsleep++] = ms;
}

static qrl_client *client_for(fake *f, app *a)
{
    qrl_client_options o = {
        .server_url = f->base,
        .client_id = "tv-app",
        .on_event = on_event,
        .sleep = on_sleep,
        .user = a,
        .max_retries = 2,
        .retry_base_ms = 100,
        .connect_timeout_ms = 2000,
        .timeout_ms = 5000,
    };
    qrl_client *c = NULL;
    memset(a, 0, sizeof *a);
    assert_int_equal(qrl_client_new(&o, &c), QRL_OK);
    return c;
}

/* A server that does not hold requests answers without Preference-Applied: the SDK stops
 * asking and polls at the interval the server gave (7 s here). */
static void test_fallback_to_polling(void **state)
{
    fake *f = fake_start();
    app a;
    qrl_client *c = client_for(f, &a);
    qrl_client_tokens t;
    char log[32];

    script(f, (canned[]){{400, NULL, PENDING, 0}, {400, NULL, PENDING, 0}, {200, NULL, TOKENS, 0}},
           3);
    assert_int_equal(qrl_client_login(c, &t), QRL_OK);
    assert_string_equal(t.access_token, "qrl_at_fake");
    assert_string_equal(t.refresh_token, "qrl_rt_fake2");
    assert_int_equal(t.expires_in, 60);
    token_log(f, log, sizeof log);
    assert_string_equal(log, "Ppp");
    assert_int_equal(a.nsleep, 2);
    assert_int_equal(a.sleeps[0], 7000);
    assert_int_equal(a.sleeps[1], 7000);
    assert_int_equal(a.nev, 2);
    assert_int_equal(a.types[0], QRL_CLIENT_EV_STARTED);
    assert_int_equal(a.types[1], QRL_CLIENT_EV_APPROVED);
    assert_int_equal(a.push[1], 0);
    qrl_client_tokens_clear(&t);
    qrl_client_free(c);
    fake_free(f);
}

/* A held request answered at once without news (the server's waiter cap): the SDK keeps the
 * interval before asking again instead of spinning. */
static void test_early_held_answer(void **state)
{
    fake *f = fake_start();
    app a;
    qrl_client *c = client_for(f, &a);
    char log[32];

    script(f,
           (canned[]){{400, "Preference-Applied: wait=30\r\n", PENDING, 0},
                      {200, "Preference-Applied: wait=30\r\n", TOKENS, 0}},
           2);
    assert_int_equal(qrl_client_login(c, NULL), QRL_OK);
    token_log(f, log, sizeof log);
    assert_string_equal(log, "PP");
    assert_int_equal(a.nsleep, 1);
    assert_true(a.sleeps[0] > 5000 && a.sleeps[0] <= 7000);
    assert_int_equal(a.push[a.nev - 1], 1);
    qrl_client_free(c);
    fake_free(f);
}

/* 429 and 503 are retried after Retry-After (never sooner); the app hears RETRYING. */
static void test_retry_after(void **state)
{
    fake *f = fake_start();
    app a;
    qrl_client *c = client_for(f, &a);

    script(f,
           (canned[]){{429, "Retry-After: 3\r\n", "{\"error\":\"rate_limited\"}", 0},
                      {503, "Retry-After: 2\r\n", "", 0},
                      {200, NULL, TOKENS, 0}},
           3);
    assert_int_equal(qrl_client_login(c, NULL), QRL_OK);
    assert_int_equal(a.nev, 4);
    assert_int_equal(a.types[1], QRL_CLIENT_EV_RETRYING);
    assert_int_equal(a.errors[1], QRL_ERR_RATE_LIMITED);
    assert_int_equal(a.retry_in[1], 3000);
    assert_int_equal(a.types[2], QRL_CLIENT_EV_RETRYING);
    assert_int_equal(a.errors[2], QRL_ERR_BUSY);
    assert_int_equal(a.retry_in[2], 2000);
    assert_int_equal(a.types[3], QRL_CLIENT_EV_APPROVED);
    assert_int_equal(a.sleeps[0], 3000);
    assert_int_equal(a.sleeps[1], 2000);
    qrl_client_free(c);

    /* Past max_retries (2) the login gives up with the last reason. */
    c = client_for(f, &a);
    script(f,
           (canned[]){
               {503, NULL, "", 0}, {503, NULL, "", 0}, {503, NULL, "", 0}, {200, NULL, TOKENS, 0}},
           4);
    assert_int_equal(qrl_client_login(c, NULL), QRL_ERR_BUSY);
    assert_non_null(strstr(qrl_client_last_error(c), "HTTP 503"));
    qrl_client_free(c);
    fake_free(f);
}

/* Answers that break the protocol end the login with a clear code instead of a crash or a
 * hang; an oversized one is cut off at the SDK's limit. */
static void test_bad_answers(void **state)
{
    struct {
        canned a;
        const char *devauth;
        qrl_err rc;
        const char *says;
    } cases[] = {
        {{200, NULL, "not json", 0}, NULL, QRL_ERR_INTERNAL, "access_token"},
        {{200, NULL, "{\"access_token\":\"a\",\"token_type\":\"mac\"}", 0},
         NULL,
         QRL_ERR_INTERNAL,
         "Bearer"},
        {{200, NULL, NULL, 200000}, NULL, QRL_ERR_TOO_LARGE, "larger"},
        {{400, NULL, "{\"error\":\"invalid_grant\"}", 0}, NULL, QRL_ERR_NOT_FOUND, "invalid_grant"},
        {{401, NULL, "{\"error\":\"invalid_client\",\"error_description\":\"who\\u0007?\"}", 0},
         NULL,
         QRL_ERR_INVALID_CLIENT,
         "invalid_client: who?"},
        {{400, NULL, "{\"error\":\"access_denied\"}", 0}, NULL, QRL_ERR_DENIED, "access_denied"},
        {{200, NULL, TOKENS, 0},
         "{\"device_code\":\"qrl_dc_x\",\"expires_in\":120}",
         QRL_ERR_INTERNAL,
         "user_code"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fake *f = fake_start();
        app a;
        qrl_client *c = client_for(f, &a);
        f->devauth_body = cases[i].devauth;
        script(f, &cases[i].a, 1);
        qrl_err rc = qrl_client_login(c, NULL);
        if (rc != cases[i].rc || strstr(qrl_client_last_error(c), cases[i].says) == NULL) {
            print_error("case %zu: %s (%s)\n", i, qrl_client_strerror(rc),
                        qrl_client_last_error(c));
            fail();
        }
        qrl_client_tokens t;
        assert_int_equal(qrl_client_get_tokens(c, &t), QRL_ERR_CONFLICT);
        qrl_client_free(c);
        fake_free(f);
    }
}

/* A refresh whose connection drops after sending is not repeated (the server may have rotated
 * the token); one that could not connect is retried with back-off. */
static void test_refresh_not_repeated(void **state)
{
    fake *f = fake_start();
    app a;
    qrl_client *c = client_for(f, &a);
    qrl_client_tokens t;
    char log[32];

    assert_int_equal(qrl_client_set_refresh_token(c, "qrl_rt_fake1"), QRL_OK);
    script(f, (canned[]){{200, NULL, TOKENS, 0}, {0, NULL, NULL, 0}}, 2);
    assert_int_equal(qrl_client_refresh(c, &t), QRL_OK);
    assert_string_equal(t.refresh_token, "qrl_rt_fake2");

    assert_int_equal(qrl_client_refresh(c, &t), QRL_ERR_BUSY);
    assert_non_null(strstr(qrl_client_last_error(c), "not retried"));
    token_log(f, log, sizeof log);
    assert_string_equal(log, "pp");
    assert_int_equal(a.nev, 0);
    /* The handle keeps the token it has; the app decides. */
    assert_int_equal(qrl_client_get_tokens(c, &t), QRL_OK);
    assert_string_equal(t.refresh_token, "qrl_rt_fake2");

    fake_stop(f);
    assert_int_equal(qrl_client_refresh(c, &t), QRL_ERR_BUSY);
    assert_int_equal(a.nev, 2);
    assert_int_equal(a.types[0], QRL_CLIENT_EV_RETRYING);
    assert_int_equal(a.types[1], QRL_CLIENT_EV_RETRYING);
    assert_int_equal(a.nsleep, 2);
    qrl_client_tokens_clear(&t);
    qrl_client_free(c);
    fake_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fallback_to_polling),  cmocka_unit_test(test_early_held_answer),
        cmocka_unit_test(test_retry_after),          cmocka_unit_test(test_bad_answers),
        cmocka_unit_test(test_refresh_not_repeated),
    };
    return cmocka_run_group_tests_name("sdk/client_fake", tests, NULL, NULL);
}
