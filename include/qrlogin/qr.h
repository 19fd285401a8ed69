/* SPDX-License-Identifier: MIT */
/*
 * QR codes for login requests: encode a URL with libqrencode and render it as SVG, PNG (libpng)
 * or terminal text (UTF-8 half blocks).
 *
 * Lifecycle: qrl_qr_encode() -> any number of renders -> qrl_qr_free(). A qrl_qr is immutable
 * after encoding and may be rendered from several threads at once. Rendered output is
 * malloc()ed and owned by the caller, who releases it with free().
 */
#ifndef QRLOGIN_QR_H
#define QRLOGIN_QR_H

#include <stddef.h>

#include "qrlogin/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ISO/IEC 18004 asks for a quiet zone of at least 4 modules around the symbol. */
#define QRL_QR_QUIET_ZONE 4
/* Longest text we encode: our URLs are under 200 bytes; this bounds the symbol size. */
#define QRL_QR_MAX_TEXT 1024
/* Largest pixels-per-module for PNG/SVG renders. */
#define QRL_QR_MAX_SCALE 64

typedef struct qrl_qr qrl_qr;

/* Encodes `text` (8-bit mode, error correction level M, smallest version that fits).
 * QRL_ERR_INVALID for empty or over-long text, QRL_ERR_NOMEM. Free with qrl_qr_free. */
qrl_err qrl_qr_encode(const char *text, qrl_qr **out);
void qrl_qr_free(qrl_qr *qr);

/* Symbol width in modules, without the quiet zone. */
int qrl_qr_width(const qrl_qr *qr);
/* Nonzero when module (x, y) is dark; 0 outside the symbol. */
int qrl_qr_module(const qrl_qr *qr, int x, int y);

/* SVG document, dark modules on a white background, `scale` user units per module (1..64),
 * with the quiet zone. *out is NUL-terminated; *len excludes the NUL. */
qrl_err qrl_qr_svg(const qrl_qr *qr, int scale, char **out, size_t *len);
/* 8-bit grayscale PNG, `scale` pixels per module (1..64), with the quiet zone. */
qrl_err qrl_qr_png(const qrl_qr *qr, int scale, unsigned char **out, size_t *len);
/* Text for a terminal: two modules per character cell using U+2580/U+2584/U+2588 and spaces,
 * with the quiet zone. Colours are set explicitly (ANSI black on white) so the code reads the
 * same on dark and light terminals; `ansi` = 0 emits no escape codes (for files and tests, then
 * dark modules are the block characters). Lines end with '\n'. */
qrl_err qrl_qr_terminal(const qrl_qr *qr, int ansi, char **out, size_t *len);

#ifdef __cplusplus
}
#endif
#endif
