/* SPDX-License-Identifier: MIT */
/*
 * Client addresses (server/netaddr.c): CIDR lists as --trusted-proxy and --metrics-allow take
 * them, the addresses proxies write, and the walk that finds the client behind a chain of
 * proxies, where a wrong answer lets a client choose its own address (and with it its rate
 * limit and the "same network" hint a phone shows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "netaddr.h"

static qrl__ip ip(const char *s)
{
    qrl__ip a;

    if (!qrl__ip_parse(s, strlen(s), &a))
        fail_msg("'%s' did not parse", s);
    return a;
}

static const char *text(const qrl__ip *a)
{
    static char buf[64];

    qrl__ip_format(a, buf, sizeof buf);
    return buf;
}

static qrl__cidrs list(const char *s)
{
    qrl__cidrs l;
    char err[160];

    if (!qrl__cidrs_parse(s, &l, err, sizeof err))
        fail_msg("'%s' refused: %s", s, err);
    return l;
}

static bool in(const char *cidrs, const char *addr)
{
    qrl__cidrs l = list(cidrs);
    qrl__ip a = ip(addr);

    return qrl__cidrs_match(&l, &a);
}

static void test_addresses_as_proxies_write_them(void **state)
{
    qrl__ip a;

    (void)state;
    assert_string_equal(text(&(qrl__ip){0}), "");
    a = ip("192.0.2.1");
    assert_string_equal(text(&a), "192.0.2.1");
    a = ip(" 192.0.2.1:4711 ");
    assert_string_equal(text(&a), "192.0.2.1");
    a = ip("2001:db8::1");
    assert_string_equal(text(&a), "2001:db8::1");
    a = ip("\"[2001:db8:cafe::17]:4711\"");
    assert_string_equal(text(&a), "2001:db8:cafe::17");
    a = ip("[::1]");
    assert_string_equal(text(&a), "::1");
    /* IPv4-mapped IPv6 is IPv4: a proxy on a dual-stack socket writes it so. */
    a = ip("::ffff:198.51.100.9");
    assert_int_equal(a.family, 4);
    assert_string_equal(text(&a), "198.51.100.9");
    static const char *const bad[] = {
        "",     "unknown", "_hidden",     "1.2.3",         "1.2.3.4.5",
        "[::1", "::1]:80", "example.com", "1.2.3.4:80:90", "300.1.1.1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (qrl__ip_parse(bad[i], strlen(bad[i]), &a))
            fail_msg("'%s' parsed as an address", bad[i]);
}

static void test_cidr_lists(void **state)
{
    qrl__cidrs l;
    char err[160];

    (void)state;
    assert_true(in("10.0.0.0/8", "10.255.1.2"));
    assert_false(in("10.0.0.0/8", "11.0.0.1"));
    assert_true(in("192.168.1.0/24, 127.0.0.1", "127.0.0.1"));
    assert_false(in("192.168.1.0/24, 127.0.0.1", "127.0.0.2"));
    assert_true(in("172.16.0.0/12", "172.31.255.255"));
    assert_false(in("172.16.0.0/12", "172.32.0.0"));
    assert_true(in("0.0.0.0/0", "203.0.113.5"));
    assert_false(in("0.0.0.0/0", "2001:db8::1")); /* families never mix */
    assert_true(in("fd00::/8", "fdab::1"));
    assert_false(in("fd00::/8", "fe80::1"));
    assert_true(in("2001:db8::/33", "2001:db8:7fff::1"));
    assert_false(in("2001:db8::/33", "2001:db8:8000::1"));
    assert_true(in("::1", "::1"));
    /* Host bits below the prefix are ignored: 10.1.2.3/8 is 10.0.0.0/8. */
    assert_true(in("10.1.2.3/8", "10.200.0.1"));
    /* IPv4 space written as IPv6 counts its bits as IPv6 does. */
    assert_true(in("::ffff:10.0.0.0/104", "10.9.9.9"));
    assert_false(in("::ffff:10.0.0.0/104", "11.0.0.1"));
    assert_true(in("127.0.0.0/8,::1", "::ffff:127.0.0.1"));
    /* The empty list, in two spellings. */
    l = list("");
    assert_int_equal(l.n, 0);
    l = list("none");
    assert_int_equal(l.n, 0);
    static const char *const bad[] = {"10.0.0.0/33",       "::/129",       "10.0.0.0/",
                                      "10.0.0.0/x",        "10.0.0.0/8/8", "localhost",
                                      "10.0.0.0/8,,",      "[::1]/128",    "1.2.3.4:80",
                                      "::ffff:10.0.0.0/8", "10.0.0.0/-1",  "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (qrl__cidrs_parse(bad[i], &l, err, sizeof err))
            fail_msg("'%s' accepted", bad[i]);
        assert_true(err[0] != '\0');
    }
    /* The message names the item. */
    assert_false(qrl__cidrs_parse("10.0.0.0/8, bogus", &l, err, sizeof err));
    assert_non_null(strstr(err, "'bogus'"));
}

