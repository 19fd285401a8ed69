/* SPDX-License-Identifier: MIT */
/*
 * Detection of device-code phishing kits. A kit starts login requests on the attacker's own
 * screen and gets victims to approve them; the approval screen and the notice of a new device
 * (notice.c) warn each victim, and three patterns that no honest screen shows are refused here:
 *
 *   pattern                                      counted per              reason
 *   one code looked up from many networks        login request            many_networks
 *     (the code was sent to many people)           (distinct networks)
 *   a request started from a denied network      (the operator's list)    denied_network
 *   one screen address, many approving accounts  screen address           many_accounts
 *     (one attacker screen, many victims)          (distinct accounts)
 *
 * Each refusal is QRL_ERR_SUSPICIOUS with its reason for qrl_last_block_reason(), and the
 * request is moved to DENIED, so that the attacker's screen stops at once (its held poll
 * wakes) and no later phone can approve it. The account whose phone was stopped is told on all
 * its devices (notice.c, qrl__notice_blocked): its owner learns that someone tried, even when
 * the phone that was stopped is not at hand, or not the owner's.
 *
 * Counting distinct things with the store's rate-limit methods alone, so that every node on a
 * shared store counts together and a restart forgets nothing: a GCRA limit of one attempt per
 * window (ratelimit_take, limit 1) on a key naming the thing ("lkn:<request>:<network>") is
 * taken only by the first occurrence within the window, which tells new from seen atomically;
 * only a new one adds a hit to the counter key ("lkc:<request>"), whose count is then the
 * number of distinct things. Two racing lookups from one new network take the first key once
 * between them, so the counter never counts a network twice. A store with ratelimit_first_hit
 * does both in one atomic call (one statement on PostgreSQL instead of two).
 *
 * Networks are counted as same_network (login_request.c) compares them: an IPv4 address by its
 * /24, an IPv6 address by its /64 (RFC 6177: one site), an IPv4-mapped one as IPv4. A /24 and
 * not the address itself because a phone on a mobile network moves between addresses of its
 * carrier's pool, often within one /24, and that must not count as another place. Screen
 * addresses (many_accounts) are counted as the address limits count them (qrl__address_key):
 * an IPv4 address exactly, since several homes behind different addresses of one /24 are
 * common and would otherwise add up.
 *
 * When adding a pattern: a value of qrl_block_reason (core.h, never renumber) and its name
 * below, its configuration with a default in qrl_config_defaults (core.c), its check here,
 * its call in login_request.c, its row in docs/security.md ("Detection") and its tests in
 * tests/unit/lib/test_phishing.c.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The reason of this thread's last QRL_ERR_SUSPICIOUS (qrl_last_block_reason). */
static _Thread_local qrl_block_reason last_reason;

const char *qrl_block_reason_name(qrl_block_reason reason)
{
    switch (reason) {
    case QRL_BLOCK_MANY_NETWORKS:
        return "many_networks";
    case QRL_BLOCK_DENIED_NETWORK:
        return "denied_network";
    case QRL_BLOCK_MANY_ACCOUNTS:
        return "many_accounts";
    case QRL_BLOCK_NONE:
        break;
    }
    return "";
}

qrl_block_reason qrl_last_block_reason(void)
{
    return last_reason;
}

/* The network an address counts as: "a.b.c.0/24" for IPv4 (also IPv4-mapped IPv6), the /64 of
 * qrl__address_key for IPv6, the text itself otherwise. `out` of QRL_MAX_ADDRESS + 1 bytes. */
static void network_key(const char *address, char *out, size_t len)
{
    unsigned char a[4];
    char k[QRL_MAX_ADDRESS + 1];

    qrl__address_key(address, k, sizeof k);
    if (inet_pton(AF_INET, k, a) == 1)
        snprintf(out, len, "%u.%u.%u.0/24", a[0], a[1], a[2]);
    else
        snprintf(out, len, "%s", k);
}

/* Whether `key` is seen for the first time in window_ms: QRL_OK new, QRL_ERR_EXISTS seen, or a
 * store error. */
static qrl_err first_sight(qrl_core *core, const char *key, int64_t now, int64_t window_ms)
{
    qrl_err rc = core->st->m->ratelimit_take(core->st, key, now, window_ms, 1, NULL);

    return rc == QRL_ERR_RATE_LIMITED ? QRL_ERR_EXISTS : rc;
}

