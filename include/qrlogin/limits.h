/*
 * Size and count limits, in one place. Every input qrlogin accepts is bounded by one of these;
 * each says why it has the value it has. Lengths are in bytes and exclude the terminating NUL.
 */
#ifndef QRLOGIN_LIMITS_H
#define QRLOGIN_LIMITS_H

/* Whole request body. Our largest legitimate body (a sign-in with a long device name and a
 * 256-byte password, JSON-escaped) is well under 2 KiB; 16 KiB leaves room for clients that
 * send extra fields while keeping per-connection memory small. */
#define QRL_MAX_BODY 16384

/* Usernames are identifiers typed by people; 64 covers e-mail style names. */
#define QRL_MAX_USERNAME 64
/* Display names are shown on phones: two lines of text at most. */
#define QRL_MAX_DISPLAY_NAME 128
/* Device names ("Living Room TV") are shown in lists and on the approval screen. */
#define QRL_MAX_DEVICE_NAME 64
/* Device kinds are one of a few short words (tv, browser, desktop, cli, phone, other). */
#define QRL_MAX_DEVICE_KIND 15
/* Passwords: long passphrases are welcome, but Argon2id input need not be unbounded. */
#define QRL_MAX_PASSWORD 256
/* OAuth client identifiers are short registered names. */
#define QRL_MAX_CLIENT_ID 64
/* Space-separated scope tokens; 256 is several times what any client asks for. */
#define QRL_MAX_SCOPE 256
/* Textual IPv6 address (INET6_ADDRSTRLEN is 46) plus room for a zone id. */
#define QRL_MAX_ADDRESS 63
/* Any token or secret we issue is under 64 characters; 128 rejects garbage early. */
#define QRL_MAX_TOKEN 128
/* user_code as typed: 8 letters plus dashes and spaces a person might add. */
#define QRL_MAX_USER_CODE_INPUT 32
/* Prefer: wait=N is capped: long enough to save many polls, short enough that proxies with
 * 60-90 s idle timeouts do not cut held requests. */
#define QRL_MAX_WAIT_S 60
/* Held token requests per login request. One screen needs one; a few more tolerate a retrying
 * client. Beyond this the request is answered at once like a normal poll. */
#define QRL_MAX_WAITERS_PER_REQUEST 8
/* Devices listed by GET /v1/devices. An account with more is abusive; the list is cut. */
#define QRL_MAX_DEVICES_LISTED 500
/* Login requests a single revocation walks to end their waits. */
#define QRL_MAX_REQUESTS_PER_DEVICE 64

#endif
