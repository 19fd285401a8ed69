/* SPDX-License-Identifier: MIT */
/*
 * The login request state machine. Every state change in qrlogin goes
 * through lr_move() below, which checks the transition against this table and lets the store
 * perform it as one compare-and-set, so that under any number of concurrent callers exactly one
 * wins and the others change nothing.
 *
 *   from \ to   SCANNED  APPROVED  REDEEMED  DENIED  EXPIRED
 *   PENDING     scan     -         -         deny    expire
 *   SCANNED     -        approve   -         deny    expire
 *   APPROVED    -        -         redeem    revoke  expire
 *   REDEEMED, DENIED, EXPIRED: terminal, never change.
 *
 * APPROVED -> DENIED happens when the approving phone (or its account) is revoked before the
 * screen redeems: redemption re-checks the approver (store lr_redeem), and revoking a phone
 * declines what it approved at once, so a waiting screen learns of it immediately.
 *
 * When adding a state: extend qrl_lr_state (store.h, never renumber), the `legal` table, the
 * state names in core.c, the answers in qrl_token_device_code and qrl_lr_view_claim, and the
 * tests in tests/unit/lib/test_login_request.c.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "crash.h"
#include "internal.h"

/* The protocol's sizes are the store's: a nonce or key the store keeps fits a decision. */
_Static_assert(QRL_PUBKEY_BYTES == QRL_DECISION_PUBKEY_BYTES, "device keys are Ed25519");

#define B(s) QRL_LR_BIT(QRL_LR_##s)
#define LIVE_MASK (B(PENDING) | B(SCANNED) | B(APPROVED))

/* legal[to] = states it may be entered from. REDEEMED goes through lr_redeem, not lr_move. */
static const unsigned legal[] = {
    [QRL_LR_PENDING] = 0,
    [QRL_LR_SCANNED] = B(PENDING),
    [QRL_LR_APPROVED] = B(SCANNED),
    [QRL_LR_REDEEMED] = B(APPROVED),
    [QRL_LR_DENIED] = B(PENDING) | B(SCANNED) | B(APPROVED),
    [QRL_LR_EXPIRED] = B(PENDING) | B(SCANNED) | B(APPROVED),
};

/* Performs one transition and notifies waiters. QRL_ERR_CONFLICT when it did not happen. */
static qrl_err lr_move(qrl_core *core, qrl_lr_cas *cas)
{
    qrl_err rc;

    /* A caller asking for an illegal transition is a bug, not a runtime condition. */
    if ((cas->from_mask & ~legal[cas->to]) != 0 || cas->from_mask == 0)
        return QRL_ERR_INTERNAL;
    rc = core->st->m->lr_transition(core->st, cas);
    if (rc == QRL_OK)
        qrl__notify(core, cas->id);
    return rc;
}

/* If a live request is past its expiry, records EXPIRED (whoever gets there first) and updates
 * lr->state. Returns true when the request is (now) expired. */
static bool lr_expire_if_due(qrl_core *core, qrl_lr_rec *lr, int64_t now)
{
    if (lr->state == QRL_LR_EXPIRED)
        return true;
    if ((QRL_LR_BIT(lr->state) & LIVE_MASK) == 0 || lr->expires_ms > now)
        return false;
    qrl_lr_cas cas = {.id = lr->id, .from_mask = LIVE_MASK, .to = QRL_LR_EXPIRED, .now_ms = now};
    if (lr_move(core, &cas) == QRL_OK) {
        lr->state = QRL_LR_EXPIRED;
        return true;
    }
    /* Someone else moved it; the fresh state decides. */
    if (core->st->m->lr_get(core->st, lr->id, lr) != QRL_OK)
        return false;
    return lr->state == QRL_LR_EXPIRED;
}

/* Characters a display text may not hold, beyond the C0 controls: C1 controls, and the
 * invisible format characters that change how the text around them reads. A bidirectional
 * override (U+202E) makes "Living Room TV\u202eVT ruoy" show as something else on the phone's
 * approval screen; isolates, embeddings, marks and zero-width characters hide or reorder text
 * the same way. ZWJ and ZWNJ (U+200C, U+200D) stay allowed: emoji sequences and several
 * scripts need them, and they reorder nothing. */
static bool display_unsafe(unsigned cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c || cp == 0x200b || cp == 0x200e ||
           cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) ||
           cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb);
}

bool qrl__text_valid(const char *s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);

    if (n > max)
        return false;
    while (*p != '\0') {
        unsigned c = *p, len, cp;
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) {
            p++;
            continue;
        }
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        for (unsigned i = 1; i < len; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        /* Reject overlong forms, surrogates and out-of-range code points. */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || display_unsafe(cp))
            return false;
        p += len;
    }
    return true;
}

int qrl_device_platform_valid(const char *platform)
{
    return platform == NULL || qrl__text_valid(platform, QRL_MAX_DEVICE_PLATFORM);
}

static bool client_id_valid(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;

    if (n == 0 || n > QRL_MAX_CLIENT_ID)
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

/* RFC 6749 section 3.3: scope tokens are %x21 / %x23-5B / %x5D-7E separated by spaces. */
static bool scope_valid(const char *s)
{
    if (strlen(s) > QRL_MAX_SCOPE)
        return false;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c != ' ' && (c < 0x21 || c > 0x7e || c == '"' || c == '\\'))
            return false;
    }
    return true;
}

static bool screen_kind_valid(const char *k)
{
    return qrl_device_kind_valid(k) && strcmp(k, "phone") != 0;
}

/* The number of times we draw fresh codes when the store reports a collision. With 20^8 user
 * codes a second collision in a row means something else is wrong. */
#define CREATE_ATTEMPTS 4

/* The store's change stamp of request `id` (store.h, lr_stamp); 0 when the core keeps no
 * pending-poll cache. Taken before a store read whose result is to be remembered. */
