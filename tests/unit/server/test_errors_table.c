/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the error table (server/http_util.c): every code has an answer in every endpoint
 * class, the statuses and codes docs/api.md promises are the table's, and an endpoint's own
 * rows replace only what they set.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"

static void test_every_cell(void **state)
{
    (void)state;
    for (int e = 0; e < QRL_ERR__COUNT; e++)
        for (int c = 0; c < QRL__CTX__COUNT; c++) {
            qrl__errans a = qrl__err_answer((qrl_err)e, (enum qrl__errctx)c, NULL);
            assert_true(a.status >= 200 && a.status <= 599);
            assert_non_null(a.code);
            assert_true(a.code[0] != '\0');
            assert_non_null(a.desc);
            assert_true(a.desc[0] != '\0');
            /* Every error is an error: only success is 2xx. */
            assert_true(e == QRL_OK || a.status >= 400);
        }
}

static void expect(qrl_err e, enum qrl__errctx c, unsigned status, const char *code)
{
    qrl__errans a = qrl__err_answer(e, c, NULL);

    assert_int_equal(a.status, status);
    assert_string_equal(a.code, code);
}

/* The answers docs/api.md documents, class by class. */
static void test_documented(void **state)
{
    (void)state;
    /* RFC 8628 section 3.5 and RFC 6749 section 5.2 on /oauth/token. */
    expect(QRL_ERR_PENDING, QRL__CTX_OAUTH, 400, "authorization_pending");
    expect(QRL_ERR_SLOW_DOWN, QRL__CTX_OAUTH, 400, "slow_down");
    expect(QRL_ERR_DENIED, QRL__CTX_OAUTH, 400, "access_denied");
    expect(QRL_ERR_EXPIRED, QRL__CTX_OAUTH, 400, "expired_token");
    expect(QRL_ERR_NOT_FOUND, QRL__CTX_OAUTH, 400, "invalid_grant");
    expect(QRL_ERR_REDEEMED, QRL__CTX_OAUTH, 400, "invalid_grant");
    expect(QRL_ERR_INVALID_CLIENT, QRL__CTX_OAUTH, 400, "invalid_grant");
    expect(QRL_ERR_TOKEN_REUSED, QRL__CTX_OAUTH, 400, "invalid_grant");
    expect(QRL_ERR_INVALID, QRL__CTX_OAUTH, 400, "invalid_request");
    expect(QRL_ERR_NOMEM, QRL__CTX_OAUTH, 503, "temporarily_unavailable");
    expect(QRL_ERR_BUSY, QRL__CTX_OAUTH, 503, "temporarily_unavailable");
    /* The phone API (/v1/) and the pages (/web/), which share its codes. */
    for (int c = QRL__CTX_API; c <= QRL__CTX_PAGE; c++) {
        expect(QRL_ERR_INVALID, c, 400, "invalid_request");
        expect(QRL_ERR_CODE_MISMATCH, c, 400, "user_code_mismatch");
        expect(QRL_ERR_UNAUTHORIZED, c, 401, "unauthorized");
        expect(QRL_ERR_NOT_FOUND, c, 404, "not_found");
        expect(QRL_ERR_CLAIMED, c, 409, "already_claimed");
        expect(QRL_ERR_CONFLICT, c, 409, "invalid_state");
        expect(QRL_ERR_EXPIRED, c, 410, "expired");
        expect(QRL_ERR_TOO_LARGE, c, 413, "payload_too_large");
        expect(QRL_ERR_RATE_LIMITED, c, 429, "rate_limited");
        expect(QRL_ERR_NOMEM, c, 503, "temporarily_unavailable");
    }
}

static void test_descriptions(void **state)
{
    (void)state;
    /* The machine-read classes use the core's words unless a cell has its own. */
    assert_string_equal(qrl__err_answer(QRL_ERR_STORE, QRL__CTX_API, NULL).desc,
                        qrl_strerror(QRL_ERR_STORE));
    assert_string_equal(qrl__err_answer(QRL_ERR_TOKEN_REUSED, QRL__CTX_OAUTH, NULL).desc,
                        qrl_strerror(QRL_ERR_TOKEN_REUSED));
    assert_string_equal(qrl__err_answer(QRL_ERR_EXPIRED, QRL__CTX_OAUTH, NULL).desc,
                        "the login request expired; start a new one");
    /* The pages speak to a person, never in the core's terse words. */
    for (int e = 1; e < QRL_ERR__COUNT; e++)
        assert_string_not_equal(qrl__err_answer((qrl_err)e, QRL__CTX_PAGE, NULL).desc,
                                qrl_strerror((qrl_err)e));
}

static void test_say(void **state)
{
    static const qrl__errsay say[] = {
        {QRL_ERR_EXPIRED, {0, "invalid_grant", NULL}},
        {QRL_ERR_UNAUTHORIZED, {403, "step_up_failed", "wrong password"}},
        {QRL_ERR_UNAUTHORIZED, {418, "never", "the first row for a code wins"}},
        QRL__SAY_END,
    };
    qrl__errans a;

    (void)state;
    a = qrl__err_answer(QRL_ERR_EXPIRED, QRL__CTX_OAUTH, say);
    assert_int_equal(a.status, 400); /* kept */
    assert_string_equal(a.code, "invalid_grant");
    assert_string_equal(a.desc, "the login request expired; start a new one"); /* kept */
    a = qrl__err_answer(QRL_ERR_UNAUTHORIZED, QRL__CTX_API, say);
    assert_int_equal(a.status, 403);
    assert_string_equal(a.code, "step_up_failed");
    assert_string_equal(a.desc, "wrong password");
    /* A code the list does not name is the table's. */
    a = qrl__err_answer(QRL_ERR_CLAIMED, QRL__CTX_API, say);
    assert_int_equal(a.status, 409);
    assert_string_equal(a.code, "already_claimed");
}

static void test_out_of_range(void **state)
{
    qrl__errans a;

    (void)state;
    a = qrl__err_answer(QRL_ERR__COUNT, QRL__CTX_API, NULL);
    assert_int_equal(a.status, 500);
    assert_string_equal(a.code, "server_error");
    a = qrl__err_answer((qrl_err)-1, QRL__CTX_OAUTH, NULL);
    assert_int_equal(a.status, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_cell),   cmocka_unit_test(test_documented),
        cmocka_unit_test(test_descriptions), cmocka_unit_test(test_say),
        cmocka_unit_test(test_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
