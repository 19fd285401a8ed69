/* SPDX-License-Identifier: MIT */
/*
 * The metrics of the server (server/metrics.c) as Prometheus reads them: the exposition is
 * checked line by line against the text format (version 0.0.4), families are announced once
 * and not interleaved, histograms are cumulative and end with +Inf equal to _count, and the
 * numbers are the ones counted, also when many threads count at once.
 */
#include <ctype.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

/* One sample line: name, the labels as written between the braces (or ""), the value. */
struct sample {
    char name[128];
    char labels[256];
    double value;
};

struct expo {
    struct sample s[2048];
    size_t n;
};

static bool name_ok(const char *p, size_t n, bool label)
{
    if (n == 0 || !(isalpha((unsigned char)p[0]) || p[0] == '_' || (!label && p[0] == ':')))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)p[i]) || p[i] == '_' || (!label && p[i] == ':')))
            return false;
    return true;
}

/* Checks `labels` ("a=\"x\",b=\"y\"") against the format; fails the test otherwise. */
static void check_labels(const char *line, const char *l, size_t len)
{
    size_t i = 0;

    while (i < len) {
        size_t k = i;
        while (k < len && l[k] != '=')
            k++;
        if (k == len || !name_ok(l + i, k - i, true) || k + 1 >= len || l[k + 1] != '"')
            fail_msg("bad label in: %s", line);
        k += 2;
        while (k < len && l[k] != '"') {
            if (l[k] == '\\') {
                if (k + 1 >= len || strchr("\\\"n", l[k + 1]) == NULL)
                    fail_msg("bad escape in: %s", line);
                k++;
            }
            k++;
        }
        if (k == len)
            fail_msg("unterminated label value in: %s", line);
        k++;
        if (k < len && l[k] != ',')
            fail_msg("labels not separated by a comma in: %s", line);
        i = k + 1;
    }
}

/* Parses an exposition, failing on any line that is not blank, a comment or a sample; checks
 * that every family's TYPE comes once, before its samples, and that families do not mix. */
static void parse(const char *text, size_t len, struct expo *e)
{
    char typed[64][128], current[128] = "";
    size_t ntyped = 0;

    e->n = 0;
    assert_true(len > 0 && text[len - 1] == '\n');
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        char line[1024];
        size_t n = (size_t)(nl - p);

        assert_non_null(nl);
        assert_true(n < sizeof line);
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (n == 0)
            continue;
        if (line[0] == '#') {
            char kw[8], name[128], rest[32];
            if (sscanf(line, "# %7s %127s %31s", kw, name, rest) >= 2 && strcmp(kw, "TYPE") == 0) {
                assert_true(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 ||
                            strcmp(rest, "histogram") == 0);
                for (size_t i = 0; i < ntyped; i++)
                    if (strcmp(typed[i], name) == 0)
                        fail_msg("TYPE of %s twice", name);
                assert_true(ntyped < 64);
                snprintf(typed[ntyped++], sizeof typed[0], "%s", name);
                snprintf(current, sizeof current, "%s", name);
            }
            continue;
        }
        struct sample *s = &e->s[e->n++];
        size_t nl_ = strcspn(line, "{ ");
        assert_true(e->n < sizeof e->s / sizeof e->s[0]);
        if (!name_ok(line, nl_, false))
            fail_msg("bad metric name in: %s", line);
        snprintf(s->name, sizeof s->name, "%.*s", (int)nl_, line);
        const char *v = line + nl_;
        s->labels[0] = '\0';
        if (*v == '{') {
            const char *close = strrchr(v, '}');
            if (close == NULL)
                fail_msg("unclosed labels in: %s", line);
            check_labels(line, v + 1, (size_t)(close - v - 1));
            snprintf(s->labels, sizeof s->labels, "%.*s", (int)(close - v - 1), v + 1);
            v = close + 1;
        }
        if (*v != ' ')
            fail_msg("no space before the value in: %s", line);
        char *end;
        s->value = strtod(v + 1, &end);
        if (end == v + 1 || *end != '\0')
            fail_msg("bad value in: %s", line);
        /* The sample belongs to the family announced last. */
        size_t cl = strlen(current);
        if (cl == 0 || strncmp(s->name, current, cl) != 0 ||
            !(s->name[cl] == '\0' || strcmp(s->name + cl, "_bucket") == 0 ||
              strcmp(s->name + cl, "_sum") == 0 || strcmp(s->name + cl, "_count") == 0))
            fail_msg("sample %s outside its family (last TYPE: %s)", s->name, current);
    }
}

/* The value of the sample with this name and labels; fails when there is none. */
static double value(const struct expo *e, const char *name, const char *labels)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->s[i].name, name) == 0 && strcmp(e->s[i].labels, labels) == 0)
            return e->s[i].value;
    fail_msg("no sample %s{%s}", name, labels);
    return -1;
}

static bool has(const struct expo *e, const char *name, const char *labels)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->s[i].name, name) == 0 && strcmp(e->s[i].labels, labels) == 0)
            return true;
    return false;
}