static uint64_t lr_stamp(qrl_core *core, int64_t id)
{
    return core->pending != NULL ? core->st->m->lr_stamp(core->st, id) : 0;
}

/* Takes one device authorization from the limits of the client's address and of its client_id
 * (the address first: a flood from one address then spends nothing of the client_id's). */
static qrl_err device_auth_take(qrl_core *core, const char *client_id, const char *address)
{
    const qrl_limit *la = &core->cfg.device_auth_addr, *lc = &core->cfg.device_auth_client;
    char a[QRL_MAX_ADDRESS + 1], ka[QRL_MAX_ADDRESS + 16], kc[QRL_MAX_CLIENT_ID + 16];
    qrl_err rc;

    qrl__address_key(address, a, sizeof a);
    snprintf(ka, sizeof ka, "da:addr:%s", a);
    snprintf(kc, sizeof kc, "da:client:%s", client_id);
    rc = qrl__limit_take(core, ka, la->count, la->window_s);
    if (rc != QRL_OK)
        return rc;
    rc = qrl__limit_take(core, kc, lc->count, lc->window_s);
    if (rc != QRL_OK)
        qrl__limit_give(core, ka, la->count, la->window_s);
    return rc;
}

qrl_err qrl_device_authorize_platform(qrl_core *core, const char *client_id, const char *scope,
                                      const char *device_name, const char *device_kind,
                                      const char *device_platform, const char *address,
                                      qrl_device_auth *out)
{
    return qrl_device_authorize_dpop(core, client_id, scope, device_name, device_kind,
                                     device_platform, NULL, address, out);
}

qrl_err qrl_device_authorize_dpop(qrl_core *core, const char *client_id, const char *scope,
                                  const char *device_name, const char *device_kind,
                                  const char *device_platform, const char *dpop_jkt,
                                  const char *address, qrl_device_auth *out)
{
    qrl_lr_rec lr = {0};
    int64_t now = qrl_core_now_ms(core);
    uint64_t stamp = 0;
    qrl_err rc = QRL_ERR_INTERNAL;

    memset(out, 0, sizeof *out);
    if (scope == NULL)
        scope = "";
    if (device_name == NULL || device_name[0] == '\0')
        device_name = "Unnamed device";
    if (device_kind == NULL || device_kind[0] == '\0')
        device_kind = "other";
    if (device_platform == NULL)
        device_platform = "";
    if (dpop_jkt == NULL)
        dpop_jkt = "";
    if (!client_id_valid(client_id) || !scope_valid(scope) ||
        !qrl__text_valid(device_name, QRL_MAX_DEVICE_NAME) || !screen_kind_valid(device_kind) ||
        !qrl_device_platform_valid(device_platform) ||
        (dpop_jkt[0] != '\0' && !qrl_dpop_jkt_valid(dpop_jkt)))
        return QRL_ERR_INVALID;
    if (qrl__strcpy(lr.client_id, sizeof lr.client_id, client_id) != QRL_OK ||
        qrl__strcpy(lr.scope, sizeof lr.scope, scope) != QRL_OK ||
        qrl__strcpy(lr.device_name, sizeof lr.device_name, device_name) != QRL_OK ||
        qrl__strcpy(lr.device_kind, sizeof lr.device_kind, device_kind) != QRL_OK ||
        qrl__strcpy(lr.device_platform, sizeof lr.device_platform, device_platform) != QRL_OK ||
        qrl__strcpy(lr.dpop_jkt, sizeof lr.dpop_jkt, dpop_jkt) != QRL_OK ||
        qrl__strcpy(lr.address, sizeof lr.address, address) != QRL_OK)
        return QRL_ERR_INVALID;
    rc = device_auth_take(core, client_id, address);
    if (rc != QRL_OK)
        return rc;
    lr.created_ms = now;
    lr.updated_ms = now;
    lr.expires_ms = now + core->cfg.request_ttl_s * 1000;
    lr.interval_s = core->cfg.interval_s;
    lr.state = QRL_LR_PENDING;

    for (int attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
        lr.id = qrl__lr_id_new();
        qrl__device_code_new(lr.id, out->device_code);
        (void)qrl__scan_from_device_code(out->device_code, out->scan_secret);
        qrl__user_code_new(lr.user_code);
        qrl__secret_hash(out->device_code, &lr.device_code_hash);
        qrl__secret_hash(out->scan_secret, &lr.scan_hash);
        stamp = lr_stamp(core, lr.id);
        rc = core->st->m->lr_create(core->st, &lr);
        if (rc != QRL_ERR_EXISTS)
            break;
    }
    if (rc != QRL_OK) {
        sodium_memzero(out, sizeof *out);
        return rc;
    }
    /* Its screen polls next: answer those polls from memory. */
    if (core->pending != NULL)
        qrl__pending_learn(core->pending, &lr, stamp);
    qrl_user_code_format(lr.user_code, out->user_code);
    out->expires_in_s = core->cfg.request_ttl_s;
    out->interval_s = lr.interval_s;
    out->lr_id = lr.id;
    memcpy(out->dpop_jkt, lr.dpop_jkt, sizeof out->dpop_jkt);
    return QRL_OK;
}

qrl_err qrl_device_authorize(qrl_core *core, const char *client_id, const char *scope,
                             const char *device_name, const char *device_kind, const char *address,
                             qrl_device_auth *out)
{
    return qrl_device_authorize_platform(core, client_id, scope, device_name, device_kind, NULL,
                                         address, out);
}

/* A screen that proved a DPoP key (RFC 9449) gets a device holding that key: its tokens are
 * bound to it from the start (store.h, qrl_device_rec). */
