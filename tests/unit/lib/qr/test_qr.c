/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of QR encoding and rendering (lib/qr/qr.c). Every rendering is proved with an
 * independent decoder, not by comparing against our own idea of a QR code: PNGs go straight to
 * `zbarimg`, SVGs are rasterised by `rsvg-convert` first, and terminal text is parsed back into a
 * bitmap here and written as a PGM for zbarimg. A code that a phone camera could not read fails
 * these tests. Missing tools (Debian zbar-tools, librsvg2-bin) fail the tests; they never skip.
 *
 * Besides decoding: the module matrix matches libqrencode's, every rendering has the 4-module
 * quiet zone and exactly the expected modules, PNG headers and sizes are right, bad arguments
 * are refused, allocation failures (fault injection through qrl__qr_fail_alloc) return
 * QRL_ERR_NOMEM without leaks, and a qrl_qr renders identically from several threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <png.h>
#include <qrencode.h>

#include "qrlogin/qr.h"

#ifdef QRL_TEST_HOOKS
/* Defined in lib/qr/qr.c: the allocation that counts it down to zero fails. */
extern _Atomic int qrl__qr_fail_alloc;
#endif

#define QZ QRL_QR_QUIET_ZONE

/* What the server puts in a QR code (docs/api.md): PUBLIC/s#<scan secret>. */
static const char url_short[] = "http://127.0.0.1:8080/s#qrl_ss_d2oLHRQOWC2cc0VCVSphfUWPQH5bEPO5";
/* A long public URL with a query: a larger version with several alignment patterns. */
static const char url_long[] =
    "https://login.living-room.example.com:8443/qrlogin/v1/scan?device_name=Living%20Room%20TV"
    "&device_kind=tv&platform=Samsung%20Tizen%207.0&lang=en-GB&utm_source=screen"
    "#qrl_ss_d2oLHRQOWC2cc0VCVSphfUWPQH5bEPO5Zq9xYw3v";

static char tmpdir[] = "/tmp/qrl_test_qr_XXXXXX";
/* Stands in for a stale pointer in an output argument, to see that failures clear it. */
static char dummy[16];

/* ---- helpers ---------------------------------------------------------------------------- */

/* A bitmap of modules (1 = dark) or of pixels (1 = dark). */
typedef struct bitmap {
    int w, h;
    unsigned char *v;
} bitmap;

static int bm_get(const bitmap *b, int x, int y)
{
    return b->v[(size_t)y * (size_t)b->w + (size_t)x];
}

static void bm_alloc(bitmap *b, int w, int h)
{
    b->w = w;
    b->h = h;
    b->v = calloc((size_t)w * (size_t)h, 1);
    assert_non_null(b->v);
}

/* The symbol as the accessor reports it, with the quiet zone around it. */
static bitmap expected_modules(const qrl_qr *qr)
{
    int full = qrl_qr_width(qr) + 2 * QZ;
    bitmap b;

    bm_alloc(&b, full, full);
    for (int y = 0; y < full; y++)
        for (int x = 0; x < full; x++)
            b.v[(size_t)y * (size_t)full + (size_t)x] =
                (unsigned char)(qrl_qr_module(qr, x - QZ, y - QZ) != 0);
    return b;
}

/* Module rows and columns 0..QZ-1 and the last QZ are all light; the symbol's top-left module
 * (a finder pattern corner, always dark) sits right after the zone, so the zone is exactly QZ. */
static void assert_quiet_zone(const bitmap *m, int full)
{
    for (int i = 0; i < full; i++) {
        for (int k = 0; k < QZ; k++) {
            assert_int_equal(bm_get(m, i, k), 0);
            assert_int_equal(bm_get(m, k, i), 0);
            assert_int_equal(bm_get(m, i, full - 1 - k), 0);
            assert_int_equal(bm_get(m, full - 1 - k, i), 0);
        }
    }
    assert_int_equal(bm_get(m, QZ, QZ), 1);
    assert_int_equal(bm_get(m, full - 1 - QZ, QZ), 1);
    assert_int_equal(bm_get(m, QZ, full - 1 - QZ), 1);
}

/* Samples the centre of each `scale` x `scale` cell of a pixel bitmap. */
static bitmap sample_modules(const bitmap *px, int scale)
{
    bitmap m;

    assert_int_equal(px->w % scale, 0);
    assert_int_equal(px->h % scale, 0);
    bm_alloc(&m, px->w / scale, px->h / scale);
    for (int y = 0; y < m.h; y++)
        for (int x = 0; x < m.w; x++)
            m.v[(size_t)y * (size_t)m.w + (size_t)x] =
                (unsigned char)bm_get(px, x * scale + scale / 2, y * scale + scale / 2);
    return m;
}

