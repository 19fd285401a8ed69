/* SPDX-License-Identifier: MIT */
/*
 * Client addresses: lists of CIDR blocks (--trusted-proxy, --metrics-allow) and the address a
 * request comes from when it reaches us through reverse proxies (--client-ip-header).
 *
 * Everything here is plain data and pure functions: a list is parsed once, when the server is
 * made, and read by every worker thread without a lock afterwards.
 */
#ifndef QRL_SERVER_NETADDR_H
#define QRL_SERVER_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sockaddr;

/* Blocks in one list. An operator names a handful (a load balancer's subnets, a monitoring
 * host); 64 leaves room for a cloud provider's published ranges without making the linear
 * match, done for every proxied request, noticeable. */
#define QRL__MAX_CIDRS 64
/* Header values (one per occurrence of the header) looked at for one request. A chain of
 * proxies appends to one value; several occurrences come from proxies that add a line each. */
#define QRL__MAX_HOP_HEADERS 8

/* An IPv4 address (family 4, the first 4 bytes) or an IPv6 one (family 6, 16 bytes), in
 * network order. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are kept as IPv4. */
typedef struct qrl__ip {
    uint8_t family;
    uint8_t b[16];
} qrl__ip;

typedef struct qrl__cidr {
    qrl__ip net; /* host bits cleared */
    uint8_t bits;
} qrl__cidr;

typedef struct qrl__cidrs {
    size_t n;
    qrl__cidr c[QRL__MAX_CIDRS];
} qrl__cidrs;

/* Parses "CIDR[,CIDR...]": each an IPv4 or IPv6 address with an optional "/bits" (a bare
 * address is one host), spaces around items allowed, host bits below the prefix ignored. ""
 * and "none" are the empty list. On failure returns false with the offending item named in
 * `err` (always terminated when errlen > 0). */
bool qrl__cidrs_parse(const char *list, qrl__cidrs *out, char *err, size_t errlen);
/* True when `ip` lies in one of the blocks. */
bool qrl__cidrs_match(const qrl__cidrs *l, const qrl__ip *ip);

/* Parses one address as proxies write it: "192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
 * "[2001:db8::1]:4711", optionally in double quotes, with spaces around. `len` bytes of `s`
 * are read (no terminator needed). */
bool qrl__ip_parse(const char *s, size_t len, qrl__ip *out);
/* The address of a socket (AF_INET or AF_INET6); false for any other family. */
bool qrl__ip_from_sockaddr(const struct sockaddr *sa, qrl__ip *out);
/* Writes the address in its usual text form ("192.0.2.1", "2001:db8::1"); `out` holds at
 * least 46 bytes (INET6_ADDRSTRLEN). */
void qrl__ip_format(const qrl__ip *ip, char *out, size_t len);
bool qrl__ip_equal(const qrl__ip *a, const qrl__ip *b);

/* The client behind a chain of proxies: `peer` is the TCP peer, `hops` the values of the
 * client-address header in the order they arrived (each "a, b, c" or RFC 7239 "for=a;by=b,
 * for=c"). When the peer is not in `trusted` the header is a claim by the client itself and is
 * ignored: the peer is the client. Otherwise the items are read from the right (the one the
 * nearest proxy added) and the first address that is not itself a trusted proxy is the client;
 * an item that is not an address stops the walk at the last trusted hop, and a chain of only
 * trusted hops gives its leftmost. */
qrl__ip qrl__client_ip(const qrl__ip *peer, const qrl__cidrs *trusted, const char *const *hops,
                       size_t nhops);

/* Whether `name` can be an HTTP header field name (RFC 9110 section 5.1: a token). */
bool qrl__header_name_valid(const char *name);

#endif
