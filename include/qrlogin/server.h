/* SPDX-License-Identifier: MIT */
/*
 * The qrlogin HTTP server: libmicrohttpd in front of the core.
 *
 * Lifecycle: qrl_server_start() -> (serving on its own threads) -> qrl_server_stop().
 * The server borrows the core; stop the server before freeing the core. No libmicrohttpd type
 * appears in this header.
 */
#ifndef QRLOGIN_SERVER_H
#define QRLOGIN_SERVER_H

#include <stddef.h>

#include "qrlogin/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qrl_server qrl_server;

/* Severity of a log line (--log-level): lines below the configured level are not written.
 * 0 in a configuration means QRL_LOG_INFO. */
typedef enum qrl_log_level {
    QRL_LOG_DEBUG = 1,
    QRL_LOG_INFO = 2, /* audit events */
    QRL_LOG_WARN = 3,
    QRL_LOG_ERROR = 4
} qrl_log_level;

typedef struct qrl_server_config {
    const char *listen_host;          /* numeric IPv4/IPv6 address; default "127.0.0.1" */
    unsigned short port;              /* 0 = any free port */
    const char *public_url;           /* issuer; NULL = http://<listen>:<port> */
    const char *introspection_secret; /* NULL or "" disables introspection */
    unsigned threads;                 /* worker threads; 0 = qrl_server_default_threads() */
    unsigned connection_limit;        /* 0 = open-file limit minus a reserve */
    size_t connection_memory;         /* per-connection buffer; 0 = 8 KiB */
    unsigned connection_timeout_s;    /* idle timeout of non-held connections; 0 = 30 */
    unsigned per_ip_limit;            /* connections per client address; 0 = unlimited */
    int access_log;                   /* nonzero: a JSON access line per request (no secrets) */
    /* DPoP (RFC 9449) at the token endpoint. 0, optional: a proof binds the screen's tokens to
     * its key, a client without one gets bearer tokens. Nonzero, required: a device-code grant
     * request without a proof is refused (invalid_dpop_proof), so every new screen's tokens are
     * bound; the web screen page, which keeps its tokens in cookies, is exempt. */
    int dpop_required;
    /* --- operating (docs/architecture.md, "Operating") --- */
    int log_level;                /* qrl_log_level; 0 = QRL_LOG_INFO */
    const char *log_file;         /* JSON Lines appended here; NULL or "" = stderr */
    const char *trusted_proxies;  /* "CIDR[,CIDR...]" whose client_ip_header is believed */
    const char *client_ip_header; /* e.g. "X-Forwarded-For"; NULL = X-Forwarded-For */
    const char *metrics_allow;    /* "CIDR[,...]" that may GET /metrics; NULL = loopback */
    /* A MaxMind DB country database (--geoip): the phone is told which country a login request
     * comes from and which one it is in. NULL or "": no country lookups. The file is opened by
     * qrl_server_new() (which fails with QRL_ERR_INVALID when it cannot) and kept open, mapped
     * read-only, until qrl_server_stop(). */
    const char *geoip_path;
    /* "CIDR[,CIDR...]" of networks whose login requests are never approved (--deny-networks;
     * docs/security.md, "Detection"); NULL, "" or "none": no deny list. Asked through
     * qrl_server_network_denied(). */
    const char *deny_networks;
    /* Optional, borrowed for the server's life: /readyz asks it whether the database takes
     * writes, /metrics shows its commit statistics (its `health` method, store.h). NULL: the
     * readiness probe is a read through the core, and the store has no metrics. */
    qrl_store *store;
} qrl_server_config;

void qrl_server_config_defaults(qrl_server_config *cfg);
/* Checks a list of CIDR blocks as trusted_proxies and metrics_allow take them ("10.0.0.0/8,
 * ::1", "none" for the empty list): nonzero when valid, else 0 with the offending item named in
 * errbuf. For a usage check before the server is made (qrl_server_new refuses a bad list). */
int qrl_server_cidrs_valid(const char *list, char *errbuf, size_t errlen);
/* Whether `name` can be an HTTP header field name (RFC 9110 section 5.1). */
int qrl_server_header_name_valid(const char *name);
/* Opens the country database at `path` as geoip_path would be, and closes it again: nonzero
 * when it opens, else 0 with a sentence naming the file and the reason in errbuf. For a check
 * before the server is made, so that the reason reaches the operator. */
int qrl_server_geoip_valid(const char *path, char *errbuf, size_t errlen);

/* Starts listening and serving. The core's on_change callback must be set to
 * qrl_server_on_change with the server as user data before requests arrive: use
 * qrl_server_new() + qrl_server_listen() when the core is created after the server. */
qrl_err qrl_server_new(const qrl_server_config *cfg, qrl_server **out);
/* Hook for qrl_config.on_change; `ud` is the qrl_server. lr_id > 0: that login request
 * changed; qrl_notice_key(account): a notice of a new device for that account; other values
 * < 0: device -lr_id was revoked; 0: anything may have changed (every held request looks
 * again). */
void qrl_server_on_change(void *ud, int64_t lr_id);
/* Hook for qrl_config.network_denied; `ud` is the qrl_server: nonzero when `address` lies in
 * deny_networks. */
int qrl_server_network_denied(void *ud, const char *address);
/* Fills `h` so that approvals hand tokens straight to screens held by this server. */
void qrl_server_handoff(qrl_server *srv, qrl_handoff *h);
qrl_err qrl_server_listen(qrl_server *srv, qrl_core *core, char *errbuf, size_t errlen);
/* The bound port (useful with port 0) and the public URL. */
unsigned short qrl_server_port(const qrl_server *srv);
/* Worker threads when the config says 0: 64, or 2 per CPU this process may run on when it may
 * run on more than 32. Handlers block their worker thread while they wait for the store. */
unsigned qrl_server_default_threads(void);
const char *qrl_server_public_url(const qrl_server *srv);
/* Opens the log file again by its name, for log rotation (SIGHUP): lines written after it
 * returns go to the new file. Does nothing when the log is stderr. Thread-safe. */
qrl_err qrl_server_log_reopen(qrl_server *srv);
/* Ends held requests (answering them), stops accepting, waits for workers, frees. NULL ok. */
void qrl_server_stop(qrl_server *srv);

#ifdef __cplusplus
}
#endif
#endif