static void assert_bitmap_equal(const bitmap *a, const bitmap *b)
{
    assert_int_equal(a->w, b->w);
    assert_int_equal(a->h, b->h);
    assert_memory_equal(a->v, b->v, (size_t)a->w * (size_t)a->h);
}

static void tmp_path(char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", tmpdir, name);

    assert_true(n > 0 && (size_t)n < cap);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A missing decoder would make every decode test meaningless, so it is a failure, not a skip. */
static void require_tool(const char *tool, const char *package)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    if (system(cmd) != 0)
        fail_msg("%s not found: install the Debian package %s (these tests never skip)", tool,
                 package);
}

/* Runs `cmd` through the shell, returns its stdout (NUL-terminated) and exit status. */
static char *run(const char *cmd, int *status)
{
    size_t cap = 1 << 16, len = 0, n;
    char *out = malloc(cap);
    FILE *p;
    int st;

    assert_non_null(out);
    p = popen(cmd, "r");
    assert_non_null(p);
    while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += n;
    out[len] = '\0';
    st = pclose(p);
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* Decodes the image at `path` with zbarimg and checks it holds exactly `want`, once. */
static void zbar_expect(const char *path, const char *want)
{
    char cmd[512];
    char *got;
    size_t n;
    int status;

    require_tool("zbarimg", "zbar-tools");
    /* Only QR symbols count; --nodbus keeps zbar from looking for a system bus. */
    snprintf(cmd, sizeof cmd, "zbarimg --raw -q --nodbus -Sdisable -Sqrcode.enable '%s'", path);
    got = run(cmd, &status);
    if (status != 0)
        fail_msg("zbarimg found no QR code in %s (exit %d)", path, status);
    /* --raw prints each symbol's data followed by a newline. */
    n = strlen(got);
    assert_true(n > 0 && got[n - 1] == '\n');
    got[n - 1] = '\0';
    assert_string_equal(got, want);
    free(got);
}

/* Reads a PNG with libpng's simplified API into a dark/light pixel bitmap (threshold 50%),
 * flattening any alpha onto white. With `exact`, every pixel must be pure black or white. */
static bitmap png_pixels(const unsigned char *data, size_t len, int exact)
{
    png_image img;
    png_color white = {255, 255, 255};
    unsigned char *gray;
    bitmap b;

    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_memory(&img, data, len));
    img.format = PNG_FORMAT_GRAY;
    gray = malloc(PNG_IMAGE_SIZE(img));
    assert_non_null(gray);
    assert_true(png_image_finish_read(&img, &white, gray, 0, NULL));
    bm_alloc(&b, (int)img.width, (int)img.height);
    for (size_t i = 0; i < (size_t)b.w * (size_t)b.h; i++) {
        if (exact)
            assert_true(gray[i] == 0 || gray[i] == 255);
        b.v[i] = gray[i] < 128;
    }
    free(gray);
    png_image_free(&img);
    return b;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the PNG signature and IHDR byte by byte: side x side, 8-bit grayscale, no interlace. */
static void assert_png_header(const unsigned char *png, size_t len, uint32_t side)
{
    assert_true(len > 33);
    assert_int_equal(png_sig_cmp(png, 0, 8), 0);
    assert_int_equal(be32(png + 8), 13);
    assert_memory_equal(png + 12, "IHDR", 4);
    assert_int_equal(be32(png + 16), side);
    assert_int_equal(be32(png + 20), side);
    assert_int_equal(png[24], 8);                   /* bit depth */
    assert_int_equal(png[25], PNG_COLOR_TYPE_GRAY); /* colour type 0 */
    assert_int_equal(png[28], PNG_INTERLACE_NONE);
}

static qrl_qr *encode(const char *text)
{
    qrl_qr *qr = NULL;

    assert_int_equal(qrl_qr_encode(text, &qr), QRL_OK);
    assert_non_null(qr);
    return qr;
}

/* Renders PNG at `scale`, checks header, pixels and quiet zone, and decodes it. */
static void check_png(const char *text, int scale)
{
    qrl_qr *qr = encode(text);
    int full = qrl_qr_width(qr) + 2 * QZ;
    unsigned char *png = NULL;
    size_t len = 0;
    char path[256];
    bitmap px, mods, want;

    assert_int_equal(qrl_qr_png(qr, scale, &png, &len), QRL_OK);
    assert_png_header(png, len, (uint32_t)(full * scale));
    px = png_pixels(png, len, 1);
    mods = sample_modules(&px, scale);
    want = expected_modules(qr);
    assert_bitmap_equal(&mods, &want);
    assert_quiet_zone(&mods, full);
    /* Each module is a solid scale x scale square, not just right at its centre. */
    for (int y = 0; y < px.h; y++)
        for (int x = 0; x < px.w; x++)
            assert_int_equal(bm_get(&px, x, y), bm_get(&want, x / scale, y / scale));

    tmp_path(path, sizeof path, "code.png");
    write_file(path, png, len);
    zbar_expect(path, text);
    unlink(path);
    free(px.v);
    free(mods.v);
    free(want.v);
    free(png);
    qrl_qr_free(qr);
}

/* Parses a rendered path of "M x y h n v1 h-n z" runs back into a module bitmap. */
static bitmap svg_path_modules(const char *d, int full)
{
    bitmap b;

    bm_alloc(&b, full, full);
    while (*d != '\0') {
        int x, y, n1, n2, used = 0;

        assert_int_equal(sscanf(d, "M%d %dh%dv1h-%dz%n", &x, &y, &n1, &n2, &used), 4);
        assert_true(used > 0);
        assert_int_equal(n1, n2);
        assert_true(x >= 0 && y >= 0 && n1 >= 1 && x + n1 <= full && y < full);
        for (int i = 0; i < n1; i++) {
            /* Runs never overlap and are merged: no run starts right after another. */
            assert_int_equal(b.v[(size_t)y * (size_t)full + (size_t)(x + i)], 0);
            b.v[(size_t)y * (size_t)full + (size_t)(x + i)] = 1;
        }
        assert_true(x == 0 || b.v[(size_t)y * (size_t)full + (size_t)(x - 1)] == 0);
        d += used;
    }
    return b;
}

/* Copies the value of attribute `name` (first occurrence after `from`) into buf. */
static void svg_attr(const char *from, const char *name, char *buf, size_t cap)
{
    char key[64];
    const char *p, *q;

    snprintf(key, sizeof key, " %s=\"", name);
    p = strstr(from, key);
    assert_non_null(p);
    p += strlen(key);
    q = strchr(p, '"');
    assert_non_null(q);
    assert_true((size_t)(q - p) < cap);
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = '\0';
}

/* Checks the SVG text: size attributes, viewBox with the quiet zone, crispEdges, white
 * background, and a path whose runs draw exactly the expected modules. */
static void check_svg_text(const qrl_qr *qr, const char *svg, size_t len, int scale)
{
    int full = qrl_qr_width(qr) + 2 * QZ;
    char buf[64], want_s[64], *d;
    const char *svg_el, *path_el, *p;
    bitmap got, want;
    size_t dlen;

    assert_int_equal(strlen(svg), len);
    svg_el = strstr(svg, "<svg ");
    assert_non_null(svg_el);
    snprintf(want_s, sizeof want_s, "%d", full * scale);
    svg_attr(svg_el, "width", buf, sizeof buf);
    assert_string_equal(buf, want_s);
    svg_attr(svg_el, "height", buf, sizeof buf);
    assert_string_equal(buf, want_s);
    snprintf(want_s, sizeof want_s, "0 0 %d %d", full, full);
    svg_attr(svg_el, "viewBox", buf, sizeof buf);
    assert_string_equal(buf, want_s);
    svg_attr(svg_el, "shape-rendering", buf, sizeof buf);
    assert_string_equal(buf, "crispEdges");
    assert_non_null(strstr(svg, "<rect width=\""));
    svg_attr(strstr(svg, "<rect"), "fill", buf, sizeof buf);
    assert_string_equal(buf, "#fff");
    assert_non_null(strstr(svg, "</svg>"));

    /* Exactly one path. */
    path_el = strstr(svg, "<path ");
    assert_non_null(path_el);
    assert_null(strstr(path_el + 1, "<path"));
    p = strstr(path_el, " d=\"");
    assert_non_null(p);
    p += 4;
    dlen = (size_t)(strchr(p, '"') - p);
    d = strndup(p, dlen);
    assert_non_null(d);
    got = svg_path_modules(d, full);
    want = expected_modules(qr);
    assert_bitmap_equal(&got, &want);
    assert_quiet_zone(&got, full);
    free(d);
    free(got.v);
    free(want.v);
}

/* Rasterises an SVG with rsvg-convert at its own size and returns the pixels; with `want`,
 * also decodes rsvg-convert's PNG with zbarimg. */
static bitmap rasterise_svg(const char *svg, size_t len, const char *name, const char *want)
{
    char svg_path[256], png_path[300], cmd[700], *out;
    unsigned char *png;
    size_t png_len;
    int status;
    bitmap px;

    require_tool("rsvg-convert", "librsvg2-bin");
    tmp_path(svg_path, sizeof svg_path, name);
    snprintf(png_path, sizeof png_path, "%s.png", svg_path);
    write_file(svg_path, svg, len);
    snprintf(cmd, sizeof cmd, "rsvg-convert -f png -o '%s' '%s' 2>&1", png_path, svg_path);
    out = run(cmd, &status);
    if (status != 0)
        fail_msg("rsvg-convert failed (exit %d): %s", status, out);
    free(out);
    png = read_file(png_path, &png_len);
    px = png_pixels(png, png_len, 0);
    free(png);
    if (want != NULL)
        zbar_expect(png_path, want);
    unlink(svg_path);
    unlink(png_path);
    return px;
}

/* Terminal text (ansi = 0) back to modules: each cell is two module rows. */
static bitmap terminal_modules(const char *text, size_t len)
{
    int lines = 0, cells = -1;
    const char *p = text, *end = text + len;
    bitmap b = {0};

    assert_true(len > 0 && text[len - 1] == '\n');
    for (int pass = 0; pass < 2; pass++) {
        int line = 0;

        p = text;
        while (p < end) {
            int cell = 0;

            while (*p != '\n') {
                int top = 0, bottom = 0;

                if (*p == ' ') {
                    p++;
                } else {
                    assert_true(end - p >= 3);
                    assert_memory_equal(p, "\xe2\x96", 2);
                    switch ((unsigned char)p[2]) {
                    case 0x80: /* U+2580 upper half block */
                        top = 1, bottom = 0;
                        break;
                    case 0x84: /* U+2584 lower half block */
                        top = 0, bottom = 1;
                        break;
                    case 0x88: /* U+2588 full block */
                        top = bottom = 1;
                        break;
                    default:
                        fail_msg("unexpected glyph byte 0x%02x", (unsigned char)p[2]);
                    }
                    p += 3;
                }
                if (pass == 1) {
                    b.v[(size_t)(2 * line) * (size_t)b.w + (size_t)cell] = (unsigned char)top;
                    b.v[(size_t)(2 * line + 1) * (size_t)b.w + (size_t)cell] =
                        (unsigned char)bottom;
                }
                cell++;
            }
            p++;
            if (pass == 0) {
                /* All lines have the same number of cells. */
                assert_true(cells < 0 || cells == cell);
                cells = cell;
                lines++;
            }
            line++;
        }
        if (pass == 0)
            bm_alloc(&b, cells, 2 * lines);
    }
    return b;
}

/* Writes modules as a binary PGM, `px` pixels per module, for zbarimg. */
static void write_pgm(const char *path, const bitmap *m, int px)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    fprintf(f, "P5\n%d %d\n255\n", m->w * px, m->h * px);
    for (int y = 0; y < m->h * px; y++)
        for (int x = 0; x < m->w * px; x++)
            fputc(bm_get(m, x / px, y / px) ? 0 : 255, f);
    assert_int_equal(fclose(f), 0);
}

