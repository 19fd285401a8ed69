/* SPDX-License-Identifier: MIT */
/*
 * CIDR lists and the client address behind reverse proxies (netaddr.h).
 *
 * Why the walk from the right: every proxy appends the address it received the request from
 * to the header, so the rightmost item was written by the proxy that talks to us, the one
 * before it by the proxy before that, and so on; everything left of the first hop we do not
 * trust was written by someone we do not know, possibly the client itself ("X-Forwarded-For:
 * 1.2.3.4" sent by anyone who wants to look like 1.2.3.4). Taking the leftmost item, as some
 * servers do, lets every client choose its address, and with it its user-code rate limit and
 * its "same network" hint.
 *
 * Usage profile: the lists are parsed once at start; the match runs on each request whose
 * peer is a trusted proxy, over a few blocks, with byte compares and no allocation.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "netaddr.h"

/* Longest text of one address item we look at: "[" + 45 for IPv6 + "]:65535", quoted. */
#define ITEM_MAX 64

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void ip_set6(qrl__ip *ip, const uint8_t b[16])
{
    memset(ip, 0, sizeof *ip);
    if (memcmp(b, v4_mapped, sizeof v4_mapped) == 0) {
        ip->family = 4;
        memcpy(ip->b, b + 12, 4);
    } else {
        ip->family = 6;
        memcpy(ip->b, b, 16);
    }
}

/* An address without brackets, port or quotes, NUL-terminated. */
static bool ip_parse_plain(const char *s, qrl__ip *out)
{
    uint8_t b[16];

    if (inet_pton(AF_INET, s, b) == 1) {
        memset(out, 0, sizeof *out);
        out->family = 4;
        memcpy(out->b, b, 4);
        return true;
    }
    if (inet_pton(AF_INET6, s, b) == 1) {
        ip_set6(out, b);
        return true;
    }
    return false;
}

bool qrl__ip_parse(const char *s, size_t len, qrl__ip *out)
{
    char buf[ITEM_MAX + 1];
    const char *colon;

    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    if (len == 0 || len > ITEM_MAX)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] == '[') {
        /* "[v6]" or "[v6]:port": RFC 7239 section 6 and URL authority syntax. */
        char *close = strchr(buf, ']');
        uint8_t b[16];
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return false;
        *close = '\0';
        if (inet_pton(AF_INET6, buf + 1, b) != 1)
            return false;
        ip_set6(out, b);
        return true;
    }
    /* One colon after a dotted quad: "192.0.2.1:4711". More colons: IPv6 without brackets. */
    colon = strchr(buf, ':');
    if (colon != NULL && strchr(colon + 1, ':') == NULL && strchr(buf, '.') != NULL &&
        strchr(buf, '.') < colon)
        buf[colon - buf] = '\0';
    return ip_parse_plain(buf, out);
}

bool qrl__ip_from_sockaddr(const struct sockaddr *sa, qrl__ip *out)
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        memset(out, 0, sizeof *out);
        out->family = 4;
        memcpy(out->b, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        ip_set6(out, ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr);
        return true;
    }
    return false;
}

void qrl__ip_format(const qrl__ip *ip, char *out, size_t len)
{
    if (len == 0)
        return;
    out[0] = '\0';
    if (ip->family == 4)
        inet_ntop(AF_INET, ip->b, out, (socklen_t)len);
    else if (ip->family == 6)
        inet_ntop(AF_INET6, ip->b, out, (socklen_t)len);
}

bool qrl__ip_equal(const qrl__ip *a, const qrl__ip *b)
{
    return a->family == b->family && memcmp(a->b, b->b, a->family == 4 ? 4 : 16) == 0;
}

