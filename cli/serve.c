/* SPDX-License-Identifier: MIT */
/*
 * qrlogin serve: open the store, create the core and the HTTP server, then wait for SIGINT or
 * SIGTERM, sweeping expired rows once a minute. Every option can also come from an environment
 * variable or the configuration file (cli/config.c), so that the server can be configured
 * without secrets on the command line; --check-config checks all three and prints the result.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "qrlogin/core.h"
#include "qrlogin/server.h"

static void serve_usage(FILE *f)
{
    fputs("usage: qrlogin serve [options]\n"
          "Every option but --config, --check-config and the flags (--access-log, --demo,\n"
          "--demo-reset) also comes from the environment variable in brackets, and every one\n"
          "but --config and --check-config from the configuration file, as 'name = value'\n"
          "(a flag: 'name = true'). A flag wins over its variable, which wins over the file.\n"
          "  --config FILE             configuration file [QRLOGIN_CONFIG]; default\n"
          "                            /etc/qrlogin/qrlogin.conf when it exists; none: no file\n"
          "  --check-config            check the flags, the environment and the file, print the\n"
          "                            configuration (no secret) and exit: 0 good, 2 bad\n"
          "  --listen ADDR:PORT        numeric address to listen on [QRLOGIN_LISTEN]; default\n"
          "                            127.0.0.1:8080, IPv6 as [::1]:8080, port 0 picks one\n"
          "  --public-url URL          public base URL and OAuth issuer [QRLOGIN_PUBLIC_URL];\n"
          "                            default http://ADDR:PORT\n"
          "  --db PATH|URI             SQLite database file [QRLOGIN_DB]; default qrlogin.db;\n"
          "                            it and its directory must be writable; or a PostgreSQL\n"
          "                            URI postgresql://USER@HOST:PORT/DBNAME, which several\n"
          "                            servers may share\n"
          "  --request-ttl SECONDS     login request lifetime [QRLOGIN_REQUEST_TTL];\n"
          "                            default 120, 10..3600\n"
          "  --access-ttl SECONDS      access token lifetime [QRLOGIN_ACCESS_TTL];\n"
          "                            default 3600, 60..2592000 (30 days)\n"
          "  --refresh-ttl SECONDS     refresh token lifetime [QRLOGIN_REFRESH_TTL];\n"
          "                            default 2592000 (30 days), 60..315360000 (10 years)\n"
          "  --session-ttl SECONDS     phone session lifetime [QRLOGIN_SESSION_TTL];\n"
          "                            default 2592000 (30 days), 60..315360000 (10 years)\n"
          "  --device-idle-ttl SECONDS a linked device unused this long stops working\n"
          "                            [QRLOGIN_DEVICE_IDLE_TTL]; default 2592000 (30 days),\n"
          "                            0 = never, else 3600..315360000\n"
          "  --refresh-max-ttl SECONDS refresh tokens end this long after their device was\n"
          "                            linked [QRLOGIN_REFRESH_MAX_TTL]; default 15552000\n"
          "                            (180 days), 0 = never, else 3600..315360000\n"
          "  --notify-revoke-window S  the notice of a newly linked device removes it with\n"
          "                            one tap, without the step-up, for S seconds after the\n"
          "                            link [QRLOGIN_NOTIFY_REVOKE_WINDOW]; default 3600,\n"
          "                            0 = never (the devices list only), at most 604800\n"
          "  --introspection-secret S  secret resource servers use for /oauth/introspect\n"
          "                            [QRLOGIN_INTROSPECTION_SECRET]; unset disables it\n"
          "  --dpop optional|required  DPoP (RFC 9449) at the token endpoint [QRLOGIN_DPOP];\n"
          "                            default optional: a proof binds a screen's tokens to\n"
          "                            its key, clients without one get bearer tokens;\n"
          "                            required: a device-code grant without a proof is\n"
          "                            refused (the web screen page is exempt)\n"
          "  --threads N               worker threads [QRLOGIN_THREADS]; default 64, or 2 per\n"
          "                            CPU above 32 CPUs; 1..1024\n"
          "  --max-connections N       open connections at most [QRLOGIN_MAX_CONNECTIONS];\n"
          "                            default: open-file limit minus 256; 1..1000000\n"
          "  --connection-memory B     per-connection buffer in bytes\n"
          "                            [QRLOGIN_CONNECTION_MEMORY]; default 8192, 4096..1048576\n"
          "  --connection-timeout S    idle timeout of connections not held, in seconds\n"
          "                            [QRLOGIN_CONNECTION_TIMEOUT]; default 30, 1..3600\n"
          "  --per-ip-limit N          connections per client address\n"
          "                            [QRLOGIN_PER_IP_LIMIT]; default 256, 0 = unlimited\n"
          "  --rate-limits on|off      every rate limit below [QRLOGIN_RATE_LIMITS]; default\n"
          "                            on (off: benchmarks from one address only)\n"
          "  One rate limit each, as N/SECONDS (N attempts at once, then one every SECONDS / N)\n"
          "  or off, from [QRLOGIN_LIMIT_...] as named; the default after the semicolon:\n"
          "  --limit-device-auth-address  device authorizations per client address; 120/600\n"
          "  --limit-device-auth-client   device authorizations per client_id; 60000/600\n"
          "  --limit-user-code-account    user-code misses per account; 5/900\n"
          "  --limit-user-code-address    user-code misses per client address; 20/900\n"
          "  --limit-sign-in-user         password failures per username; 10/900\n"
          "  --limit-sign-in-address      password failures per client address; 50/900\n"
          "  --limit-approve-account      approvals per account; 30/600\n"
          "  --limit-refresh-device       refresh-token grants per device; 30/600\n"
          "  --access-log              log one JSON line per request (no secrets)\n"
          "  --log-level LEVEL         debug, info (default: audit events), warn or error\n"
          "                            [QRLOGIN_LOG_LEVEL]\n"
          "  --log-file PATH           append the JSON-lines log to PATH, reopened on SIGHUP\n"
          "                            [QRLOGIN_LOG_FILE]; default stderr\n"
          "  --trusted-proxy CIDR,...  proxies whose client-address header is believed\n"
          "                            [QRLOGIN_TRUSTED_PROXY]; default none\n"
          "  --client-ip-header NAME   that header [QRLOGIN_CLIENT_IP_HEADER]; default\n"
          "                            X-Forwarded-For (needs --trusted-proxy)\n"
          "  --metrics-allow CIDR,...  who may GET /metrics [QRLOGIN_METRICS_ALLOW]; default\n"
          "                            127.0.0.0/8,::1; none: nobody\n"
          "  --geoip FILE              country database (MaxMind DB, .mmdb) [QRLOGIN_GEOIP]:\n"
          "                            the phone is told the request's country and its own;\n"
          "                            default none\n"
          "  Detection of phishing kits (docs/security.md, \"Detection\"):\n"
          "  --deny-networks CIDR,...  login requests started from these networks are never\n"
          "                            approved [QRLOGIN_DENY_NETWORKS]; default none\n"
          "  --max-lookup-networks N   networks (IPv4 /24, IPv6 /64) that may open one login\n"
          "                            request; one more blocks it\n"
          "                            [QRLOGIN_MAX_LOOKUP_NETWORKS]; default 3, 0 = no limit\n"
          "  --max-approvers-per-address N  accounts that may approve requests of one screen\n"
          "                            address in 24 hours; one more is blocked\n"
          "                            [QRLOGIN_MAX_APPROVERS_PER_ADDRESS]; default 5, 0 = no\n"
          "                            limit\n"
          "  --demo                    create the account 'demo' and print its password; the\n"
          "                            password is kept in PATH.demo-password (mode 0600) and\n"
          "                            stays the same across restarts\n"
          "  --demo-reset              like --demo, with a fresh random password\n"
          "Standard output: the line 'qrlogin: listening on URL' once connections are\n"
          "accepted, then with --demo the demo credentials; everything else goes to stderr.\n"
          "Exit status: 0 after SIGINT/SIGTERM, 1 runtime failure, 2 usage error.\n",
          f);
}

/* The rate limits `serve` sets, in the order of limit_names[] and their options 3001... */
enum {
    LIMIT_DA_ADDR,
    LIMIT_DA_CLIENT,
    LIMIT_UC_ACCOUNT,
    LIMIT_UC_ADDR,
    LIMIT_SIGNIN_USER,
    LIMIT_SIGNIN_ADDR,
    LIMIT_APPROVE,
    LIMIT_REFRESH,
    LIMIT_COUNT
};
static const char *const limit_names[LIMIT_COUNT] = {
    "limit-device-auth-address", "limit-device-auth-client", "limit-user-code-account",
    "limit-user-code-address",   "limit-sign-in-user",       "limit-sign-in-address",
    "limit-approve-account",     "limit-refresh-device"};