/* Checks terminal text against the symbol and decodes it through a PGM. */
static void check_terminal(const char *text)
{
    qrl_qr *qr = encode(text);
    int full = qrl_qr_width(qr) + 2 * QZ;
    char *out = NULL, path[256];
    size_t len = 0;
    bitmap got, want;

    assert_int_equal(qrl_qr_terminal(qr, 0, &out, &len), QRL_OK);
    assert_int_equal(strlen(out), len);
    assert_null(strchr(out, '\x1b'));
    got = terminal_modules(out, len);
    /* The side is odd, so the last line carries one extra (light) module row. */
    assert_int_equal(full % 2, 1);
    assert_int_equal(got.w, full);
    assert_int_equal(got.h, full + 1);
    want = expected_modules(qr);
    assert_memory_equal(got.v, want.v, (size_t)full * (size_t)full);
    for (int x = 0; x < full; x++)
        assert_int_equal(bm_get(&got, x, full), 0);
    assert_quiet_zone(&got, full);

    tmp_path(path, sizeof path, "terminal.pgm");
    write_pgm(path, &got, 4);
    zbar_expect(path, text);
    unlink(path);
    free(got.v);
    free(want.v);
    free(out);
    qrl_qr_free(qr);
}

static void check_svg(const char *text, int scale)
{
    qrl_qr *qr = encode(text);
    int full = qrl_qr_width(qr) + 2 * QZ;
    char *svg = NULL;
    size_t len = 0;
    bitmap px, mods, want;

    assert_int_equal(qrl_qr_svg(qr, scale, &svg, &len), QRL_OK);
    check_svg_text(qr, svg, len, scale);

    /* The rasterised picture decodes, has the advertised size and the right modules. */
    px = rasterise_svg(svg, len, "code.svg", text);
    assert_int_equal(px.w, full * scale);
    assert_int_equal(px.h, full * scale);
    mods = sample_modules(&px, scale);
    want = expected_modules(qr);
    assert_bitmap_equal(&mods, &want);
    assert_quiet_zone(&mods, full);
    free(px.v);
    free(mods.v);
    free(want.v);
    free(svg);
    qrl_qr_free(qr);
}