static void dev_bind(qrl_device_rec *dev, const unsigned char *dpop_key)
{
    if (dpop_key == NULL)
        return;
    memcpy(dev->pubkey, dpop_key, sizeof dev->pubkey);
    dev->has_pubkey = 1;
}

/* Redeems an APPROVED request for the screen: one store transaction creates the device and its
 * tokens. */
static qrl_err lr_redeem(qrl_core *core, qrl_lr_rec *lr, int64_t now, const char *address,
                         const unsigned char *dpop_key, qrl_poll_result *res)
{
    qrl_device_rec dev = {0};
    qrl_token_rec rec[2];
    qrl_lr_state st = lr->state;
    qrl_err rc;

    memcpy(dev.name, lr->device_name, sizeof dev.name);
    memcpy(dev.kind, lr->device_kind, sizeof dev.kind);
    dev_bind(&dev, dpop_key);
    if (qrl__strcpy(dev.address, sizeof dev.address, address) != QRL_OK)
        memcpy(dev.address, lr->address, sizeof dev.address);
    dev.created_ms = now;
    qrl__tokens_draw(core, lr->client_id, lr->scope, now, &res->tokens, rec);
    QRL_CRASH_POINT(REDEEM_BEFORE_SUBMIT);
    rc = core->st->m->lr_redeem(core->st, lr->id, now, &dev, rec, 2, &st);
    if (rc != QRL_OK) {
        sodium_memzero(&res->tokens, sizeof res->tokens);
        if (rc == QRL_ERR_DENIED)
            qrl__notify(core, lr->id);
        if (rc == QRL_ERR_CONFLICT)
            lr->state = st;
        return rc;
    }
    QRL_CRASH_POINT(REDEEM_COMMITTED);
    qrl__notify(core, lr->id);
    /* The account's other devices hear of the new one (lib/notice.c). */
    qrl__notice_linked(core, &dev, lr->device_platform, now);
    res->tokens.device_id = dev.id;
    res->tokens.account_id = dev.account_id;
    res->tokens.dpop_bound = dev.has_pubkey;
    res->state = QRL_LR_REDEEMED;
    return QRL_OK;
}

/* A request bound to a key (its dpop_jkt, RFC 9449 section 10) answers only a proof of that
 * key: QRL_OK for an unbound request or the right key, QRL_ERR_UNAUTHORIZED without a proof,
 * QRL_ERR_FORBIDDEN with another key's. Whoever holds the device code but not the key learns
 * nothing of the request, not even whether a phone has scanned it. */
static qrl_err lr_key_check(const qrl_lr_rec *lr, const unsigned char *dpop_key)
{
    char jkt[QRL_DPOP_JKT_LEN + 1];

    if (lr->dpop_jkt[0] == '\0')
        return QRL_OK;
    if (dpop_key == NULL)
        return QRL_ERR_UNAUTHORIZED;
    qrl_dpop_thumbprint(dpop_key, jkt);
    return sodium_memcmp(jkt, lr->dpop_jkt, sizeof jkt) == 0 ? QRL_OK : QRL_ERR_FORBIDDEN;
}

/* Maps a decided state to the device-code grant's answer. */
static qrl_err terminal_answer(qrl_lr_state s)
{
    switch (s) {
    case QRL_LR_REDEEMED:
        return QRL_ERR_REDEEMED;
    case QRL_LR_DENIED:
        return QRL_ERR_DENIED;
    case QRL_LR_EXPIRED:
        return QRL_ERR_EXPIRED;
    default:
        return QRL_ERR_INTERNAL;
    }
}

/* A plain poll answered from the pending-poll cache: QRL_ERR_PENDING (answered; res filled),
 * QRL_ERR_SLOW_DOWN, QRL_ERR_INVALID_CLIENT, or QRL_ERR_NOT_FOUND when the store must answer
 * (nothing known, past expiry, or the request may have changed since it was read). */
static qrl_err poll_from_memory(qrl_core *core, const qrl_lr_secret_key *key,
                                const char *client_id, int64_t now, qrl_poll_result *res)
{
    qrl__pending_hit hit;
    qrl_err rc;

    if (core->pending == NULL)
        return QRL_ERR_NOT_FOUND;
    rc = qrl__pending_find(core->pending, key, client_id, now, &hit);
    if (rc != QRL_OK)
        return rc;
    if (core->st->m->lr_stamp(core->st, key->id) != hit.stamp) {
        qrl__pending_forget(core->pending, key->id);
        return QRL_ERR_NOT_FOUND;
    }
    res->lr_id = key->id;
    res->expires_ms = hit.expires_ms;
    res->state = hit.state;
    rc = qrl__poll_answer(core->polls, key->id, now, hit.interval_s, hit.state, &res->interval_s);
    return rc == QRL_OK ? QRL_ERR_PENDING : rc;
}

static bool has_poll_find(const qrl_store *st)
{
    return st->m->version >= 11 && st->m->lr_poll_find != NULL;
}

/* The store's lr_poll_find for a poll of the token endpoint (not a re-check of a held one):
 * QRL_OK or QRL_ERR_SLOW_DOWN with *lr read and the poll counted, QRL_ERR_NOT_FOUND when the
 * request is not this poll's (nothing counted), or a store error. */
