/* SPDX-License-Identifier: MIT */
/*
 * Counters of the server and their Prometheus exposition (metrics.h).
 *
 * The text format (version 0.0.4): lines end with "\n", the last one too; a family's samples
 * form one group after its "# HELP" and "# TYPE" lines; label values escape backslash, double
 * quote and line feed (ours are fixed words that need none); a histogram's buckets are
 * cumulative, in increasing order of "le", end with le="+Inf", which equals its _count, and
 * come with _sum and _count. Counters end in _total. Times are in seconds.
 *
 * Only series that have counted something are written for the per-route families, so a scrape
 * stays a few kilobytes on a quiet server; the families themselves are always announced.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

static const char *const route_names[QRL__R__COUNT] = {
#define ROUTE_NAME(id, label) [QRL__R_##id] = label,
    QRL__ROUTES(ROUTE_NAME)
#undef ROUTE_NAME
};

const char *qrl__route_name(int route)
{
    return route >= 0 && route < QRL__R__COUNT ? route_names[route] : route_names[QRL__R_NONE];
}

static const char *const outcome_names[QRL__OUT__COUNT] = {
#define OUTCOME_NAME(id, label, event) [QRL__OUT_##id] = label,
    QRL__OUTCOMES(OUTCOME_NAME)
#undef OUTCOME_NAME
};

static const char *const outcome_events[QRL__OUT__COUNT] = {
#define OUTCOME_EVENT(id, label, event) [QRL__OUT_##id] = event,
    QRL__OUTCOMES(OUTCOME_EVENT)
#undef OUTCOME_EVENT
};

static const int status_codes[QRL__S__COUNT] = {
#define STATUS_CODE(code) [QRL__S_##code] = code,
    QRL__STATUSES(STATUS_CODE)
#undef STATUS_CODE
        [QRL__S_OTHER] = -1,
};

static const uint64_t latency_bounds[QRL__LATENCY_BUCKETS] = QRL__LATENCY_BOUNDS_US;

qrl_err qrl__metrics_init(qrl__metrics *m)
{
    struct timespec ts;

    m->stripe = aligned_alloc(64, QRL__MSTRIPES * sizeof *m->stripe);
    if (m->stripe == NULL)
        return QRL_ERR_NOMEM;
    memset(m->stripe, 0, QRL__MSTRIPES * sizeof *m->stripe);
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    return QRL_OK;
}

void qrl__metrics_free(qrl__metrics *m)
{
    free(m->stripe);
    m->stripe = NULL;
}

/* The calling thread's stripe, given out in turn on each thread's first count. */
static struct qrl__mstripe *stripe_of(qrl__metrics *m)
{
    static _Atomic unsigned next;
    static _Thread_local int mine = -1;

