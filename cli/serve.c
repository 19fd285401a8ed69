/*
 * qrlogin serve: open the store, create the core and the HTTP server, then wait for SIGINT or
 * SIGTERM, sweeping expired rows once a minute. Every option has an environment variable so
 * that the server can be configured without secrets on the command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "qrlogin/core.h"
#include "qrlogin/server.h"

static void serve_usage(FILE *f)
{
    fputs("usage: qrlogin serve [options]\n"
          "  --listen ADDR:PORT        address to listen on (QRLOGIN_LISTEN; default "
          "127.0.0.1:8080;\n"
          "                            IPv6 as [::1]:8080; port 0 picks a free port)\n"
          "  --public-url URL          public base URL and OAuth issuer (QRLOGIN_PUBLIC_URL;\n"
          "                            default http://ADDR:PORT)\n"
          "  --db PATH                 SQLite database file (QRLOGIN_DB; default qrlogin.db)\n"
          "  --request-ttl SECONDS     login request lifetime (QRLOGIN_REQUEST_TTL; 120)\n"
          "  --access-ttl SECONDS      access token lifetime (QRLOGIN_ACCESS_TTL; 3600)\n"
          "  --refresh-ttl SECONDS     refresh token lifetime (QRLOGIN_REFRESH_TTL; 2592000)\n"
          "  --session-ttl SECONDS     phone session lifetime (QRLOGIN_SESSION_TTL; 2592000)\n"
          "  --introspection-secret S  secret resource servers use for /oauth/introspect\n"
          "                            (QRLOGIN_INTROSPECTION_SECRET; unset disables it)\n"
          "  --threads N               worker threads (QRLOGIN_THREADS; default 8, 2 per CPU above "
          "4)\n"
          "  --max-connections N       open connections at most (QRLOGIN_MAX_CONNECTIONS;\n"
          "                            default: open-file limit minus 256)\n"
          "  --connection-memory B     per-connection buffer in bytes (QRLOGIN_CONNECTION_MEMORY;\n"
          "                            default 8192, 4096..1048576)\n"
          "  --connection-timeout S    idle timeout of connections not held (default 30)\n"
          "  --per-ip-limit N          connections per client address (QRLOGIN_PER_IP_LIMIT;\n"
          "                            default 0 = unlimited)\n"
          "  --access-log              log one line per request to stderr (no secrets)\n"
          "  --demo                    create or reset the account 'demo' with a fresh random\n"
          "                            password and print it\n",
          f);
}

struct serve_opts {
    const char *listen, *public_url, *db, *secret;
    long long request_ttl, access_ttl, refresh_ttl, session_ttl, threads;
    long long max_conn, conn_mem, conn_timeout, per_ip;
    int access_log, demo;
};

static bool ttl_opt(const char *name, const char *val, long long min, long long max, long long *out)
{
    if (val == NULL)
        return true;
    if (qrl_cli_parse_seconds(val, min, max, out))
        return true;
    qrl_cli_err("%s must be a whole number of seconds between %lld and %lld", name, min, max);
    return false;
}

static int parse_opts(int argc, char **argv, struct serve_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"public-url", required_argument, NULL, 'u'},
        {"db", required_argument, NULL, 'd'},
        {"request-ttl", required_argument, NULL, 'r'},
        {"access-ttl", required_argument, NULL, 'a'},
        {"refresh-ttl", required_argument, NULL, 'f'},
        {"session-ttl", required_argument, NULL, 's'},
        {"introspection-secret", required_argument, NULL, 'i'},
        {"threads", required_argument, NULL, 't'},
        {"access-log", no_argument, NULL, 'L'},
        {"max-connections", required_argument, NULL, 'M'},
        {"connection-memory", required_argument, NULL, 'm'},
        {"connection-timeout", required_argument, NULL, 'T'},
        {"per-ip-limit", required_argument, NULL, 'P'},
        {"demo", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *rt = qrl_cli_env("QRLOGIN_REQUEST_TTL", NULL);
    const char *at = qrl_cli_env("QRLOGIN_ACCESS_TTL", NULL);
    const char *ft = qrl_cli_env("QRLOGIN_REFRESH_TTL", NULL);
    const char *st = qrl_cli_env("QRLOGIN_SESSION_TTL", NULL);
    const char *th = qrl_cli_env("QRLOGIN_THREADS", NULL);
    const char *mc = qrl_cli_env("QRLOGIN_MAX_CONNECTIONS", NULL);
    const char *cm = qrl_cli_env("QRLOGIN_CONNECTION_MEMORY", NULL);
    const char *ct = qrl_cli_env("QRLOGIN_CONNECTION_TIMEOUT", NULL);
    const char *pi = qrl_cli_env("QRLOGIN_PER_IP_LIMIT", NULL);
    int c;

    o->listen = qrl_cli_env("QRLOGIN_LISTEN", "127.0.0.1:8080");
    o->public_url = qrl_cli_env("QRLOGIN_PUBLIC_URL", NULL);
    o->db = qrl_cli_env("QRLOGIN_DB", "qrlogin.db");
    o->secret = qrl_cli_env("QRLOGIN_INTROSPECTION_SECRET", NULL);
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->listen = optarg;
            break;
        case 'u':
            o->public_url = optarg;
            break;
        case 'd':
            o->db = optarg;
            break;
        case 'r':
            rt = optarg;
            break;
        case 'a':
            at = optarg;
            break;
        case 'f':
            ft = optarg;
            break;
        case 's':
            st = optarg;
            break;
        case 'i':
            o->secret = optarg;
            break;
        case 't':
            th = optarg;
            break;
        case 'L':
            o->access_log = 1;
            break;
        case 'D':
            o->demo = 1;
            break;
        case 'M':
            mc = optarg;
            break;
        case 'm':
            cm = optarg;
            break;
        case 'T':
            ct = optarg;
            break;
        case 'P':
            pi = optarg;
            break;
        case 'h':
            serve_usage(stdout);
            return 0;
        default:
            serve_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        qrl_cli_err("serve: unexpected argument '%s'", argv[optind]);
        return 2;
    }
    if (!ttl_opt("--request-ttl", rt, 10, 3600, &o->request_ttl) ||
        !ttl_opt("--access-ttl", at, 60, 86400 * 30, &o->access_ttl) ||
        !ttl_opt("--refresh-ttl", ft, 60, 86400 * 3650LL, &o->refresh_ttl) ||
        !ttl_opt("--session-ttl", st, 60, 86400 * 3650LL, &o->session_ttl) ||
        !ttl_opt("--threads", th, 1, 1024, &o->threads) ||
        !ttl_opt("--max-connections", mc, 1, 1000000, &o->max_conn) ||
        !ttl_opt("--connection-memory", cm, 4096, 1048576, &o->conn_mem) ||
        !ttl_opt("--connection-timeout", ct, 1, 3600, &o->conn_timeout) ||
        !ttl_opt("--per-ip-limit", pi, 0, 1000000, &o->per_ip))
        return 2;
    return -1;
}

/* Splits "HOST:PORT" / "[V6]:PORT" into host (in buf) and port. */
static bool split_listen(const char *s, char *buf, size_t len, unsigned short *port)
{
    const char *colon;
    long long p;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= len)
            return false;
        memcpy(buf, s + 1, (size_t)(end - s - 1));
        buf[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || (size_t)(colon - s) >= len)
            return false;
        memcpy(buf, s, (size_t)(colon - s));
        buf[colon - s] = '\0';
    }
    if (!qrl_cli_parse_seconds(colon + 1, 0, 65535, &p))
        return false;
    *port = (unsigned short)p;
    return true;
}