struct serve_opts {
    const char *listen, *public_url, *db, *secret;
    const char *listen_src; /* "--listen" or "QRLOGIN_LISTEN", for messages */
    long long request_ttl, access_ttl, refresh_ttl, session_ttl, threads;
    long long idle_ttl, refresh_max_ttl, notify_window; /* -1: not given */
    long long max_lookup_networks, max_approvers;       /* -1: not given */
    const char *deny_networks;                          /* --deny-networks, checked */
    long long max_conn, conn_mem, conn_timeout, per_ip;
    int access_log, demo, demo_reset, check_config;
    int dpop_required; /* --dpop required */
    /* Operating: logs, proxies, metrics (docs/cli.md). */
    const char *log_file, *trusted_proxy, *client_ip_header, *metrics_allow;
    const char *geoip, *geoip_src; /* the country database, and where its path came from */
    int log_level;
    /* Rate limits (docs/security.md): all off, and each one given (set: 1). */
    int limits_off;
    struct {
        int set;
        qrl_limit l;
    } limit[LIMIT_COUNT];
};

/* A numeric option: its flag, its environment variable, the unit its value counts and its
 * range. A message about a bad value names where the value came from, the flag or the
 * variable, so that a stray variable in a service file is easy to find. */
struct num_opt {
    const char *flag, *env, *unit;
    long long min, max;
    long long *out;
    const char *val, *src; /* the value and where it came from; NULL when not given */
};

