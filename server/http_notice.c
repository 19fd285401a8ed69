/* SPDX-License-Identifier: MIT */
/*
 * Notices (lib/notice.c), which the API calls notifications, of two kinds: a new device
 * ("New device linked: “Living Room TV”. Not you?", kind device_linked) and a login request
 * refused as phishing while a phone of the account was about to approve it (kind
 * request_blocked). The list a device has not acknowledged, held until one arrives
 * (Prefer: wait), acknowledging one, and the one-tap revoke of the device a device_linked
 * notice names (a blocked request linked nothing: 409 not_revocable).
 *
 *   GET  /v1/notifications[?after=ID]      phone session or screen access token (or DPoP)
 *   POST /v1/notifications/{id}/ack        the same
 *   POST /v1/notifications/{id}/revoke     phone session only
 *   GET  /web/notifications[?after=ID]     the phone's pages: session cookie
 *   POST /web/notifications/{id}/ack       the same, with the CSRF check of every /web/ POST
 *   POST /web/notifications/{id}/revoke    the same
 *
 * One handler per action serves both prefixes; the path's first segment says who asks and in
 * which words errors are told (QRL__CTX_API or QRL__CTX_PAGE).
 *
 * Holding: a GET with Prefer: wait=N answers at once when the device has an unacknowledged
 * notice with an id above `after` (0 when absent), else waits in the hub under
 * qrl_notice_key(account) (server/waiters.c, "Keys"), which the core wakes when it records a
 * notice for the account, and answers the list when woken with something new or when the N
 * seconds are over. A wake-up that brings nothing new for this device (the notice of this
 * very device, a wake-up of every held request) holds again until the same deadline. As for every
 * hold, the change counter is read before the list, so a notice recorded between the read and the
 * suspension is never missed.
 */
#include <stdlib.h>
#include <string.h>

#include "http_common.h"

/* The requests of the phone's pages, under /web/. */
static bool is_web(const qrl__req *r)
{
    return strncmp(r->url, "/web/", 5) == 0;
}

static enum qrl__errctx ctx_of(const qrl__req *r)
{
    return is_web(r) ? QRL__CTX_PAGE : QRL__CTX_API;
}

/* Ends the read scope a check opened: a hold reads the list again after each wake-up, and a
 * scope would answer from the snapshot of its first read. */
static void scope_end(qrl__req *r)
{
    if (r->read_scope) {
        r->read_scope = false;
        qrl_core_read_end(r->srv->core);
    }
}

/* Who asks, answering 401 (or 403 csrf_failed) itself on failure: on /v1/ what the phone API
 * takes (a phone session or, with `any`, also a screen's access token, bearer or DPoP); on
 * /web/ the phone's session cookie, after the CSRF check when `csrf`. Both may be called again
 * when a held request resumes. */
static bool who(qrl__req *r, qrl_auth *auth, bool any, bool csrf, enum MHD_Result *ret)
{
    if (is_web(r))
        return qrl__web_phone_auth(r, auth, csrf, ret);
    return qrl__api_auth(r, auth, any, ret);
}

/* A store without notices (store.h version 10): nothing to read or act on, said apart from an
 * unknown notice so that a client stops asking. */
static enum MHD_Result unavailable(qrl__req *r)
{
    return qrl__respond_error(r, 404, "not_available",
                              is_web(r) ? "This server does not keep notices of new devices."
                                        : "this server keeps no notifications (its store has "
                                          "none)");
}

/* The blocked request's screen, as it named itself when it made the request, with the country
 * of its address when the server has a country database (as the approval page shows it). */
static json_t *screen_json(qrl__req *r, const qrl_notice_rec *rec)
{
    qrl__country c;
    json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "name", rec->screen_name, "kind",
                          rec->screen_kind, "platform", rec->platform, "address",
                          rec->screen_address);

    if (o != NULL)
        json_object_set_new(o, "country",
                            qrl__geoip_lookup(r->srv->geoip, rec->screen_address, &c)
                                ? json_pack("{s:s, s:s}", "code", c.code, "name", c.name)
                                : json_null());
    return o;
}

/* One notice as the API shows it to device `me`. `device` is the new device (device_linked) or
 * the phone that was stopped (request_blocked), as it is now. */
