/* SPDX-License-Identifier: MIT */
/*
 * Where a request comes from (server/geoip.c): the country of an address in the country
 * database the tests install (tests/geoip, the file QRL_GEOIP_DB names), in a MaxMind-style
 * file this test writes by hand, and nowhere for loopback, private and documentation
 * addresses; what the phone's view gets of it; a file that cannot be opened; lookups from
 * several threads at once.
 *
 * The public addresses below were checked against the installed file with mmdblookup
 * (scripts/deps.sh installs it): each lies in an allocation its country's registry made long
 * ago to a long-lived holder (a German publisher, Brazil's registry, a Japanese university).
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "geoip.h"
#include "qrlogin/server.h"

static const char *db_path(void)
{
    const char *p = getenv("QRL_GEOIP_DB");

    if (p == NULL || p[0] == '\0')
        fail_msg("QRL_GEOIP_DB must name the test country database (tests/geoip/install.sh)");
    return p;
}

static qrl__geoip *open_db(const char *path)
{
    char err[512];
    qrl__geoip *g = NULL;

    if (qrl__geoip_open(path, &g, err, sizeof err) != QRL_OK)
        fail_msg("%s", err);
    return g;
}

/* The code looked up for `addr`, or "" when it has no country. */
static const char *code_of(qrl__geoip *g, const char *addr)
{
    static char code[3];
    qrl__country c;
    bool found = qrl__geoip_lookup(g, addr, &c);

    assert_int_equal(found, c.name != NULL);
    assert_int_equal(found, c.code[0] != '\0');
    snprintf(code, sizeof code, "%s", c.code);
    return code;
}

static void test_public_addresses(void **state)
{
    qrl__geoip *g = open_db(db_path());
    qrl__country c;

    (void)state;
    assert_true(qrl__geoip_lookup(g, "193.99.144.80", &c));
    assert_string_equal(c.code, "DE");
    assert_string_equal(c.name, "Germany");
    assert_true(qrl__geoip_lookup(g, "200.160.2.3", &c));
    assert_string_equal(c.code, "BR");
    assert_string_equal(c.name, "Brazil");
    assert_string_equal(code_of(g, "8.8.8.8"), "US");
    assert_string_equal(code_of(g, "133.1.1.1"), "JP");
    /* IPv6, and IPv4 written as proxies and dual-stack sockets write it. */
    assert_string_equal(code_of(g, "2003:de::1"), "DE");
    assert_string_equal(code_of(g, "2001:67c:2e8::1"), "NL");
    assert_string_equal(code_of(g, "::ffff:193.99.144.80"), "DE");
    assert_string_equal(code_of(g, "[2003:de::1]:443"), "DE");
    qrl__geoip_close(g);
}

static void test_no_country(void **state)
{
    static const char *const local[] = {
        "127.0.0.1",
        "::1",
        "::",
        "10.1.2.3",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.1.1",
        "169.254.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "198.18.0.1",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.50",
        "2001:db8::1",
        "not an address",
        "",
    };
    qrl__geoip *g = open_db(db_path());
    qrl__country c;

    (void)state;
    /* Documentation addresses included: the file gives 203.0.113.0/24 a country, but such an
     * address is never a real client. */
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++) {
        if (qrl__geoip_lookup(g, local[i], &c))
            fail_msg("'%s' has country %s", local[i], c.code);
        assert_null(c.name);
        assert_string_equal(c.code, "");
    }
    assert_false(qrl__geoip_lookup(g, NULL, &c));
    /* Without a database nothing has a country. */
    assert_false(qrl__geoip_lookup(NULL, "193.99.144.80", &c));
    assert_null(c.name);
    qrl__geoip_close(g);
}