static qrl_err poll_find(qrl_core *core, const qrl_lr_secret_key *key, const char *client_id,
                         const unsigned char *dpop_key, int64_t now, unsigned flags, int wait_s,
                         qrl_lr_rec *lr, int *interval_s)
{
    char jkt[QRL_DPOP_JKT_LEN + 1];
    qrl_lr_poll_req poll = {.key = *key,
                            .client_id = client_id,
                            .now_ms = now,
                            /* A client that asks to be held for at least the interval is not
                             * polling: it is waiting in the server, which we want it to do. */
                            .wait_s = (flags & QRL_POLL_WAIT) ? wait_s : -1,
                            .slack_ms = QRL__POLL_SLACK_MS,
                            .step_s = QRL_SLOW_DOWN_STEP_S,
                            .max_s = QRL_MAX_POLL_INTERVAL_S};

    if (strlen(client_id) > QRL_MAX_CLIENT_ID)
        return QRL_ERR_NOT_FOUND; /* no request has it: lr_find says what is wrong */
    if (dpop_key != NULL) {
        qrl_dpop_thumbprint(dpop_key, jkt);
        poll.dpop_jkt = jkt;
    }
    return core->st->m->lr_poll_find(core->st, &poll, lr, interval_s);
}

qrl_err qrl_token_device_code(qrl_core *core, const char *client_id, const char *device_code,
                              unsigned flags, int wait_s, const char *address, qrl_poll_result *res)
{
    return qrl_token_device_code_dpop(core, client_id, device_code, flags, wait_s, address, NULL,
                                      res);
}

qrl_err qrl_token_device_code_dpop(qrl_core *core, const char *client_id, const char *device_code,
                                   unsigned flags, int wait_s, const char *address,
                                   const unsigned char *dpop_key, qrl_poll_result *res)
{
    qrl_lr_rec lr;
    qrl_lr_secret_key key;
    qrl_lr_state told;
    int64_t now = qrl_core_now_ms(core);
    uint64_t stamp;
    int polled_interval_s = 0;
    qrl_err rc, polled;

    memset(res, 0, sizeof *res);
    if (client_id == NULL || client_id[0] == '\0' || device_code == NULL)
        return QRL_ERR_INVALID;
    if (!qrl__lr_secret_key(device_code, QRL__PFX_DEVICE_CODE, &key))
        return QRL_ERR_NOT_FOUND;
    /* A plain poll of a request known to be pending needs no store read. */
    if ((flags & ~QRL_POLL_MEMORY) == 0) {
        rc = poll_from_memory(core, &key, client_id, now, res);
        if (rc != QRL_ERR_NOT_FOUND)
            return rc;
    }
    if (flags & QRL_POLL_MEMORY)
        return QRL_ERR_NOT_FOUND;
    stamp = lr_stamp(core, key.id);
    /* A store shared by several nodes reads the request and counts the poll in one step
     * (store.h, lr_poll_find), and only when the request is this poll's: NOT_FOUND then reads
     * it to say why (or, of a store without it, reads it to begin with). */
    polled = QRL_ERR_NOT_FOUND;
    if (!(flags & QRL_POLL_RECHECK) && has_poll_find(core->st))
        polled =
            poll_find(core, &key, client_id, dpop_key, now, flags, wait_s, &lr, &polled_interval_s);
    if (polled != QRL_OK && polled != QRL_ERR_SLOW_DOWN && polled != QRL_ERR_NOT_FOUND)
        return polled;
    if (polled == QRL_ERR_NOT_FOUND) {
        rc = core->st->m->lr_find(core->st, QRL_LR_KEY_DEVICE_CODE, &key, now, &lr);
        if (rc != QRL_OK)
            return rc;
    }
    /* RFC 8628 section 3.4 / RFC 6749 section 5.2: a code issued to another client is an
     * invalid grant; compared in constant time like any secret-adjacent value. */
    if (strlen(client_id) != strlen(lr.client_id) ||
        sodium_memcmp(client_id, lr.client_id, strlen(client_id)) != 0)
        return QRL_ERR_INVALID_CLIENT;
    res->lr_id = lr.id;
    res->expires_ms = lr.expires_ms;
    res->interval_s = lr.interval_s;
    /* Before the poll is counted: a refused proof changes nothing, the request stays for the
     * screen that holds the key. */
    if ((rc = lr_key_check(&lr, dpop_key)) != QRL_OK)
        return rc;

    if (flags & QRL_POLL_RECHECK) {
        told = qrl__poll_last_state(core->polls, lr.id);
    } else if (polled != QRL_ERR_NOT_FOUND) {
        /* Counted by the store already; this node's entry only says what it was told. */
        int unused;
        res->interval_s = polled_interval_s;
        if (polled == QRL_ERR_SLOW_DOWN)
            return polled;
        (void)qrl__poll_arrive(core->polls, lr.id, now, lr.interval_s, 1, &unused, &told);
    } else {
        /* A client that asks to be held for at least the interval is not polling: it is
         * waiting in the server, which is what we want it to do. */
        int exempt = (flags & QRL_POLL_WAIT) && wait_s >= lr.interval_s;
        if (core->st->m->lr_poll != NULL) {
            /* A store shared by several nodes keeps the interval rules (store.h, lr_poll):
             * the previous poll may have been answered by another node. What this client was
             * last told stays this node's (it only decides whether a hold waits). */
            rc = core->st->m->lr_poll(core->st, lr.id, now, exempt, QRL__POLL_SLACK_MS,
                                      QRL_SLOW_DOWN_STEP_S, QRL_MAX_POLL_INTERVAL_S,
                                      &res->interval_s);
            if (rc != QRL_OK)
                return rc;
            /* Exempt: only to make (or find) this node's entry and read what it was told. */
            int unused;
            (void)qrl__poll_arrive(core->polls, lr.id, now, lr.interval_s, 1, &unused, &told);
        } else {
            rc = qrl__poll_arrive(core->polls, lr.id, now, lr.interval_s, exempt,
                                  &res->interval_s, &told);
            if (rc == QRL_ERR_SLOW_DOWN)
                return rc;
        }
    }

    for (int round = 0; round < 3; round++) {
        res->state = lr.state;
        if (lr_expire_if_due(core, &lr, now))
            res->state = lr.state;
        switch (lr.state) {
        case QRL_LR_PENDING:
        case QRL_LR_SCANNED:
            if ((flags & QRL_POLL_WAIT) && !(flags & QRL_POLL_FINAL) && lr.state == told) {
                res->hold = 1;
                return QRL_ERR_PENDING;
            }
            qrl__poll_answered(core->polls, lr.id, now, lr.state);
            if (core->pending != NULL)
                qrl__pending_learn(core->pending, &lr, stamp);
            return QRL_ERR_PENDING;
        case QRL_LR_APPROVED:
            rc = lr_redeem(core, &lr, now, address, dpop_key, res);
            if (rc == QRL_ERR_CONFLICT)
                continue; /* lost a race: lr.state is fresh, answer from it */
            qrl__poll_forget(core->polls, lr.id);
            return rc;
        default:
            qrl__poll_forget(core->polls, lr.id);
            return terminal_answer(lr.state);
        }
    }
    return QRL_ERR_INTERNAL;
}