static int demo_account(qrl_core *core)
{
    unsigned char raw[12];
    char pw[32];
    qrl_err rc;

    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(pw, sizeof pw, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    rc = qrl_account_add(core, "demo", "Demo User", pw, NULL);
    if (rc == QRL_ERR_EXISTS)
        rc = qrl_account_set_password(core, "demo", pw);
    if (rc != QRL_OK) {
        qrl_cli_err("cannot create the demo account: %s", qrl_strerror(rc));
        return 1;
    }
    printf("qrlogin: demo account: username 'demo', password '%s'\n", pw);
    sodium_memzero(pw, sizeof pw);
    return 0;
}

/* Waits for SIGINT/SIGTERM, sweeping once a minute. */
static void run_until_signal(qrl_core *core, const sigset_t *set)
{
    for (;;) {
        struct timespec ts = {.tv_sec = 60};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            return;
        (void)qrl_core_sweep(core);
    }
}

int qrl_cli_serve(int argc, char **argv)
{
    struct serve_opts o = {0};
    qrl_server_config scfg;
    qrl_config cfg;
    qrl_store *st = NULL;
    qrl_core *core = NULL;
    qrl_server *srv = NULL;
    char host[64], err[256] = "";
    sigset_t set;
    int rc = 1, p, lockfd = -1;
    qrl_err e;

    if ((p = parse_opts(argc, argv, &o)) >= 0)
        return p;
    qrl_server_config_defaults(&scfg);
    if (!split_listen(o.listen, host, sizeof host, &scfg.port)) {
        qrl_cli_err("--listen must look like 127.0.0.1:8080 or [::1]:8080");
        return 2;
    }
    scfg.listen_host = host;
    scfg.public_url = o.public_url;
    scfg.introspection_secret = o.secret;
    scfg.threads = (unsigned)o.threads;
    scfg.access_log = o.access_log;
    scfg.connection_limit = (unsigned)o.max_conn;
    scfg.connection_memory = (size_t)o.conn_mem;
    scfg.connection_timeout_s = (unsigned)o.conn_timeout;
    scfg.per_ip_limit = (unsigned)o.per_ip;

    /* Signals are taken synchronously by sigtimedwait; block them before any thread starts so
     * that every thread inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    e = qrl_store_sqlite_open(o.db, &st, err, sizeof err);
    if (e != QRL_OK) {
        qrl_cli_err("cannot open database %s: %s", o.db, err[0] ? err : qrl_strerror(e));
        goto out;
    }
    /* One server per database file: the server keeps what it knows of pending login requests
     * and their user codes in memory (docs/architecture.md). An flock() of the file, which
     * SQLite's own (fcntl) locks do not see, held until exit; `qrlogin account` takes none. */
    lockfd = open(o.db, O_RDONLY | O_CLOEXEC);
    if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) != 0) {
        if (lockfd >= 0 && errno == EWOULDBLOCK)
            qrl_cli_err("%s is in use by another qrlogin serve (one server per database file)",
                        o.db);
        else
            qrl_cli_err("cannot lock %s: %s", o.db, strerror(errno));
        goto out;
    }
    e = qrl_server_new(&scfg, &srv);
    if (e != QRL_OK) {
        qrl_cli_err("cannot set up the server: %s", qrl_strerror(e));
        goto out;
    }
    qrl_config_defaults(&cfg);
    if (o.request_ttl)
        cfg.request_ttl_s = o.request_ttl;
    if (o.access_ttl)
        cfg.access_ttl_s = o.access_ttl;
    if (o.refresh_ttl)
        cfg.refresh_ttl_s = o.refresh_ttl;
    if (o.session_ttl)
        cfg.session_ttl_s = o.session_ttl;
    cfg.on_change = qrl_server_on_change;
    cfg.on_change_ud = srv;
    qrl_server_handoff(srv, &cfg.handoff);
    e = qrl_core_new(&cfg, st, &core);
    if (e != QRL_OK) {
        qrl_cli_err("cannot start: %s", qrl_strerror(e));
        goto out;
    }
    if (o.demo && demo_account(core) != 0)
        goto out;
    e = qrl_server_listen(srv, core, err, sizeof err);
    if (e != QRL_OK) {
        qrl_cli_err("%s", err);
        goto out;
    }
    if (o.secret == NULL)
        qrl_cli_err("introspection is disabled (no --introspection-secret)");
    printf("qrlogin: listening on %s\n", qrl_server_public_url(srv));
    fflush(stdout);
    if (o.demo)
        qrl_cli_err("try it: open %s/ on the TV or laptop, and scan its QR code with a phone "
                    "(or open %s/device on the phone and type the code)",
                    qrl_server_public_url(srv), qrl_server_public_url(srv));
    run_until_signal(core, &set);
    qrl_cli_err("shutting down");
    rc = 0;
out:
    qrl_server_stop(srv);
    qrl_core_free(core);
    if (st != NULL)
        st->m->close(st);
    if (lockfd >= 0)
        close(lockfd);
    return rc;
}