static bool num_opt_parse(const struct num_opt *n)
{
    if (n->val == NULL)
        return true;
    if (qrl_cli_parse_seconds(n->val, n->min, n->max, n->out))
        return true;
    qrl_cli_err("%s must be a whole number of %s from %lld to %lld (got '%s')", n->src, n->unit,
                n->min, n->max, n->val);
    return false;
}

/* An option of the operating group (codes 2000..2004): checked here, so that a bad value is a
 * usage error that names where it came from. */
static bool ops_opt(struct serve_opts *o, const qrl_cli_conf *conf, int c)
{
    static const char *const names[] = {"log-level", "log-file", "trusted-proxy",
                                        "client-ip-header", "metrics-allow"};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    const char *from = qrl_cli_conf_from(conf, names[c - 2000]);
    char why[160];

    switch (c) {
    case 2000:
        o->log_level = 0;
        for (int i = 0; i < 4; i++)
            if (strcmp(optarg, levels[i]) == 0)
                o->log_level = QRL_LOG_DEBUG + i;
        if (o->log_level == 0)
            qrl_cli_err("%s must be debug, info, warn or error (got '%s')", from, optarg);
        return o->log_level != 0;
    case 2001:
        o->log_file = optarg;
        return true;
    case 2003:
        if (!qrl_server_header_name_valid(optarg)) {
            qrl_cli_err("%s must be an HTTP header name, like X-Forwarded-For (got '%s')", from,
                        optarg);
            return false;
        }
        o->client_ip_header = optarg;
        return true;
    default:
        if (!qrl_server_cidrs_valid(optarg, why, sizeof why)) {
            qrl_cli_err("%s must be a comma-separated list of addresses or CIDR blocks, like "
                        "10.0.0.0/8,::1: %s",
                        from, why);
            return false;
        }
        if (c == 2002)
            o->trusted_proxy = optarg;
        else
            o->metrics_allow = optarg;
        return true;
    }
}

/* --rate-limits on|off (code 3000) and --limit-NAME N/SECONDS|off (3001...). */
static bool limit_opt(struct serve_opts *o, const qrl_cli_conf *conf, int c)
{
    const char *name = c == 3000 ? "rate-limits" : limit_names[c - 3001];
    const char *from = qrl_cli_conf_from(conf, name);
    long long n, w;
    char *slash;

    if (c == 3000) {
        if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0) {
            qrl_cli_err("%s must be on or off (got '%s')", from, optarg);
            return false;
        }
        o->limits_off = strcmp(optarg, "off") == 0;
        return true;
    }
    o->limit[c - 3001].set = 1;
    if (strcmp(optarg, "off") == 0) {
        o->limit[c - 3001].l = (qrl_limit){0, 1};
        return true;
    }
    slash = strchr(optarg, '/');
    if (slash != NULL) {
        char num[24];
        size_t len = (size_t)(slash - optarg);
        if (len < sizeof num) {
            memcpy(num, optarg, len);
            num[len] = '\0';
            if (qrl_cli_parse_seconds(num, 1, 1000000000, &n) &&
                qrl_cli_parse_seconds(slash + 1, 1, 30 * 86400, &w)) {
                o->limit[c - 3001].l = (qrl_limit){n, w};
                return true;
            }
        }
    }
    qrl_cli_err("%s must be COUNT/SECONDS (COUNT 1 to 1000000000, SECONDS 1 to 2592000), like "
                "120/600, or off (got '%s')",
                from, optarg);
    return false;
}

