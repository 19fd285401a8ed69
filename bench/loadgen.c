/* SPDX-License-Identifier: MIT */
/*
 * loadgen: the benchmark suite's own HTTP client for what wrk cannot express. One thread, one
 * epoll set, raw non-blocking sockets and a tiny HTTP/1.1 writer and response parser (status
 * line, Content-Length, keep-alive; no pipelining). That keeps 19,000 open connections at about
 * 5 KiB each on the client side and timestamps each response the moment its last byte is read,
 * with no library queue in between. Subcommands, each bounded in count and in time:
 *
 *   create  make N login requests (POST /oauth/device_authorization) with C connections and
 *           write "device_code scan_secret user_code" lines to a file (setup for the poll,
 *           held and wake scenarios);
 *   held    hold N token requests (Prefer: wait) for N distinct pending login requests from
 *           source addresses spread over 127.0.0.0/8, check that none is answered, and report
 *           the server's RSS growth per held request and its CPU use while they are held;
 *   wake    with B background held requests open, repeatedly hold a token request for a fresh
 *           login request, approve it through the phone API (device-key signature) and time
 *           from the approve response to the held response (signed: it may come first), from
 *           sending the approve to the held response, and from the claim response to the
 *           "scanned" wake-up;
 *   flows   run C concurrent complete flows (device authorization, claim, signed approve,
 *           redeem) and report flows per second over several timed windows.
 *
 * Two nodes: with --phone-port, wake and flows send the phone's requests (sign-in, device key,
 * claim, approve) to that port and the screen's (device authorization, token requests, the
 * background holds) to --port: the screen on one node, the phone on another, both on one
 * database. Without it both go to --port.
 *
 * Output for bench/run.sh: "key=value" lines on standard output; progress and problems on
 * standard error. Run "loadgen help" for the options.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#define IN_CAP 4096
#define OUT_CAP 1024
#define MAX_CODE 128
#define CLIENT_ID "bench"
#define GRANT "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code"

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                               */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void note(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Copies the string value of "key" from compact JSON (as the server writes it) into out. */
static bool jstr(const char *body, const char *key, char *out, size_t len)
{
    char pat[64];
    const char *p, *e;

    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    p = strstr(body, pat);
    if (p == NULL)
        return false;
    p += strlen(pat);
    e = strchr(p, '"');
    if (e == NULL || (size_t)(e - p) >= len)
        return false;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return true;
}

static bool jint(const char *body, const char *key, long long *out)
{
    char pat[64];
    const char *p;

    snprintf(pat, sizeof pat, "\"%s\":", key);
    p = strstr(body, pat);
    if (p == NULL)
        return false;
    *out = strtoll(p + strlen(pat), NULL, 10);
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t pct(const int64_t *v, size_t n, double p)
{
    size_t k;

    if (n == 0)
        return 0;
    k = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (k < 1)
        k = 1;
    if (k > n)
        k = n;
    return v[k - 1];
}

/* A "Name:   N kB" field of /proc/<pid>/status (VmRSS, RssAnon, RssFile), in KiB; -1 if absent. */
static long long proc_status_kb(int pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    long long kb = -1;
    FILE *f;

    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, flen) == 0 && line[flen] == ':')
            kb = strtoll(line + flen + 1, NULL, 10);
    fclose(f);
    return kb;
}

/* utime + stime of a process, in clock ticks; with `children` also cutime + cstime (the time of
 * its children that ended). -1 if it is gone. */
static long long proc_ticks(int pid, bool children)
{
    char path[64], buf[2048], *p;
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &ut, &st,
               &cut, &cst) != 4)
        return -1;
    return (long long)(ut + st + (children ? cut + cst : 0));
}

static long long proc_cpu_ticks(int pid)
{
    return proc_ticks(pid, false);
}

