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
    int access_log;                   /* nonzero: one line per request on stderr (no secrets) */
} qrl_server_config;

void qrl_server_config_defaults(qrl_server_config *cfg);

/* Starts listening and serving. The core's on_change callback must be set to
 * qrl_server_on_change with the server as user data before requests arrive: use
 * qrl_server_new() + qrl_server_listen() when the core is created after the server. */
qrl_err qrl_server_new(const qrl_server_config *cfg, qrl_server **out);
/* Hook for qrl_config.on_change; `ud` is the qrl_server. */
void qrl_server_on_change(void *ud, int64_t lr_id);
/* Fills `h` so that approvals hand tokens straight to screens held by this server. */
void qrl_server_handoff(qrl_server *srv, qrl_handoff *h);
qrl_err qrl_server_listen(qrl_server *srv, qrl_core *core, char *errbuf, size_t errlen);
/* The bound port (useful with port 0) and the public URL. */
unsigned short qrl_server_port(const qrl_server *srv);
/* Worker threads when the config says 0: 64, or 2 per CPU this process may run on when it may
 * run on more than 32. Handlers block their worker thread while they wait for the store. */
unsigned qrl_server_default_threads(void);
const char *qrl_server_public_url(const qrl_server *srv);
/* Ends held requests (answering them), stops accepting, waits for workers, frees. NULL ok. */
void qrl_server_stop(qrl_server *srv);

#ifdef __cplusplus
}
#endif
#endif
