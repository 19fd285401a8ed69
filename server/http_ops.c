/* SPDX-License-Identifier: MIT */
/*
 * Endpoints for operators: liveness (GET /healthz), readiness (GET /readyz) and Prometheus
 * metrics (GET /metrics).
 *
 * /healthz answers as long as a worker thread answers anything: restart the process when it
 * does not. /readyz answers 200 only when the database answers right now: a read through the
 * core (a token lookup that finds nothing), and, when the store can tell, a check that it
 * would take a write (the store's `health` probe); a database locked by another process
 * takes reads but not writes, and every sign-in writes. A load balancer sends traffic
 * elsewhere while it answers 503. A probe is run at most once a second: the answer is shared
 * by every /readyz in that second, so that a flood of them costs one probe.
 *
 * /metrics may tell a stranger how many people sign in, so it answers only the addresses of
 * --metrics-allow (loopback by default) and looks like an unknown path to everyone else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* How long a readiness answer is reused. */
#define READY_TTL_MS 1000
/* The store version that added `health` (store.h). A store of an older version has no such
 * member in its table, so it must not be read there. */
#define STORE_HEALTH_VERSION 8

/* A token of the right shape that names nothing: the readiness read looks it up. Our tokens
 * are 32 random bytes, never this. */
#define PROBE_TOKEN "qrl_at_readiness-probe-names-no-token"

enum MHD_Result qrl__h_healthz(qrl__req *r, const char *arg)
{
    static const char body[] = "{\"status\":\"ok\"}";

    (void)arg;
    return qrl__respond_text(r, 200, body, sizeof body - 1, NULL);
}

/* The store's `health` method, or NULL when it has none. */
static qrl_err (*store_health(const qrl_store *st))(qrl_store *, int, qrl_store_health *)
{
    if (st == NULL || st->m == NULL || st->m->version < STORE_HEALTH_VERSION)
        return NULL;
    return st->m->health;
}

/* Whether the database answers now: QRL_OK, or the error that says why not. */
static qrl_err probe(qrl_server *srv)
{
    qrl_err (*health)(qrl_store *, int, qrl_store_health *) = store_health(srv->cfg.store);
    qrl_introspection in;
    qrl_err rc = qrl_introspect(srv->core, PROBE_TOKEN, &in);

    if (rc == QRL_OK && health != NULL)
        rc = health(srv->cfg.store, 1, NULL);
    return rc;
}

static const qrl__errsay ready_say[] = {
    {QRL_ERR_BUSY,
     {503, "temporarily_unavailable",
      "the database does not take writes now (another process holds its write lock)"}},
    {QRL_ERR_STORE, {503, "temporarily_unavailable", "the database does not answer"}},
    {QRL_ERR_INTERNAL, {503, "temporarily_unavailable", "the server is shutting down"}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_readyz(qrl__req *r, const char *arg)
{
    static const char body[] = "{\"status\":\"ready\"}";
    qrl_server *srv = r->srv;
    int64_t now = qrl__mono_ms();
    qrl_err rc;

    (void)arg;
    if (atomic_load(&srv->stopping))
        return qrl__respond_err_as(r, QRL_ERR_INTERNAL, QRL__CTX_API, ready_say, NULL, NULL);
    rc = (qrl_err)atomic_load(&srv->ready_rc);
    /* One probe at a time: the others take the last answer rather than queue behind it. */
    if (now - atomic_load(&srv->ready_at_ms) >= READY_TTL_MS &&
        pthread_mutex_trylock(&srv->ready_mu) == 0) {
        if (now - atomic_load(&srv->ready_at_ms) >= READY_TTL_MS) {
            rc = probe(srv);
            atomic_store(&srv->ready_rc, (int)rc);
            atomic_store(&srv->ready_at_ms, qrl__mono_ms());
        } else {
            rc = (qrl_err)atomic_load(&srv->ready_rc);
        }
        pthread_mutex_unlock(&srv->ready_mu);
    }
    if (rc == QRL_OK)
        return qrl__respond_text(r, 200, body, sizeof body - 1, NULL);
    /* Whatever the store said, the answer is "not now": 503 with Retry-After. */
    if (rc != QRL_ERR_BUSY && rc != QRL_ERR_NOMEM)
        rc = QRL_ERR_STORE;
    return qrl__respond_err_as(r, rc, QRL__CTX_API, ready_say, NULL, NULL);
}

enum MHD_Result qrl__h_metrics(qrl__req *r, const char *arg)
{
    qrl_server *srv = r->srv;
    qrl_err (*health)(qrl_store *, int, qrl_store_health *) = store_health(srv->cfg.store);
    qrl_store_health sh;
    qrl__metrics_extra x = {.held_now = atomic_load(&srv->held_live)};
    struct MHD_Response *resp;
    enum MHD_Result ret;
    size_t len;
    char *text;

    (void)arg;
    if (!qrl__cidrs_match(&srv->metrics_allow, &r->ip))
        return qrl__respond_error(r, 404, "not_found", "no such endpoint");
    memset(&sh, 0, sizeof sh);
    if (health != NULL && health(srv->cfg.store, 0, &sh) == QRL_OK)
        x.store = &sh;
    text = qrl__metrics_render(&srv->metrics, &x, &len);
    if (text == NULL)
        return qrl__respond_err(r, QRL_ERR_NOMEM, QRL__CTX_API);
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return qrl__respond_err(r, QRL_ERR_NOMEM, QRL__CTX_API);
    }
    MHD_add_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    qrl__add_request_id(r, resp);
    r->status = 200;
    r->bytes = len;
    ret = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return ret;
}