/* The client behind proxies, as the server sees it for `peer` and these header values. */
static const char *client(const char *trusted, const char *peer, const char *const *hops, size_t n)
{
    qrl__cidrs t = list(trusted);
    qrl__ip p = ip(peer), c = qrl__client_ip(&p, &t, hops, n);

    return text(&c);
}

static void test_client_behind_proxies(void **state)
{
    (void)state;
    /* An untrusted peer's header is its own claim: ignored. */
    const char *spoof[] = {"1.2.3.4"};
    assert_string_equal(client("10.0.0.0/8", "203.0.113.9", spoof, 1), "203.0.113.9");
    /* One trusted proxy: the address it names. */
    const char *one[] = {"198.51.100.7"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", one, 1), "198.51.100.7");
    /* The rightmost untrusted address wins; what the client wrote on the left does not. */
    const char *chain[] = {"1.2.3.4, 198.51.100.7, 10.0.0.9"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", chain, 1), "198.51.100.7");
    /* Several header lines read as one list, in order. */
    const char *lines[] = {"1.2.3.4", "198.51.100.7", "10.0.0.9, 10.0.0.8"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", lines, 3), "198.51.100.7");
    /* Only trusted hops: the leftmost of them. */
    const char *inside[] = {"10.0.0.7, 10.0.0.9"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", inside, 1), "10.0.0.7");
    /* No header: the peer. */
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", NULL, 0), "10.0.0.2");
    /* Garbage stops the walk at the last trusted hop, never skipping to the left of it. */
    const char *garbage[] = {"1.2.3.4, unknown, 10.0.0.9"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", garbage, 1), "10.0.0.9");
    const char *empty_items[] = {" , 198.51.100.7 ,"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", empty_items, 1), "198.51.100.7");
    /* RFC 7239 Forwarded. */
    const char *fwd[] = {
        "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\""};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", fwd, 1), "2001:db8:cafe::17");
    const char *fwd2[] = {"for=192.0.2.60;proto=http, For=10.0.0.3"};
    assert_string_equal(client("10.0.0.0/8", "10.0.0.2", fwd2, 1), "192.0.2.60");
    /* Ports and IPv6 through an IPv4 proxy. */
    const char *ports[] = {"198.51.100.7:51000"};
    assert_string_equal(client("127.0.0.1", "127.0.0.1", ports, 1), "198.51.100.7");
    const char *v6[] = {"2001:db8::5"};
    assert_string_equal(client("127.0.0.0/8", "127.0.0.1", v6, 1), "2001:db8::5");
}

static void test_header_names(void **state)
{
    (void)state;
    assert_true(qrl__header_name_valid("X-Forwarded-For"));
    assert_true(qrl__header_name_valid("Forwarded"));
    assert_true(qrl__header_name_valid("X-Real-IP"));
    assert_true(qrl__header_name_valid("CF-Connecting-IP"));
    assert_false(qrl__header_name_valid(""));
    assert_false(qrl__header_name_valid(NULL));
    assert_false(qrl__header_name_valid("X Forwarded"));
    assert_false(qrl__header_name_valid("X-Forwarded-For:"));
    assert_false(qrl__header_name_valid("X-\xc3\xa9"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_as_proxies_write_them),
        cmocka_unit_test(test_cidr_lists),
        cmocka_unit_test(test_client_behind_proxies),
        cmocka_unit_test(test_header_names),
    };
    return cmocka_run_group_tests_name("server/netaddr", tests, NULL, NULL);
}