/* The rate limits of `o` into the core's configuration. */
static void limits_apply(const struct serve_opts *o, qrl_config *cfg)
{
    qrl_limit *dst[LIMIT_COUNT] = {
        [LIMIT_DA_ADDR] = &cfg->device_auth_addr,     [LIMIT_DA_CLIENT] = &cfg->device_auth_client,
        [LIMIT_UC_ACCOUNT] = &cfg->user_code_account, [LIMIT_UC_ADDR] = &cfg->user_code_addr,
        [LIMIT_SIGNIN_USER] = &cfg->sign_in_user,     [LIMIT_SIGNIN_ADDR] = &cfg->sign_in_addr,
        [LIMIT_APPROVE] = &cfg->approve_account,      [LIMIT_REFRESH] = &cfg->refresh_device,
    };

    if (o->limits_off)
        qrl_config_no_limits(cfg);
    for (int i = 0; i < LIMIT_COUNT; i++)
        if (o->limit[i].set)
            *dst[i] = o->limit[i].l;
}

/* The options come from the configuration file, the environment and the command line
 * (cli/config.c reads the first two for every option of `longopts`, QRLOGIN_<NAME> for the
 * environment): read no QRLOGIN_ variable here, and name where a bad value came from with
 * qrl_cli_conf_from(). */
