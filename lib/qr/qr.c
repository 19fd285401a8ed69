/* SPDX-License-Identifier: MIT */
/*
 * QR codes for login requests: encode the scan URL once with libqrencode, then render the
 * symbol as SVG (for the screen page), PNG (for clients that want a bitmap) or terminal text
 * (for `qrlogin tv`).
 *
 * Why this shape: a login request's URL is short (under 200 bytes) and lives for a minute or two,
 * so a symbol is encoded once per request and rendered a handful of times. qrl_qr therefore keeps
 * only a copy of the module matrix (one byte per module, 0 or 1) and drops libqrencode's object
 * at once; every renderer reads that matrix and nothing else, which is what makes a qrl_qr safe to
 * render from several threads. Every renderer draws the ISO/IEC 18004 quiet zone of
 * QRL_QR_QUIET_ZONE light modules on each side, because scanners need it and callers forget it.
 *
 * Bounds: QRL_QR_MAX_TEXT keeps the symbol at or below version 40 (177 modules), so the largest
 * SVG is a few hundred kilobytes and the largest PNG is 11840 x 11840 pixels, written one row at
 * a time into a buffer capped at QR_PNG_MAX bytes. Output sizes for SVG and terminal text are
 * computed before anything is written, so those buffers never grow.
 *
 * Errors: QRL_ERR_INVALID for bad arguments, QRL_ERR_NOMEM when an allocation fails (ours,
 * libqrencode's or libpng's), QRL_ERR_TOO_LARGE if a PNG would exceed QR_PNG_MAX (which the
 * bounds above rule out). On failure *out is NULL and *len is 0.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <qrencode.h>

#include "qrlogin/qr.h"

/* Version 40 is the largest QR symbol: 177 modules a side. */
#define QR_MAX_WIDTH 177
/* Modules a side including the quiet zone on both sides. */
#define QR_FULL(width) ((width) + 2 * QRL_QR_QUIET_ZONE)
/* Hard cap on a PNG. The worst case (version 40, scale 64) compresses to well under 1 MiB,
 * because rows repeat `scale` times and deflate sees long runs; 16 MiB leaves room for zlib
 * choosing poorly without letting a bug eat memory. */
#define QR_PNG_MAX (16u * 1024 * 1024)

/* SVG: everything except the path data, with room for six numbers of up to 11 characters. */
#define SVG_FIXED 512
/* SVG: one run is "M%d %dh%dv1h-%dz" with numbers under 1000 (QR_FULL(177) = 185): 19 bytes. */
#define SVG_RUN_MAX 24

/* ANSI black foreground on white background, and reset. */
#define ANSI_ON "\x1b[30;47m"
#define ANSI_OFF "\x1b[0m"
/* UTF-8 of U+2580 UPPER HALF BLOCK, U+2584 LOWER HALF BLOCK, U+2588 FULL BLOCK. */
#define GLYPH_UPPER "\xe2\x96\x80"
#define GLYPH_LOWER "\xe2\x96\x84"
#define GLYPH_FULL "\xe2\x96\x88"
#define GLYPH_MAX 3

struct qrl_qr {
    int width;            /* modules a side, without the quiet zone */
    unsigned char dark[]; /* width * width, row-major, 1 = dark */
};

/* ---- allocation (with fault injection in test builds) ---------------------------------- */

#ifdef QRL_TEST_HOOKS
/* Fault injection for tests/unit/lib/qr/test_qr.c, as SQLite does it: while positive, each allocation
 * in this file (including libpng's and zlib's, which come through png_on_malloc) counts it down,
 * and the allocation that brings it to zero fails. Only the unit test sets it, so it is declared
 * here and in the test rather than in a header. */
extern _Atomic int qrl__qr_fail_alloc;
_Atomic int qrl__qr_fail_alloc;

static bool alloc_should_fail(void)
{
    int n = atomic_load(&qrl__qr_fail_alloc);

    while (n > 0) {
        if (atomic_compare_exchange_weak(&qrl__qr_fail_alloc, &n, n - 1))
            return n == 1;
    }
    return false;
}
#else
static bool alloc_should_fail(void)
{
    return false;
}
#endif

