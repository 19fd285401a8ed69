/* SPDX-License-Identifier: MIT */
/*
 * The server's log (server/log.c): every line is one JSON object whatever its strings hold
 * (quotes, control characters, bytes that are not UTF-8, values too long for the line), times
 * are RFC 3339 UTC with milliseconds, levels below the configured one are dropped, and a
 * reopen after a rotation sends the next lines to the new file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "http.h"
#include "tmpdir.h"

static void test_rfc3339(void **state)
{
    char t[32];

    (void)state;
    qrl__rfc3339_ms(0, t, sizeof t);
    assert_string_equal(t, "1970-01-01T00:00:00.000Z");
    qrl__rfc3339_ms(1796636362876LL, t, sizeof t);
    assert_string_equal(t, "2026-12-07T09:39:22.876Z");
    qrl__rfc3339_ms(951782400005LL, t, sizeof t); /* a leap day */
    assert_string_equal(t, "2000-02-29T00:00:00.005Z");
}

static void test_escape(void **state)
{
    char out[128];

    (void)state;
    qrl__json_escape("a\"b\\c\n\t\x01\x7f", 100, out, sizeof out);
    assert_string_equal(out, "a\\\"b\\\\c\\n\\t\\u0001\\u007f");
    /* UTF-8 passes; broken UTF-8 (a lone continuation byte, an overlong form, a surrogate, a
     * truncated sequence) becomes U+FFFD. */
    qrl__json_escape("h\xc3\xa9 \x80 \xc0\xaf \xed\xa0\x80 \xe2\x82", 100, out, sizeof out);
    assert_string_equal(out,
                        "h\xc3\xa9 \\ufffd \\ufffd\\ufffd \\ufffd\\ufffd\\ufffd \\ufffd\\ufffd");
    /* Cut at `max` input bytes, and never inside an escape for lack of room. */
    qrl__json_escape("abcdef", 3, out, sizeof out);
    assert_string_equal(out, "abc");
    qrl__json_escape("ab\"", 100, out, 4);
    assert_string_equal(out, "ab");
}

/* Reads a whole file. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    static char buf[1 << 16];
    size_t n;

    assert_non_null(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Every line of `text` parses as one JSON object; returns how many there are. */
static int json_lines(const char *text)
{
    int n = 0;

    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        json_error_t err;
        json_t *o;

        assert_non_null(nl);
        o = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &err);
        if (o == NULL || !json_is_object(o))
            fail_msg("not a JSON object (%s): %.*s", err.text, (int)(nl - p), p);
        json_decref(o);
        n++;
        p = nl + 1;
    }
    return n;
}

static void test_lines_are_json(void **state)
{
    char dir[256], path[300], moved[300], big[3000];
    qrl__log log;
    qrl__jline l;
    json_t *o;

    (void)state;
    snprintf(dir, sizeof dir, "/tmp/qrl-test-log-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/log.jsonl", dir);
    snprintf(moved, sizeof moved, "%s/log.jsonl.1", dir);
    qrl__log_init(&log, QRL_LOG_INFO);
    assert_int_equal(qrl__log_open(&log, path, big, sizeof big), QRL_OK);

    qrl__jl_begin(&l, QRL_LOG_INFO, "audit");
    qrl__jl_str(&l, "event", "tricky");
    qrl__jl_str(&l, "msg", "quote \" backslash \\ newline \n bell \a bad \xff end");
    qrl__jl_int(&l, "n", -42);
    qrl__jl_bool(&l, "yes", true);
    qrl__jl_ms(&l, "duration_ms", 12345);
    qrl__jl_str(&l, "absent", NULL);
    qrl__log_write(&log, &l);
    /* A value longer than a line: cut, the line still whole. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    qrl__jl_begin(&l, QRL_LOG_WARN, "log");
    for (int i = 0; i < 5; i++) {
        char key[8];
        snprintf(key, sizeof key, "big%d", i);
        qrl__jl_str(&l, key, big);
    }
    qrl__jl_int(&l, "after", 1);
    qrl__log_write(&log, &l);
    /* Below the level: not written. */
    qrl__log_msg(&log, QRL_LOG_DEBUG, "test", "invisible");
    qrl__log_msg(&log, QRL_LOG_ERROR, "test", "visible");

    const char *text = slurp(path);
    assert_int_equal(json_lines(text), 3);
    assert_null(strstr(text, "invisible"));
    o = json_loadb(text, (size_t)(strchr(text, '\n') - text), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(o, "type")), "audit");
    assert_string_equal(json_string_value(json_object_get(o, "msg")),
                        "quote \" backslash \\ newline \n bell \a bad \xef\xbf\xbd end");
    assert_int_equal(json_integer_value(json_object_get(o, "n")), -42);
    assert_true(json_is_true(json_object_get(o, "yes")));
    assert_true(json_real_value(json_object_get(o, "duration_ms")) == 12.345);
    assert_null(json_object_get(o, "absent"));
    const char *time = json_string_value(json_object_get(o, "time"));
    assert_int_equal(strlen(time), 24);
    assert_true(time[10] == 'T' && time[19] == '.' && time[23] == 'Z');
    json_decref(o);

    /* Rotation: the file is moved away, the log reopened: new lines in a new file. */
    assert_int_equal(rename(path, moved), 0);
    qrl__log_msg(&log, QRL_LOG_INFO, "test", "before reopen");
    assert_int_equal(qrl__log_reopen(&log), QRL_OK);
    qrl__log_msg(&log, QRL_LOG_INFO, "test", "after reopen");
    assert_non_null(strstr(slurp(moved), "before reopen"));
    text = slurp(path);
    assert_non_null(strstr(text, "after reopen"));
    assert_null(strstr(text, "before reopen"));
    assert_int_equal(json_lines(text), 1);
    qrl__log_close(&log);
    remove_dir(dir);
}

/* A log file that cannot be opened is refused with a reason; the log stays on stderr. */
static void test_open_failure(void **state)
{
    char why[256] = "";
    qrl__log log;

    (void)state;
    qrl__log_init(&log, 0);
    assert_int_equal(log.level, QRL_LOG_INFO);
    assert_int_equal(qrl__log_open(&log, "/nonexistent-dir/x/log.jsonl", why, sizeof why),
                     QRL_ERR_INVALID);
    assert_non_null(strstr(why, "/nonexistent-dir/x/log.jsonl"));
    assert_int_equal(log.fd, STDERR_FILENO);
    assert_int_equal(qrl__log_reopen(&log), QRL_OK); /* stderr: nothing to reopen */
    qrl__log_close(&log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_lines_are_json),
        cmocka_unit_test(test_open_failure),
    };
    return cmocka_run_group_tests_name("server/log", tests, NULL, NULL);
}
