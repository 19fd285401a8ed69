/* SPDX-License-Identifier: MIT */
/*
 * Screen extras: POST /v1/screen/qr renders the QR code of a waiting login request for the
 * screen that holds its device code. A TV app shows this image; it must be a real SVG or PNG,
 * never cached, and never available to anyone but the device-code holder or after the request
 * stopped waiting.
 */
#include "harness.h"

#include <stdio.h>
#include <string.h>

static it_resp *qr(const it_server *s, const char *client_id, const char *device_code,
                   const char *format, const char *scale)
{
    const char *kv[10];
    int i = 0;
    kv[i++] = "client_id";
    kv[i++] = client_id;
    kv[i++] = "device_code";
    kv[i++] = device_code;
    if (format != NULL) {
        kv[i++] = "format";
        kv[i++] = format;
    }
    if (scale != NULL) {
        kv[i++] = "scale";
        kv[i++] = scale;
    }
    kv[i] = NULL;
    it_resp *r = it_form_post(s, "/v1/screen/qr", kv, NULL);
    assert_non_null(r);
    return r;
}

/* Decodes an image the server sent with zbarimg (an SVG is first rasterised with rsvg-convert)
 * and returns the text of its QR code in `out` ("" if none). Fails loudly if a tool is missing. */
static void decode(const it_server *s, const it_resp *r, int svg, char *out, size_t len)
{
    char path[512], png[512], cmd[1400];
    FILE *f;

    snprintf(path, sizeof path, "%s/qr.%s", s->dir, svg ? "svg" : "png");
    snprintf(png, sizeof png, "%s/qr-decoded.png", s->dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(r->body, 1, r->body_len, f), r->body_len);
    fclose(f);
    if (svg) {
        snprintf(cmd, sizeof cmd, "rsvg-convert -w 400 -b white -o '%s' '%s'", png, path);
        assert_int_equal(system(cmd), 0);
    } else {
        snprintf(png, sizeof png, "%s", path);
    }
    snprintf(cmd, sizeof cmd, "zbarimg --raw -q --nodbus -Sdisable -Sqrcode.enable '%s'", png);
    f = popen(cmd, "r");
    assert_non_null(f);
    out[0] = '\0';
    if (fgets(out, (int)len, f) != NULL)
        out[strcspn(out, "\n")] = '\0';
    assert_int_equal(pclose(f), 0);
}

static unsigned png_width(const it_resp *r)
{
    static const unsigned char magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    assert_true(r->body_len > 24);
    assert_memory_equal(r->body, magic, 8);
    const unsigned char *b = (const unsigned char *)r->body;
    return (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
}

static void test_qr_svg_and_png(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", NULL, &da);

    char text[1024];
    it_resp *r = qr(s, IT_CLIENT_ID, da.device_code, NULL, NULL);
    it_expect(r, 200, NULL);
    assert_true(it_contains_ci(r->content_type, "image/svg+xml"));
    assert_true(it_contains_ci(r->cache_control, "no-store"));
    assert_non_null(strstr(r->body, "<svg"));
    /* An independent decoder reads exactly the URL the screen was given. */
    decode(s, r, 1, text, sizeof text);
    assert_string_equal(text, da.verification_uri_complete);
    it_resp_free(r);

    r = qr(s, IT_CLIENT_ID, da.device_code, "png", "4");
    it_expect(r, 200, NULL);
    assert_true(it_contains_ci(r->content_type, "image/png"));
    assert_true(it_contains_ci(r->cache_control, "no-store"));
    decode(s, r, 0, text, sizeof text);
    assert_string_equal(text, da.verification_uri_complete);
    unsigned w4 = png_width(r);
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, da.device_code, "png", "8");
    it_expect(r, 200, NULL);
    unsigned w8 = png_width(r);
    it_resp_free(r);
    printf("screen: QR png is %u px at scale 4, %u px at scale 8\n", w4, w8);
    /* Same module count (including the 4-module quiet zone) at both scales. */
    assert_int_equal(w4 % 4, 0);
    assert_int_equal(w8, 2 * w4);
    /* At least version 1 (21 modules) plus 2 x 4 quiet modules. */
    assert_true(w4 / 4 >= 29);

    /* Still available once a phone has scanned (SCANNED is still waiting). */
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);
    r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, da.device_code, "svg", "1");
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, da.device_code, "png", "64");
    it_expect(r, 200, NULL);
    it_resp_free(r);

    /* Asking for the QR code is not a token poll: the screen is not told to slow down. */
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect(r, 400, "authorization_pending");
    it_resp_free(r);
}

