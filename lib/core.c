/* SPDX-License-Identifier: MIT */
/*
 * The core handle: configuration, clock, change notification, rate-limit helpers and
 * housekeeping. The flows themselves live in login_request.c, token.c, account.c and device.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "internal.h"

void qrl_config_defaults(qrl_config *cfg)
{
    *cfg = (qrl_config){
        .request_ttl_s = 120,
        .access_ttl_s = 3600,
        .refresh_ttl_s = 30 * 24 * 3600,
        .session_ttl_s = 30 * 24 * 3600,
        .interval_s = 5,
        .user_code_fail_limit_addr = 20,
        .user_code_fail_limit_account = 10,
        .user_code_fail_window_s = 600,
        .login_fail_limit_user = 10,
        .login_fail_limit_addr = 50,
        .login_fail_window_s = 900,
    };
}

static int config_valid(const qrl_config *c)
{
    return c->request_ttl_s >= 10 && c->request_ttl_s <= 3600 && c->access_ttl_s >= 60 &&
           c->refresh_ttl_s >= 60 && c->session_ttl_s >= 60 && c->interval_s >= 1 &&
           c->interval_s <= 60 && c->user_code_fail_window_s > 0 && c->login_fail_window_s > 0;
}

static bool has_notify(const qrl_store *st)
{
    return st->m->version >= 7 && st->m->set_notify != NULL;
}

/* The store's hook (store.h, set_notify): a login request changed elsewhere is reported as one
 * changed here. */
static void store_changed(void *ud, int64_t lr_id)
{
    qrl__notify(ud, lr_id);
}

qrl_err qrl_core_new(const qrl_config *cfg, qrl_store *store, qrl_core **out)
{
    qrl_core *core;

    *out = NULL;
    if (cfg == NULL || store == NULL || !config_valid(cfg))
        return QRL_ERR_INVALID;
    if (sodium_init() < 0)
        return QRL_ERR_CRYPTO;
    core = calloc(1, sizeof *core);
    if (core == NULL)
        return QRL_ERR_NOMEM;
    core->cfg = *cfg;
    core->st = store;
    core->polls = qrl__polltab_new();
    core->challenges = qrl__chaltab_new();
    if (core->polls == NULL || core->challenges == NULL) {
        qrl__polltab_free(core->polls);
        qrl__chaltab_free(core->challenges);
        free(core);
        return QRL_ERR_NOMEM;
    }
    /* Fails only for a NULL store, which was refused above. */
    if (has_notify(store))
        (void)store->m->set_notify(store, store_changed, core);
    *out = core;
    return QRL_OK;
}

const qrl_config *qrl_core_config(const qrl_core *core)
{
    return &core->cfg;
}

void qrl_core_free(qrl_core *core)
{
    if (core == NULL)
        return;
    /* After this returns the store calls no more: the core can go. */
    if (has_notify(core->st))
        (void)core->st->m->set_notify(core->st, NULL, NULL);
    qrl__polltab_free(core->polls);
    qrl__chaltab_free(core->challenges);
    free(core);
}

static bool has_scopes(const qrl_store *st)
{
    return st->m->version >= 5 && st->m->read_begin != NULL && st->m->read_end != NULL;
}

void qrl_core_read_begin(qrl_core *core)
{
    /* The only failure is a NULL store, which a core never has. */
    if (has_scopes(core->st))
        (void)core->st->m->read_begin(core->st);
}

void qrl_core_read_end(qrl_core *core)
{
    if (has_scopes(core->st))
        core->st->m->read_end(core->st);
}

int64_t qrl_core_now_ms(const qrl_core *core)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + atomic_load(&core->clock_offset_ms);
}

#ifdef QRL_TEST_HOOKS
void qrl_core_clock_advance(qrl_core *core, int64_t ms)
{
    atomic_fetch_add(&core->clock_offset_ms, ms);
}
#endif

void qrl__notify(qrl_core *core, int64_t lr_id)
{
    qrl__poll_unlearn(core->polls, lr_id);
    if (core->cfg.on_change != NULL)
        core->cfg.on_change(core->cfg.on_change_ud, lr_id);
}

qrl_err qrl__limit_check(qrl_core *core, const char *key, int64_t limit, int64_t window_s)
{
    int64_t count = 0;
    qrl_err rc =
        core->st->m->ratelimit_peek(core->st, key, qrl_core_now_ms(core), window_s * 1000, &count);
    if (rc != QRL_OK)
        return rc;
    return count >= limit ? QRL_ERR_RATE_LIMITED : QRL_OK;
}

void qrl__limit_fail(qrl_core *core, const char *key, int64_t window_s)
{
    int64_t count;

    /* A failure to count is logged by the store; the caller's answer is an error anyway. */
    (void)core->st->m->ratelimit_hit(core->st, key, qrl_core_now_ms(core), window_s * 1000, &count);
}

qrl_err qrl_core_sweep(qrl_core *core)
{
    int64_t now = qrl_core_now_ms(core);

    /* Poll state of a request is useless once it can no longer be polled. */
    qrl__poll_sweep(core->polls, now - core->cfg.request_ttl_s * 1000 - 60000);
    /* Keep finished requests a day for support questions ("why was my TV refused?"). */
    return core->st->m->sweep(core->st, now, 24 * 3600 * 1000);
}

const char *qrl_lr_state_name(qrl_lr_state s)
{
    switch (s) {
    case QRL_LR_PENDING:
        return "pending";
    case QRL_LR_SCANNED:
        return "scanned";
    case QRL_LR_APPROVED:
        return "approved";
    case QRL_LR_REDEEMED:
        return "redeemed";
    case QRL_LR_DENIED:
        return "denied";
    case QRL_LR_EXPIRED:
        return "expired";
    }
    return "unknown";
}

int qrl_device_kind_valid(const char *kind)
{
    static const char *const kinds[] = {"tv", "browser", "desktop", "cli", "phone", "other"};

    if (kind == NULL)
        return 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, kinds[i]) == 0)
            return 1;
    return 0;
}