static void test_origin(void **state)
{
    qrl__geoip *g = open_db(db_path());
    qrl__origin o;

    (void)state;
    qrl__geoip_origin(g, "200.160.2.3", "193.99.144.80", &o);
    assert_string_equal(o.request.code, "BR");
    assert_string_equal(o.phone.code, "DE");
    assert_int_equal(o.same, 0);
    /* Different networks (IPv4 and IPv6), one country. */
    qrl__geoip_origin(g, "193.99.144.80", "2003:de::1", &o);
    assert_int_equal(o.same, 1);
    /* A phone on a private network (the server is on the same LAN): no comparison. */
    qrl__geoip_origin(g, "200.160.2.3", "192.168.1.20", &o);
    assert_string_equal(o.request.code, "BR");
    assert_null(o.phone.name);
    assert_int_equal(o.same, -1);
    qrl__geoip_origin(NULL, "200.160.2.3", "193.99.144.80", &o);
    assert_null(o.request.name);
    assert_null(o.phone.name);
    assert_int_equal(o.same, -1);
    qrl__geoip_close(g);
}

/* The text form (the phone API's fast path) and the jansson form say the same. */
static void check_text_matches(const qrl__origin *o, const char *want)
{
    char text[256], wrapped[300];
    size_t n = qrl__origin_json_text(o, text, sizeof text);
    json_t *a, *b = json_object();

    assert_true(n > 0);
    assert_int_equal(n, strlen(text));
    snprintf(wrapped, sizeof wrapped, "{%s}", text);
    a = json_loads(wrapped, 0, NULL);
    assert_non_null(a);
    qrl__origin_json_set(b, o);
    assert_true(json_equal(a, b));
    json_decref(b);
    b = json_loads(want, 0, NULL);
    assert_non_null(b);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void test_json(void **state)
{
    qrl__origin o = {.request = {"BR", "Brazil"}, .phone = {"DE", "Germany"}, .same = 0};
    char small[40];
    json_t *j;

    (void)state;
    check_text_matches(&o, "{\"request_country\": {\"code\": \"BR\", \"name\": \"Brazil\"},"
                           " \"phone_country\": {\"code\": \"DE\", \"name\": \"Germany\"},"
                           " \"same_country\": false}");
    o.phone = o.request;
    o.same = 1;
    check_text_matches(&o, "{\"request_country\": {\"code\": \"BR\", \"name\": \"Brazil\"},"
                           " \"phone_country\": {\"code\": \"BR\", \"name\": \"Brazil\"},"
                           " \"same_country\": true}");
    o = (qrl__origin){.request = {"", NULL}, .phone = {"", NULL}, .same = -1};
    check_text_matches(&o, "{\"request_country\": null, \"phone_country\": null,"
                           " \"same_country\": null}");
    /* Too small a buffer, or a name that needs escaping: 0, and jansson does it. */
    o = (qrl__origin){.request = {"BR", "Brazil"}, .phone = {"DE", "Germany"}, .same = 0};
    assert_int_equal(qrl__origin_json_text(&o, small, sizeof small), 0);
    o.phone = (qrl__country){"TR", qrl__country_name("TR")};
    assert_string_equal(o.phone.name, "T\xc3\xbcrkiye");
    assert_int_equal(qrl__origin_json_text(&o, small, 0), 0);
    char big[256];
    assert_int_equal(qrl__origin_json_text(&o, big, sizeof big), 0);
    j = json_object();
    qrl__origin_json_set(j, &o);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "phone_country"), "name")),
        "T\xc3\xbcrkiye");
    json_decref(j);
    qrl__origin_json_set(NULL, &o); /* a failed json_pack upstream: nothing happens */
}

static void test_names(void **state)
{
    char code[3] = "AA";
    int n = 0;

    (void)state;
    assert_string_equal(qrl__country_name("DE"), "Germany");
    assert_string_equal(qrl__country_name("US"), "United States");
    assert_string_equal(qrl__country_name("GB"), "United Kingdom");
    assert_string_equal(qrl__country_name("RU"), "Russia");
    assert_string_equal(qrl__country_name("KR"), "South Korea");
    assert_string_equal(qrl__country_name("XK"), "Kosovo");
    assert_null(qrl__country_name("de"));
    assert_null(qrl__country_name("EU"));
    assert_null(qrl__country_name("D"));
    assert_null(qrl__country_name("DEU"));
    assert_null(qrl__country_name(""));
    assert_null(qrl__country_name(NULL));
    /* Every code of the table is found: it is sorted, as bsearch() needs. */
    for (code[0] = 'A'; code[0] <= 'Z'; code[0]++)
        for (code[1] = 'A'; code[1] <= 'Z'; code[1]++)
            n += qrl__country_name(code) != NULL;
    assert_int_equal(n, 250);
}

