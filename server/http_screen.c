/* SPDX-License-Identifier: MIT */
/*
 * Screen-side extras: the QR code of a login request, rendered by the server for screens that
 * cannot draw one themselves (a web page, a thin TV app). Only the holder of the device code
 * gets it: the request is a POST with the device code in the body, never in a URL that could be
 * logged, and the QR's scan secret is derived from that device code (lib/secret.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "http_common.h"
#include "qrlogin/qr.h"

/* The QR code of a device code that is not waiting for a scan: an unknown one, another
 * client's or a redeemed one are alike to the screen; an approved one is to be redeemed. */
static const qrl__errsay form_say[] = {
    {QRL_ERR_INVALID, {0, NULL, "malformed or repeated parameters"}},
    QRL__SAY_END,
};

static const qrl__errsay scan_say[] = {
    {QRL_ERR_NOT_FOUND, {0, NULL, "unknown device code"}},
    {QRL_ERR_INVALID_CLIENT, {0, NULL, "unknown device code"}},
    {QRL_ERR_REDEEMED, {0, NULL, "unknown device code"}},
    {QRL_ERR_CONFLICT, {0, NULL, "the request is approved: redeem it at the token endpoint"}},
    QRL__SAY_END,
};

enum MHD_Result qrl__h_screen_qr(qrl__req *r, const char *arg)
{
    qrl__form f;
    char scan[QRL_SECRET_BUF];
    const char *client_id, *code, *format, *scale_s;
    long scale = QRL__QR_SCALE;
    qrl_err rc;

    if (!qrl__content_type_is(r, "application/x-www-form-urlencoded"))
        return qrl__respond_error(r, 400, "invalid_request",
                                  "body must be application/x-www-form-urlencoded");
    rc = qrl__form_parse(r->body != NULL ? r->body : "", r->body_len, &f);
    if (rc != QRL_OK || f.duplicate) {
        qrl__form_clear(&f);
        return qrl__respond_err_as(r, rc != QRL_OK ? rc : QRL_ERR_INVALID, QRL__CTX_OAUTH, form_say,
                                   NULL, NULL);
    }
    client_id = qrl__form_get(&f, "client_id");
    code = qrl__form_get(&f, "device_code");
    format = qrl__form_get(&f, "format");
    scale_s = qrl__form_get(&f, "scale");
    if (format == NULL)
        format = "svg";
    if (scale_s != NULL) {
        char *end;
        scale = strtol(scale_s, &end, 10);
        if (*scale_s == '\0' || *end != '\0')
            scale = 0;
    }
    if (client_id == NULL || code == NULL || strlen(code) > QRL_MAX_TOKEN ||
        strlen(client_id) > QRL_MAX_CLIENT_ID || scale < 1 || scale > QRL_QR_MAX_SCALE ||
        (strcmp(format, "svg") != 0 && strcmp(format, "png") != 0)) {
        sodium_memzero(f.buf, r->body_len);
        qrl__form_clear(&f);
        return qrl__respond_error(r, 400, "invalid_request",
                                  "client_id and device_code are required; format is svg or "
                                  "png; scale is 1..64");
    }
    /* `format` lives in the form buffer, which is wiped next. */
    bool is_png = strcmp(format, "png") == 0;
    char jkt[QRL_DPOP_JKT_LEN + 1];
    rc = qrl_screen_qr_secret(r->srv->core, client_id, code, scan, jkt);
    sodium_memzero(f.buf, r->body_len);
    qrl__form_clear(&f);
    if (rc != QRL_OK)
        return qrl__respond_err_as(r, rc, QRL__CTX_OAUTH, scan_say, NULL, NULL);
    return qrl__respond_qr(r, scan, jkt, is_png, (int)scale, QRL__CTX_OAUTH);
}

int qrl__qr_url(const char *public_url, const char *scan, const char *dpop_jkt, char *out,
                size_t len)
{
    char hint[QRL_KEY_HINT_BUF];

    if (dpop_jkt != NULL && qrl_key_hint(dpop_jkt, hint) == QRL_OK)
        return snprintf(out, len, "%s/s?k=%s#%s", public_url, hint, scan);
    return snprintf(out, len, "%s/s#%s", public_url, scan);
}

enum MHD_Result qrl__respond_qr(qrl__req *r, char scan[QRL_SECRET_BUF], const char *dpop_jkt,
                                bool png, int scale, enum qrl__errctx ctx)
{
    char url[512];
    qrl_qr *qr = NULL;
    qrl_err rc;

    (void)qrl__qr_url(r->srv->public_url, scan, dpop_jkt, url, sizeof url);
    sodium_memzero(scan, QRL_SECRET_BUF);
    rc = qrl_qr_encode(url, &qr);
    sodium_memzero(url, sizeof url);
    if (rc == QRL_OK) {
        unsigned char *png_data = NULL;
        char *svg = NULL;
        size_t len = 0;
        rc = png ? qrl_qr_png(qr, scale, &png_data, &len) : qrl_qr_svg(qr, scale, &svg, &len);
        qrl_qr_free(qr);
        if (rc == QRL_OK)
            return png ? qrl__respond_image(r, "image/png", png_data, len)
                       : qrl__respond_image(r, "image/svg+xml", svg, len);
    }
    return qrl__respond_err(r, rc, ctx);
}
