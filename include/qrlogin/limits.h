/* SPDX-License-Identifier: MIT */
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
/* Device names ("Living Room TV") are shown in lists and on the approval screen. The client SDK
 * checks an app's against this before sending it. */
#define QRL_MAX_DEVICE_NAME 64
/* A screen's platform ("TV, Samsung Tizen", "Chrome on Linux") is one short line under the
 * device's name on the approval screen; 64 holds a browser and its system or a vendor's
 * platform name with its version, and no more than the name itself may take. */
#define QRL_MAX_DEVICE_PLATFORM 64
/* Device kinds are one of a few short words (tv, browser, desktop, cli, phone, other). */
#define QRL_MAX_DEVICE_KIND 15
/* Passwords: long passphrases are welcome, but Argon2id input need not be unbounded. */
#define QRL_MAX_PASSWORD 256
/* OAuth client identifiers are short registered names. The client SDK checks an app's against
 * this before sending it. */
#define QRL_MAX_CLIENT_ID 64
/* Space-separated scope tokens; 256 is several times what any client asks for. */
#define QRL_MAX_SCOPE 256
/* Textual IPv6 address (INET6_ADDRSTRLEN is 46) plus room for a zone id. */
#define QRL_MAX_ADDRESS 63
/* Any token or secret we issue is under 64 characters; 128 rejects garbage early. */
#define QRL_MAX_TOKEN 128
/* A user code in canonical form: 8 letters of QRL_USER_CODE_ALPHABET (qrlogin/protocol.h), no
 * dash. 20^8 (about 2^34.6) codes make guessing a live one hopeless within the attempts the rate
 * limits allow, and 8 letters are still easy to read off a TV and type (RFC 8628 section 6.1). */
#define QRL_USER_CODE_LEN 8
/* user_code as typed: 8 letters plus dashes and spaces a person might add. The client SDK holds
 * a code any RFC 8628 server shows in as many bytes: such codes are short by design. */
#define QRL_MAX_USER_CODE_INPUT 32
/* The approval nonce a phone signs: the server issues base64url of 16 random bytes (22
 * characters); 32 leaves room without letting the field grow a signed message unboundedly. */
#define QRL_MAX_NONCE 32
/* An RFC 7638 JWK SHA-256 thumbprint in base64url without padding (RFC 9449 dpop_jkt): exactly
 * 43 characters. */
#define QRL_DPOP_JKT_LEN 43
/* The name of a reason a request was blocked ("many_networks"; qrl_block_reason_name). */
#define QRL_MAX_BLOCK_REASON 31
/* Prefer: wait=N is capped: long enough to save many polls, short enough that proxies with
 * 60-90 s idle timeouts do not cut held requests. The client SDK never asks for more. */
#define QRL_MAX_WAIT_S 60
/* RFC 8628 section 3.5: each slow_down adds 5 seconds to the polling interval, for that request
 * and all later ones. The server grows its interval by this step and the client SDK its own. */
#define QRL_SLOW_DOWN_STEP_S 5
/* The polling interval never grows past this, so that a buggy client still finishes within a
 * request's life; the server keeps one prepared answer per interval up to it. */
#define QRL_MAX_POLL_INTERVAL_S 60
/* Held token requests per login request. One screen needs one; a few more tolerate a retrying
 * client. Beyond this the request is answered at once like a normal poll. */
#define QRL_MAX_WAITERS_PER_REQUEST 8
/* Devices listed by GET /v1/devices. An account with more is abusive; the list is cut. */
#define QRL_MAX_DEVICES_LISTED 500
/* Notices of new devices listed to one device at a time (GET /v1/notifications). A person
 * links a few screens a month; more unread ones than this are cut, newest kept. */
#define QRL_MAX_NOTICES_LISTED 20
/* Login requests a single revocation walks to end their waits. */
#define QRL_MAX_REQUESTS_PER_DEVICE 64

/* WebAuthn credential ids. CTAP2 authenticators return 16 to about 128 bytes (platform
 * authenticators 16 to 64), and a U2F key handle, which older security keys hand out as their
 * credential id, is at most 255 bytes (its length is one byte, FIDO U2F raw messages section
 * 4.3). WebAuthn Level 3 allows up to 1023; we refuse the rare longer id at registration rather
 * than make every stored passkey four times larger. */
#define QRL_MAX_CRED_ID 255
/* A passkey's public key as libfido2 reads it: SEC1 uncompressed P-256 point (65 bytes, ES256),
 * raw Ed25519 key (32, EdDSA), or RSA-2048 modulus and 3-byte exponent (259, RS256: libfido2
 * verifies RS256 only with 2048-bit keys, and every RS256 authenticator we know uses them). */
#define QRL_MAX_PASSKEY_PUBKEY 259
/* Decoded clientDataJSON: browsers send about 150 to 300 bytes (type, a 43-character challenge,
 * the origin, crossOrigin and sometimes a padding member Chrome adds on purpose). */
#define QRL_MAX_CLIENT_DATA_JSON 1024
/* Decoded authenticatorData: 37 bytes for an assertion; at registration also the AAGUID, the
 * credential id (<= 255) and a COSE key (<= about 280 for RSA-2048), plus extensions. 960 leaves
 * room for all of that while authenticatorData || SHA-256(clientDataJSON) still fits the
 * 1024-byte buffer in which libfido2 builds an EdDSA message. */
#define QRL_MAX_AUTHENTICATOR_DATA 960
/* Decoded attestationObject: authenticatorData plus an attestation statement. "none" adds a few
 * bytes; "packed" self-attestation a signature; certificate chains (refused, but read) 1-3 KiB. */
#define QRL_MAX_ATTESTATION_OBJECT 6144
/* Decoded signatures: ECDSA P-256 in DER is at most 72 bytes, Ed25519 64, RSA-2048 256. */
#define QRL_MAX_WEBAUTHN_SIGNATURE 512
/* Passkey challenges held in memory by one core, with a store that keeps none (older than
 * store version 11). Each lives 120 s, so 4096 allows more than 30 ceremonies a second to be
 * under way on one node; each slot is under 100 bytes. */
#define QRL_MAX_WEBAUTHN_CHALLENGES 4096
/* Live WebAuthn challenges one phone may hold; a newer one replaces its oldest. A person has
 * one ceremony open at a time (a few with reloads); the cap keeps one signed-in session from
 * filling the store's table of challenges (challenge_put), or the one above, for everyone. */
#define QRL_MAX_WEBAUTHN_CHALLENGES_PER_DEVICE 8
/* Passkeys one account may register. A person has a few devices and security keys; the limit
 * keeps an account's list (and the page that shows it) small. */
#define QRL_MAX_PASSKEYS 32

#endif