static int parse_opts(int argc, char **argv, struct serve_opts *o, qrl_cli_conf *conf)
{
    enum {
        REQUEST_TTL,
        ACCESS_TTL,
        REFRESH_TTL,
        SESSION_TTL,
        THREADS,
        MAX_CONN,
        CONN_MEM,
        CONN_TIMEOUT,
        PER_IP,
        IDLE_TTL,
        REFRESH_MAX_TTL,
        NOTIFY_WINDOW,
        MAX_LOOKUP_NETWORKS,
        MAX_APPROVERS,
        NUM_OPTS
    };
    struct num_opt num[NUM_OPTS] = {
        [REQUEST_TTL] = {"--request-ttl", "QRLOGIN_REQUEST_TTL", "seconds", 10, 3600,
                         &o->request_ttl},
        [ACCESS_TTL] = {"--access-ttl", "QRLOGIN_ACCESS_TTL", "seconds", 60, 86400 * 30,
                        &o->access_ttl},
        [REFRESH_TTL] = {"--refresh-ttl", "QRLOGIN_REFRESH_TTL", "seconds", 60, 86400 * 3650LL,
                         &o->refresh_ttl},
        [SESSION_TTL] = {"--session-ttl", "QRLOGIN_SESSION_TTL", "seconds", 60, 86400 * 3650LL,
                         &o->session_ttl},
        [THREADS] = {"--threads", "QRLOGIN_THREADS", "threads", 1, 1024, &o->threads},
        [MAX_CONN] = {"--max-connections", "QRLOGIN_MAX_CONNECTIONS", "connections", 1, 1000000,
                      &o->max_conn},
        [CONN_MEM] = {"--connection-memory", "QRLOGIN_CONNECTION_MEMORY", "bytes", 4096, 1048576,
                      &o->conn_mem},
        [CONN_TIMEOUT] = {"--connection-timeout", "QRLOGIN_CONNECTION_TIMEOUT", "seconds", 1, 3600,
                          &o->conn_timeout},
        [PER_IP] = {"--per-ip-limit", "QRLOGIN_PER_IP_LIMIT", "connections", 0, 1000000,
                    &o->per_ip},
        [IDLE_TTL] = {"--device-idle-ttl", "QRLOGIN_DEVICE_IDLE_TTL", "seconds", 0,
                      86400 * 3650LL, &o->idle_ttl},
        [REFRESH_MAX_TTL] = {"--refresh-max-ttl", "QRLOGIN_REFRESH_MAX_TTL", "seconds", 0,
                             86400 * 3650LL, &o->refresh_max_ttl},
        [NOTIFY_WINDOW] = {"--notify-revoke-window", "QRLOGIN_NOTIFY_REVOKE_WINDOW", "seconds", 0,
                           7 * 86400, &o->notify_window},
        [MAX_LOOKUP_NETWORKS] = {"--max-lookup-networks", "QRLOGIN_MAX_LOOKUP_NETWORKS",
                                 "networks", 0, 1000000, &o->max_lookup_networks},
        [MAX_APPROVERS] = {"--max-approvers-per-address", "QRLOGIN_MAX_APPROVERS_PER_ADDRESS",
                           "accounts", 0, 1000000, &o->max_approvers},
    };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"public-url", required_argument, NULL, 'u'},
        {"db", required_argument, NULL, 'd'},
        {"request-ttl", required_argument, NULL, 1000 + REQUEST_TTL},
        {"access-ttl", required_argument, NULL, 1000 + ACCESS_TTL},
        {"refresh-ttl", required_argument, NULL, 1000 + REFRESH_TTL},
        {"session-ttl", required_argument, NULL, 1000 + SESSION_TTL},
        {"introspection-secret", required_argument, NULL, 'i'},
        {"dpop", required_argument, NULL, 4000},
        {"threads", required_argument, NULL, 1000 + THREADS},
        {"access-log", no_argument, NULL, 'L'},
        {"max-connections", required_argument, NULL, 1000 + MAX_CONN},
        {"connection-memory", required_argument, NULL, 1000 + CONN_MEM},
        {"connection-timeout", required_argument, NULL, 1000 + CONN_TIMEOUT},
        {"per-ip-limit", required_argument, NULL, 1000 + PER_IP},
        {"device-idle-ttl", required_argument, NULL, 1000 + IDLE_TTL},
        {"refresh-max-ttl", required_argument, NULL, 1000 + REFRESH_MAX_TTL},
        {"notify-revoke-window", required_argument, NULL, 1000 + NOTIFY_WINDOW},
        {"demo", no_argument, NULL, 'D'},
        {"demo-reset", no_argument, NULL, 'R'},
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"log-level", required_argument, NULL, 2000},
        {"log-file", required_argument, NULL, 2001},
        {"trusted-proxy", required_argument, NULL, 2002},
        {"client-ip-header", required_argument, NULL, 2003},
        {"metrics-allow", required_argument, NULL, 2004},
        {"geoip", required_argument, NULL, 2005},
        {"deny-networks", required_argument, NULL, 2006},
        {"max-lookup-networks", required_argument, NULL, 1000 + MAX_LOOKUP_NETWORKS},
        {"max-approvers-per-address", required_argument, NULL, 1000 + MAX_APPROVERS},
        {"rate-limits", required_argument, NULL, 3000},
        {"limit-device-auth-address", required_argument, NULL, 3001 + LIMIT_DA_ADDR},
        {"limit-device-auth-client", required_argument, NULL, 3001 + LIMIT_DA_CLIENT},
        {"limit-user-code-account", required_argument, NULL, 3001 + LIMIT_UC_ACCOUNT},
        {"limit-user-code-address", required_argument, NULL, 3001 + LIMIT_UC_ADDR},
        {"limit-sign-in-user", required_argument, NULL, 3001 + LIMIT_SIGNIN_USER},
        {"limit-sign-in-address", required_argument, NULL, 3001 + LIMIT_SIGNIN_ADDR},
        {"limit-approve-account", required_argument, NULL, 3001 + LIMIT_APPROVE},
        {"limit-refresh-device", required_argument, NULL, 3001 + LIMIT_REFRESH},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    if ((c = qrl_cli_conf_load(conf, longopts, "h", argc, argv)) != 0)
        return c;
    o->listen = "127.0.0.1:8080";
    o->listen_src = "the default";
    o->per_ip = 256;
    o->idle_ttl = o->refresh_max_ttl = o->notify_window = -1;
    o->max_lookup_networks = o->max_approvers = -1;
    o->db = "qrlogin.db";
    optind = 1;
    while ((c = getopt_long(conf->argc, conf->argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            o->listen = optarg;
            o->listen_src = qrl_cli_conf_from(conf, "listen");
            break;
        case 'u':
            o->public_url = optarg;
            break;
        case 'd':
            o->db = optarg;
            break;
        case 'i':
            o->secret = optarg;
            break;
        case 4000:
            if (strcmp(optarg, "optional") != 0 && strcmp(optarg, "required") != 0) {
                qrl_cli_err("%s must be optional or required (got '%s')",
                            qrl_cli_conf_from(conf, "dpop"), optarg);
                return 2;
            }
            o->dpop_required = strcmp(optarg, "required") == 0;
            break;
        case 'L':
            o->access_log = 1;
            break;
        case 'D':
            o->demo = 1;
            break;
        case 'R':
            o->demo = o->demo_reset = 1;
            break;
        case 'c': /* read by qrl_cli_conf_load() */
            break;
        case 'C':
            o->check_config = 1;
            break;
        case 'h':
            serve_usage(stdout);
            return 0;
        case 2000:
        case 2001:
        case 2002:
        case 2003:
        case 2004:
            if (!ops_opt(o, conf, c))
                return 2;
            break;
        case 2005:
            o->geoip = optarg[0] != '\0' ? optarg : NULL;
            o->geoip_src = qrl_cli_conf_from(conf, "geoip");
            break;
        case 2006: {
            char why[160];
            if (!qrl_server_cidrs_valid(optarg, why, sizeof why)) {
                qrl_cli_err("%s must be a comma-separated list of addresses or CIDR blocks, like "
                            "203.0.113.0/24,2001:db8::/32: %s",
                            qrl_cli_conf_from(conf, "deny-networks"), why);
                return 2;
            }
            o->deny_networks = optarg;
            break;
        }
        default:
            if (c >= 3000 && c <= 3000 + LIMIT_COUNT) {
                if (!limit_opt(o, conf, c))
                    return 2;
                break;
            }
            if (c >= 1000 && c < 1000 + NUM_OPTS) {
                num[c - 1000].val = optarg;
                num[c - 1000].src = qrl_cli_conf_from(conf, num[c - 1000].flag + 2);
                break;
            }
            serve_usage(stderr);
            return 2;
        }
    }
    if (optind < conf->argc) {
        qrl_cli_err("serve: unexpected argument '%s'", conf->argv[optind]);
        return 2;
    }
    for (int i = 0; i < NUM_OPTS; i++)
        if (!num_opt_parse(&num[i]))
            return 2;
    /* 0 means never; a lifetime under an hour would sign devices out while in use. */
    for (int i = IDLE_TTL; i <= REFRESH_MAX_TTL; i++)
        if (num[i].val != NULL && *num[i].out > 0 && *num[i].out < 3600) {
            qrl_cli_err("%s must be 0 (never) or from 3600 to 315360000 seconds (got '%s')",
                        num[i].src, num[i].val);
            return 2;
        }
    if (o->client_ip_header != NULL && o->trusted_proxy == NULL) {
        qrl_cli_err("%s has no effect without --trusted-proxy: name the proxies whose header "
                    "is to be believed",
                    qrl_cli_conf_from(conf, "client-ip-header"));
        return 2;
    }
    return -1;
}