/* first_sight of `seen` and, when new, a hit of `counter` (*count its hits): QRL_OK new and
 * counted, QRL_ERR_EXISTS seen, or a store error. One store call where the store has
 * ratelimit_first_hit (store.h; one statement instead of two on a shared store). */
static qrl_err first_sight_count(qrl_core *core, const char *seen, const char *counter, int64_t now,
                                 int64_t window_ms, int64_t *count)
{
    qrl_err rc;

    if (core->st->m->version >= 11 && core->st->m->ratelimit_first_hit != NULL)
        return core->st->m->ratelimit_first_hit(core->st, seen, counter, now, window_ms, count);
    rc = first_sight(core, seen, now, window_ms);
    if (rc != QRL_OK)
        return rc;
    return core->st->m->ratelimit_hit(core->st, counter, now, window_ms, count);
}

qrl_err qrl__phish_block(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr,
                         qrl_block_reason why, int64_t now)
{
    qrl_lr_cas cas = {.id = lr->id,
                      .from_mask = QRL_LR_BIT(QRL_LR_PENDING) | QRL_LR_BIT(QRL_LR_SCANNED),
                      .to = QRL_LR_DENIED,
                      .now_ms = now};

    /* A request decided or expired meanwhile is stopped already: the refusal stands. */
    if (core->st->m->lr_transition(core->st, &cas) == QRL_OK) {
        lr->state = QRL_LR_DENIED;
        qrl__notify(core, lr->id);
    }
    qrl__notice_blocked(core, auth, lr, why, now);
    last_reason = why;
    return QRL_ERR_SUSPICIOUS;
}

qrl_err qrl__phish_lookup(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr,
                          const char *address, int64_t now)
{
    char net[QRL_MAX_ADDRESS + 1], kn[QRL_MAX_ADDRESS + 48], kc[48];
    /* The request's whole life and a minute: a key outlives every lookup it has to tell. */
    int64_t window = lr->expires_ms - lr->created_ms + 60000;
    int64_t count = 0;
    qrl_err rc;

    if (core->cfg.max_lookup_networks <= 0 ||
        (lr->state != QRL_LR_PENDING && lr->state != QRL_LR_SCANNED))
        return QRL_OK;
    network_key(address, net, sizeof net);
    snprintf(kn, sizeof kn, "lkn:%lld:%s", (long long)lr->id, net);
    snprintf(kc, sizeof kc, "lkc:%lld", (long long)lr->id);
    rc = first_sight_count(core, kn, kc, now, window, &count);
    if (rc == QRL_ERR_EXISTS)
        return QRL_OK; /* a network that looked before looks again */
    if (rc != QRL_OK)
        return rc;
    if (count > core->cfg.max_lookup_networks)
        return qrl__phish_block(core, auth, lr, QRL_BLOCK_MANY_NETWORKS, now);
    return QRL_OK;
}

qrl_block_reason qrl__phish_denied(qrl_core *core, const qrl_lr_rec *lr)
{
    const qrl_config *c = &core->cfg;

    if (c->network_denied != NULL && c->network_denied(c->network_denied_ud, lr->address))
        return QRL_BLOCK_DENIED_NETWORK;
    return QRL_BLOCK_NONE;
}

qrl_err qrl__phish_approver(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr, int64_t now)
{
    int64_t account_id = auth->account_id;
    char a[QRL_MAX_ADDRESS + 1], ka[QRL_MAX_ADDRESS + 48], kc[QRL_MAX_ADDRESS + 16];
    int64_t window = core->cfg.approvers_window_s * 1000, count = 0;
    qrl_err rc;

    if (core->cfg.max_approvers_per_address <= 0 || lr->address[0] == '\0')
        return QRL_OK;
    qrl__address_key(lr->address, a, sizeof a);
    snprintf(ka, sizeof ka, "apa:%s:%lld", a, (long long)account_id);
    snprintf(kc, sizeof kc, "apc:%s", a);
    rc = first_sight_count(core, ka, kc, now, window, &count);
    if (rc == QRL_ERR_EXISTS)
        return QRL_OK; /* an account counted already: one of the first, still welcome */
    if (rc != QRL_OK)
        return rc;
    if (count <= core->cfg.max_approvers_per_address)
        return QRL_OK;
    /* Refused: this account stays new to the address, so that its next approval from there
     * is refused too instead of passing as one already counted. */
    (void)core->st->m->ratelimit_give(core->st, ka, now, window, 1);
    return qrl__phish_block(core, auth, lr, QRL_BLOCK_MANY_ACCOUNTS, now);
}