/* PostgreSQL's CPU time: the postmaster with its ended children, and every living child. */
static long long pg_ticks(int pm)
{
    char path[96], buf[8192];
    long long t = proc_ticks(pm, true), k;
    FILE *f;
    size_t n;

    if (t < 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", pm, pm);
    f = fopen(path, "r");
    if (f == NULL)
        return t;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (char *q = buf, *e; *q != '\0'; q = e) {
        long pid = strtol(q, &e, 10);
        if (e == q)
            break;
        if (pid > 0 && (k = proc_ticks((int)pid, true)) > 0)
            t += k;
    }
    return t;
}

/* The busy clock ticks of CPU 0 and CPU 1 (all but idle and iowait), as bench/run.sh counts. */
static void cpu_busy(long long busy[2])
{
    char line[512];
    FILE *f = fopen("/proc/stat", "r");

    busy[0] = busy[1] = 0;
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long long v[8] = {0};
        int cpu;
        if (sscanf(line, "cpu%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]) == 9 &&
            cpu >= 0 && cpu < 2)
            busy[cpu] = (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    }
    fclose(f);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Connections and the event loop                                                              */

typedef struct conn conn;
typedef void (*done_fn)(conn *c);

/* A server to talk to: its address and the Host header for it. */
struct target {
    struct sockaddr_in sa;
    char host[32];
};

enum { C_CLOSED, C_CONNECTING, C_BUSY, C_IDLE };

struct conn {
    int fd;
    int state;
    uint32_t src;     /* source IPv4 address (host order); 0 = let the kernel choose */
    bool pending;     /* a request is queued or in flight */
    bool complete;    /* the last response was read completely */
    bool failed;      /* connection failed or closed before the response was complete */
    bool close_after; /* the server said Connection: close */
    size_t out_len, out_off;
    size_t in_len, hdr_len;
    long long clen; /* -1: until the server closes */
    int status;
    int64_t t_sent, t_done;
    unsigned long finished; /* responses finished so far (complete or failed) */
    done_fn on_done;
    void *owner;
    int tag;
    const struct target *to; /* where it connects; NULL: the screen's server */
    char out[OUT_CAP];
    char in[IN_CAP + 1];
};

static int g_ep = -1;
/* The screen's server (--port) and the phone's (--phone-port; the same unless given). */
static struct target g_screen, g_phone;
static long long g_conn_errors, g_closed_early;

static void target_init(struct target *t, unsigned short port)
{
    t->sa.sin_family = AF_INET;
    t->sa.sin_port = htons(port);
    t->sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(t->host, sizeof t->host, "127.0.0.1:%u", (unsigned)port);
}

static void ev_init(unsigned short port, unsigned short phone_port)
{
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0)
        die("epoll_create1: %s", strerror(errno));
    target_init(&g_screen, port);
    target_init(&g_phone, phone_port != 0 ? phone_port : port);
}

static const struct target *conn_target(const conn *c)
{
    return c->to != NULL ? c->to : &g_screen;
}

static void conn_close(conn *c)
{
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    c->state = C_CLOSED;
}

/* The response is over (complete or failed): stamp it and tell the owner. */
static void conn_finish(conn *c, bool ok)
{
    c->t_done = now_ns();
    c->finished++;
    c->pending = false;
    c->complete = ok;
    c->failed = !ok;
    if (!ok) {
        c->status = -1;
        conn_close(c);
    } else if (c->state == C_BUSY) {
        c->state = C_IDLE;
    }
    if (c->on_done != NULL)
        c->on_done(c);
}

static bool conn_open(conn *c)
{
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const struct target *t = conn_target(c);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};

    if (fd < 0) {
        g_conn_errors++;
        return false;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (c->src != 0) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(c->src)};
        /* Ports are then chosen at connect time per 4-tuple, not reserved at bind time. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            close(fd);
            g_conn_errors++;
            return false;
        }
    }
    if (connect(fd, (const struct sockaddr *)&t->sa, sizeof t->sa) != 0 && errno != EINPROGRESS) {
        close(fd);
        g_conn_errors++;
        return false;
    }
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close(fd);
        g_conn_errors++;
        return false;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    return true;
}

static void conn_flush(conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_finish(c, false);
        return;
    }
}

/* Parses what has arrived; finishes the response when it is complete. */
static void conn_parse(conn *c)
{
    if (c->hdr_len == 0) {
        char *e = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        if (e == NULL)
            return;
        c->hdr_len = (size_t)(e - c->in) + 4;
        c->status = (c->in_len > 12 && strncmp(c->in, "HTTP/1.", 7) == 0) ? atoi(c->in + 9) : 0;
        c->clen = -1;
        /* Header lines start after each "\n" of the header block (the first is the status). */
        for (const char *p = memchr(c->in, '\n', (size_t)(e - c->in)); p != NULL && p + 1 < e;
             p = memchr(p + 1, '\n', (size_t)(e - p - 1))) {
            if (strncasecmp(p + 1, "Content-Length:", 15) == 0)
                c->clen = strtoll(p + 16, NULL, 10);
            else if (strncasecmp(p + 1, "Connection: close", 17) == 0)
                c->close_after = true;
        }
        if (c->status == 204 || c->status == 304 || (c->status >= 100 && c->status < 200))
            c->clen = 0;
    }
    if (c->clen >= 0 && c->in_len >= c->hdr_len + (size_t)c->clen) {
        c->in[c->hdr_len + (size_t)c->clen] = '\0';
        if (c->close_after)
            conn_close(c);
        conn_finish(c, true);
    }
}

static void conn_readable(conn *c)
{
    for (;;) {
        ssize_t n;
        unsigned long finished = c->finished;
        if (c->in_len >= IN_CAP) {
            note("response larger than %d bytes", IN_CAP);
            conn_finish(c, false);
            return;
        }
        n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
        if (n > 0) {
            if (!c->pending) {
                /* Bytes nobody asked for: count it as an answer to a request we thought done. */
                c->in_len = 0;
                continue;
            }
            c->in_len += (size_t)n;
            c->in[c->in_len] = '\0';
            conn_parse(c);
            /* A finished response ends the read: the server sends nothing unasked, and the
             * next response (if on_done sent a request) comes with its own edge. Reading on to
             * EAGAIN would cost the load generator a system call per request. */
            if (c->fd < 0 || !c->pending || c->finished != finished)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF or error. */
        if (c->pending) {
            if (c->hdr_len != 0 && c->clen < 0) {
                c->in[c->in_len] = '\0';
                conn_finish(c, true); /* body delimited by the close */
                conn_close(c);
            } else {
                g_closed_early++;
                conn_finish(c, false);
            }
        } else {
            conn_close(c);
        }
        return;
    }
}

static void on_event(conn *c, uint32_t events)
{
    if (c->state == C_CONNECTING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & EPOLLERR)) {
            g_conn_errors++;
            if (c->pending)
                conn_finish(c, false);
            else
                conn_close(c);
            return;
        }
        c->state = c->pending ? C_BUSY : C_IDLE;
    }
    if (c->fd >= 0 && c->pending && (events & EPOLLOUT))
        conn_flush(c);
    if (c->fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        conn_readable(c);
}

/* Queues a request (full HTTP text in c->out) and starts sending it. */
static void conn_send(conn *c, size_t len)
{
    c->out_len = len;
    c->out_off = 0;
    c->in_len = 0;
    c->hdr_len = 0;
    c->clen = -1;
    c->status = 0;
    c->close_after = false;
    c->pending = true;
    c->complete = false;
    c->failed = false;
    c->t_sent = now_ns();
    if (c->fd < 0 && !conn_open(c)) {
        conn_finish(c, false);
        return;
    }
    if (c->state == C_IDLE) {
        c->state = C_BUSY;
        conn_flush(c);
    }
}

static size_t fmt_post(conn *c, const char *path, const char *ctype, const char *extra,
                       const char *body)
{
    const char *host = conn_target(c)->host;
    int n = snprintf(c->out, OUT_CAP,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n%sContent-Length: "
                     "%zu\r\n\r\n%s",
                     path, host, ctype, extra != NULL ? extra : "", strlen(body), body);
    if (n < 0 || n >= OUT_CAP)
        die("request too long");
    return (size_t)n;
}

static void send_device_auth(conn *c)
{
    conn_send(c, fmt_post(c, "/oauth/device_authorization", "application/x-www-form-urlencoded",
                          NULL, "client_id=" CLIENT_ID "&device_name=TV&device_kind=tv"));
}

static void send_token(conn *c, const char *device_code, int wait_s)
{
    char body[256], extra[32] = "";

    snprintf(body, sizeof body, "grant_type=%s&device_code=%s&client_id=" CLIENT_ID, GRANT,
             device_code);
    if (wait_s > 0)
        snprintf(extra, sizeof extra, "Prefer: wait=%d\r\n", wait_s);
    conn_send(c, fmt_post(c, "/oauth/token", "application/x-www-form-urlencoded", extra, body));
}

static const char *resp_body(const conn *c)
{
    return c->hdr_len != 0 ? c->in + c->hdr_len : "";
}

/* Runs the event loop until `until` (ns, monotonic) or until *stop becomes true. */
static void ev_run(int64_t until, const bool *stop)
{
    struct epoll_event evs[1024];

    while (stop == NULL || !*stop) {
        int64_t left = until - now_ns();
        int n, ms;
        if (left <= 0)
            return;
        ms = (int)((left + 999999) / 1000000);
        n = epoll_wait(g_ep, evs, 1024, ms > 100 ? 100 : ms);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
}

/* Waits for one connection's response, serving every other connection meanwhile. */
static bool await(conn *c, double timeout_s)
{
    int64_t until = now_ns() + (int64_t)(timeout_s * 1e9);
    bool done = false;

    while (c->pending && now_ns() < until)
        ev_run(now_ns() + 1000000, &done);
    return !c->pending && c->complete;
}

/* ------------------------------------------------------------------------------------------ */
/* Options                                                                                     */

struct opts {
    unsigned short port, phone_port;
    long n, conc, skip, sources, background, samples, warm_samples, warm_polls, wait_s, runs;
    double time_limit, settle, cpu_window, warmup, duration;
    int pid;
    bool shutdown_check;
    const char *codes, *out, *user, *password_file, *cpu_pids;
    int pg_pid;
};

static void usage(void)
{
    fputs("usage: loadgen create --port P --n N [--conc C] --out FILE [--time-limit S]\n"
          "       loadgen held   --port P --codes FILE --n N --pid PID [--warm-polls W]\n"
          "                      [--sources K] [--wait S] [--settle S] [--cpu-window S]\n"
          "                      [--shutdown-check] [--time-limit S]\n"
          "       loadgen wake   --port P [--phone-port Q] --codes FILE --background B\n"
          "                      --samples N [--warm-samples W] [--sources K] --user U\n"
          "                      --password-file F [--time-limit S]\n"
          "       loadgen flows  --port P [--phone-port Q] --conc C --user U --password-file F\n"
          "                      [--warmup S] [--runs R] [--duration S]\n"
          "                      [--cpu-pids \"PID...\" [--pg-pid PM]]\n"
          "--phone-port: the phone's requests (sign-in, device key, claim, approve) go to port Q,\n"
          "the screen's to P (two nodes on one database); default: all to P.\n",
          stderr);
    exit(2);
}

static void parse_opts(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.conc = 64,
                       .sources = 64,
                       .warm_samples = 50,
                       .warm_polls = 2000,
                       .wait_s = 60,
                       .runs = 3,
                       .time_limit = 120,
                       .settle = 2,
                       .cpu_window = 3,
                       .warmup = 2,
                       .duration = 5};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--shutdown-check") == 0) {
            o->shutdown_check = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--port") == 0)
            o->port = (unsigned short)atoi(v);
        else if (strcmp(a, "--phone-port") == 0)
            o->phone_port = (unsigned short)atoi(v);
        else if (strcmp(a, "--n") == 0)
            o->n = atol(v);
        else if (strcmp(a, "--conc") == 0)
            o->conc = atol(v);
        else if (strcmp(a, "--skip") == 0)
            o->skip = atol(v);
        else if (strcmp(a, "--sources") == 0)
            o->sources = atol(v);
        else if (strcmp(a, "--background") == 0)
            o->background = atol(v);
        else if (strcmp(a, "--samples") == 0)
            o->samples = atol(v);
        else if (strcmp(a, "--warm-samples") == 0)
            o->warm_samples = atol(v);
        else if (strcmp(a, "--warm-polls") == 0)
            o->warm_polls = atol(v);
        else if (strcmp(a, "--wait") == 0)
            o->wait_s = atol(v);
        else if (strcmp(a, "--runs") == 0)
            o->runs = atol(v);
        else if (strcmp(a, "--time-limit") == 0)
            o->time_limit = atof(v);
        else if (strcmp(a, "--settle") == 0)
            o->settle = atof(v);
        else if (strcmp(a, "--cpu-window") == 0)
            o->cpu_window = atof(v);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = atof(v);
        else if (strcmp(a, "--duration") == 0)
            o->duration = atof(v);
        else if (strcmp(a, "--pid") == 0)
            o->pid = atoi(v);
        else if (strcmp(a, "--cpu-pids") == 0)
            o->cpu_pids = v;
        else if (strcmp(a, "--pg-pid") == 0)
            o->pg_pid = atoi(v);
        else if (strcmp(a, "--codes") == 0)
            o->codes = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--user") == 0)
            o->user = v;
        else if (strcmp(a, "--password-file") == 0)
            o->password_file = v;
        else
            usage();
    }
    if (o->port == 0 || o->conc < 1 || o->conc > 4096 || o->sources < 1 || o->sources > 250 ||
        o->runs < 1 || o->runs > 20 || o->time_limit <= 0 || o->time_limit > 600 ||
        o->duration <= 0 || o->duration > 60 || o->warmup < 0 || o->warmup > 60)
        usage();
    ev_init(o->port, o->phone_port);
}

/* Device codes file: one "device_code scan_secret user_code" per line. */
typedef struct {
    char dc[MAX_CODE];
} code_t;

static code_t *load_codes(const char *path, long need, long *have)
{
    FILE *f = fopen(path, "r");
    char line[512];
    code_t *v;
    long n = 0;

    if (f == NULL)
        die("cannot open %s: %s", path, strerror(errno));
    v = calloc((size_t)need, sizeof *v);
    if (v == NULL)
        die("out of memory");
    while (n < need && fgets(line, sizeof line, f) != NULL) {
        char *sp = strchr(line, ' ');
        if (sp == NULL || (size_t)(sp - line) >= MAX_CODE)
            continue;
        memcpy(v[n].dc, line, (size_t)(sp - line));
        v[n].dc[sp - line] = '\0';
        n++;
    }
    fclose(f);
    *have = n;
    return v;
}

/* ------------------------------------------------------------------------------------------ */
/* create                                                                                      */

static struct {
    FILE *out;
    long target, started, created, errors;
} cr;

static void create_done(conn *c)
{
    char dc[MAX_CODE], uri[512], uc[32];
    const char *ss;

    if (c->status == 200 && jstr(resp_body(c), "device_code", dc, sizeof dc) &&
        jstr(resp_body(c), "verification_uri_complete", uri, sizeof uri) &&
        jstr(resp_body(c), "user_code", uc, sizeof uc) && (ss = strchr(uri, '#')) != NULL) {
        fprintf(cr.out, "%s %s %s\n", dc, ss + 1, uc);
        cr.created++;
    } else {
        if (cr.errors++ < 5)
            note("create: status %d: %.200s", c->status, resp_body(c));
    }
    if (cr.started < cr.target && cr.errors <= 1000) {
        cr.started++;
        send_device_auth(c);
    }
}

static int cmd_create(const struct opts *o)
{
    int64_t t0 = now_ns(), until = t0 + (int64_t)(o->time_limit * 1e9);
    conn *cs = calloc((size_t)o->conc, sizeof *cs);
    bool stop = false;

    if (o->out == NULL || o->n < 1 || cs == NULL)
        usage();
    cr.out = fopen(o->out, "w");
    if (cr.out == NULL)
        die("cannot write %s", o->out);
    cr.target = o->n;
    for (long i = 0; i < o->conc && cr.started < cr.target; i++) {
        cs[i].fd = -1;
        cs[i].on_done = create_done;
        cr.started++;
        send_device_auth(&cs[i]);
    }
    while (now_ns() < until && cr.created + cr.errors < cr.started) {
        ev_run(now_ns() + 100000000, &stop);
        if (cr.errors > 1000)
            break;
    }
    fclose(cr.out);
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("created=%ld\nerrors=%ld\nseconds=%.2f\nrate=%.0f\n", cr.created, cr.errors, secs,
           (double)cr.created / secs);
    return cr.created == o->n ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Held requests (used by "held" and by the background of "wake")                              */

static struct {
    long answered; /* responses that arrived while we expected none */
    long pending_answers, other_answers, failed;
    bool counting_shutdown;
} hs;

static void held_done(conn *c)
{
    if (hs.counting_shutdown) {
        if (c->complete && c->status == 400 && strstr(resp_body(c), "authorization_pending"))
            hs.pending_answers++;
        else if (c->complete)
            hs.other_answers++;
        else
            hs.failed++;
        return;
    }
    if (c->complete) {
        if (hs.answered++ < 5)
            note("held request answered early: status %d: %.160s", c->status, resp_body(c));
    } else {
        hs.failed++;
    }
}

/* Opens n held token requests for codes[0..n), at most `burst` connects outstanding, from
 * `sources` addresses 127.0.0.2... Returns how many were fully sent. */
static long open_holds(conn *cs, const code_t *codes, long n, long sources, int wait_s,
                       int64_t until)
{
    long next = 0, sent = 0, burst = 256;
    bool stop = false;

    while (now_ns() < until) {
        long inflight = 0;
        sent = 0;
        for (long i = 0; i < next; i++) {
            if (cs[i].pending && cs[i].out_off < cs[i].out_len)
                inflight++;
            else if (cs[i].pending)
                sent++;
        }
        while (next < n && inflight < burst) {
            conn *c = &cs[next];
            c->fd = -1;
            c->src = (127u << 24) | (uint32_t)(2 + next % sources);
            c->on_done = held_done;
            send_token(c, codes[next].dc, wait_s);
            next++;
            inflight++;
        }
        if (next == n && inflight == 0)
            break;
        ev_run(now_ns() + 5000000, &stop);
    }
    return sent;
}

static long count_unanswered(const conn *cs, long n)
{
    long k = 0;

    for (long i = 0; i < n; i++)
        k += cs[i].pending && cs[i].fd >= 0 && cs[i].out_off == cs[i].out_len;
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* held                                                                                        */

static struct {
    long done, ok, other;
} wp;

static void warm_done(conn *c)
{
    wp.done++;
    if (c->complete && c->status == 400 && strstr(resp_body(c), "authorization_pending"))
        wp.ok++;
    else
        wp.other++;
}

/* Plain polls of codes[0..n) over 64 connections: opens every worker's database connection and
 * warms its caches, so that the RSS baseline is taken from a warm server. */
static void warm_polls(const code_t *codes, long n)
{
    conn cs[64];
    long next = 0;
    int64_t until = now_ns() + 30 * (int64_t)1000000000;
    bool stop = false;

    memset(cs, 0, sizeof cs);
    for (int i = 0; i < 64; i++) {
        cs[i].fd = -1;
        cs[i].on_done = warm_done;
    }
    while (now_ns() < until && wp.done < n) {
        for (int i = 0; i < 64 && next < n; i++)
            if (!cs[i].pending)
                send_token(&cs[i], codes[next++].dc, 0);
        ev_run(now_ns() + 2000000, &stop);
    }
    for (int i = 0; i < 64; i++)
        conn_close(&cs[i]);
}

static int cmd_held(const struct opts *o)
{
    long have, need = o->warm_polls + o->n;
    code_t *codes;
    conn *cs;
    int64_t t0 = now_ns(), until = t0 + (int64_t)(o->time_limit * 1e9);
    long long rss0, rss1, anon0, anon1, file0, file1, cpu0, cpu1;
    long sent, unanswered;
    double window, cpu_pct;
    bool stop = false;

    if (o->codes == NULL || o->n < 1 || o->pid <= 0)
        usage();
    if (o->time_limit + 5 >= (double)o->wait_s)
        note("warning: --time-limit should stay below --wait so no hold times out");
    codes = load_codes(o->codes, need, &have);
    if (have < need)
        die("%s has %ld codes, need %ld", o->codes, have, need);
    cs = calloc((size_t)o->n, sizeof *cs);
    if (cs == NULL)
        die("out of memory");

    warm_polls(codes, o->warm_polls);
    note("held: %ld warm-up polls (%ld pending answers, %ld other)", wp.done, wp.ok, wp.other);
    ev_run(now_ns() + 1000000000, &stop);
    rss0 = proc_status_kb(o->pid, "VmRSS");
    anon0 = proc_status_kb(o->pid, "RssAnon");
    file0 = proc_status_kb(o->pid, "RssFile");

    sent = open_holds(cs, codes + o->warm_polls, o->n, o->sources, (int)o->wait_s, until);
    double open_s = (double)(now_ns() - t0) / 1e9;
    note("held: %ld of %ld requests sent after %.1f s; settling %.1f s", sent, o->n, open_s,
         o->settle);
    ev_run(now_ns() + (int64_t)(o->settle * 1e9), &stop);

    rss1 = proc_status_kb(o->pid, "VmRSS");
    anon1 = proc_status_kb(o->pid, "RssAnon");
    file1 = proc_status_kb(o->pid, "RssFile");
    cpu0 = proc_cpu_ticks(o->pid);
    int64_t w0 = now_ns();
    ev_run(now_ns() + (int64_t)(o->cpu_window * 1e9), &stop);
    cpu1 = proc_cpu_ticks(o->pid);
    window = (double)(now_ns() - w0) / 1e9;
    cpu_pct = 100.0 * (double)(cpu1 - cpu0) / (double)sysconf(_SC_CLK_TCK) / window;
    unanswered = count_unanswered(cs, o->n);

    printf("held_target=%ld\nheld_sent=%ld\nheld_unanswered=%ld\nheld_answered_early=%ld\n"
           "held_failed=%ld\nconnect_errors=%lld\nclosed_early=%lld\nopen_seconds=%.2f\n"
           "rss_before_kb=%lld\nrss_after_kb=%lld\nrss_per_held_bytes=%.0f\n"
           "cpu_ticks_while_held=%lld\ncpu_window_s=%.2f\ncpu_pct_while_held=%.2f\n"
           "rss_anon_before_kb=%lld\nrss_anon_after_kb=%lld\nrss_anon_per_held_bytes=%.0f\n"
           "rss_file_before_kb=%lld\nrss_file_after_kb=%lld\n",
           o->n, sent, unanswered, hs.answered, hs.failed, g_conn_errors, g_closed_early, open_s,
           rss0, rss1, unanswered > 0 ? (double)(rss1 - rss0) * 1024.0 / (double)unanswered : 0.0,
           cpu1 - cpu0, window, cpu_pct, anon0, anon1,
           unanswered > 0 ? (double)(anon1 - anon0) * 1024.0 / (double)unanswered : 0.0, file0,
           file1);
    fflush(stdout);

    if (o->shutdown_check) {
        /* The server answers every held request when it stops (docs/cli.md): that proves the
         * requests were held by the server and not merely queued in a socket. */
        hs.counting_shutdown = true;
        kill(o->pid, SIGTERM);
        int64_t t1 = now_ns() + 15 * (int64_t)1000000000;
        while (now_ns() < t1 && hs.pending_answers + hs.other_answers + hs.failed < unanswered)
            ev_run(now_ns() + 50000000, &stop);
        printf("shutdown_pending_answers=%ld\nshutdown_other_answers=%ld\n"
               "shutdown_closed_unanswered=%ld\n",
               hs.pending_answers, hs.other_answers, hs.failed);
    }
    for (long i = 0; i < o->n; i++)
        conn_close(&cs[i]);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The phone: session, device key, claim and signed approval                                  */

struct phone {
    char token[MAX_CODE];
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
};

static void read_password(const char *path, char *pw, size_t len)
{
    FILE *f = fopen(path, "r");

    if (f == NULL || fgets(pw, (int)len, f) == NULL)
        die("cannot read the password from %s", path);
    fclose(f);
    pw[strcspn(pw, "\r\n")] = '\0';
}

/* Signs in, registers a device key; two Argon2id checks on the server, once per run. */
static void phone_setup(struct phone *ph, const char *user, const char *pwfile)
{
    char pw[300], body[700], pkb64[64];
    conn c = {.fd = -1, .to = &g_phone};
    size_t len;

    if (user == NULL || pwfile == NULL)
        usage();
    read_password(pwfile, pw, sizeof pw);
    snprintf(body, sizeof body,
             "{\"username\":\"%s\",\"password\":\"%s\",\"device_name\":\"bench phone\"}", user, pw);
    conn_send(&c, fmt_post(&c, "/v1/sessions", "application/json", NULL, body));
    if (!await(&c, 10) || c.status != 201 ||
        !jstr(resp_body(&c), "session_token", ph->token, sizeof ph->token))
        die("phone sign-in failed: status %d: %.200s", c.status, resp_body(&c));
    crypto_sign_keypair(ph->pk, ph->sk);
    sodium_bin2base64(pkb64, sizeof pkb64, ph->pk, sizeof ph->pk,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(body, sizeof body, "{\"public_key\":\"%s\",\"password\":\"%s\"}", pkb64, pw);
    len = (size_t)snprintf(c.out, OUT_CAP,
                           "PUT /v1/device-key HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer "
                           "%s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                           g_phone.host, ph->token, strlen(body), body);
    conn_send(&c, len);
    if (!await(&c, 10) || c.status != 204)
        die("device key registration failed: status %d: %.200s", c.status, resp_body(&c));
    conn_close(&c);
    sodium_memzero(pw, sizeof pw);
}

static void send_claim(conn *c, const struct phone *ph, const char *ss)
{
    int n = snprintf(c->out, OUT_CAP,
                     "GET /v1/login-requests/%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer "
                     "%s\r\n\r\n",
                     ss, conn_target(c)->host, ph->token);
    conn_send(c, (size_t)n);
}

/* Approves with an Ed25519 signature over the decision message (docs/api.md, approve). */
static void send_approve(conn *c, const struct phone *ph, const char *ss, long long id,
                         const char *nonce, const char *user_code)
{
    char uc8[16], msg[200], sigb64[128], body[256], path[200], extra[200];
    unsigned char sig[crypto_sign_BYTES];
    size_t k = 0;
    int mlen;

    for (const char *p = user_code; *p != '\0' && k < 8; p++)
        if (*p != '-')
            uc8[k++] = *p;
    uc8[k] = '\0';
    mlen =
        snprintf(msg, sizeof msg, "qrlogin-decision-v1\n%lld\napprove\n%s\n%s\n", id, nonce, uc8);
    crypto_sign_detached(sig, NULL, (const unsigned char *)msg, (unsigned long long)mlen, ph->sk);
    sodium_bin2base64(sigb64, sizeof sigb64, sig, sizeof sig,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(body, sizeof body, "{\"user_code\":\"%s\",\"signature\":\"%s\"}", user_code, sigb64);
    snprintf(path, sizeof path, "/v1/login-requests/%s/approve", ss);
    snprintf(extra, sizeof extra, "Authorization: Bearer %s\r\n", ph->token);
    conn_send(c, fmt_post(c, path, "application/json", extra, body));
}

/* A login request as the screen got it. */
struct lr {
    char dc[MAX_CODE], ss[MAX_CODE], uc[16], nonce[64];
    long long id;
};

static bool parse_device_auth(const conn *c, struct lr *lr)
{
    char uri[512];
    const char *h;

    if (c->status != 200 || !jstr(resp_body(c), "device_code", lr->dc, sizeof lr->dc) ||
        !jstr(resp_body(c), "user_code", lr->uc, sizeof lr->uc) ||
        !jstr(resp_body(c), "verification_uri_complete", uri, sizeof uri) ||
        (h = strchr(uri, '#')) == NULL || strlen(h + 1) >= sizeof lr->ss)
        return false;
    strcpy(lr->ss, h + 1);
    return true;
}

static bool parse_claim(const conn *c, struct lr *lr)
{
    return c->status == 200 && jint(resp_body(c), "id", &lr->id) &&
           jstr(resp_body(c), "nonce", lr->nonce, sizeof lr->nonce);
}

/* ------------------------------------------------------------------------------------------ */
/* wake                                                                                        */

/* Prints percentiles of signed nanosecond samples in microseconds (sorts v). */
static void percentiles_out(const char *name, int64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_i64);
    printf("%s_samples=%zu\n%s_p50_us=%.1f\n%s_p99_us=%.1f\n%s_p999_us=%.1f\n%s_min_us=%.1f\n"
           "%s_max_us=%.1f\n",
           name, n, name, (double)pct(v, n, 50) / 1e3, name, (double)pct(v, n, 99) / 1e3, name,
           (double)pct(v, n, 99.9) / 1e3, name, n ? (double)v[0] / 1e3 : 0.0, name,
           n ? (double)v[n - 1] / 1e3 : 0.0);
}

/* Where a wake sample can fail: the screen's device authorization; its first hold answered at
 * once (not held); the phone's claim; the held request not woken with "scanned"; the second hold
 * (the screen now knows SCANNED) answered at once; the approval or the tokens. */
enum { W_DA, W_HOLD1, W_CLAIM, W_SCANNED, W_HOLD2, W_APPROVE, W_N };
static const char *const wake_step[W_N] = {"device_auth", "hold1", "claim",
                                           "scanned",     "hold2", "approve"};

static int cmd_wake(const struct opts *o)
{
    struct phone ph;
    long have, total = o->warm_samples + o->samples, got = 0, scan_got = 0, errors = 0;
    long err_at[W_N] = {0};
    long before = 0, unanswered_bg, sent;
    code_t *codes = NULL;
    conn *bg = NULL, tv = {.fd = -1}, phc = {.fd = -1, .to = &g_phone}, h = {.fd = -1};
    int64_t t0 = now_ns(), until = t0 + (int64_t)(o->time_limit * 1e9);
    int64_t *lat = calloc((size_t)total, sizeof *lat), *slat = calloc((size_t)total, sizeof *slat);
    int64_t *elat = calloc((size_t)total, sizeof *elat);
    bool stop = false;

    if (o->codes == NULL || o->samples < 1 || o->background < 0 || lat == NULL || slat == NULL ||
        elat == NULL)
        usage();
    phone_setup(&ph, o->user, o->password_file);
    if (o->background > 0) {
        codes = load_codes(o->codes, o->background, &have);
        if (have < o->background)
            die("%s has %ld codes, need %ld", o->codes, have, o->background);
        bg = calloc((size_t)o->background, sizeof *bg);
        if (bg == NULL)
            die("out of memory");
        sent = open_holds(bg, codes, o->background, o->sources, (int)o->wait_s, until);
        ev_run(now_ns() + (int64_t)(o->settle * 1e9), &stop);
        note("wake: %ld background requests held (%ld sent) after %.1f s",
             count_unanswered(bg, o->background), sent, (double)(now_ns() - t0) / 1e9);
    }
    /* The background holds must all end before the server's own wait deadline. */
    if (o->background > 0 && (double)o->wait_s - 5 < o->time_limit)
        until = t0 + (int64_t)(((double)o->wait_s - 5) * 1e9);

    for (long i = 0; i < total && now_ns() < until; i++) {
        struct lr lr;
        int64_t t_claim, t_appr_sent, t_appr = 0, t_held = 0;
        int step = W_DA;

        send_device_auth(&tv);
        if (!await(&tv, 5) || !parse_device_auth(&tv, &lr))
            goto fail;
        /* Hold: PENDING is what this screen was last told, so the server holds the request. */
        step = W_HOLD1;
        send_token(&h, lr.dc, (int)o->wait_s);
        ev_run(now_ns() + 2000000, &stop);
        if (!h.pending)
            goto fail;
        /* The phone scans (claims): the held screen is woken with "scanned". */
        step = W_CLAIM;
        send_claim(&phc, &ph, lr.ss);
        if (!await(&phc, 5) || !parse_claim(&phc, &lr))
            goto fail;
        t_claim = phc.t_done;
        step = W_SCANNED;
        if (!await(&h, 5) || h.status != 400 || strstr(resp_body(&h), "scanned") == NULL)
            goto fail;
        /* Kept even if a later step of this sample fails: it times a wake-up of its own. */
        if (i >= o->warm_samples)
            slat[scan_got++] = h.t_done - t_claim;
        /* Hold again (the screen now knows SCANNED), then approve. */
        step = W_HOLD2;
        send_token(&h, lr.dc, (int)o->wait_s);
        ev_run(now_ns() + 2000000, &stop);
        if (!h.pending)
            goto fail;
        step = W_APPROVE;
        send_approve(&phc, &ph, lr.ss, lr.id, lr.nonce, lr.uc);
        t_appr_sent = phc.t_sent;
        while ((phc.pending || h.pending) && now_ns() < until)
            ev_run(now_ns() + 1000000, &stop);
        if (!phc.complete || phc.status != 200 || !h.complete || h.status != 200 ||
            strstr(resp_body(&h), "access_token") == NULL)
            goto fail;
        t_appr = phc.t_done;
        t_held = h.t_done;
        if (i >= o->warm_samples) {
            /* Signed: the server may answer the held request before the approve request (it
             * hands the tokens over in the same commit), so the difference can be negative. */
            before += t_held < t_appr;
            elat[got] = t_held - t_appr_sent;
            lat[got++] = t_held - t_appr;
        }
        continue;
    fail:
        err_at[step]++;
        if (errors++ < 5)
            note("wake sample %ld failed at %s: tv %d, phone %d (%.120s), held %d (%.120s)", i,
                 wake_step[step], tv.status, phc.status, resp_body(&phc), h.status, resp_body(&h));
        conn_close(&tv);
        conn_close(&phc);
        conn_close(&h);
        h.pending = tv.pending = phc.pending = false;
        /* A server that fails every sample from the start is broken: stop rather than spin. */
        if (errors > 50 && got == 0 && scan_got == 0)
            break;
    }
    unanswered_bg = bg != NULL ? count_unanswered(bg, o->background) : 0;
    printf("wake_screen_port=%u\nwake_phone_port=%u\n", (unsigned)ntohs(g_screen.sa.sin_port),
           (unsigned)ntohs(g_phone.sa.sin_port));
    printf("wake_background=%ld\nwake_background_still_held=%ld\nwake_errors=%ld\n"
           "wake_held_before_approve_response=%ld\nwake_seconds=%.1f\n",
           o->background, unanswered_bg, errors, before, (double)(now_ns() - t0) / 1e9);
    for (int k = 0; k < W_N; k++)
        printf("wake_errors_%s=%ld\n", wake_step[k], err_at[k]);
    percentiles_out("wake", lat, (size_t)got);
    percentiles_out("approvewake", elat, (size_t)got);
    percentiles_out("scanwake", slat, (size_t)scan_got);
    for (long i = 0; bg != NULL && i < o->background; i++)
        conn_close(&bg[i]);
    return got > 0 ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------ */
/* flows                                                                                       */

/* With --cpu-pids: one "CPUWIN monotonic-seconds cpu0-busy cpu1-busy server-ticks [pg-ticks]"
 * line, the snapshot bench/run.sh takes (and wrk/cpuwin.lua for wrk), so that the CPU use of
 * the flows is accounted over the timed windows alone, without the sign-in's Argon2id checks
 * and the warm-up. server-ticks sums the processes named; pg-ticks is PostgreSQL's (--pg-pid,
 * its postmaster). */
static void cpuwin_print(const struct opts *o)
{
    long long busy[2], srv = 0;
    char *list, *save = NULL;

    if (o->cpu_pids == NULL)
        return;
    cpu_busy(busy);
    list = strdup(o->cpu_pids);
    if (list == NULL)
        die("out of memory");
    for (char *t = strtok_r(list, " ,", &save); t != NULL; t = strtok_r(NULL, " ,", &save)) {
        long long k = proc_cpu_ticks(atoi(t));
        if (k > 0)
            srv += k;
    }
    free(list);
    printf("CPUWIN %.6f %lld %lld %lld", (double)now_ns() / 1e9, busy[0], busy[1], srv);
    if (o->pg_pid > 0)
        printf(" %lld", pg_ticks(o->pg_pid));
    printf("\n");
    fflush(stdout);
}

enum { S_DA, S_CLAIM, S_APPROVE, S_REDEEM, S_N };
static const char *const step_name[S_N] = {"device_auth", "claim", "approve", "redeem"};

struct flow {
    conn tv, ph;
    int step;
    struct lr lr;
    int64_t t_start;
};

static struct {
    struct phone ph;
    int64_t window_start, window_end; /* completions in [start, end) count */
    bool measuring, stopping;
    long done_in_window, errors, err_by_step[S_N];
    int64_t *lat[S_N];
    size_t nlat[S_N], cap;
    int64_t *flow_lat;
    size_t nflow;
} fl;

static void flow_start(struct flow *f);

static void flow_record(int step, int64_t ns)
{
    if (fl.measuring && fl.nlat[step] < fl.cap)
        fl.lat[step][fl.nlat[step]++] = ns;
}

static void flow_fail(struct flow *f, conn *c)
{
    fl.err_by_step[f->step]++;
    if (fl.errors++ < 5)
        note("flow step %s failed: status %d: %.160s", step_name[f->step], c->status, resp_body(c));
    conn_close(&f->tv);
    conn_close(&f->ph);
    if (fl.errors > 1000)
        fl.stopping = true; /* the server is gone or broken: stop rather than spin */
    flow_start(f);
}

static void flow_done(conn *c)
{
    struct flow *f = c->owner;

    flow_record(f->step, c->t_done - c->t_sent);
    switch (f->step) {
    case S_DA:
        if (!parse_device_auth(c, &f->lr)) {
            flow_fail(f, c);
            return;
        }
        f->step = S_CLAIM;
        send_claim(&f->ph, &fl.ph, f->lr.ss);
        return;
    case S_CLAIM:
        if (!parse_claim(c, &f->lr)) {
            flow_fail(f, c);
            return;
        }
        f->step = S_APPROVE;
        send_approve(&f->ph, &fl.ph, f->lr.ss, f->lr.id, f->lr.nonce, f->lr.uc);
        return;
    case S_APPROVE:
        if (c->status != 200) {
            flow_fail(f, c);
            return;
        }
        f->step = S_REDEEM;
        send_token(&f->tv, f->lr.dc, 0);
        return;
    case S_REDEEM:
        if (c->status != 200 || strstr(resp_body(c), "access_token") == NULL) {
            flow_fail(f, c);
            return;
        }
        if (c->t_done >= fl.window_start && c->t_done < fl.window_end) {
            fl.done_in_window++;
            if (fl.measuring && fl.nflow < fl.cap)
                fl.flow_lat[fl.nflow++] = c->t_done - f->t_start;
        }
        flow_start(f);
        return;
    }
}

static void flow_start(struct flow *f)
{
    if (fl.stopping)
        return;
    f->step = S_DA;
    f->t_start = now_ns();
    send_device_auth(&f->tv);
}

static void lat_out(const char *name, int64_t *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_i64);
    printf("%s_p50_ms=%.2f\n%s_p99_ms=%.2f\n", name, (double)pct(v, n, 50) / 1e6, name,
           (double)pct(v, n, 99) / 1e6);
}

static int cmd_flows(const struct opts *o)
{
    struct flow *fs = calloc((size_t)o->conc, sizeof *fs);
    double rates[20];
    bool stop = false;

    if (fs == NULL)
        die("out of memory");
    phone_setup(&fl.ph, o->user, o->password_file);
    fl.cap = 2000000;
    for (int s = 0; s < S_N; s++)
        fl.lat[s] = calloc(fl.cap, sizeof(int64_t));
    fl.flow_lat = calloc(fl.cap, sizeof(int64_t));
    for (long i = 0; i < o->conc; i++) {
        fs[i].tv = (conn){.fd = -1, .on_done = flow_done, .owner = &fs[i]};
        fs[i].ph = (conn){.fd = -1, .on_done = flow_done, .owner = &fs[i], .to = &g_phone};
        flow_start(&fs[i]);
    }
    /* Warm-up: flows run, nothing counts. */
    fl.window_start = fl.window_end = 0;
    ev_run(now_ns() + (int64_t)(o->warmup * 1e9), &stop);
    note("flows: warm-up done (%ld errors)", fl.errors);
    cpuwin_print(o);
    fl.measuring = true;
    for (long r = 0; r < o->runs; r++) {
        int64_t t0 = now_ns();
        fl.done_in_window = 0;
        fl.window_start = t0;
        fl.window_end = t0 + (int64_t)(o->duration * 1e9);
        ev_run(fl.window_end, &stop);
        rates[r] = (double)fl.done_in_window / o->duration;
        printf("flows_run%ld=%.1f\n", r + 1, rates[r]);
        fflush(stdout);
    }
    cpuwin_print(o);
    fl.stopping = true;
    printf("flows_concurrency=%ld\nflows_errors=%ld\n", o->conc, fl.errors);
    printf("flows_screen_port=%u\nflows_phone_port=%u\n", (unsigned)ntohs(g_screen.sa.sin_port),
           (unsigned)ntohs(g_phone.sa.sin_port));
    for (int s = 0; s < S_N; s++) {
        printf("flows_errors_%s=%ld\n", step_name[s], fl.err_by_step[s]);
        lat_out(step_name[s], fl.lat[s], fl.nlat[s]);
    }
    lat_out("flow", fl.flow_lat, fl.nflow);
    for (long i = 0; i < o->conc; i++) {
        conn_close(&fs[i].tv);
        conn_close(&fs[i].ph);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    struct opts o;

    if (argc < 2 || strcmp(argv[1], "help") == 0)
        usage();
    if (sodium_init() < 0)
        die("sodium_init failed");
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    parse_opts(argc, argv, &o);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "create") == 0)
        return cmd_create(&o);
    if (strcmp(argv[1], "held") == 0)
        return cmd_held(&o);
    if (strcmp(argv[1], "wake") == 0)
        return cmd_wake(&o);
    if (strcmp(argv[1], "flows") == 0)
        return cmd_flows(&o);
    usage();
    return 2;
}