/* --- phone side ----------------------------------------------------------------------- */

/* Rate-limit keys of user-code failures: per client address and per account. */
static void uc_keys(const qrl_auth *auth, const char *address, char *kaddr, size_t alen,
                    char *kacct, size_t clen)
{
    char a[QRL_MAX_ADDRESS + 1];

    qrl__address_key(address, a, sizeof a);
    snprintf(kaddr, alen, "uc:addr:%s", a);
    snprintf(kacct, clen, "uc:acct:%lld", (long long)auth->account_id);
}

/* Takes one attempt from both user-code limits (the account's first, so that an account over
 * its own limit spends nothing of its address's); a right code gives it back (uc_give), so
 * only misses count, and parallel guesses cannot all pass a check made before any missed. */
static qrl_err uc_take(qrl_core *core, const char *kaddr, const char *kacct)
{
    const qrl_config *c = &core->cfg;
    qrl_err rc = qrl__limit_take(core, kacct, c->user_code_account.count, c->user_code_account.window_s);
    if (rc != QRL_OK)
        return rc;
    rc = qrl__limit_take(core, kaddr, c->user_code_addr.count, c->user_code_addr.window_s);
    if (rc != QRL_OK)
        qrl__limit_give(core, kacct, c->user_code_account.count, c->user_code_account.window_s);
    return rc;
}

static void uc_give(qrl_core *core, const char *kaddr, const char *kacct)
{
    const qrl_config *c = &core->cfg;

    qrl__limit_give(core, kacct, c->user_code_account.count, c->user_code_account.window_s);
    qrl__limit_give(core, kaddr, c->user_code_addr.count, c->user_code_addr.window_s);
}

/* Finds a request by scan secret or typed user code. User-code misses are counted per address
 * and per account before and after normalisation-independent lookup; a hit never resets them. */
static qrl_err lr_find_by_code(qrl_core *core, const qrl_auth *auth, const char *code,
                               const char *address, int64_t now, qrl_lr_rec *lr)
{
    char canon[QRL_USER_CODE_LEN + 1];
    char kaddr[QRL_MAX_ADDRESS + 16], kacct[48];
    qrl_lr_secret_key key;
    qrl_err rc;

    if (code == NULL)
        return QRL_ERR_INVALID;
    if (strncmp(code, QRL__PFX_SCAN, QRL__PFX_LEN) == 0) {
        if (!qrl__lr_secret_key(code, QRL__PFX_SCAN, &key))
            return QRL_ERR_NOT_FOUND;
        return core->st->m->lr_find(core->st, QRL_LR_KEY_SCAN, &key, now, lr);
    }
    if (qrl_user_code_normalize(code, canon) != QRL_OK)
        return QRL_ERR_INVALID;

    uc_keys(auth, address, kaddr, sizeof kaddr, kacct, sizeof kacct);
    rc = uc_take(core, kaddr, kacct);
    if (rc != QRL_OK)
        return rc;
    rc = core->st->m->lr_find(core->st, QRL_LR_KEY_USER_CODE, canon, now, lr);
    if (rc != QRL_ERR_NOT_FOUND)
        uc_give(core, kaddr, kacct); /* only a miss counts */
    return rc;
}