/* Splits "HOST:PORT" / "[V6]:PORT" into a numeric host (in buf) and port, and fills `sa` for
 * the probe in can_bind(). Host names are refused: the server binds one address, and a name
 * may stand for several. */
static bool split_listen(const char *s, char *buf, size_t len, unsigned short *port,
                         struct sockaddr_storage *sa)
{
    struct sockaddr_in *in4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
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
    memset(sa, 0, sizeof *sa);
    if (s[0] != '[' && inet_pton(AF_INET, buf, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(*port);
        return true;
    }
    if (s[0] == '[' && inet_pton(AF_INET6, buf, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(*port);
        return true;
    }
    return false;
}

/* Binds a socket to the listen address the way libmicrohttpd will (SO_REUSEADDR, IPv6 only
 * for an IPv6 address) and lets it go again, so that a taken port or an address this machine
 * does not have is reported with its real reason before anything starts. The server binds
 * its own socket a moment later; the probe only makes the common failures readable. */
static bool can_bind(const struct sockaddr_storage *sa, const char *listen, const char *src)
{
    socklen_t len =
        sa->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1, err = 0;
    const char *hint = "";

    if (fd < 0)
        return true; /* nothing learnt; the server reports what it finds */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    if (sa->ss_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    if (bind(fd, (const struct sockaddr *)sa, len) != 0)
        err = errno;
    close(fd);
    if (err == 0)
        return true;
    if (err == EADDRINUSE)
        hint = ": another program listens on that port; choose another port";
    else if (err == EADDRNOTAVAIL)
        hint = ": this machine has no such address";
    else if (err == EACCES)
        hint = ": ports below 1024 need privileges";
    qrl_cli_err("cannot listen on %s (from %s): %s%s", listen, src, strerror(err), hint);
    return false;
}

/* The country database (--geoip) opens: checked before the server is made, so that a wrong
 * path or a file of another kind stops the start with the file and the reason. */
static bool geoip_ok(const struct serve_opts *o)
{
    char why[512];

    if (o->geoip == NULL || qrl_server_geoip_valid(o->geoip, why, sizeof why))
        return true;
    qrl_cli_err("%s (from %s)", why, o->geoip_src);
    return false;
}

/* The demo account's password is kept next to the database, readable by the owner only, so
 * that a restart keeps the password the user already typed into a phone. */
#define DEMO_PW_SUFFIX ".demo-password"
#define DEMO_PW_LEN 16 /* 12 random bytes in base64url */

static bool demo_pw_load(const char *path, char *pw, size_t len)
{
    FILE *f = fopen(path, "r");
    bool ok;

    if (f == NULL)
        return false;
    ok = fgets(pw, (int)len, f) != NULL;
    fclose(f);
    if (ok)
        pw[strcspn(pw, "\r\n")] = '\0';
    return ok && strlen(pw) == DEMO_PW_LEN &&
           strspn(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
               DEMO_PW_LEN;
}

/* Creates the account `demo`, or sets its password: the one kept in DB.demo-password unless
 * `reset` (or there is none yet), else a fresh random one, which is then kept. */
static int demo_account(qrl_core *core, const char *db, int reset)
{
    unsigned char raw[12];
    char pw[64], path[4096], err[256];
    bool fresh = false;
    qrl_err rc;

    /* A PostgreSQL database has no directory of its own to keep the password in. */
    if (qrl_cli_db_is_url(db))
        path[0] = '\0';
    else
        snprintf(path, sizeof path, "%s" DEMO_PW_SUFFIX, db);
    if (reset || path[0] == '\0' || !demo_pw_load(path, pw, sizeof pw)) {
        randombytes_buf(raw, sizeof raw);
        sodium_bin2base64(pw, sizeof pw, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        fresh = true;
    }
    rc = qrl_account_add(core, "demo", "Demo User", pw, NULL);
    if (rc == QRL_ERR_EXISTS) /* the kept password again, so that the two always agree */
        rc = qrl_account_set_password(core, "demo", pw);
    if (rc != QRL_OK) {
        qrl_cli_err("cannot create the demo account: %s", qrl_strerror(rc));
        sodium_memzero(pw, sizeof pw);
        return 1;
    }
    if (fresh && path[0] != '\0' && !qrl_cli_write_private(path, pw, err, sizeof err))
        qrl_cli_err("the demo password will change at the next start: %s", err);
    printf("qrlogin: demo account: username 'demo', password '%s'\n", pw);
    fflush(stdout);
    if (path[0] != '\0')
        qrl_cli_err("the demo password is kept in %s; --demo-reset makes a new one", path);
    else
        qrl_cli_err("with a PostgreSQL database the demo password changes at every start");
    sodium_memzero(pw, sizeof pw);
    return 0;
}

/* Waits for SIGINT/SIGTERM, sweeping once a minute; SIGHUP reopens the log file (after
 * logrotate moved it). */
static void run_until_signal(qrl_core *core, qrl_server *srv, const sigset_t *set)
{
    for (;;) {
        struct timespec ts = {.tv_sec = 60};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM)
            return;
        if (sig == SIGHUP) {
            (void)qrl_server_log_reopen(srv);
            continue;
        }
        (void)qrl_core_sweep(core);
    }
}

/* --check-config's output, with the password of a PostgreSQL URI shown as "***" (the
 * configuration keeps the value as given; only what is printed changes). */
static void conf_print_redacted(qrl_cli_conf *conf, const char *db)
{
    char shown[1024];
    const char *saved = NULL;
    int i;

    qrl_cli_db_display(db, shown, sizeof shown);
    for (i = 0; i < conf->nopts && strcmp(conf->opts[i].name, "db") != 0; i++)
        ;
    if (i < conf->nopts && conf->value[i] != NULL) {
        saved = conf->value[i];
        conf->value[i] = shown;
    }
    qrl_cli_conf_print(conf, stdout);
    if (saved != NULL)
        conf->value[i] = saved;
}

int qrl_cli_serve(int argc, char **argv)
{
    struct serve_opts o = {0};
    qrl_cli_conf conf = {0};
    qrl_server_config scfg;
    qrl_config cfg;
    qrl_store *st = NULL;
    qrl_core *core = NULL;
    qrl_server *srv = NULL;
    char host[64], err[256] = "";
    struct sockaddr_storage sa;
    sigset_t set;
    int rc = 1, p, lockfd = -1;
    qrl_err e;

    if ((p = parse_opts(argc, argv, &o, &conf)) >= 0) {
        rc = p;
        goto out;
    }
    qrl_server_config_defaults(&scfg);
    if (!split_listen(o.listen, host, sizeof host, &scfg.port, &sa)) {
        qrl_cli_err("%s must be a numeric address and a port, like 127.0.0.1:8080 or "
                    "[::1]:8080 (got '%s')",
                    o.listen_src, o.listen);
        rc = 2;
        goto out;
    }
    /* --check-config: every value is checked above; the database path as at start, but
     * nothing is opened, bound or listened on, so it also checks the file of a running
     * server. */
    if (o.check_config) {
        if (!geoip_ok(&o)) {
            rc = 2;
            goto out;
        }
        rc = qrl_cli_db_writable(o.db) ? 0 : 2;
        if (rc == 0)
            conf_print_redacted(&conf, o.db);
        else if (qrl_cli_conf_from(&conf, "db") != NULL)
            qrl_cli_err("(the database path comes from %s)", qrl_cli_conf_from(&conf, "db"));
        goto out;
    }
    if (!can_bind(&sa, o.listen, o.listen_src) || !qrl_cli_db_writable(o.db) || !geoip_ok(&o))
        goto out;
    scfg.listen_host = host;
    scfg.public_url = o.public_url;
    scfg.introspection_secret = o.secret;
    scfg.dpop_required = o.dpop_required;
    scfg.threads = (unsigned)o.threads;
    scfg.access_log = o.access_log;
    scfg.connection_limit = (unsigned)o.max_conn;
    scfg.connection_memory = (size_t)o.conn_mem;
    scfg.connection_timeout_s = (unsigned)o.conn_timeout;
    scfg.per_ip_limit = (unsigned)o.per_ip;
    scfg.log_level = o.log_level;
    scfg.log_file = o.log_file;
    scfg.trusted_proxies = o.trusted_proxy;
    scfg.client_ip_header = o.client_ip_header;
    scfg.metrics_allow = o.metrics_allow;
    scfg.geoip_path = o.geoip;
    scfg.deny_networks = o.deny_networks;

    /* Signals are taken synchronously by sigtimedwait; block them before any thread starts so
     * that every thread inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    e = qrl_store_open(o.db, &st, err, sizeof err);
    if (e != QRL_OK) {
        char shown[1024];
        qrl_cli_db_display(o.db, shown, sizeof shown);
        qrl_cli_err("cannot open database %s: %s", shown, err[0] ? err : qrl_strerror(e));
        goto out;
    }
    /* One server per database file: the SQLite store keeps the user codes of live requests
     * in memory, and passkey ceremonies and held requests live in this process
     * (docs/architecture.md). An flock() of the file, which SQLite's own (fcntl) locks do not
     * see, held until exit; `qrlogin account` takes none, and what it changes is seen at once
     * (the store's change stamps). A PostgreSQL database is made for several servers: no
     * lock. */
    if (!qrl_cli_db_is_url(o.db) && ((lockfd = open(o.db, O_RDONLY | O_CLOEXEC)) < 0 ||
                                     flock(lockfd, LOCK_EX | LOCK_NB) != 0)) {
        if (lockfd >= 0 && errno == EWOULDBLOCK)
            qrl_cli_err("%s is in use by another qrlogin serve (one server per database file)",
                        o.db);
        else
            qrl_cli_err("cannot lock %s: %s", o.db, strerror(errno));
        goto out;
    }
    scfg.store = st; /* for /readyz and the store's metrics */
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
    if (o.idle_ttl >= 0)
        cfg.device_idle_ttl_s = o.idle_ttl;
    if (o.refresh_max_ttl >= 0)
        cfg.refresh_max_ttl_s = o.refresh_max_ttl;
    if (o.notify_window >= 0)
        cfg.notice_revoke_window_s = o.notify_window;
    limits_apply(&o, &cfg);
    if (o.max_lookup_networks >= 0)
        cfg.max_lookup_networks = o.max_lookup_networks;
    if (o.max_approvers >= 0)
        cfg.max_approvers_per_address = o.max_approvers;
    cfg.network_denied = qrl_server_network_denied;
    cfg.network_denied_ud = srv;
    cfg.on_change = qrl_server_on_change;
    cfg.on_change_ud = srv;
    qrl_server_handoff(srv, &cfg.handoff);
    e = qrl_core_new(&cfg, st, &core);
    if (e != QRL_OK) {
        qrl_cli_err("cannot start: %s", qrl_strerror(e));
        goto out;
    }
    e = qrl_server_listen(srv, core, err, sizeof err);
    if (e != QRL_OK) {
        qrl_cli_err("%s", err);
        goto out;
    }
    if (o.secret == NULL)
        qrl_cli_err("introspection is disabled (no --introspection-secret)");
    printf("qrlogin: listening on %s\n", qrl_server_public_url(srv));
    fflush(stdout);
    /* After the line above, which stays the first line on stdout (scripts read it). */
    if (o.demo && demo_account(core, o.db, o.demo_reset) != 0)
        goto out;
    if (o.demo)
        qrl_cli_err("try it: open %s/ on the TV or laptop, and scan its QR code with a phone "
                    "(or open %s/device on the phone and type the code)",
                    qrl_server_public_url(srv), qrl_server_public_url(srv));
    if (o.demo)
        qrl_cli_err("or from two terminals: qrlogin phone login --server %s demo, then "
                    "qrlogin tv --server %s --qr-png qr.png and qrlogin phone approve --image "
                    "qr.png",
                    qrl_server_public_url(srv), qrl_server_public_url(srv));
    run_until_signal(core, srv, &set);
    qrl_cli_err("shutting down");
    rc = 0;
out:
    /* Changes other nodes make reach the server through the core's hook on the store (store.h,
     * set_notify), at any moment: removed before the server goes, so that none arrives at a
     * server already freed. Its held requests are answered by qrl_server_stop anyway. */
    if (core != NULL && st->m->set_notify != NULL)
        (void)st->m->set_notify(st, NULL, NULL);
    qrl_server_stop(srv);
    qrl_core_free(core);
    if (st != NULL)
        st->m->close(st);
    if (lockfd >= 0)
        close(lockfd);
    qrl_cli_conf_free(&conf);
    return rc;
}