/* --- a MaxMind-style file, written here ------------------------------------------------ */

struct buf {
    unsigned char b[512];
    size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
    assert_true(b->n + n <= sizeof b->b);
    memcpy(b->b + b->n, p, n);
    b->n += n;
}

static void put_byte(struct buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}

/* MaxMind DB data types (its format: a control byte of type << 5 | size; types above 7 are
 * "extended", written as 0 << 5 | size and then type - 7). */
static void put_str(struct buf *b, const char *s)
{
    put_byte(b, 2u << 5 | (unsigned)strlen(s));
    put(b, s, strlen(s));
}

static void put_map(struct buf *b, unsigned entries)
{
    put_byte(b, 7u << 5 | entries);
}

static void put_uint(struct buf *b, unsigned type, uint64_t v, unsigned bytes)
{
    if (type <= 7) {
        put_byte(b, type << 5 | bytes);
    } else {
        put_byte(b, bytes);
        put_byte(b, type - 7);
    }
    for (unsigned i = bytes; i-- > 0;)
        put_byte(b, (unsigned)(v >> (8 * i)) & 0xff);
}

/* An IPv4 file of one tree node: 0.0.0.0/1 has {"country": {"iso_code": "FR"}}, 128.0.0.0/1
 * has {"country": {"iso_code": "EU"}, "registered_country": {"iso_code": "SE"}}, as MaxMind's
 * Country files write a range whose users' country is not known. */
static void write_maxmind_style(const char *path)
{
    struct buf data = {0}, file = {0};
    size_t second;
    FILE *f;

    put_map(&data, 1);
    put_str(&data, "country");
    put_map(&data, 1);
    put_str(&data, "iso_code");
    put_str(&data, "FR");
    second = data.n;
    put_map(&data, 2);
    put_str(&data, "country");
    put_map(&data, 1);
    put_str(&data, "iso_code");
    put_str(&data, "EU");
    put_str(&data, "registered_country");
    put_map(&data, 1);
    put_str(&data, "iso_code");
    put_str(&data, "SE");

    /* The search tree: one node of two 24-bit records; a record of node_count + 16 + offset
     * points into the data section, which follows 16 zero bytes. */
    uint32_t left = 1 + 16, right = 1 + 16 + (uint32_t)second;
    put_byte(&file, left >> 16);
    put_byte(&file, left >> 8 & 0xff);
    put_byte(&file, left & 0xff);
    put_byte(&file, right >> 16);
    put_byte(&file, right >> 8 & 0xff);
    put_byte(&file, right & 0xff);
    for (int i = 0; i < 16; i++)
        put_byte(&file, 0);
    put(&file, data.b, data.n);
    put(&file, "\xab\xcd\xefMaxMind.com", 14);
    put_map(&file, 9);
    put_str(&file, "node_count");
    put_uint(&file, 6, 1, 1);
    put_str(&file, "record_size");
    put_uint(&file, 5, 24, 1);
    put_str(&file, "ip_version");
    put_uint(&file, 5, 4, 1);
    put_str(&file, "binary_format_major_version");
    put_uint(&file, 5, 2, 1);
    put_str(&file, "binary_format_minor_version");
    put_uint(&file, 5, 0, 0);
    put_str(&file, "build_epoch");
    put_uint(&file, 9, 1700000000, 4);
    put_str(&file, "database_type");
    put_str(&file, "qrlogin-test-Country");
    put_str(&file, "languages");
    put_byte(&file, 0); /* an array (extended type 11) of 0 items */
    put_byte(&file, 11 - 7);
    put_str(&file, "description");
    put_map(&file, 0);
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(file.b, 1, file.n, f), file.n);
    assert_int_equal(fclose(f), 0);
}