/* A text of exactly n bytes that still looks like our URL. */
static char *long_text(size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, 'A', n);
    memcpy(s, url_short, strlen(url_short));
    s[n] = '\0';
    return s;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_tools_present(void **state)
{
    (void)state;
    require_tool("zbarimg", "zbar-tools");
    require_tool("rsvg-convert", "librsvg2-bin");
}

static void test_encode_invalid(void **state)
{
    qrl_qr *qr = (qrl_qr *)dummy;
    char *big = long_text(QRL_QR_MAX_TEXT + 1);

    (void)state;
    assert_int_equal(qrl_qr_encode(NULL, &qr), QRL_ERR_INVALID);
    assert_null(qr);
    assert_int_equal(qrl_qr_encode(url_short, NULL), QRL_ERR_INVALID);
    assert_int_equal(qrl_qr_encode("", &qr), QRL_ERR_INVALID);
    assert_null(qr);
    assert_int_equal(qrl_qr_encode(big, &qr), QRL_ERR_INVALID);
    assert_null(qr);
    /* Exactly at the limit is fine. */
    big[QRL_QR_MAX_TEXT] = '\0';
    assert_int_equal(qrl_qr_encode(big, &qr), QRL_OK);
    assert_true(qrl_qr_width(qr) > 21 && qrl_qr_width(qr) <= 177);
    qrl_qr_free(qr);
    qrl_qr_free(NULL);
    assert_int_equal(qrl_qr_width(NULL), 0);
    assert_int_equal(qrl_qr_module(NULL, 0, 0), 0);
    free(big);
}

