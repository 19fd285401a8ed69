/* SPDX-License-Identifier: MIT */
/*
 * Reading a QR code from an image for `qrlogin phone approve --image`: libpng's simplified API
 * turns the PNG into 8-bit gray, zbar finds and decodes the symbol.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <zbar.h>

#include "cli.h"

/* Images larger than this are not photos of a screen but a mistake (or an attack). */
#define MAX_PIXELS (8192u * 8192u)

bool qrl_cli_qr_decode_png(const char *path, char *out, size_t len, char *err, size_t errlen)
{
    png_image img;
    unsigned char *px = NULL;
    zbar_image_scanner_t *sc = NULL;
    zbar_image_t *zi = NULL;
    bool ok = false;

    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) {
        snprintf(err, errlen, "cannot read %s as PNG: %s", path, img.message);
        return false;
    }
    if ((size_t)img.width * img.height > MAX_PIXELS || img.width == 0 || img.height == 0) {
        snprintf(err, errlen, "%s: image too large", path);
        png_image_free(&img);
        return false;
    }
    img.format = PNG_FORMAT_GRAY;
    px = malloc(PNG_IMAGE_SIZE(img));
    if (px == NULL || !png_image_finish_read(&img, NULL, px, 0, NULL)) {
        snprintf(err, errlen, "cannot decode %s: %s", path, px ? img.message : "out of memory");
        png_image_free(&img);
        free(px);
        return false;
    }
    sc = zbar_image_scanner_create();
    zi = zbar_image_create();
    if (sc == NULL || zi == NULL) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    zbar_image_scanner_set_config(sc, ZBAR_NONE, ZBAR_CFG_ENABLE, 0);
    zbar_image_scanner_set_config(sc, ZBAR_QRCODE, ZBAR_CFG_ENABLE, 1);
    zbar_image_set_format(zi, zbar_fourcc('Y', '8', '0', '0'));
    zbar_image_set_size(zi, img.width, img.height);
    zbar_image_set_data(zi, px, (unsigned long)img.width * img.height, NULL);
    if (zbar_scan_image(sc, zi) <= 0) {
        snprintf(err, errlen, "no QR code found in %s", path);
        goto out;
    }
    for (const zbar_symbol_t *s = zbar_image_first_symbol(zi); s != NULL; s = zbar_symbol_next(s)) {
        if (zbar_symbol_get_type(s) != ZBAR_QRCODE)
            continue;
        const char *d = zbar_symbol_get_data(s);
        if (snprintf(out, len, "%s", d) >= (int)len) {
            snprintf(err, errlen, "the QR code in %s is too long", path);
            goto out;
        }
        ok = true;
        break;
    }
    if (!ok)
        snprintf(err, errlen, "no QR code found in %s", path);
out:
    if (zi != NULL)
        zbar_image_destroy(zi);
    if (sc != NULL)
        zbar_image_scanner_destroy(sc);
    free(px);
    return ok;
}
