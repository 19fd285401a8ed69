/* SPDX-License-Identifier: MIT */
/*
 * The "ceiling" of the benchmark suite: the cheapest HTTP server libmicrohttpd can be, started
 * with the same daemon flags and options as qrlogin's (server/server.c: an epoll thread pool with
 * suspend/resume allowed, the same connection limit, per-connection memory, idle timeout and
 * listen backlog). It answers every request, whatever its method and path, with one fixed small
 * JSON body shaped like a pending poll answer, after reading and discarding any request body.
 * Whatever rate wrk reaches against it, with the same Lua scripts as against qrlogin, is what this
 * machine, this libmicrohttpd and this load generator allow; bench/run.sh reports each qrlogin
 * throughput as a fraction of it.
 *
 * Usage: ceiling [--listen 127.0.0.1:PORT] [--threads N]
 * Prints "ceiling: listening on http://ADDR:PORT" once it accepts connections, then serves until
 * SIGINT or SIGTERM.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <microhttpd.h>

/* Same size and shape as qrlogin's authorization_pending answer, so that both servers write
 * about the same number of bytes per request. */
static const char BODY[] =
    "{\"error\":\"authorization_pending\",\"error_description\":\"waiting for the user to scan "
    "the code\",\"status\":\"pending\",\"interval\":5}";

static struct MHD_Response *response;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    static int marker;

    (void)cls, (void)url, (void)method, (void)version, (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &marker; /* headers seen; body (if any) and the final call follow */
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* discard the body */
        return MHD_YES;
    }
    return MHD_queue_response(conn, MHD_HTTP_OK, response);
}

/* The same default as qrlogin: the open-file limit minus a reserve. */
static unsigned connection_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 4096;
    return rl.rlim_cur > 512 ? (unsigned)rl.rlim_cur - 256 : (unsigned)rl.rlim_cur / 2;
}

int main(int argc, char **argv)
{
    const char *listen = "127.0.0.1:8090";
    unsigned threads = 16;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    char host[64];
    const char *colon;
    struct MHD_Daemon *d;
    const union MHD_DaemonInfo *di;
    sigset_t set;
    int sig;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = (unsigned)strtoul(argv[++i], NULL, 10);
        } else {
            fprintf(stderr, "usage: ceiling [--listen 127.0.0.1:PORT] [--threads N]\n");
            return 2;
        }
    }
    colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof host || threads == 0 ||
        threads > 1024) {
        fprintf(stderr, "ceiling: bad --listen or --threads\n");
        return 2;
    }
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "ceiling: --listen needs a numeric IPv4 address\n");
        return 2;
    }
    sa.sin_port = htons((unsigned short)strtoul(colon + 1, NULL, 10));

    response =
        MHD_create_response_from_buffer(sizeof BODY - 1, (void *)BODY, MHD_RESPMEM_PERSISTENT);
    if (response == NULL)
        return 1;
    MHD_add_response_header(response, "Content-Type", "application/json");
    MHD_add_response_header(response, "Cache-Control", "no-store");

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_LIMIT, connection_limit(),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)8192, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, 0u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "ceiling: cannot listen on %s\n", listen);
        return 1;
    }
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("ceiling: listening on http://%s:%u\n", host,
           di != NULL ? (unsigned)di->port : (unsigned)ntohs(sa.sin_port));
    fflush(stdout);
    do {
        sig = sigwaitinfo(&set, NULL);
    } while (sig != SIGINT && sig != SIGTERM);
    MHD_stop_daemon(d);
    MHD_destroy_response(response);
    return 0;
}