static json_t *notice_json(qrl__req *r, const qrl_notice *n, int64_t me, int64_t now_ms)
{
    const qrl_notice_rec *rec = &n->rec;
    bool blocked = rec->kind == QRL_NOTICE_REQUEST_BLOCKED;
    int64_t left = n->revoke_until_ms > now_ms ? (n->revoke_until_ms - now_ms + 999) / 1000 : 0;
    int64_t age = now_ms > rec->created_ms ? (now_ms - rec->created_ms) / 1000 : 0;
    json_t *o = json_pack(
        "{s:I, s:s, s:I, s:I, s:{s:I, s:s, s:s, s:s, s:s, s:I, s:b}, s:I}", "id",
        (json_int_t)rec->id, "kind", blocked ? "request_blocked" : "device_linked", "created_at",
        (json_int_t)(rec->created_ms / 1000), "age_seconds", (json_int_t)age, "device", "id",
        (json_int_t)rec->device_id, "name", rec->device.name, "kind", rec->device.kind,
        "platform", blocked ? "" : rec->platform, "address", rec->device.address, "created_at",
        (json_int_t)(rec->device.created_ms / 1000), "current", rec->device_id == me, "revoke_in",
        (json_int_t)left);

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "revoke_until",
                        n->revoke_until_ms > 0
                            ? json_integer((json_int_t)(n->revoke_until_ms / 1000))
                            : json_null());
    if (blocked) {
        json_object_set_new(o, "reason", json_string(rec->reason));
        json_object_set_new(o, "screen", screen_json(r, rec));
    }
    return o;
}

static enum MHD_Result notices_answer(qrl__req *r, const qrl_auth *auth, const qrl_notice *list,
                                      size_t n)
{
    char applied[32];
    const char *hdr[] = {"Preference-Applied", applied, NULL};
    int64_t now = qrl_core_now_ms(r->srv->core);
    json_t *arr = json_array();

    for (size_t i = 0; arr != NULL && i < n; i++)
        json_array_append_new(arr, notice_json(r, &list[i], auth->device_id, now));
    snprintf(applied, sizeof applied, "wait=%d", r->wait_s);
    return qrl__respond_json_hdr(r, 200, json_pack("{s:o}", "notifications", arr),
                                 r->wait_s > 0 ? hdr : NULL);
}

/* Whether the list holds a notice the client has not seen (an id above its `after`). */
static bool has_news(const qrl_notice *list, size_t n, int64_t after)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].rec.id > after)
            return true;
    return false;
}

static enum MHD_Result notices_run(qrl__req *r, bool over);

static enum MHD_Result notices_resume(qrl__req *r)
{
    bool timed_out = qrl__hub_finish(r->srv->hub, r);

    if (qrl__peer_gone(r))
        return qrl__client_gone(r);
    return notices_run(r, timed_out);
}

/* Reads the list and answers it, or holds until it has news or the deadline passes (`over`:
 * the hold has ended by its deadline or by shutdown: answer now). */
static enum MHD_Result notices_run(qrl__req *r, bool over)
{
    qrl_notice list[QRL_MAX_NOTICES_LISTED];
    enum MHD_Result ret;
    qrl_auth auth;
    size_t n = 0;
    qrl_err rc;

    for (int round = 0; round < 4; round++) {
        /* Before the reads: a notice recorded after them moves it, and the hold is refused. */
        uint64_t seq = qrl__hub_seq(r->srv->hub);
        scope_end(r);
        if (!who(r, &auth, true, false, &ret))
            return ret;
        rc = qrl_notices_list(r->srv->core, &auth, list, QRL_MAX_NOTICES_LISTED, &n);
        if (rc != QRL_OK)
            return qrl__respond_err(r, rc, ctx_of(r));
        if (over || r->wait_s == 0 || has_news(list, n, r->notice_after) ||
            qrl__mono_ms() >= r->deadline_mono_ms)
            break;
        r->resume_fn = notices_resume;
        rc = qrl__hub_wait(r->srv->hub, r, qrl_notice_key(auth.account_id), r->deadline_mono_ms,
                           seq);
        if (rc == QRL_OK) {
            qrl__hold_begin(r);
            return MHD_YES;
        }
        if (rc == QRL_ERR_BUSY) /* too many waiters for the account, or shutting down */
            break;
    }
    return notices_answer(r, &auth, list, n);
}