/* Clears the bits of `ip` below a prefix of `bits`. */
static void mask(qrl__ip *ip, unsigned bits)
{
    unsigned total = ip->family == 4 ? 32 : 128;

    for (unsigned i = bits; i < total; i++)
        ip->b[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
}

/* One item of a list: "addr" or "addr/bits". */
static bool cidr_parse(const char *s, size_t len, qrl__cidr *out)
{
    char buf[ITEM_MAX + 1];
    char *slash, *end;
    unsigned long bits;

    if (len == 0 || len > ITEM_MAX)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    /* Brackets and ports have no place in a block: only the plain forms. */
    if (!ip_parse_plain(buf, &out->net))
        return false;
    bits = out->net.family == 4 ? 32 : 128;
    if (slash != NULL) {
        /* Counted on the text's own scale: "::ffff:10.0.0.0/104" names IPv4 space as IPv6,
         * which is kept as IPv4 (/8). */
        unsigned long max = strchr(buf, ':') != NULL ? 128 : 32;
        if (slash[1] < '0' || slash[1] > '9')
            return false;
        bits = strtoul(slash + 1, &end, 10);
        if (*end != '\0' || bits > max || end - (slash + 1) > 3)
            return false;
        if (max == 128 && out->net.family == 4) {
            if (bits < 96)
                return false;
            bits -= 96;
        }
    }
    out->bits = (uint8_t)bits;
    mask(&out->net, out->bits);
    return true;
}

bool qrl__cidrs_parse(const char *list, qrl__cidrs *out, char *err, size_t errlen)
{
    const char *p = list != NULL ? list : "";

    out->n = 0;
    if (errlen > 0)
        err[0] = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    if (strcasecmp(p, "none") == 0)
        return true;
    while (*p != '\0') {
        const char *item = p, *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        size_t tlen = len;

        while (tlen > 0 && (*item == ' ' || *item == '\t')) {
            item++;
            tlen--;
        }
        while (tlen > 0 && (item[tlen - 1] == ' ' || item[tlen - 1] == '\t'))
            tlen--;
        if (out->n == QRL__MAX_CIDRS) {
            snprintf(err, errlen, "more than %d blocks", QRL__MAX_CIDRS);
            return false;
        }
        if (!cidr_parse(item, tlen, &out->c[out->n])) {
            snprintf(err, errlen, "'%.*s' is not an IPv4 or IPv6 address with an optional /bits",
                     (int)(tlen < ITEM_MAX ? tlen : ITEM_MAX), item);
            return false;
        }
        out->n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return true;
}

bool qrl__cidrs_match(const qrl__cidrs *l, const qrl__ip *ip)
{
    for (size_t i = 0; i < l->n; i++) {
        const qrl__cidr *c = &l->c[i];
        unsigned full = c->bits / 8, rest = c->bits % 8;

        if (c->net.family != ip->family || memcmp(c->net.b, ip->b, full) != 0)
            continue;
        if (rest == 0 || ((ip->b[full] ^ c->net.b[full]) & (uint8_t)(0xff00u >> rest)) == 0)
            return true;
    }
    return false;
}

/* The address of one item of the header: the "for" parameter of an RFC 7239 element
 * ("for=192.0.2.60;proto=http"), or the whole item (X-Forwarded-For and alike). */
static bool hop_parse(const char *item, size_t len, qrl__ip *out)
{
    for (size_t i = 0; i + 4 <= len; i++) {
        if ((i == 0 || item[i - 1] == ';' || item[i - 1] == ' ') &&
            strncasecmp(item + i, "for=", 4) == 0) {
            const char *v = item + i + 4;
            size_t vlen = 0;
            while (v + vlen < item + len && v[vlen] != ';')
                vlen++;
            return qrl__ip_parse(v, vlen, out);
        }
    }
    return qrl__ip_parse(item, len, out);
}

qrl__ip qrl__client_ip(const qrl__ip *peer, const qrl__cidrs *trusted, const char *const *hops,
                       size_t nhops)
{
    qrl__ip cur = *peer, ip;

    if (!qrl__cidrs_match(trusted, peer))
        return *peer;
    for (size_t h = nhops; h-- > 0;) {
        const char *v = hops[h];
        size_t end = strlen(v);

        /* Items of this value from the right. */
        for (;;) {
            size_t start = end;
            while (start > 0 && v[start - 1] != ',')
                start--;
            if (!hop_parse(v + start, end - start, &ip)) {
                /* An empty value or a trailing comma is no hop; anything else unreadable
                 * ("unknown", an obfuscated RFC 7239 identifier) ends what we can trust. */
                size_t k = start;
                while (k < end && (v[k] == ' ' || v[k] == '\t'))
                    k++;
                if (k != end)
                    return cur;
            } else if (!qrl__cidrs_match(trusted, &ip)) {
                return ip;
            } else {
                cur = ip;
            }
            if (start == 0)
                break;
            end = start - 1;
        }
    }
    return cur;
}

bool qrl__header_name_valid(const char *name)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (name == NULL || name[0] == '\0' || strlen(name) > 64)
        return false;
    for (const char *p = name; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr(extra, *p) != NULL))
            return false;
    return true;
}
