/* SPDX-License-Identifier: MIT */
/*
 * The log redactor (server/http_util.c, qrl__log_redact): libmicrohttpd's own messages pass
 * through it, and they quote request paths, which can carry scan secrets and user codes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static void expect(const char *in, const char *want)
{
    char out[256];

    qrl__log_redact(in, out, sizeof out);
    if (strcmp(out, want) != 0)
        fail_msg("redact(\"%s\") = \"%s\", want \"%s\"", in, out, want);
}

static void test_paths_keep_their_first_segment(void **state)
{
    (void)state;
    expect("Failed to send the response headers for the request for "
           "`/v1/login-requests/qrl_ss_AAAABBBBCCCC'.",
           "Failed to send the response headers for the request for `/v1/[redacted]'.");
    expect("GET /s/WDJB-MJHT HTTP/1.1", "GET /s/[redacted] HTTP/1.1");
    expect("/device", "/device");
    expect("ratio 1/2 and a/b", "ratio 1/2 and a/b");
}

/* A secret is masked wherever it is, also as the first segment of a path (which the rule
 * above keeps): that case leaked (found while writing the check of fuzz/fuzz_http.c). */
static void test_secrets_everywhere(void **state)
{
    (void)state;
    expect("token qrl_at_abc-DEF_123 refused", "token qrl_at_[redacted] refused");
    expect("/qrl_ss_AAAABBBBCCCC/x", "/qrl_ss_[redacted]/[redacted]");
    expect("request for `/qrl_ss_AAAABBBBCCCC' failed", "request for `/qrl_ss_[redacted]' failed");
    expect("GET /qrl_st_ZZZZ", "GET /qrl_st_[redacted]");
    expect("qrl_qrl_dc_XYZ", "qrl_qrl_dc_[redacted]");
}

static void test_truncates_within_the_buffer(void **state)
{
    char out[8];

    (void)state;
    memset(out, 'X', sizeof out);
    qrl__log_redact("qrl_dc_SECRETSECRET", out, 6);
    assert_string_equal(out, "qrl_d");
    assert_int_equal(out[6], 'X');
    qrl__log_redact("anything", out, 1);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_keep_their_first_segment),
        cmocka_unit_test(test_secrets_everywhere),
        cmocka_unit_test(test_truncates_within_the_buffer),
    };
    return cmocka_run_group_tests_name("redact", tests, NULL, NULL);
}