/* The approval nonce given to the phone that claims a request: 128 random bits. */
static void nonce_new(char out[QRL_MAX_NONCE + 1])
{
    unsigned char raw[16];

    qrl__random(raw, sizeof raw);
    sodium_bin2base64(out, QRL_MAX_NONCE + 1, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
}

size_t qrl_decision_message(int64_t lr_id, const char *decision, const char *nonce,
                            const char *user_code, char *buf, size_t len)
{
    qrl_decision_msg m = {.lr_id = lr_id,
                          .decision = qrl_decision_parse(decision),
                          .nonce = nonce,
                          .user_code = user_code};

    return qrl_decision_bytes(&m, buf, len);
}

/* Verifies a decision signature by the calling phone's device key (qrlogin/protocol.h). */
static qrl_err signature_check(const qrl_auth *auth, const qrl_lr_rec *lr, qrl_decision decision,
                               const char *sig_b64)
{
    qrl_decision_msg m = {
        .lr_id = lr->id, .decision = decision, .nonce = lr->nonce, .user_code = lr->user_code};

    if (!auth->device.has_pubkey || lr->nonce[0] == '\0')
        return QRL_ERR_FORBIDDEN;
    if (qrl_decision_verify(&m, auth->device.pubkey, sizeof auth->device.pubkey, sig_b64) != QRL_OK)
        return QRL_ERR_FORBIDDEN;
    return QRL_OK;
}

/* IPv4: same /24; IPv6: same /64; otherwise exact match. Advisory only: shown to the user. */
static int same_network(const char *a, const char *b)
{
    unsigned char x[16], y[16];

    if (a == NULL || b == NULL || a[0] == '\0')
        return 0;
    if (inet_pton(AF_INET, a, x) == 1 && inet_pton(AF_INET, b, y) == 1)
        return memcmp(x, y, 3) == 0;
    if (inet_pton(AF_INET6, a, x) == 1 && inet_pton(AF_INET6, b, y) == 1)
        return memcmp(x, y, 8) == 0;
    return strcmp(a, b) == 0;
}

static void fill_view(qrl_core *core, const qrl_lr_rec *lr, const char *address, int64_t now,
                      qrl_lr_view *v)
{
    v->lr = *lr;
    qrl_user_code_format(lr->user_code, v->user_code);
    v->same_network = same_network(lr->address, address);
    v->age_s = (now - lr->created_ms) / 1000;
    v->expires_in_s = lr->expires_ms > now ? (lr->expires_ms - now + 999) / 1000 : 0;
    /* Said up front: a request from a denied network will not be approved (phishing.c). */
    v->blocked =
        (QRL_LR_BIT(lr->state) & LIVE_MASK) != 0 ? qrl__phish_denied(core, lr) : QRL_BLOCK_NONE;
}

/* Classifies a request the calling phone cannot act on any more. */
static qrl_err not_actionable(const qrl_lr_rec *lr, const qrl_auth *auth)
{
    if (lr->state == QRL_LR_EXPIRED)
        return QRL_ERR_EXPIRED;
    if (lr->claimed_device_id != 0 && lr->claimed_device_id != auth->device_id)
        return QRL_ERR_CLAIMED;
    return QRL_ERR_CONFLICT;
}

qrl_err qrl_lr_view_claim(qrl_core *core, const qrl_auth *auth, const char *code,
                          const char *address, qrl_lr_view *out)
{
    qrl_lr_rec lr;
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    memset(out, 0, sizeof *out);
    rc = lr_find_by_code(core, auth, code, address, now, &lr);
    if (rc != QRL_OK)
        return rc;
    /* A phishing kit's code is opened from many places: one network too many ends it. */
    if (!lr_expire_if_due(core, &lr, now) &&
        (rc = qrl__phish_lookup(core, auth, &lr, address, now)) != QRL_OK) {
        fill_view(core, &lr, address, now, out);
        return rc;
    }
    for (int round = 0; round < 3; round++) {
        fill_view(core, &lr, address, now, out);
        if (lr_expire_if_due(core, &lr, now)) {
            out->lr.state = lr.state;
            return QRL_ERR_EXPIRED;
        }
        if (lr.state == QRL_LR_SCANNED && lr.claimed_device_id == auth->device_id)
            return QRL_OK;
        if (lr.state != QRL_LR_PENDING)
            return not_actionable(&lr, auth);
        char nonce[QRL_MAX_NONCE + 1];
        nonce_new(nonce);
        qrl_lr_cas cas = {.id = lr.id,
                          .from_mask = B(PENDING),
                          .to = QRL_LR_SCANNED,
                          .now_ms = now,
                          .set_claimed_device_id = auth->device_id,
                          .set_nonce = nonce};
        rc = lr_move(core, &cas);
        if (rc == QRL_OK) {
            lr.state = QRL_LR_SCANNED;
            lr.claimed_device_id = auth->device_id;
            memcpy(lr.nonce, nonce, sizeof lr.nonce);
            fill_view(core, &lr, address, now, out);
            return QRL_OK;
        }
        if (rc != QRL_ERR_CONFLICT)
            return rc;
        rc = core->st->m->lr_get(core->st, lr.id, &lr);
        if (rc != QRL_OK)
            return rc;
    }
    return QRL_ERR_CONFLICT;
}

/* After a lost compare-and-set, re-reads the request (into *lr) to say why. */
static qrl_err explain_conflict(qrl_core *core, const qrl_auth *auth, qrl_lr_rec *lr, int64_t now)
{
    if (core->st->m->lr_get(core->st, lr->id, lr) != QRL_OK)
        return QRL_ERR_CONFLICT;
    if (lr_expire_if_due(core, lr, now))
        return QRL_ERR_EXPIRED;
    return not_actionable(lr, auth);
}

/* The user confirms the code shown on the screen. Mismatches count as user-code failures, like
 * lookups by a wrong code, so confirmation cannot be used to guess either. */
static qrl_err user_code_confirm(qrl_core *core, const qrl_auth *auth, const qrl_lr_rec *lr,
                                 const char *user_code, const char *address)
{
    char canon[QRL_USER_CODE_LEN + 1];
    char kaddr[QRL_MAX_ADDRESS + 16], kacct[48];
    qrl_err rc;

    uc_keys(auth, address, kaddr, sizeof kaddr, kacct, sizeof kacct);
    rc = uc_take(core, kaddr, kacct);
    if (rc != QRL_OK)
        return rc;
    if (qrl_user_code_normalize(user_code, canon) == QRL_OK &&
        sodium_memcmp(canon, lr->user_code, QRL_USER_CODE_LEN) == 0) {
        uc_give(core, kaddr, kacct);
        return QRL_OK;
    }
    return QRL_ERR_CODE_MISMATCH; /* the attempt stays counted */
}

/* When the screen is held on this node, approval and redemption become one durable commit and
 * the screen's held request is answered with its tokens directly: one fsync instead of two,
 * and the screen hears of the approval as soon as the phone does. QRL_OK when that happened;
 * anything else leaves the request as it was, for the ordinary approval. */
static qrl_err approve_to_waiting_screen(qrl_core *core, qrl_lr_rec *lr, const qrl_lr_cas *cas)
{
    const qrl_handoff *h = &core->cfg.handoff;
    qrl_device_rec dev = {0};
    qrl_token_rec rec[2];
    qrl_tokens t = {0};
    void *held;
    qrl_err rc;

    if (h->take == NULL || h->give == NULL)
        return QRL_ERR_NOT_FOUND;
    held = h->take(h->ud, lr->id, dev.address, sizeof dev.address);
    if (held == NULL)
        return QRL_ERR_NOT_FOUND;
    memcpy(dev.name, lr->device_name, sizeof dev.name);
    memcpy(dev.kind, lr->device_kind, sizeof dev.kind);
    /* The held request proved its key when it arrived; its tokens are bound as its own
     * redemption would have bound them. */
    if (h->dpop_key != NULL && h->dpop_key(h->ud, held, dev.pubkey))
        dev.has_pubkey = 1;
    /* A request bound to a key is held only for a proof of that key (lr_key_check refuses any
     * other before holding); should one be held anyway, it is not answered with tokens here: it
     * goes back to waiting and its own poll refuses it. */
    if (lr_key_check(lr, dev.has_pubkey ? dev.pubkey : NULL) != QRL_OK) {
        h->give(h->ud, held, QRL_ERR_CONFLICT, NULL);
        return QRL_ERR_NOT_FOUND;
    }
    dev.created_ms = cas->now_ms;
    qrl__tokens_draw(core, lr->client_id, lr->scope, cas->now_ms, &t, rec);
    rc = core->st->m->lr_approve_redeem(core->st, cas, &dev, rec, 2);
    if (rc != QRL_OK) {
        sodium_memzero(&t, sizeof t);
        h->give(h->ud, held, rc, NULL);
        return rc;
    }
    QRL_CRASH_POINT(APPROVE_HANDOFF_COMMITTED);
    t.device_id = dev.id;
    t.account_id = dev.account_id;
    t.dpop_bound = dev.has_pubkey;
    lr->state = QRL_LR_APPROVED; /* the phone's decision; the screen redeemed it at once */
    qrl__poll_forget(core->polls, lr->id);
    qrl__notify(core, lr->id);
    h->give(h->ud, held, QRL_OK, &t);
    sodium_memzero(&t, sizeof t);
    /* After the screen has its answer: the account's other devices hear of the new one. */
    qrl__notice_linked(core, &dev, lr->device_platform, cas->now_ms);
    return QRL_OK;
}

qrl_err qrl__lr_claimed(qrl_core *core, const qrl_auth *auth, const char *code, const char *address,
                        int64_t *lr_id)
{
    qrl_lr_rec lr;
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    *lr_id = 0;
    rc = lr_find_by_code(core, auth, code, address, now, &lr);
    if (rc != QRL_OK)
        return rc;
    if (lr_expire_if_due(core, &lr, now))
        return QRL_ERR_EXPIRED;
    if (lr.state != QRL_LR_SCANNED || lr.claimed_device_id != auth->device_id)
        return not_actionable(&lr, auth);
    *lr_id = lr.id;
    return QRL_OK;
}

static qrl_err lr_approve(qrl_core *core, const qrl_auth *auth, const char *code,
                          const char *user_code, const qrl_proof *proof, const char *address,
                          qrl_lr_rec *lr)
{
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    if (user_code == NULL || proof == NULL ||
        (proof->password != NULL) + (proof->signature != NULL) + (proof->passkey != NULL) != 1)
        return QRL_ERR_INVALID;
    rc = lr_find_by_code(core, auth, code, address, now, lr);
    if (rc != QRL_OK)
        return rc;
    /* Cheap checks first: a request that cannot be approved costs no Argon2id run. */
    if (lr_expire_if_due(core, lr, now))
        return QRL_ERR_EXPIRED;
    if (lr->state != QRL_LR_SCANNED || lr->claimed_device_id != auth->device_id)
        return not_actionable(lr, auth);
    /* The patterns of phishing kits (phishing.c): a request started from a denied network is
     * never approved, and an approval is a lookup by code like any other. */
    if (qrl__phish_denied(core, lr) != QRL_BLOCK_NONE)
        return qrl__phish_block(core, auth, lr, QRL_BLOCK_DENIED_NETWORK, now);
    rc = qrl__phish_lookup(core, auth, lr, address, now);
    if (rc != QRL_OK)
        return rc;
    /* Approvals per account: many approvals in a row are a phishing kit's pattern, not a
     * person's. Denials are never limited: saying no must always work. */
    char kap[48];
    snprintf(kap, sizeof kap, "ap:acct:%lld", (long long)auth->account_id);
    rc = qrl__limit_take(core, kap, core->cfg.approve_account.count,
                         core->cfg.approve_account.window_s);
    if (rc != QRL_OK)
        return rc;
    rc = user_code_confirm(core, auth, lr, user_code, address);
    if (rc != QRL_OK)
        return rc;
    if (proof->signature != NULL)
        rc = signature_check(auth, lr, QRL_DECISION_APPROVE, proof->signature);
    else if (proof->passkey != NULL)
        rc = qrl__passkey_assert(core, auth, lr->id, proof->passkey);
    else
        rc = qrl__password_check(core, &auth->account, proof->password, address);
    if (rc != QRL_OK)
        return rc;
    /* Counted once the account has proved itself: one screen address approved by account
     * after account is one attacker's screen and many victims (phishing.c). */
    rc = qrl__phish_approver(core, auth, lr, now);
    if (rc != QRL_OK)
        return rc;

    /* The decision names this request, this phone and this account (and, when signed, the
     * nonce the signature covers); the store applies it only if the request is still SCANNED
     * by this phone, unexpired, and still carries that nonce. */
    qrl_lr_cas cas = {.id = lr->id,
                      .from_mask = B(SCANNED),
                      .to = QRL_LR_APPROVED,
                      .now_ms = qrl_core_now_ms(core),
                      .require_claimed_by = auth->device_id,
                      .set_account_id = auth->account_id,
                      .set_approving_device_id = auth->device_id,
                      .require_nonce = proof->signature != NULL ? lr->nonce : NULL};
    QRL_CRASH_POINT(APPROVE_BEFORE_SUBMIT);
    if (approve_to_waiting_screen(core, lr, &cas) == QRL_OK)
        return QRL_OK;
    rc = lr_move(core, &cas);
    if (rc == QRL_OK) {
        QRL_CRASH_POINT(APPROVE_COMMITTED);
        lr->state = QRL_LR_APPROVED;
    } else if (rc == QRL_ERR_CONFLICT)
        rc = explain_conflict(core, auth, lr, cas.now_ms);
    return rc;
}

qrl_err qrl_lr_approve(qrl_core *core, const qrl_auth *auth, const char *code,
                       const char *user_code, const qrl_proof *proof, const char *address,
                       qrl_lr_rec *out)
{
    qrl_lr_rec lr = {0};
    qrl_err rc = lr_approve(core, auth, code, user_code, proof, address, &lr);

    if (out != NULL)
        *out = lr;
    return rc;
}

static qrl_err lr_deny(qrl_core *core, const qrl_auth *auth, const char *code,
                       const char *signature, const char *address, qrl_lr_rec *lr)
{
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    rc = lr_find_by_code(core, auth, code, address, now, lr);
    if (rc != QRL_OK)
        return rc;
    if (lr_expire_if_due(core, lr, now))
        return QRL_ERR_EXPIRED;
    if (lr->state == QRL_LR_SCANNED && lr->claimed_device_id != auth->device_id)
        return QRL_ERR_CLAIMED;
    if (lr->state != QRL_LR_PENDING && lr->state != QRL_LR_SCANNED)
        return not_actionable(lr, auth);
    if (signature != NULL && (lr->state != QRL_LR_SCANNED ||
                              signature_check(auth, lr, QRL_DECISION_DENY, signature) != QRL_OK))
        return QRL_ERR_FORBIDDEN;
    qrl_lr_cas cas = {.id = lr->id,
                      .from_mask = QRL_LR_BIT(lr->state),
                      .to = QRL_LR_DENIED,
                      .now_ms = now,
                      .require_claimed_by = lr->state == QRL_LR_SCANNED ? auth->device_id : 0,
                      .require_nonce = signature != NULL ? lr->nonce : NULL};
    QRL_CRASH_POINT(DENY_BEFORE_SUBMIT);
    rc = lr_move(core, &cas);
    if (rc == QRL_OK) {
        QRL_CRASH_POINT(DENY_COMMITTED);
        lr->state = QRL_LR_DENIED;
    } else if (rc == QRL_ERR_CONFLICT)
        rc = explain_conflict(core, auth, lr, now);
    return rc;
}

qrl_err qrl_lr_deny(qrl_core *core, const qrl_auth *auth, const char *code, const qrl_proof *proof,
                    const char *address, qrl_lr_rec *out)
{
    qrl_lr_rec lr = {0};
    qrl_err rc = lr_deny(core, auth, code, proof != NULL ? proof->signature : NULL, address, &lr);

    if (out != NULL)
        *out = lr;
    return rc;
}

qrl_err qrl_screen_scan_secret(qrl_core *core, const char *client_id, const char *device_code,
                               char *scan)
{
    char jkt[QRL_DPOP_JKT_LEN + 1];

    return qrl_screen_qr_secret(core, client_id, device_code, scan, jkt);
}

qrl_err qrl_screen_qr_secret(qrl_core *core, const char *client_id, const char *device_code,
                             char *scan, char dpop_jkt[QRL_DPOP_JKT_LEN + 1])
{
    qrl_lr_rec lr;
    qrl_lr_secret_key key;
    int64_t now = qrl_core_now_ms(core);
    qrl_err rc;

    scan[0] = '\0';
    dpop_jkt[0] = '\0';
    if (client_id == NULL || client_id[0] == '\0' || device_code == NULL)
        return QRL_ERR_INVALID;
    if (!qrl__lr_secret_key(device_code, QRL__PFX_DEVICE_CODE, &key))
        return QRL_ERR_NOT_FOUND;
    rc = core->st->m->lr_find(core->st, QRL_LR_KEY_DEVICE_CODE, &key, now, &lr);
    if (rc != QRL_OK)
        return rc;
    if (strlen(client_id) != strlen(lr.client_id) ||
        sodium_memcmp(client_id, lr.client_id, strlen(client_id)) != 0)
        return QRL_ERR_INVALID_CLIENT;
    if (lr_expire_if_due(core, &lr, now))
        return QRL_ERR_EXPIRED;
    if (lr.state != QRL_LR_PENDING && lr.state != QRL_LR_SCANNED)
        return lr.state == QRL_LR_APPROVED ? QRL_ERR_CONFLICT : terminal_answer(lr.state);
    if (!qrl__scan_from_device_code(device_code, scan))
        return QRL_ERR_NOT_FOUND;
    memcpy(dpop_jkt, lr.dpop_jkt, sizeof lr.dpop_jkt);
    return QRL_OK;
}

void qrl__lr_deny_for_device(qrl_core *core, int64_t device_id)
{
    int64_t ids[QRL_MAX_REQUESTS_PER_DEVICE];
    size_t n = 0;
    int64_t now = qrl_core_now_ms(core);

    if (core->st->m->lr_by_device(core->st, device_id, ids, QRL_MAX_REQUESTS_PER_DEVICE, &n) !=
        QRL_OK)
        return;
    for (size_t i = 0; i < n; i++) {
        qrl_lr_cas cas = {.id = ids[i],
                          .from_mask = B(SCANNED) | B(APPROVED),
                          .to = QRL_LR_DENIED,
                          .now_ms = now};
        /* A conflict means it was decided or expired meanwhile: nothing left to end. */
        (void)lr_move(core, &cas);
    }
}