/* Resets the outputs to stale values, so each check sees a failure clear them. */
#define STALE() (s = dummy, u = (unsigned char *)dummy, len = 99)

static void test_render_invalid(void **state)
{
    qrl_qr *qr = encode(url_short);
    char *s;
    unsigned char *u;
    size_t len;
    static const int bad_scales[] = {0, -1, QRL_QR_MAX_SCALE + 1, 1000000};

    (void)state;
    for (size_t i = 0; i < sizeof bad_scales / sizeof bad_scales[0]; i++) {
        STALE();
        assert_int_equal(qrl_qr_svg(qr, bad_scales[i], &s, &len), QRL_ERR_INVALID);
        assert_null(s);
        assert_int_equal(len, 0);
        STALE();
        assert_int_equal(qrl_qr_png(qr, bad_scales[i], &u, &len), QRL_ERR_INVALID);
        assert_null(u);
        assert_int_equal(len, 0);
    }
    STALE();
    assert_int_equal(qrl_qr_svg(NULL, 4, &s, &len), QRL_ERR_INVALID);
    assert_null(s);
    assert_int_equal(len, 0);
    assert_int_equal(qrl_qr_svg(qr, 4, NULL, &len), QRL_ERR_INVALID);
    assert_int_equal(qrl_qr_svg(qr, 4, &s, NULL), QRL_ERR_INVALID);
    STALE();
    assert_int_equal(qrl_qr_png(NULL, 4, &u, &len), QRL_ERR_INVALID);
    assert_null(u);
    assert_int_equal(len, 0);
    assert_int_equal(qrl_qr_png(qr, 4, NULL, &len), QRL_ERR_INVALID);
    assert_int_equal(qrl_qr_png(qr, 4, &u, NULL), QRL_ERR_INVALID);
    STALE();
    assert_int_equal(qrl_qr_terminal(NULL, 0, &s, &len), QRL_ERR_INVALID);
    assert_null(s);
    assert_int_equal(len, 0);
    assert_int_equal(qrl_qr_terminal(qr, 1, NULL, &len), QRL_ERR_INVALID);
    assert_int_equal(qrl_qr_terminal(qr, 1, &s, NULL), QRL_ERR_INVALID);
    /* The edges of the scale range are accepted. */
    assert_int_equal(qrl_qr_svg(qr, 1, &s, &len), QRL_OK);
    free(s);
    assert_int_equal(qrl_qr_png(qr, QRL_QR_MAX_SCALE, &u, &len), QRL_OK);
    free(u);
    qrl_qr_free(qr);
}

