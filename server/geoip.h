/* SPDX-License-Identifier: MIT */
/*
 * Where a request comes from: the country of a client address, read from a MaxMind DB file
 * (--geoip) with libmaxminddb, so that the phone can say "This request comes from Brazil, you
 * are in Germany" before anyone approves a sign-in started somewhere else. Advisory, like the
 * "same network" hint: shown to the person, never a policy decision.
 *
 * Lifecycle: qrl__geoip_open() once, when the server is made -> qrl__geoip_lookup() and
 * qrl__geoip_origin() from any worker thread -> qrl__geoip_close() after the workers stopped.
 * The file is mapped read-only and the handle is never written after it was opened; a lookup
 * only reads the mapping, so concurrent lookups need no lock (libmaxminddb is thread-safe with
 * a thread-safe malloc; a lookup by socket address, as here, allocates nothing).
 *
 * Cost: a lookup walks the file's binary tree (at most 128 nodes for IPv6) and decodes one
 * small record: about a microsecond, no allocation, no system call. It runs when a phone reads
 * a login request (two lookups: the screen's address and the phone's), never on a poll.
 *
 * Files understood: any MaxMind DB whose records hold the country at "country" / "iso_code"
 * (MaxMind's GeoIP2 and GeoLite2 Country and City) or at "country_code" (the ip-location-db
 * country files). The name shown is this module's own (ISO 3166-1 short names in English), so
 * every file gives the same words. Loopback, private, link-local, shared (CGNAT),
 * documentation and multicast addresses have no country here, whatever the file says: they say
 * nothing about where a person is.
 */
#ifndef QRL_SERVER_GEOIP_H
#define QRL_SERVER_GEOIP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "qrlogin/error.h"

typedef struct qrl__geoip qrl__geoip;

/* A country: its ISO 3166-1 alpha-2 code and English short name, or unknown (code "" and name
 * NULL). `name` points to static storage. */
typedef struct qrl__country {
    char code[3];
    const char *name;
} qrl__country;

/* Where a login request and the phone looking at it are. `same` is 1 when both countries are
 * known and equal, 0 when both are known and differ, -1 when either is unknown (or there is no
 * database). */
typedef struct qrl__origin {
    qrl__country request;
    qrl__country phone;
    int same;
} qrl__origin;

/* Opens the MaxMind DB file at `path` (memory-mapped, read-only). On failure returns
 * QRL_ERR_INVALID (QRL_ERR_NOMEM when out of memory) with a sentence naming the file and the
 * reason in `err` (always terminated when errlen > 0); *out is NULL then. Close with
 * qrl__geoip_close(). */
qrl_err qrl__geoip_open(const char *path, qrl__geoip **out, char *err, size_t errlen);
/* Unmaps and frees. NULL is fine. No lookup may run any more. */
void qrl__geoip_close(qrl__geoip *g);

/* The country of `address` (an IPv4 or IPv6 address in text form): true and *out filled when
 * the file names a country this module knows; false and *out unknown otherwise (g NULL, an
 * address that does not parse or has no country). Thread-safe. */
bool qrl__geoip_lookup(qrl__geoip *g, const char *address, qrl__country *out);
/* Both countries of a phone's view: the screen's address (`request`) and the phone's. With g
 * NULL both are unknown and same is -1. Thread-safe. */
void qrl__geoip_origin(qrl__geoip *g, const char *request, const char *phone, qrl__origin *out);

/* The English short name of an ISO 3166-1 alpha-2 code ("DE" -> "Germany"), or NULL for a
 * code that names no country (case matters: codes are upper case). */
const char *qrl__country_name(const char *code);

/* Sets "request_country", "phone_country" ({"code", "name"} or null) and "same_country" (true,
 * false or null) on the JSON object `o`. */
void qrl__origin_json_set(json_t *o, const qrl__origin *p);
/* The same three members as JSON text, without braces and without a leading comma, into out:
 * the length written, or 0 when it does not fit or a name would need escaping (then use
 * qrl__origin_json_set). */
size_t qrl__origin_json_text(const qrl__origin *p, char *out, size_t len);

#endif