static void test_maxmind_layout(void **state)
{
    char path[] = "/tmp/qrl-geoip-XXXXXX";
    int fd = mkstemp(path);
    qrl__geoip *g;

    (void)state;
    assert_true(fd >= 0);
    close(fd);
    write_maxmind_style(path);
    g = open_db(path);
    assert_string_equal(code_of(g, "1.2.3.4"), "FR");
    assert_string_equal(qrl__country_name("FR"), "France");
    /* "EU" names no country: the registered country is taken instead. */
    assert_string_equal(code_of(g, "200.1.2.3"), "SE");
    /* Still no country for private addresses, and IPv6 is not in an IPv4 file. */
    assert_string_equal(code_of(g, "10.1.2.3"), "");
    assert_string_equal(code_of(g, "2003:de::1"), "");
    qrl__geoip_close(g);
    unlink(path);
}

/* --- a file that cannot be opened: the message names it and says why ------------------ */

static void test_open_errors(void **state)
{
    static int sentinel;
    char path[] = "/tmp/qrl-geoip-XXXXXX", err[512];
    qrl__geoip *g = (qrl__geoip *)&sentinel; /* set to NULL on failure */
    int fd;

    (void)state;
    assert_int_equal(qrl__geoip_open("/nonexistent/countries.mmdb", &g, err, sizeof err),
                     QRL_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(err, "/nonexistent/countries.mmdb"));
    assert_non_null(strstr(err, "No such file or directory"));

    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "country,code\nDE,Germany\n", 24), 24);
    close(fd);
    assert_int_equal(qrl__geoip_open(path, &g, err, sizeof err), QRL_ERR_INVALID);
    assert_null(g);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "not a MaxMind DB file"));
    /* The server's public check says the same. */
    assert_int_equal(qrl_server_geoip_valid(path, err, sizeof err), 0);
    assert_non_null(strstr(err, path));
    assert_int_equal(qrl_server_geoip_valid(db_path(), err, sizeof err), 1);
    unlink(path);

    assert_int_equal(qrl__geoip_open("", &g, err, sizeof err), QRL_ERR_INVALID);
    assert_int_equal(qrl__geoip_open(NULL, &g, err, sizeof err), QRL_ERR_INVALID);
    qrl__geoip_close(NULL);
}

/* --- several workers at once ------------------------------------------------------------ */

#define THREADS 4
#define ROUNDS 20000

static const char *const mixed[] = {"193.99.144.80",   "200.160.2.3", "8.8.8.8",   "2003:de::1",
                                    "2001:67c:2e8::1", "127.0.0.1",   "133.1.1.1", "10.0.0.7"};
static const char *const mixed_code[] = {"DE", "BR", "US", "DE", "NL", "", "JP", ""};

struct worker {
    qrl__geoip *g;
    int wrong;
};

static void *lookups(void *arg)
{
    struct worker *w = arg;
    size_t n = sizeof mixed / sizeof mixed[0];

    for (int i = 0; i < ROUNDS; i++) {
        qrl__country c;
        qrl__geoip_lookup(w->g, mixed[(size_t)i % n], &c);
        if (strcmp(c.code, mixed_code[(size_t)i % n]) != 0)
            w->wrong++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    qrl__geoip *g = open_db(db_path());
    struct worker w[THREADS];
    pthread_t t[THREADS];
    struct timespec a, b;
    double us;

    (void)state;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.g = g};
        assert_int_equal(pthread_create(&t[i], NULL, lookups, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].wrong, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    us = ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) /
         (THREADS * ROUNDS);
    print_message("%d lookups on %d threads: %.2f us of wall time each\n", THREADS * ROUNDS,
                  THREADS, us);
    /* Cheap enough for every view of a login request, even in a sanitizer build. */
    assert_true(us < 100.0);
    qrl__geoip_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_public_addresses),
        cmocka_unit_test(test_no_country),
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_maxmind_layout),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests_name("server/geoip", tests, NULL, NULL);
}