static void test_module_matches_libqrencode(void **state)
{
    const char *texts[] = {url_short, url_long, "x"};

    (void)state;
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        qrl_qr *qr = encode(texts[t]);
        QRcode *ref = QRcode_encodeString8bit(texts[t], 0, QR_ECLEVEL_M);
        int w;

        assert_non_null(ref);
        w = ref->width;
        assert_int_equal(qrl_qr_width(qr), w);
        for (int y = 0; y < w; y++)
            for (int x = 0; x < w; x++)
                assert_int_equal(qrl_qr_module(qr, x, y) != 0, ref->data[y * w + x] & 1);
        /* Outside the symbol (including the quiet zone) is light. */
        assert_int_equal(qrl_qr_module(qr, -1, 0), 0);
        assert_int_equal(qrl_qr_module(qr, 0, -1), 0);
        assert_int_equal(qrl_qr_module(qr, w, 0), 0);
        assert_int_equal(qrl_qr_module(qr, 0, w), 0);
        assert_int_equal(qrl_qr_module(qr, -QZ, -QZ), 0);
        /* Level M, smallest version: "x" is version 1 (21 modules). */
        if (t == 2)
            assert_int_equal(w, 21);
        QRcode_free(ref);
        qrl_qr_free(qr);
    }
}

static void test_png_decodes(void **state)
{
    static const int scales[] = {2, 3, 4, 8};

    (void)state;
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        check_png(url_short, scales[i]);
        check_png(url_long, scales[i]);
    }
}

/* Scale 1 and the largest scale: right size and pixels; the big text still decodes. */
static void test_png_extremes(void **state)
{
    qrl_qr *qr = encode(url_short);
    int full = qrl_qr_width(qr) + 2 * QZ;
    unsigned char *png = NULL;
    size_t len = 0;
    bitmap px, want;
    char *big = long_text(QRL_QR_MAX_TEXT);

    (void)state;
    assert_int_equal(qrl_qr_png(qr, 1, &png, &len), QRL_OK);
    assert_png_header(png, len, (uint32_t)full);
    px = png_pixels(png, len, 1);
    want = expected_modules(qr);
    assert_bitmap_equal(&px, &want);
    free(px.v);
    free(want.v);
    free(png);
    qrl_qr_free(qr);

    /* The largest symbol we allow at the largest scale stays small: rows repeat. */
    qr = encode(big);
    full = qrl_qr_width(qr) + 2 * QZ;
    assert_int_equal(qrl_qr_png(qr, QRL_QR_MAX_SCALE, &png, &len), QRL_OK);
    assert_png_header(png, len, (uint32_t)(full * QRL_QR_MAX_SCALE));
    assert_true(len < 1024 * 1024);
    free(png);
    qrl_qr_free(qr);

    check_png(big, 4);
    free(big);
}

static void test_svg_decodes(void **state)
{
    (void)state;
    check_svg(url_short, 4);
    check_svg(url_short, 8);
    check_svg(url_long, 4);
    check_svg(url_long, 6);
}