    if (mine < 0)
        mine = (int)(atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % QRL__MSTRIPES);
    return &m->stripe[mine];
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static uint64_t get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static int status_slot(int status)
{
    switch (status) {
#define STATUS_CASE(code)                                                                          \
    case code:                                                                                     \
        return QRL__S_##code;
        QRL__STATUSES(STATUS_CASE)
#undef STATUS_CASE
    default:
        return QRL__S_OTHER;
    }
}

void qrl__metric_request(qrl__metrics *m, int route, int status, int64_t duration_us)
{
    struct qrl__mstripe *s = stripe_of(m);
    uint64_t us = duration_us > 0 ? (uint64_t)duration_us : 0;
    int b = 0;

    if (route < 0 || route >= QRL__R__COUNT)
        route = QRL__R_NONE;
    while (b < QRL__LATENCY_BUCKETS && us > latency_bounds[b])
        b++;
    add(&s->requests[route][status_slot(status)], 1);
    add(&s->latency[route][b], 1);
    add(&s->latency_sum_us[route], us);
}

void qrl__metric_rate_limited(qrl__metrics *m, int route)
{
    if (route < 0 || route >= QRL__R__COUNT)
        route = QRL__R_NONE;
    add(&stripe_of(m)->rate_limited[route], 1);
}

void qrl__metric_outcome(qrl__metrics *m, enum qrl__outcome o)
{
    if ((unsigned)o < QRL__OUT__COUNT)
        add(&stripe_of(m)->outcomes[o], 1);
}

void qrl__metric_hold(qrl__metrics *m)
{
    add(&stripe_of(m)->holds, 1);
}

void qrl__login_event(qrl__req *r, enum qrl__outcome o, const qrl__ids *ids)
{
    if ((unsigned)o >= QRL__OUT__COUNT)
        return;
    qrl__metric_outcome(&r->srv->metrics, o);
    qrl__audit(r, outcome_events[o], ids);
}

/* --- exposition ----------------------------------------------------------------------------- */

/* Largest exposition: about 150 KiB with every route and status seen; this bounds a bug. */
#define TEXT_MAX (4u << 20)

typedef struct tbuf {
    char *p;
    size_t n, cap;
    bool failed;
} tbuf;

static void tb_printf(tbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(tbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (b->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->n) {
            b->n += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap - b->n <= (size_t)n)
            cap *= 2;
        char *p = cap <= TEXT_MAX ? realloc(b->p, cap) : NULL;
        if (p == NULL) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A family's announcement. */
static void family(tbuf *b, const char *name, const char *type, const char *help)
{
    tb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Microseconds as seconds, exactly: "0.000250", "2.500000". */
static void tb_seconds(tbuf *b, uint64_t us)
{
    tb_printf(b, "%llu.%06llu", (unsigned long long)(us / 1000000),
              (unsigned long long)(us % 1000000));
}

/* A bucket bound: seconds from microseconds, or a plain count. */
static void tb_bound(tbuf *b, uint64_t v, bool us)
{
    if (!us) {
        tb_printf(b, "%llu", (unsigned long long)v);
        return;
    }
    /* Exactly, without trailing zeros: 0.00005, 0.25, 60. */
    char frac[8];
    int n = snprintf(frac, sizeof frac, "%06llu", (unsigned long long)(v % 1000000));
    while (n > 0 && frac[n - 1] == '0')
        frac[--n] = '\0';
    tb_printf(b, "%llu%s%s", (unsigned long long)(v / 1000000), n > 0 ? "." : "", frac);
}

/* One histogram series: `n` bounds, `count[0..n]` per bucket (the last above every bound), the
 * sum (microseconds when `us`, else a plain number). `labels` is "" or `name="value",`. */
static void histogram(tbuf *b, const char *name, const char *labels, const uint64_t *bounds,
                      const uint64_t *count, size_t n, uint64_t sum, bool us)
{
    uint64_t cum = 0;
    size_t llen = strlen(labels);

    for (size_t i = 0; i <= n; i++) {
        cum += count[i];
        tb_printf(b, "%s_bucket{%sle=\"", name, labels);
        if (i < n)
            tb_bound(b, bounds[i], us);
        else
            tb_printf(b, "+Inf");
        tb_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
    /* The sum and count take the same labels without the trailing comma. */
    tb_printf(b, "%s_sum%s%.*s%s ", name, llen ? "{" : "", (int)(llen ? llen - 1 : 0), labels,
              llen ? "}" : "");
    if (us)
        tb_seconds(b, sum);
    else
        tb_printf(b, "%llu", (unsigned long long)sum);
    tb_printf(b, "\n%s_count%s%.*s%s %llu\n", name, llen ? "{" : "", (int)(llen ? llen - 1 : 0),
              labels, llen ? "}" : "", (unsigned long long)cum);
}

/* The stripes summed. */
struct totals {
    uint64_t requests[QRL__R__COUNT][QRL__S__COUNT];
    uint64_t latency[QRL__R__COUNT][QRL__LATENCY_BUCKETS + 1];
    uint64_t latency_sum_us[QRL__R__COUNT];
    uint64_t rate_limited[QRL__R__COUNT];
    uint64_t outcomes[QRL__OUT__COUNT];
    uint64_t holds;
};

static void sum_stripes(const qrl__metrics *m, struct totals *t)
{
    for (int s = 0; s < QRL__MSTRIPES; s++) {
        const struct qrl__mstripe *st = &m->stripe[s];
        for (int r = 0; r < QRL__R__COUNT; r++) {
            for (int k = 0; k < QRL__S__COUNT; k++)
                t->requests[r][k] += get(&st->requests[r][k]);
            for (int k = 0; k <= QRL__LATENCY_BUCKETS; k++)
                t->latency[r][k] += get(&st->latency[r][k]);
            t->latency_sum_us[r] += get(&st->latency_sum_us[r]);
            t->rate_limited[r] += get(&st->rate_limited[r]);
        }
        for (int o = 0; o < QRL__OUT__COUNT; o++)
            t->outcomes[o] += get(&st->outcomes[o]);
        t->holds += get(&st->holds);
    }
}

static void render_http(tbuf *b, const struct totals *t)
{
    char labels[64];

    family(b, "qrlogin_http_requests_total", "counter",
           "HTTP requests answered, by route and status code (0: the client left unanswered).");
    for (int r = 0; r < QRL__R__COUNT; r++)
        for (int k = 0; k < QRL__S__COUNT; k++) {
            if (t->requests[r][k] == 0)
                continue;
            if (k == QRL__S_OTHER)
                tb_printf(b, "qrlogin_http_requests_total{route=\"%s\",code=\"other\"} %llu\n",
                          route_names[r], (unsigned long long)t->requests[r][k]);
            else
                tb_printf(b, "qrlogin_http_requests_total{route=\"%s\",code=\"%d\"} %llu\n",
                          route_names[r], status_codes[k], (unsigned long long)t->requests[r][k]);
        }
    family(b, "qrlogin_http_request_duration_seconds", "histogram",
           "Time from a request's arrival to its end (held requests included), by route.");
    for (int r = 0; r < QRL__R__COUNT; r++) {
        uint64_t n = 0;
        for (int k = 0; k <= QRL__LATENCY_BUCKETS; k++)
            n += t->latency[r][k];
        if (n == 0)
            continue;
        snprintf(labels, sizeof labels, "route=\"%s\",", route_names[r]);
        histogram(b, "qrlogin_http_request_duration_seconds", labels, latency_bounds, t->latency[r],
                  QRL__LATENCY_BUCKETS, t->latency_sum_us[r], true);
    }
    family(b, "qrlogin_rate_limited_total", "counter",
           "Requests refused with 429 (a rate limit or slow_down), by route.");
    for (int r = 0; r < QRL__R__COUNT; r++)
        if (t->rate_limited[r] != 0)
            tb_printf(b, "qrlogin_rate_limited_total{route=\"%s\"} %llu\n", route_names[r],
                      (unsigned long long)t->rate_limited[r]);
}

static void render_store_hist(tbuf *b, const char *name, const char *help, const qrl_store_hist *h,
                              bool us)
{
    size_t n = h->n < QRL_STORE_HIST_MAX ? h->n : QRL_STORE_HIST_MAX;

    if (n == 0)
        return;
    family(b, name, "histogram", help);
    histogram(b, name, "", h->le, h->count, n, h->sum, us);
}

char *qrl__metrics_render(const qrl__metrics *m, const qrl__metrics_extra *x, size_t *len)
{
    struct totals *t = calloc(1, sizeof *t);
    tbuf b = {.cap = 16384};

    *len = 0;
    b.p = malloc(b.cap);
    if (t == NULL || b.p == NULL) {
        free(t);
        free(b.p);
        return NULL;
    }
    sum_stripes(m, t);
    render_http(&b, t);
    family(&b, "qrlogin_login_requests_total", "counter",
           "Login requests by outcome: created, claimed (a phone read it), approved, denied, "
           "expired (a screen was told), redeemed (a screen got its tokens).");
    for (int o = 0; o < QRL__OUT__COUNT; o++)
        tb_printf(&b, "qrlogin_login_requests_total{outcome=\"%s\"} %llu\n", outcome_names[o],
                  (unsigned long long)t->outcomes[o]);
    family(&b, "qrlogin_held_requests", "gauge",
           "Requests held now (Prefer: wait token requests, web screens waiting or watching).");
    tb_printf(&b, "qrlogin_held_requests %ld\n", x->held_now > 0 ? x->held_now : 0L);
    family(&b, "qrlogin_holds_total", "counter", "Requests that were held, since the start.");
    tb_printf(&b, "qrlogin_holds_total %llu\n", (unsigned long long)t->holds);
    if (x->store != NULL) {
        render_store_hist(&b, "qrlogin_store_commit_duration_seconds",
                          "Time of each group commit of the store's writer, from BEGIN to COMMIT.",
                          &x->store->commit_us, true);
        render_store_hist(&b, "qrlogin_store_sync_duration_seconds",
                          "Time of each flush of committed durable writes to the disk.",
                          &x->store->sync_us, true);
        render_store_hist(&b, "qrlogin_store_batch_writes",
                          "Writes in each group commit of the store's writer.",
                          &x->store->batch_writes, false);
    }
    family(&b, "process_start_time_seconds", "gauge",
           "Start time of the process since the Unix epoch, in seconds.");
    tb_printf(&b, "process_start_time_seconds %lld.%03lld\n", (long long)(m->start_ms / 1000),
              (long long)(m->start_ms % 1000));
    free(t);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    *len = b.n;
    return b.p;
}