static void *qr_malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n);
}

static void *qr_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : realloc(p, n);
}

/* ---- encoding and the module matrix --------------------------------------------------- */

qrl_err qrl_qr_encode(const char *text, qrl_qr **out)
{
    QRcode *code = NULL;
    qrl_qr *qr = NULL;
    size_t n, cells;
    qrl_err rc;

    if (out == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    if (text == NULL)
        return QRL_ERR_INVALID;
    n = strnlen(text, QRL_QR_MAX_TEXT + 1);
    if (n == 0 || n > QRL_QR_MAX_TEXT)
        return QRL_ERR_INVALID;

    /* 8-bit mode keeps the bytes exactly as given (no Kanji or alphanumeric guessing);
     * version 0 asks for the smallest version that holds the text at level M. */
    errno = 0;
    code = QRcode_encodeData((int)n, (const unsigned char *)text, 0, QR_ECLEVEL_M);
    if (code == NULL) {
        rc = errno == ENOMEM ? QRL_ERR_NOMEM : QRL_ERR_INVALID;
        goto out;
    }
    if (code->width < 21 || code->width > QR_MAX_WIDTH) {
        rc = QRL_ERR_INTERNAL;
        goto out;
    }
    cells = (size_t)code->width * (size_t)code->width;
    qr = qr_malloc(sizeof *qr + cells);
    if (qr == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    qr->width = code->width;
    /* libqrencode packs flags into each byte; bit 0 is "dark". */
    for (size_t i = 0; i < cells; i++)
        qr->dark[i] = code->data[i] & 1;
    *out = qr;
    qr = NULL;
    rc = QRL_OK;
out:
    if (code != NULL)
        explicit_bzero(code->data, (size_t)code->width * (size_t)code->width);
    QRcode_free(code);
    free(qr);
    return rc;
}

void qrl_qr_free(qrl_qr *qr)
{
    if (qr == NULL)
        return;
    /* The modules spell out the URL, and the URL carries a scan secret (docs/architecture.md,
     * "Where secrets live": secrets are zeroed after use). Copies inside libqrencode and libpng are
     * out of reach. */
    explicit_bzero(qr->dark, (size_t)qr->width * (size_t)qr->width);
    free(qr);
}

int qrl_qr_width(const qrl_qr *qr)
{
    return qr == NULL ? 0 : qr->width;
}

int qrl_qr_module(const qrl_qr *qr, int x, int y)
{
    if (qr == NULL || x < 0 || y < 0 || x >= qr->width || y >= qr->width)
        return 0;
    return qr->dark[(size_t)y * (size_t)qr->width + (size_t)x];
}

/* Module (x, y) in quiet-zone coordinates: (0, 0) is the top-left corner of the quiet zone. */
static int dark_at(const qrl_qr *qr, int x, int y)
{
    return qrl_qr_module(qr, x - QRL_QR_QUIET_ZONE, y - QRL_QR_QUIET_ZONE);
}

/* ---- text buffers of precomputed size (SVG, terminal) ---------------------------------- */

typedef struct textbuf {
    char *p;
    size_t len, cap; /* cap includes the NUL */
    bool overflow;   /* the size computed up front was wrong: a bug */
} textbuf;

static void tb_put(textbuf *tb, const char *s)
{
    size_t n = strlen(s);

    if (tb->overflow || n >= tb->cap - tb->len) {
        tb->overflow = true;
        return;
    }
    memcpy(tb->p + tb->len, s, n + 1);
    tb->len += n;
}

__attribute__((format(printf, 2, 3))) static void tb_printf(textbuf *tb, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (tb->overflow)
        return;
    va_start(ap, fmt);
    n = vsnprintf(tb->p + tb->len, tb->cap - tb->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= tb->cap - tb->len) {
        tb->overflow = true;
        return;
    }
    tb->len += (size_t)n;
}

/* Hands the finished text to the caller, or reports why there is none. */
static qrl_err tb_finish(textbuf *tb, char **out, size_t *len)
{
    if (tb->overflow)
        return QRL_ERR_INTERNAL;
    *out = tb->p;
    *len = tb->len;
    tb->p = NULL;
    return QRL_OK;
}

/* ---- SVG ------------------------------------------------------------------------------- */

/* Horizontal runs of dark modules; each becomes one closed rectangle in the path. */
static size_t svg_count_runs(const qrl_qr *qr)
{
    size_t runs = 0;

    for (int y = 0; y < qr->width; y++)
        for (int x = 0; x < qr->width; x++)
            if (qrl_qr_module(qr, x, y) && !qrl_qr_module(qr, x - 1, y))
                runs++;
    return runs;
}

static void svg_path(textbuf *tb, const qrl_qr *qr)
{
    for (int y = 0; y < qr->width; y++) {
        int x = 0;

        while (x < qr->width) {
            int start;

            if (!qrl_qr_module(qr, x, y)) {
                x++;
                continue;
            }
            start = x;
            while (x < qr->width && qrl_qr_module(qr, x, y))
                x++;
            tb_printf(tb, "M%d %dh%dv1h-%dz", start + QRL_QR_QUIET_ZONE, y + QRL_QR_QUIET_ZONE,
                      x - start, x - start);
        }
    }
}

qrl_err qrl_qr_svg(const qrl_qr *qr, int scale, char **out, size_t *len)
{
    textbuf tb = {0};
    int full;
    qrl_err rc;

    if (out == NULL || len == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    *len = 0;
    if (qr == NULL || scale < 1 || scale > QRL_QR_MAX_SCALE)
        return QRL_ERR_INVALID;

    full = QR_FULL(qr->width);
    tb.cap = SVG_FIXED + svg_count_runs(qr) * SVG_RUN_MAX;
    tb.p = qr_malloc(tb.cap);
    if (tb.p == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    /* Path coordinates are modules; width and height scale the whole drawing. crispEdges keeps
     * renderers from anti-aliasing the seams between adjacent rectangles into grey lines. */
    tb_printf(&tb,
              "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
              "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
              "height=\"%d\" viewBox=\"0 0 %d %d\" shape-rendering=\"crispEdges\">\n"
              "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n"
              "<path fill=\"#000\" d=\"",
              full * scale, full * scale, full, full, full, full);
    svg_path(&tb, qr);
    tb_put(&tb, "\"/>\n</svg>\n");
    rc = tb_finish(&tb, out, len);
out:
    free(tb.p);
    return rc;
}

/* ---- terminal text --------------------------------------------------------------------- */

static const char *half_block(int top, int bottom)
{
    if (top && bottom)
        return GLYPH_FULL;
    if (top)
        return GLYPH_UPPER;
    if (bottom)
        return GLYPH_LOWER;
    return " ";
}

qrl_err qrl_qr_terminal(const qrl_qr *qr, int ansi, char **out, size_t *len)
{
    textbuf tb = {0};
    size_t line_max;
    int full, lines;
    qrl_err rc;

    if (out == NULL || len == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    *len = 0;
    if (qr == NULL)
        return QRL_ERR_INVALID;

    full = QR_FULL(qr->width);
    /* Two module rows per line. The full side is odd, so the last line's lower half lies
     * below the symbol and stays light: a fifth quiet-zone row at the bottom. */
    lines = (full + 1) / 2;
    line_max = (size_t)full * GLYPH_MAX + 1;
    if (ansi)
        line_max += strlen(ANSI_ON) + strlen(ANSI_OFF);
    tb.cap = (size_t)lines * line_max + 1;
    tb.p = qr_malloc(tb.cap);
    if (tb.p == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    tb.p[0] = '\0';
    for (int line = 0; line < lines; line++) {
        /* Colours are set on every line, and reset before its newline, so a terminal that
         * scrolls or a pager that shows part of the output still draws each line right. */
        if (ansi)
            tb_put(&tb, ANSI_ON);
        for (int x = 0; x < full; x++)
            tb_put(&tb, half_block(dark_at(qr, x, 2 * line), dark_at(qr, x, 2 * line + 1)));
        if (ansi)
            tb_put(&tb, ANSI_OFF);
        tb_put(&tb, "\n");
    }
    rc = tb_finish(&tb, out, len);
out:
    free(tb.p);
    return rc;
}

/* ---- PNG ------------------------------------------------------------------------------- */

/* What libpng's callbacks share with qrl_qr_png: the growing output and why it stopped. */
typedef struct png_sink {
    unsigned char *buf;
    size_t len, cap;
    qrl_err err; /* set by a callback before it makes libpng fail */
} png_sink;

static png_voidp png_on_malloc(png_structp png, png_alloc_size_t size)
{
    png_sink *sink = png_get_mem_ptr(png);
    void *p = qr_malloc(size);

    if (p == NULL)
        sink->err = QRL_ERR_NOMEM;
    return p;
}

static void png_on_free(png_structp png, png_voidp p)
{
    (void)png;
    free(p);
}

/* A library does not write to stderr: errors unwind to the setjmp in png_encode, warnings
 * (none are expected for what we write) are dropped. */
static void png_on_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void png_on_write(png_structp png, png_bytep data, size_t n)
{
    png_sink *sink = png_get_io_ptr(png);

    if (n > QR_PNG_MAX - sink->len) {
        sink->err = QRL_ERR_TOO_LARGE;
        png_error(png, "PNG exceeds QR_PNG_MAX");
    }
    if (sink->len + n > sink->cap) {
        size_t cap = sink->cap ? sink->cap : 4096;
        unsigned char *p;

        while (cap < sink->len + n)
            cap *= 2;
        if (cap > QR_PNG_MAX)
            cap = QR_PNG_MAX;
        p = qr_realloc(sink->buf, cap);
        if (p == NULL) {
            sink->err = QRL_ERR_NOMEM;
            png_error(png, "out of memory");
        }
        sink->buf = p;
        sink->cap = cap;
    }
    memcpy(sink->buf + sink->len, data, n);
    sink->len += n;
}

/* Without a flush callback libpng would fflush() the io pointer as if it were a FILE. */
static void png_on_flush(png_structp png)
{
    (void)png;
}

/* Runs libpng proper. Kept apart so that setjmp lives in a frame with nothing to clean up and
 * no locals read after longjmp (C17 7.13.2.1: those would need to be volatile). */
static int png_encode(png_structp png, png_infop info, const qrl_qr *qr, int scale,
                      unsigned char *row)
{
    int full = QR_FULL(qr->width);
    png_uint_32 side = (png_uint_32)full * (png_uint_32)scale;

    if (setjmp(png_jmpbuf(png)))
        return -1;
    png_set_IHDR(png, info, side, side, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < full; y++) {
        for (int x = 0; x < full; x++)
            memset(row + (size_t)x * (size_t)scale, dark_at(qr, x, y) ? 0x00 : 0xff, (size_t)scale);
        for (int r = 0; r < scale; r++)
            png_write_row(png, row);
    }
    png_write_end(png, NULL);
    return 0;
}

qrl_err qrl_qr_png(const qrl_qr *qr, int scale, unsigned char **out, size_t *len)
{
    png_sink sink = {0};
    png_structp png = NULL;
    png_infop info = NULL;
    unsigned char *row = NULL;
    qrl_err rc;

    if (out == NULL || len == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    *len = 0;
    if (qr == NULL || scale < 1 || scale > QRL_QR_MAX_SCALE)
        return QRL_ERR_INVALID;

    row = qr_malloc((size_t)QR_FULL(qr->width) * (size_t)scale);
    if (row == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, &sink, png_on_error, png_on_warning,
                                    &sink, png_on_malloc, png_on_free);
    if (png == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    info = png_create_info_struct(png);
    if (info == NULL) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    png_set_write_fn(png, &sink, png_on_write, png_on_flush);
    if (png_encode(png, info, qr, scale, row) != 0) {
        /* libpng reports its own allocation failures only as a message; png_on_malloc noted
         * them in sink.err. Anything else is a libpng or zlib failure we did not expect. */
        rc = sink.err != QRL_OK ? sink.err : QRL_ERR_INTERNAL;
        goto out;
    }
    *out = sink.buf;
    *len = sink.len;
    sink.buf = NULL;
    rc = QRL_OK;
out:
    png_destroy_write_struct(&png, &info);
    free(sink.buf);
    free(row);
    return rc;
}