/* Scale only changes width and height; the drawing is in module units either way. */
static void test_svg_scales(void **state)
{
    static const int scales[] = {1, 2, QRL_QR_MAX_SCALE};
    qrl_qr *qr = encode(url_long);
    char *first = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        char *svg = NULL;
        size_t len = 0;

        assert_int_equal(qrl_qr_svg(qr, scales[i], &svg, &len), QRL_OK);
        check_svg_text(qr, svg, len, scales[i]);
        if (first == NULL)
            first = strdup(strstr(svg, "<path"));
        else
            assert_string_equal(strstr(svg, "<path"), first);
        free(svg);
    }
    free(first);
    qrl_qr_free(qr);
}

static void test_terminal_decodes(void **state)
{
    (void)state;
    check_terminal(url_short);
    check_terminal(url_long);
}

/* With ansi set, each line is the plain line wrapped in black-on-white and a reset. */
static void test_terminal_ansi(void **state)
{
    static const char on[] = "\x1b[30;47m", off[] = "\x1b[0m\n";
    qrl_qr *qr = encode(url_short);
    char *plain = NULL, *ansi = NULL;
    size_t plain_len = 0, ansi_len = 0, lines = 0;
    const char *p, *q;

    (void)state;
    assert_int_equal(qrl_qr_terminal(qr, 0, &plain, &plain_len), QRL_OK);
    assert_int_equal(qrl_qr_terminal(qr, 1, &ansi, &ansi_len), QRL_OK);
    assert_int_equal(strlen(ansi), ansi_len);
    p = plain;
    q = ansi;
    while (*p != '\0') {
        size_t n = (size_t)(strchr(p, '\n') - p);

        assert_memory_equal(q, on, strlen(on));
        q += strlen(on);
        assert_memory_equal(q, p, n);
        q += n;
        assert_memory_equal(q, off, strlen(off));
        q += strlen(off);
        p += n + 1;
        lines++;
    }
    assert_int_equal(*q, '\0');
    assert_int_equal(ansi_len, plain_len + lines * (strlen(on) + strlen(off) - 1));
    assert_int_equal(lines, (size_t)(qrl_qr_width(qr) + 2 * QZ + 1) / 2);
    free(plain);
    free(ansi);
    qrl_qr_free(qr);
}

/* The first and last QZ module rows and columns are light in all three renderings. */
static void test_quiet_zone_every_rendering(void **state)
{
    qrl_qr *qr = encode(url_long);
    int full = qrl_qr_width(qr) + 2 * QZ;
    unsigned char *png = NULL;
    char *svg = NULL, *term = NULL;
    size_t len = 0;
    bitmap px, m;

    (void)state;
    assert_int_equal(qrl_qr_png(qr, 5, &png, &len), QRL_OK);
    px = png_pixels(png, len, 1);
    m = sample_modules(&px, 5);
    assert_quiet_zone(&m, full);
    free(px.v);
    free(m.v);

    assert_int_equal(qrl_qr_svg(qr, 5, &svg, &len), QRL_OK);
    px = rasterise_svg(svg, len, "quiet.svg", NULL);
    m = sample_modules(&px, 5);
    assert_quiet_zone(&m, full);
    free(px.v);
    free(m.v);

    assert_int_equal(qrl_qr_terminal(qr, 0, &term, &len), QRL_OK);
    m = terminal_modules(term, len);
    assert_quiet_zone(&m, full);
    free(m.v);

    free(png);
    free(svg);
    free(term);
    qrl_qr_free(qr);
}

#ifdef QRL_TEST_HOOKS
enum op { OP_ENCODE, OP_SVG, OP_PNG, OP_TERMINAL, OP_TERMINAL_ANSI };

/* Runs one operation; reports whether it produced output (cleared on failure) and frees it. */
static qrl_err run_op(enum op op, const qrl_qr *qr, int *produced)
{
    qrl_qr *q = (qrl_qr *)dummy;
    char *s = dummy;
    unsigned char *u = (unsigned char *)dummy;
    size_t len = 99;
    qrl_err rc = QRL_ERR_INTERNAL;

    switch (op) {
    case OP_ENCODE:
        rc = qrl_qr_encode(url_long, &q);
        len = q != NULL;
        break;
    case OP_SVG:
        rc = qrl_qr_svg(qr, 3, &s, &len);
        break;
    case OP_PNG:
        rc = qrl_qr_png(qr, 3, &u, &len);
        break;
    case OP_TERMINAL:
        rc = qrl_qr_terminal(qr, 0, &s, &len);
        break;
    case OP_TERMINAL_ANSI:
        rc = qrl_qr_terminal(qr, 1, &s, &len);
        break;
    }
    if (op == OP_ENCODE) {
        *produced = q != NULL;
        qrl_qr_free(q);
    } else if (op == OP_PNG) {
        *produced = u != NULL;
        free(u);
    } else {
        *produced = s != NULL;
        free(s);
    }
    /* Output and length are both set or both cleared. */
    assert_int_equal(*produced, len != 0);
    return rc;
}