/* `after` of the query: a whole decimal number (0 when absent); -1 when malformed. */
static int64_t after_of(qrl__req *r)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "after");
    char *end;
    long long id;

    if (v == NULL)
        return 0;
    if (v[0] < '0' || v[0] > '9')
        return -1;
    id = strtoll(v, &end, 10);
    return *end == '\0' && id >= 0 && id < INT64_MAX ? (int64_t)id : -1;
}

enum MHD_Result qrl__h_notices(qrl__req *r, const char *arg)
{
    if (!qrl_notices_enabled(r->srv->core))
        return unavailable(r);
    r->notice_after = after_of(r);
    if (r->notice_after < 0)
        return qrl__respond_error(r, 400, "invalid_request",
                                  "after must be a notification id (a whole number)");
    r->wait_s = qrl__prefer_wait(r);
    r->deadline_mono_ms = qrl__mono_ms() + (int64_t)r->wait_s * 1000;
    return notices_run(r, false);
}

static const qrl__errsay ack_api_say[] = {
    {QRL_ERR_NOT_FOUND, {0, NULL, "no such notification"}},
    QRL__SAY_END,
};
static const qrl__errsay ack_page_say[] = {
    {QRL_ERR_NOT_FOUND, {0, NULL, "There is no such notice. Reload the page."}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_notice_ack(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_auth auth;
    int64_t id = qrl__path_id(arg);
    qrl_err rc;

    if (!qrl_notices_enabled(r->srv->core))
        return unavailable(r);
    if (!who(r, &auth, true, true, &ret))
        return ret;
    rc = qrl_notice_ack(r->srv->core, &auth, id);
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, ctx_of(r), is_web(r) ? ack_page_say : ack_api_say, NULL,
                                   NULL);
    return qrl__respond_empty(r, 204);
}

/* The one-tap revoke: FORBIDDEN is its window being over (or off); CONFLICT a notice of a
 * blocked request (no device to remove); NOT_FOUND also a device that is gone already. */
static const qrl__errsay revoke_api_say[] = {
    {QRL_ERR_CONFLICT,
     {409, "not_revocable",
      "this notification is of a blocked sign-in request, which linked no device: there is "
      "nothing to remove (acknowledge it instead)"}},
    {QRL_ERR_FORBIDDEN,
     {403, "revoke_window_over",
      "this notification's one-tap removal is over (it works for a while after the device was "
      "linked); remove the device from the devices list (DELETE /v1/devices/{id})"}},
    {QRL_ERR_NOT_FOUND, {0, NULL, "no such notification, or its device is removed already"}},
    QRL__SAY_END,
};
static const qrl__errsay revoke_page_say[] = {
    {QRL_ERR_CONFLICT,
     {409, "not_revocable", "That sign-in request was stopped: nothing was linked to remove."}},
    {QRL_ERR_FORBIDDEN,
     {403, "revoke_window_over",
      "Removing it from here only works for a while after it was linked. Remove it from your "
      "list of devices instead."}},
    {QRL_ERR_NOT_FOUND, {0, NULL, "This device is not signed in any more."}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_notice_revoke(qrl__req *r, const char *arg)
{
    enum MHD_Result ret;
    qrl_notice n;
    qrl_auth auth;
    int64_t id = qrl__path_id(arg);
    qrl_err rc;

    if (!qrl_notices_enabled(r->srv->core))
        return unavailable(r);
    /* A phone acts here: a screen's access token is not enough (qrl_device_auth_any). */
    if (!who(r, &auth, false, true, &ret))
        return ret;
    rc = qrl_notice_revoke(r->srv->core, &auth, id, &n);
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, ctx_of(r), is_web(r) ? revoke_page_say : revoke_api_say,
                                   NULL, NULL);
    qrl__audit(r, "device_revoked",
               &(qrl__ids){.account_id = auth.account_id, .device_id = n.rec.device_id});
    qrl__web_device_revoked(r->srv, n.rec.device_id);
    return qrl__respond_empty(r, 204);
}