/* Every histogram series: le increasing, counts cumulative, +Inf last and equal to _count. */
static void check_histograms(const struct expo *e)
{
    for (size_t i = 0; i < e->n; i++) {
        const char *suffix = strstr(e->s[i].name, "_bucket");
        if (suffix == NULL || suffix[7] != '\0')
            continue;
        /* The first bucket of a series: its labels without le. */
        char base[128], rest[256];
        const char *le = strstr(e->s[i].labels, "le=\"");
        assert_non_null(le);
        snprintf(base, sizeof base, "%.*s", (int)(suffix - e->s[i].name), e->s[i].name);
        snprintf(rest, sizeof rest, "%.*s", (int)(le - e->s[i].labels), e->s[i].labels);
        if (i > 0 && strcmp(e->s[i - 1].name, e->s[i].name) == 0 &&
            strncmp(e->s[i - 1].labels, rest, strlen(rest)) == 0)
            continue; /* not the first */
        double last_le = -1, last = 0;
        size_t k = i;
        for (; k < e->n && strcmp(e->s[k].name, e->s[i].name) == 0 &&
               strncmp(e->s[k].labels, rest, strlen(rest)) == 0;
             k++) {
            const char *lv = e->s[k].labels + strlen(rest) + 4;
            double b = strncmp(lv, "+Inf\"", 5) == 0 ? 1e300 : strtod(lv, NULL);
            assert_true(b > last_le);
            assert_true(e->s[k].value >= last);
            last_le = b;
            last = e->s[k].value;
        }
        assert_true(last_le == 1e300);
        char sum[160], count[160], labels[256];
        snprintf(sum, sizeof sum, "%s_sum", base);
        snprintf(count, sizeof count, "%s_count", base);
        snprintf(labels, sizeof labels, "%.*s", rest[0] ? (int)strlen(rest) - 1 : 0, rest);
        assert_true(has(e, sum, labels));
        assert_true(value(e, count, labels) == last);
    }
}

static char *render(const qrl__metrics *m, const qrl__metrics_extra *x, struct expo *e)
{
    size_t len;
    char *text = qrl__metrics_render(m, x, &len);

    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    parse(text, len, e);
    check_histograms(e);
    return text;
}

static void test_counts_and_format(void **state)
{
    static struct expo e;
    qrl__metrics m;
    qrl_store_health sh = {
        .commit_us = {.n = 2, .le = {100, 1000}, .count = {1, 2, 3}, .sum = 5000},
        .batch_writes = {.n = 1, .le = {1}, .count = {4, 2}, .sum = 9},
    };
    qrl__metrics_extra x = {.held_now = 3, .store = &sh};
    char *text;

    (void)state;
    assert_int_equal(qrl__metrics_init(&m), QRL_OK);
    qrl__metric_request(&m, QRL__R_TOKEN, 200, 50);
    qrl__metric_request(&m, QRL__R_TOKEN, 200, 300);
    qrl__metric_request(&m, QRL__R_TOKEN, 200, 2000000);
    qrl__metric_request(&m, QRL__R_TOKEN, 400, 10);
    qrl__metric_request(&m, QRL__R_LOGIN_REQUEST, 429, 1000);
    qrl__metric_rate_limited(&m, QRL__R_LOGIN_REQUEST);
    qrl__metric_request(&m, QRL__R_WEB_SCREEN_WAIT, 0, 25000000);
    qrl__metric_request(&m, QRL__R_ME, 418, 1); /* a status we never send: "other" */
    qrl__metric_outcome(&m, QRL__OUT_CREATED);
    qrl__metric_outcome(&m, QRL__OUT_CREATED);
    qrl__metric_outcome(&m, QRL__OUT_REDEEMED);
    qrl__metric_hold(&m);

    text = render(&m, &x, &e);
    assert_true(value(&e, "qrlogin_http_requests_total", "route=\"token\",code=\"200\"") == 3);
    assert_true(value(&e, "qrlogin_http_requests_total", "route=\"token\",code=\"400\"") == 1);
    assert_true(value(&e, "qrlogin_http_requests_total", "route=\"login-request\",code=\"429\"") ==
                1);
    assert_true(value(&e, "qrlogin_http_requests_total", "route=\"web-screen-wait\",code=\"0\"") ==
                1);
    assert_true(value(&e, "qrlogin_http_requests_total", "route=\"me\",code=\"other\"") == 1);
    /* Series that counted nothing are not written. */
    assert_false(has(&e, "qrlogin_http_requests_total", "route=\"sessions\",code=\"200\""));
    assert_false(has(&e, "qrlogin_http_request_duration_seconds_count", "route=\"sessions\""));
    /* 10 and 50 us, 300 us, 2 s. */
    const char *tb = "qrlogin_http_request_duration_seconds_bucket";
    assert_true(value(&e, tb, "route=\"token\",le=\"0.0001\"") == 2);
    assert_true(value(&e, tb, "route=\"token\",le=\"0.00025\"") == 2);
    assert_true(value(&e, tb, "route=\"token\",le=\"0.0005\"") == 3);
    assert_true(value(&e, tb, "route=\"token\",le=\"1\"") == 3);
    assert_true(value(&e, tb, "route=\"token\",le=\"2.5\"") == 4);
    assert_true(value(&e, tb, "route=\"token\",le=\"+Inf\"") == 4);
    assert_true(value(&e, "qrlogin_http_request_duration_seconds_sum", "route=\"token\"") ==
                2.00036);
    assert_non_null(strstr(text, "qrlogin_http_request_duration_seconds_sum{route=\"token\"} "
                                 "2.000360\n"));
    assert_true(value(&e, "qrlogin_rate_limited_total", "route=\"login-request\"") == 1);
    assert_true(value(&e, "qrlogin_login_requests_total", "outcome=\"created\"") == 2);
    assert_true(value(&e, "qrlogin_login_requests_total", "outcome=\"approved\"") == 0);
    assert_true(value(&e, "qrlogin_login_requests_total", "outcome=\"redeemed\"") == 1);
    assert_true(value(&e, "qrlogin_held_requests", "") == 3);
    assert_true(value(&e, "qrlogin_holds_total", "") == 1);
    /* The store's histograms: microseconds become seconds, counts stay counts. */
    assert_true(value(&e, "qrlogin_store_commit_duration_seconds_bucket", "le=\"0.0001\"") == 1);
    assert_true(value(&e, "qrlogin_store_commit_duration_seconds_bucket", "le=\"0.001\"") == 3);
    assert_true(value(&e, "qrlogin_store_commit_duration_seconds_bucket", "le=\"+Inf\"") == 6);
    assert_true(value(&e, "qrlogin_store_commit_duration_seconds_sum", "") == 0.005);
    assert_true(value(&e, "qrlogin_store_batch_writes_bucket", "le=\"1\"") == 4);
    assert_true(value(&e, "qrlogin_store_batch_writes_count", "") == 6);
    /* A store that measures nothing has no family. */
    assert_false(has(&e, "qrlogin_store_sync_duration_seconds_count", ""));
    assert_true(value(&e, "process_start_time_seconds", "") > 1.5e9);
    free(text);
    qrl__metrics_free(&m);
}