/* Fails the 1st, 2nd, ... allocation of each call in turn, libpng's and zlib's included: each
 * failure is QRL_ERR_NOMEM with cleared outputs, and LeakSanitizer sees no leak. */
static void test_alloc_failures(void **state)
{
    qrl_qr *qr = encode(url_long);

    (void)state;
    for (int op = OP_ENCODE; op <= OP_TERMINAL_ANSI; op++) {
        int failures = 0;

        for (int n = 1;; n++) {
            int produced, left;
            qrl_err rc;

            atomic_store(&qrl__qr_fail_alloc, n);
            rc = run_op((enum op)op, qr, &produced);
            left = atomic_exchange(&qrl__qr_fail_alloc, 0);
            if (rc == QRL_ERR_NOMEM) {
                assert_false(produced);
                failures++;
            } else {
                /* libpng tolerates some failed allocations (png_malloc_warn). */
                assert_int_equal(rc, QRL_OK);
                assert_true(produced);
            }
            if (left > 0)
                break; /* the call made fewer than n allocations: all were tried */
            assert_true(n < 1000);
        }
        assert_true(failures >= 1);
    }
    qrl_qr_free(qr);
}
#endif

typedef struct render_job {
    const qrl_qr *qr;
    char *svg, *term;
    unsigned char *png;
    size_t svg_len, term_len, png_len;
    qrl_err rc;
} render_job;

static void *render_thread(void *arg)
{
    render_job *j = arg;

    j->rc = qrl_qr_svg(j->qr, 4, &j->svg, &j->svg_len);
    if (j->rc == QRL_OK)
        j->rc = qrl_qr_png(j->qr, 4, &j->png, &j->png_len);
    if (j->rc == QRL_OK)
        j->rc = qrl_qr_terminal(j->qr, 1, &j->term, &j->term_len);
    return NULL;
}

/* One qrl_qr rendered from several threads at once gives the same bytes as one thread. */
static void test_concurrent_renders(void **state)
{
    enum { N = 8 };
    qrl_qr *qr = encode(url_long);
    render_job ref = {.qr = qr}, jobs[N];
    pthread_t th[N];

    (void)state;
    render_thread(&ref);
    assert_int_equal(ref.rc, QRL_OK);
    for (int i = 0; i < N; i++) {
        jobs[i] = (render_job){.qr = qr};
        assert_int_equal(pthread_create(&th[i], NULL, render_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].rc, QRL_OK);
        assert_int_equal(jobs[i].svg_len, ref.svg_len);
        assert_memory_equal(jobs[i].svg, ref.svg, ref.svg_len);
        assert_int_equal(jobs[i].png_len, ref.png_len);
        assert_memory_equal(jobs[i].png, ref.png, ref.png_len);
        assert_int_equal(jobs[i].term_len, ref.term_len);
        assert_memory_equal(jobs[i].term, ref.term, ref.term_len);
        free(jobs[i].svg);
        free(jobs[i].png);
        free(jobs[i].term);
    }
    free(ref.svg);
    free(ref.png);
    free(ref.term);
    qrl_qr_free(qr);
}

static int group_setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

/* Removes the scratch directory, including files a failed test left behind. */
static int group_teardown(void **state)
{
    DIR *dir = opendir(tmpdir);
    struct dirent *e;
    char path[512];

    (void)state;
    if (dir == NULL)
        return -1;
    while ((e = readdir(dir)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(dir);
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tools_present),
        cmocka_unit_test(test_encode_invalid),
        cmocka_unit_test(test_render_invalid),
        cmocka_unit_test(test_module_matches_libqrencode),
        cmocka_unit_test(test_png_decodes),
        cmocka_unit_test(test_png_extremes),
        cmocka_unit_test(test_svg_decodes),
        cmocka_unit_test(test_svg_scales),
        cmocka_unit_test(test_terminal_decodes),
        cmocka_unit_test(test_terminal_ansi),
        cmocka_unit_test(test_quiet_zone_every_rendering),
#ifdef QRL_TEST_HOOKS
        cmocka_unit_test(test_alloc_failures),
#endif
        cmocka_unit_test(test_concurrent_renders),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
