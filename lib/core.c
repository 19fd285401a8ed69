/* SPDX-License-Identifier: MIT */
/*
 * The core handle: configuration, clock, change notification, rate-limit helpers and
 * housekeeping. The flows themselves live in login_request.c, token.c, account.c and device.c.
 */
#include <arpa/inet.h>
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
        .device_idle_ttl_s = 30 * 24 * 3600,
        .refresh_max_ttl_s = 180 * 24 * 3600,
        .notice_revoke_window_s = 3600,
        .interval_s = 5,
        .user_code_account = {5, 900},
        .user_code_addr = {20, 900},
        .sign_in_user = {10, 900},
        .sign_in_addr = {50, 900},
        .device_auth_addr = {120, 600},
        .device_auth_client = {60000, 600},
        .approve_account = {30, 600},
        .refresh_device = {30, 600},
        .max_lookup_networks = 3,
        .max_approvers_per_address = 5,
        .approvers_window_s = 24 * 3600,
    };
}

void qrl_config_no_limits(qrl_config *cfg)
{
    cfg->user_code_account.count = 0;
    cfg->user_code_addr.count = 0;
    cfg->sign_in_user.count = 0;
    cfg->sign_in_addr.count = 0;
    cfg->device_auth_addr.count = 0;
    cfg->device_auth_client.count = 0;
    cfg->approve_account.count = 0;
    cfg->refresh_device.count = 0;
}

static int limit_valid(qrl_limit l)
{
    return l.count >= 0 && (l.count == 0 || (l.window_s > 0 && l.window_s <= 30 * 24 * 3600));
}

static int config_valid(const qrl_config *c)
{
    return c->request_ttl_s >= 10 && c->request_ttl_s <= 3600 && c->access_ttl_s >= 60 &&
           c->refresh_ttl_s >= 60 && c->session_ttl_s >= 60 && c->interval_s >= 1 &&
           (c->device_idle_ttl_s == 0 || c->device_idle_ttl_s >= 3600) &&
           (c->refresh_max_ttl_s == 0 || c->refresh_max_ttl_s >= 3600) &&
           c->notice_revoke_window_s >= 0 && c->notice_revoke_window_s <= 7 * 24 * 3600 &&
           c->interval_s <= 60 && limit_valid(c->user_code_account) &&
           limit_valid(c->user_code_addr) && limit_valid(c->sign_in_user) &&
           limit_valid(c->sign_in_addr) && limit_valid(c->device_auth_addr) && limit_valid(c->device_auth_client) &&
           limit_valid(c->approve_account) && limit_valid(c->refresh_device) &&
           c->max_lookup_networks >= 0 && c->max_approvers_per_address >= 0 &&
           (c->max_approvers_per_address == 0 ||
            (c->approvers_window_s > 0 && c->approvers_window_s <= 30 * 24 * 3600));
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
    /* The rate limits need the store's atomic take (version 8). */
    if (store->m->version < 8 || store->m->ratelimit_take == NULL ||
        store->m->ratelimit_give == NULL)
        return QRL_ERR_INVALID;
    if (sodium_init() < 0)
        return QRL_ERR_CRYPTO;
    core = calloc(1, sizeof *core);
    if (core == NULL)
        return QRL_ERR_NOMEM;
    core->cfg = *cfg;
    core->st = store;
    core->polls = qrl__polltab_new();
    /* A store of version 11 keeps the passkey challenges, so that any node finishes a
     * ceremony; for an older one this core keeps them. */
    if (!qrl__challenges_in_store(store))
        core->challenges = qrl__chaltab_new();
    /* Without change stamps nothing the store said can be kept: every poll reads it. */
    if (store->m->version >= 8 && store->m->lr_stamp != NULL)
        core->pending = qrl__pending_new();
    if (core->polls == NULL || (core->challenges == NULL && !qrl__challenges_in_store(store)) ||
        (core->pending == NULL && store->m->version >= 8 && store->m->lr_stamp != NULL)) {
        qrl__pending_free(core->pending);
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
    qrl__pending_free(core->pending);
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
    /* Not needed for correctness (the store's stamp has moved), but frees the entry now. */
    if (core->pending != NULL && lr_id > 0)
        qrl__pending_forget(core->pending, lr_id);
    if (core->cfg.on_change != NULL)
        core->cfg.on_change(core->cfg.on_change_ud, lr_id);
}

void qrl__address_key(const char *address, char *out, size_t len)
{
    unsigned char a[16];

    if (address != NULL && strchr(address, ':') != NULL && inet_pton(AF_INET6, address, a) == 1) {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, v4mapped, sizeof v4mapped) == 0) {
            snprintf(out, len, "%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
            return;
        }
        /* One site, or one customer of a provider, has a whole /64 (RFC 6177): counting its
         * addresses one by one would let it rotate through 2^64 of them. */
        snprintf(out, len, "%02x%02x:%02x%02x:%02x%02x:%02x%02x::/64", a[0], a[1], a[2], a[3], a[4],
                 a[5], a[6], a[7]);
        return;
    }
    snprintf(out, len, "%s", address != NULL ? address : "");
}

int qrl_device_idle(const qrl_core *core, const qrl_device_rec *dev, int64_t now_ms)
{
    int64_t seen = dev->last_seen_ms > dev->created_ms ? dev->last_seen_ms : dev->created_ms;

    return core->cfg.device_idle_ttl_s > 0 && now_ms - seen > core->cfg.device_idle_ttl_s * 1000;
}

/* The wait the last refusal of this thread asked for (qrl_retry_after_s). */
static _Thread_local int64_t retry_after_ms;

int64_t qrl_retry_after_s(void)
{
    int64_t s = (retry_after_ms + 999) / 1000;
    return s >= 1 ? s : 1;
}

qrl_err qrl__limit_take(qrl_core *core, const char *key, int64_t count, int64_t window_s)
{
    int64_t retry = 0;
    qrl_err rc;

    if (count <= 0)
        return QRL_OK;
    rc = core->st->m->ratelimit_take(core->st, key, qrl_core_now_ms(core), window_s * 1000,
                                     count, &retry);
    if (rc == QRL_ERR_RATE_LIMITED)
        retry_after_ms = retry;
    return rc;
}

void qrl__limit_give(qrl_core *core, const char *key, int64_t count, int64_t window_s)
{
    /* A failure to give back is logged by the store: it only costs the caller one attempt. */
    if (count > 0)
        (void)core->st->m->ratelimit_give(core->st, key, qrl_core_now_ms(core), window_s * 1000,
                                          count);
}

qrl_err qrl_core_sweep(qrl_core *core)
{
    int64_t now = qrl_core_now_ms(core);

    /* Poll state of a request is useless once it can no longer be polled. */
    qrl__poll_sweep(core->polls, now - core->cfg.request_ttl_s * 1000 - 60000);
    if (core->pending != NULL)
        qrl__pending_sweep(core->pending, now);
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