static void test_qr_bad_parameters(void **state)
{
    it_server *s = *state;
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    static const char *const scales[] = {"0", "65", "-1", "abc", ""};
    for (size_t i = 0; i < sizeof(scales) / sizeof(scales[0]); i++) {
        it_resp *r = qr(s, IT_CLIENT_ID, da.device_code, "png", scales[i]);
        if (r->status != 400) {
            print_error("scale \"%s\"\n", scales[i]);
        }
        it_expect(r, 400, "invalid_request");
        it_expect_error_shape(r);
        it_resp_free(r);
    }
    it_resp *r = qr(s, IT_CLIENT_ID, da.device_code, "gif", NULL);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    r = it_form_post(s, "/v1/screen/qr", (const char *[]){"client_id", IT_CLIENT_ID, NULL}, NULL);
    it_expect(r, 400, "invalid_request");
    it_resp_free(r);
    r = it_http(s, &(it_req){.method = "GET", .path = "/v1/screen/qr"});
    it_expect(r, 405, "method_not_allowed");
    assert_true(it_contains_ci(r->allow, "POST"));
    it_resp_free(r);
}

static void test_qr_only_for_holder_while_waiting(void **state)
{
    it_server *s = *state;
    it_phone phone;
    it_phone_sign_in(s, IT_USER, IT_PASSWORD, NULL, &phone);

    it_resp *r =
        qr(s, IT_CLIENT_ID, "qrl_dc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, NULL);
    it_expect(r, 400, "invalid_grant");
    it_expect_error_shape(r);
    it_resp_free(r);

    /* Another client's code; the scan secret is not a device code either. */
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &da);
    r = qr(s, "evil-app", da.device_code, NULL, NULL);
    it_expect(r, 400, "invalid_grant");
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, da.scan_secret, NULL, NULL);
    it_expect(r, 400, "invalid_grant");
    it_resp_free(r);

    /* Approved: the QR code's job is over. */
    r = it_view(s, &phone, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, &phone, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, da.device_code, NULL, NULL);
    it_expect(r, 400, "invalid_grant");
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, NULL);
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, da.device_code, NULL, NULL);
    it_expect(r, 400, "invalid_grant");
    it_resp_free(r);

    /* Denied. */
    it_devauth dn;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &dn);
    r = it_deny(s, &phone, dn.user_code);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = qr(s, IT_CLIENT_ID, dn.device_code, NULL, NULL);
    it_expect(r, 400, "access_denied");
    it_resp_free(r);

    /* Expired. */
    it_devauth ex;
    it_device_authorization(s, IT_CLIENT_ID, NULL, "tv", NULL, &ex);
    it_clock_advance(s, 121000);
    r = qr(s, IT_CLIENT_ID, ex.device_code, NULL, NULL);
    it_expect(r, 400, "expired_token");
    it_resp_free(r);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, it_setup_alice, it_teardown)
    const struct CMUnitTest tests[] = {
        T(test_qr_svg_and_png),
        T(test_qr_bad_parameters),
        T(test_qr_only_for_holder_while_waiting),
    };
#undef T
    return cmocka_run_group_tests_name("integration/screen", tests, NULL, NULL);
}
