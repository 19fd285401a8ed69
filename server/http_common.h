/* SPDX-License-Identifier: MIT */
/*
 * Answers that more than one handler file gives the same way: the QR code of a login request
 * (the OAuth screen endpoint and the web screen), an account and the list of its devices (the
 * phone API and the pages) and the numeric id at the end of a DELETE path. Each is written once so
 * that the answers cannot drift apart; the handler files keep what differs (who is asking and
 * in which error class the failures are told).
 */
#ifndef QRL_HTTP_COMMON_H
#define QRL_HTTP_COMMON_H

#include "http.h"

/* Pixels (PNG) or user units (SVG) per module unless a screen asks otherwise: 8 gives a
 * 330-pixel image for our usual version-4 symbol with its quiet zone. */
#define QRL__QR_SCALE 8

/* The text of a login request's QR code (its verification_uri_complete): the URL of this
 * server's scan page, PUBLIC/s, with the short form of `dpop_jkt` as "?k=" when the request is
 * bound to a key (NULL or "": none; qrlogin/protocol.h says why and how a phone checks it), and
 * `scan` (the scan secret) after the '#'. `public_url` is the server's public URL as it is, or
 * already escaped for JSON. Returns the length written as snprintf() does: out holds the whole
 * URL only when that is below `len`. */
int qrl__qr_url(const char *public_url, const char *scan, const char *dpop_jkt, char *out,
                size_t len);

/* Answers the QR code a phone scans to claim a login request: qrl__qr_url() of `scan` (the
 * request's scan secret) and `dpop_jkt` (NULL: none), as PNG or SVG at `scale` pixels or units
 * per module. Wipes `scan` (QRL_SECRET_BUF bytes) in every case. Failures are answered in error
 * class `ctx`. */
enum MHD_Result qrl__respond_qr(qrl__req *r, char scan[QRL_SECRET_BUF], const char *dpop_jkt,
                                bool png, int scale, enum qrl__errctx ctx);

/* A 200 answer whose body is `data` (`len` bytes of `type`), with the headers every answer
 * carries: no caching anywhere (a QR image carries its request's scan secret), no sniffing, no
 * framing, no referrer. Takes `data`, a malloc()ed buffer, in every case. */
enum MHD_Result qrl__respond_image(qrl__req *r, const char *type, void *data, size_t len);

/* The positive decimal id that is the whole of `arg` (the last segment of a DELETE path); 0 when
 * it is not one, which the handlers answer as "no such thing". */
int64_t qrl__path_id(const char *arg);

/* An account as the phone API and the pages show it: {id, username, display_name}. A new
 * reference, or NULL when out of memory. */
json_t *qrl__account_json(const qrl_account_rec *a);

/* Answers {"devices": [...]}: the devices of the account `auth` signed in to, at most
 * QRL_MAX_DEVICES_LISTED, each with id, name, kind, address, created_at, last_seen_at (seconds)
 * and current (it is the caller's own device). With `label`, each also carries kind_label, the
 * words `label` gives for its kind. Failures are answered in error class `ctx`. */
enum MHD_Result qrl__respond_devices(qrl__req *r, const qrl_auth *auth, enum qrl__errctx ctx,
                                     const char *(*label)(const char *kind));

#endif