/* Without a store, and before any request: families announced, nothing broken. */
static void test_empty(void **state)
{
    static struct expo e;
    qrl__metrics m;
    qrl__metrics_extra x = {0};

    (void)state;
    assert_int_equal(qrl__metrics_init(&m), QRL_OK);
    free(render(&m, &x, &e));
    assert_true(value(&e, "qrlogin_held_requests", "") == 0);
    assert_false(has(&e, "qrlogin_store_commit_duration_seconds_count", ""));
    qrl__metrics_free(&m);
}

#define THREADS 8
#define PER_THREAD 20000

static void *count_many(void *arg)
{
    qrl__metrics *m = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        qrl__metric_request(m, QRL__R_TOKEN, 400, i % 3000);
        qrl__metric_outcome(m, QRL__OUT_CLAIMED);
    }
    return NULL;
}

/* Threads count into their own stripes; a scrape sums them all. */
static void test_threads_sum(void **state)
{
    static struct expo e;
    pthread_t th[THREADS];
    qrl__metrics m;
    qrl__metrics_extra x = {0};

    (void)state;
    assert_int_equal(qrl__metrics_init(&m), QRL_OK);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, count_many, &m), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    free(render(&m, &x, &e));
    assert_true(value(&e, "qrlogin_http_requests_total", "route=\"token\",code=\"400\"") ==
                THREADS * PER_THREAD);
    assert_true(value(&e, "qrlogin_http_request_duration_seconds_count", "route=\"token\"") ==
                THREADS * PER_THREAD);
    assert_true(value(&e, "qrlogin_login_requests_total", "outcome=\"claimed\"") ==
                THREADS * PER_THREAD);
    qrl__metrics_free(&m);
}

/* Route labels are label values as they are (nothing to escape), all different, and a route
 * out of range is counted as "none" rather than out of bounds. */
static void test_route_labels(void **state)
{
    (void)state;
    for (int i = 0; i < QRL__R__COUNT; i++) {
        const char *a = qrl__route_name(i);
        assert_true(a[0] != '\0');
        for (const char *p = a; *p; p++)
            assert_true(isalnum((unsigned char)*p) || *p == '-' || *p == '_');
        for (int k = 0; k < i; k++)
            assert_string_not_equal(a, qrl__route_name(k));
    }
    assert_string_equal(qrl__route_name(-1), "none");
    assert_string_equal(qrl__route_name(QRL__R__COUNT), "none");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_and_format),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_threads_sum),
        cmocka_unit_test(test_route_labels),
    };
    return cmocka_run_group_tests_name("server/metrics", tests, NULL, NULL);
}
