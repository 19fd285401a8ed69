/* SPDX-License-Identifier: MIT */
/*
 * QR codes of the current login request, rendered by the project's QR library (qrlogin/qr.h,
 * linked statically into the SDK). The SDK does not re-export qr.h: an app asks the handle for
 * a picture of *its* login request, so it can never show a stale or foreign payload, and the
 * QR library stays free to change.
 *
 * The QR library returns malloc()ed buffers; we copy them into the handle's allocator so that
 * everything the SDK hands out is released the same way (qrl_client_buf_free).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* The QR library is linked into the SDK privately and not re-exported: the build links the SDK
 * with -Wl,--exclude-libs,ALL (CMakeLists.txt), which keeps every symbol of the static
 * libraries out of the SDK's dynamic symbol table. A program that links the QR library itself
 * as well as the SDK (the qrlogin command) thus has two private copies, not an interposed one. */
#include "qrlogin/qr.h"

typedef enum kind { KIND_TERMINAL, KIND_SVG, KIND_PNG } kind;

static qrl_err render(qrl_client *c, kind k, int arg, void **out, size_t *len)
{
    qrl_qr *qr = NULL;
    void *img = NULL;
    size_t n = 0;
    qrl_err rc;

    *out = NULL;
    if (len == NULL)
        return c != NULL ? qrlc__fail(c, QRL_ERR_INVALID, "len is required") : QRL_ERR_INVALID;
    *len = 0;
    if (c == NULL)
        return QRL_ERR_INVALID;
    if (c->qr_payload[0] == '\0')
        return qrlc__fail(c, QRL_ERR_CONFLICT, "there is no login request to show");
    rc = qrl_qr_encode(c->qr_payload, &qr);
    if (rc == QRL_OK) {
        switch (k) {
        case KIND_TERMINAL:
            rc = qrl_qr_terminal(qr, arg, (char **)&img, &n);
            break;
        case KIND_SVG:
            rc = qrl_qr_svg(qr, arg, (char **)&img, &n);
            break;
        case KIND_PNG:
            rc = qrl_qr_png(qr, arg, (unsigned char **)&img, &n);
            break;
        }
    }
    if (rc != QRL_OK) {
        qrlc__fail(c, rc, "QR rendering failed: %s", qrl_client_strerror(rc));
        goto out;
    }
    /* One spare byte keeps text renders NUL-terminated after the copy. */
    *out = qrlc__alloc(c, n + 1);
    if (*out == NULL) {
        rc = qrlc__fail(c, QRL_ERR_NOMEM, "out of memory copying the QR render");
        goto out;
    }
    memcpy(*out, img, n);
    ((char *)*out)[n] = '\0';
    *len = n;
out:
    free(img);
    qrl_qr_free(qr);
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_qr_terminal(qrl_client *c, int ansi, char **out, size_t *len)
{
    void *p = NULL;
    qrl_err rc;

    if (out == NULL)
        return c != NULL ? qrlc__fail(c, QRL_ERR_INVALID, "out is required") : QRL_ERR_INVALID;
    rc = render(c, KIND_TERMINAL, ansi ? 1 : 0, &p, len);
    *out = p;
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_qr_svg(qrl_client *c, int scale, char **out, size_t *len)
{
    void *p = NULL;
    qrl_err rc;

    if (out == NULL)
        return c != NULL ? qrlc__fail(c, QRL_ERR_INVALID, "out is required") : QRL_ERR_INVALID;
    rc = render(c, KIND_SVG, scale, &p, len);
    *out = p;
    return rc;
}

QRL_CLIENT_API qrl_err qrl_client_qr_png(qrl_client *c, int scale, unsigned char **out, size_t *len)
{
    void *p = NULL;
    qrl_err rc;

    if (out == NULL)
        return c != NULL ? qrlc__fail(c, QRL_ERR_INVALID, "out is required") : QRL_ERR_INVALID;
    rc = render(c, KIND_PNG, scale, &p, len);
    *out = p;
    return rc;
}

QRL_CLIENT_API void qrl_client_buf_free(qrl_client *c, void *buf)
{
    if (c != NULL && buf != NULL)
        qrlc__free(c, buf);
}
