/* SPDX-License-Identifier: MIT */
/*
 * Integration-test harness: starts the real qrlogin binary ($QRLOGIN_BIN) on 127.0.0.1 with a
 * temporary SQLite database (or, with QRL_TEST_BACKEND=postgres, a new database on the test
 * PostgreSQL cluster: tests/pg/it_pg.h) and gives the tests a small libcurl client with the flow
 * steps of a screen, a phone and a resource server. See harness.h for lifecycles, ownership and
 * which functions are safe from worker threads.
 *
 * The server is a child process: its stdout is a pipe from which we read the one
 * "qrlogin: listening on http://127.0.0.1:PORT" line (anything printed later is copied to our
 * stderr by a small thread so the server can never block on a full pipe); its stderr is a pipe
 * that another thread copies to ours, so server logs appear next to the failing test, and to a
 * log file that outlives the server (harness.h, "what a server leaves behind").
 * PR_SET_PDEATHSIG makes sure a crashed test binary never leaves a server behind.
 */
#include "harness.h"
#include "it_pg.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Largest response body we keep. Our server never sends more than a few KiB of JSON; a hard
 * maximum keeps a runaway response from eating memory (curl's dynbuf habit). */
#define IT_MAX_RESPONSE (4u * 1024u * 1024u)
/* How long the server may take to print its listening line (generous for sanitizer builds). */
#define IT_START_TIMEOUT_MS 20000
/* How long a SIGTERM may take to end the server cleanly. */
#define IT_STOP_TIMEOUT_MS 10000
#define IT_DEFAULT_TIMEOUT_MS 10000L

static const char *it_bin(void)
{
    const char *bin = getenv("QRLOGIN_BIN");
    if (bin == NULL || bin[0] == '\0') {
        print_error("QRLOGIN_BIN is not set: it must name the qrlogin binary built with "
                    "-DQRL_TEST_HOOKS=ON\n");
        fail();
    }
    return bin;
}

double it_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void it_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* --- server lifecycle ---------------------------------------------------------------------- */

/* A new server; with QRL_TEST_BACKEND=postgres and `own_db` it gets a database of its own on
 * the test cluster, empty, or holding what `pg_template` (a URI) holds when that is not NULL
 * (it_pg_db_acquire(), tests/pg/it_pg.h). */
static it_server *server_new(const char *pg_template, int own_db)
{
    static int curl_ready;
    if (!curl_ready) {
        /* Tests call this from the main thread before any worker thread exists. */
        assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
        curl_ready = 1;
    }
    (void)it_bin();
    it_server *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    snprintf(s->dir, sizeof(s->dir), "%s/qrl-it-XXXXXX", tmp);
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->db, sizeof(s->db), "%s/qrlogin.db", s->dir);
    if (it_pg_enabled()) {
        s->pg = 1;
        if (own_db) {
            it_pg_db_acquire(pg_template, s->db, sizeof(s->db));
        }
    }
    snprintf(s->log, sizeof(s->log), "%s/server.log", s->dir);
    s->out_fd = -1;
    s->err_fd = -1;
    s->created_at = it_now();
    return s;
}

it_server *it_server_new(void)
{
    return server_new(NULL, 1);
}

it_server *it_server_new_on(const it_server *first)
{
    if (!first->pg) {
        print_error("it_server_new_on: two servers share a database only on PostgreSQL "
                    "(QRL_TEST_BACKEND=postgres); one SQLite file takes one server\n");
        fail();
    }
    it_server *s = server_new(NULL, 0);
    memcpy(s->db, first->db, sizeof(s->db));
    s->shares_db = 1;
    return s;
}

/* Waits for `pid` up to `timeout_ms`; returns 1 and fills *status when it ended. */
static int wait_child(pid_t pid, int *status, long timeout_ms)
{
    double deadline = it_now() + (double)timeout_ms / 1000.0;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) {
            return 1;
        }
        if (r == -1 && errno != EINTR) {
            return 0;
        }
        if (it_now() > deadline) {
            return 0;
        }
        it_sleep_ms(5);
    }
}

static void describe_status(int status, char *buf, size_t n)
{
    if (WIFEXITED(status)) {
        snprintf(buf, n, "exit status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(buf, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
        snprintf(buf, n, "wait status 0x%x", status);
    }
}

void it_account_add(it_server *s, const char *user, const char *password, const char *display_name)
{
    const char *bin = it_bin();
    int in[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(STDERR_FILENO, STDOUT_FILENO); /* keep the test's stdout for test output */
        const char *argv[12];
        int i = 0;
        argv[i++] = bin;
        argv[i++] = "account";
        argv[i++] = "add";
        argv[i++] = user;
        argv[i++] = "--db";
        argv[i++] = s->db;
        argv[i++] = "--password-stdin";
        if (display_name != NULL) {
            argv[i++] = "--display-name";
            argv[i++] = display_name;
        }
        argv[i] = NULL;
        execv(bin, (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(in[0]);
    signal(SIGPIPE, SIG_IGN);
    char line[512];
    int len = snprintf(line, sizeof(line), "%s\n", password);
    ssize_t w = write(in[1], line, (size_t)len);
    close(in[1]);
    int status = 0;
    if (!wait_child(pid, &status, 60000)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        print_error("qrlogin account add %s did not finish within 60 s\n", user);
        fail();
    }
    if (w != len || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char why[96];
        describe_status(status, why, sizeof(why));
        print_error("qrlogin account add %s --db %s --password-stdin failed: %s\n", user, s->db,
                    why);
        fail();
    }
}

static void *drain_main(void *arg)
{
    int fd = *(int *)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0) {
            ssize_t off = 0;
            while (off < n) {
                ssize_t w = write(STDERR_FILENO, buf + off, (size_t)(n - off));
                if (w <= 0) {
                    break;
                }
                off += w;
            }
            continue;
        }
        if (n == -1 && errno == EINTR) {
            continue;
        }
        return NULL;
    }
}

/* Copies the server's stderr to ours (server logs appear next to the failing test) and appends
 * it to s->log, until the server has exited. */
static void *tee_main(void *arg)
{
    const it_server *s = arg;
    int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    char buf[4096];

    for (;;) {
        ssize_t n = read(s->err_fd, buf, sizeof(buf));
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        for (int fd = 0; fd < 2; fd++) {
            int to = fd == 0 ? STDERR_FILENO : log;
            for (ssize_t off = 0, w; to >= 0 && off < n; off += w) {
                w = write(to, buf + off, (size_t)(n - off));
                if (w <= 0) {
                    break;
                }
            }
        }
    }
    if (log >= 0) {
        close(log);
    }
    return NULL;
}

/* Joins the stderr copier and closes its pipe once the server has exited. */
static void tee_stop(it_server *s)
{
    if (s->tee != NULL) {
        pthread_join(*(pthread_t *)s->tee, NULL);
        free(s->tee);
        s->tee = NULL;
    }
    if (s->err_fd >= 0) {
        close(s->err_fd);
        s->err_fd = -1;
    }
}

/* Reads one line from the server's stdout within the deadline. Returns 0 on success, -1 on
 * timeout or EOF (the server exited or closed stdout first). */
static int read_listen_line(int fd, char *line, size_t cap, double deadline)
{
    size_t n = 0;
    while (n + 1 < cap) {
        int left = (int)((deadline - it_now()) * 1000.0);
        if (left <= 0) {
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, left);
        if (pr < 0 && errno == EINTR) {
            continue;
        }
        if (pr <= 0) {
            return -1;
        }
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r == 0) {
            return -1;
        }
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return -1;
        }
        if (c == '\n') {
            line[n] = '\0';
            return 0;
        }
        line[n++] = c;
    }
    line[n] = '\0';
    return 0;
}

/* A TCP port on 127.0.0.1 that nothing listens on at this moment. */
static int free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = 0;

    assert_true(fd >= 0);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0) {
        port = ntohs(a.sin_port);
    }
    close(fd);
    assert_true(port > 0);
    return port;
}

void it_server_start(it_server *s)
{
    const char *bin = it_bin();
    assert_int_equal(s->pid, 0);
    /* With a public URL the server prints that, not its port: the port is chosen here. */
    int fixed_port = s->public_url != NULL ? free_port() : 0;
    char listen_at[32];
    snprintf(listen_at, sizeof(listen_at), "127.0.0.1:%d", fixed_port);
    int out[2], err[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%d", s->request_ttl);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(126);
        }
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        if (s->no_introspection_secret) {
            unsetenv("QRLOGIN_INTROSPECTION_SECRET");
        }
        /* Only what the test gives: never a configuration file of the machine running it. */
        setenv("QRLOGIN_CONFIG", "none", 1);
        const char *argv[32];
        int i = 0;
        argv[i++] = bin;
        argv[i++] = "serve";
        argv[i++] = "--listen";
        argv[i++] = listen_at;
        if (s->public_url != NULL) {
            argv[i++] = "--public-url";
            argv[i++] = s->public_url;
        }
        argv[i++] = "--db";
        argv[i++] = s->db;
        if (!s->no_introspection_secret) {
            argv[i++] = "--introspection-secret";
            argv[i++] = IT_INTROSPECTION_SECRET;
        }
        if (s->request_ttl > 0) {
            argv[i++] = "--request-ttl";
            argv[i++] = ttl;
        }
        if (s->access_log) {
            argv[i++] = "--access-log";
        }
        for (int k = 0; s->extra_args != NULL && s->extra_args[k] != NULL && i < 30; k++)
            argv[i++] = s->extra_args[k];
        argv[i] = NULL;
        execv(bin, (char *const *)argv);
        fprintf(stderr, "harness: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    s->pid = pid;
    s->out_fd = out[0];
    s->err_fd = err[0];
    s->tee = malloc(sizeof(pthread_t));
    assert_non_null(s->tee);
    assert_int_equal(pthread_create(s->tee, NULL, tee_main, s), 0);

    char line[256];
    double t0 = it_now();
    int rc = read_listen_line(s->out_fd, line, sizeof(line), t0 + IT_START_TIMEOUT_MS / 1000.0);
    int port = 0;
    if (rc == 0 && fixed_port > 0) {
        char want[300];
        snprintf(want, sizeof(want), "qrlogin: listening on %s", s->public_url);
        port = strcmp(line, want) == 0 ? fixed_port : 0;
    } else if (rc == 0 && sscanf(line, "qrlogin: listening on http://127.0.0.1:%d", &port) != 1) {
        port = 0;
    }
    if (port > 0 && port < 65536) {
        s->port = port;
        snprintf(s->base, sizeof(s->base), "http://127.0.0.1:%d", port);
    } else {
        int status = 0;
        char why[96] = "still running";
        if (wait_child(pid, &status, 0)) {
            describe_status(status, why, sizeof(why));
        } else {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        s->pid = 0;
        close(s->out_fd);
        s->out_fd = -1;
        tee_stop(s);
        print_error("qrlogin serve did not print its listening line (%s; read: \"%s\"; "
                    "server %s)\n",
                    rc == 0 ? "unexpected line" : "timeout or EOF", rc == 0 ? line : "", why);
        fail();
    }
    pthread_t *th = malloc(sizeof(*th));
    assert_non_null(th);
    assert_int_equal(pthread_create(th, NULL, drain_main, &s->out_fd), 0);
    s->drain = th;
    s->drain_started = 1;
}

/* Joins the drain thread and closes the pipe once the server has exited. */
static void reap_io(it_server *s)
{
    if (s->drain_started) {
        pthread_join(*(pthread_t *)s->drain, NULL);
        free(s->drain);
        s->drain = NULL;
        s->drain_started = 0;
    }
    if (s->out_fd >= 0) {
        close(s->out_fd);
        s->out_fd = -1;
    }
    tee_stop(s);
}

void it_server_stop(it_server *s)
{
    assert_true(s->pid > 0);
    pid_t pid = s->pid;
    int status = 0;
    int already = wait_child(pid, &status, 0);
    if (!already) {
        kill(pid, SIGTERM);
        if (!wait_child(pid, &status, IT_STOP_TIMEOUT_MS)) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            s->pid = 0;
            reap_io(s);
            print_error("qrlogin serve did not exit within %d ms of SIGTERM\n", IT_STOP_TIMEOUT_MS);
            fail();
        }
    }
    s->pid = 0;
    reap_io(s);
    if (already || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char why[96];
        describe_status(status, why, sizeof(why));
        print_error("qrlogin serve %s: %s (expected a clean exit 0 on SIGTERM)\n",
                    already ? "had already died" : "ended badly", why);
        fail();
    }
}

void it_server_kill9(it_server *s)
{
    assert_true(s->pid > 0);
    int status = 0;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    reap_io(s);
}

int it_server_wait_exit(it_server *s, long timeout_ms)
{
    int status = 0;

    assert_true(s->pid > 0);
    if (!wait_child(s->pid, &status, timeout_ms)) {
        print_error("qrlogin serve (pid %d) was expected to end by itself within %ld ms and did "
                    "not\n",
                    (int)s->pid, timeout_ms);
        fail();
    }
    s->pid = 0;
    reap_io(s);
    return status;
}

/* Best-effort copy for the artifacts (never asserts: it runs at exit too). */
static void keep_file(const char *from, const char *dir, const char *name)
{
    char to[600], buf[65536];
    int in = open(from, O_RDONLY | O_CLOEXEC), out;
    ssize_t n;

    if (in < 0) {
        return; /* -wal and -shm exist only after a crash */
    }
    snprintf(to, sizeof(to), "%s/%s", dir, name);
    out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    while (out >= 0 && (n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            fprintf(stderr, "harness: cannot keep %s: %s\n", to, strerror(errno));
            break;
        }
    }
    if (out >= 0) {
        close(out);
    }
    close(in);
}

/* Keeps the server's database, WAL, shared-memory index and log under $QRL_ARTIFACT_DIR
 * (harness.h), in a directory named after this test program. A PostgreSQL database is kept as
 * a COPY of each table, by the server that owns it (tests/pg/it_pg.h). */
static void keep_artifacts(const it_server *s)
{
    const char *root = getenv("QRL_ARTIFACT_DIR");
    static int seq;
    char dir[512], from[600];
    static const char *const suffixes[] = {"", "-wal", "-shm"};

    if (root == NULL || root[0] == '\0') {
        return;
    }
    (void)mkdir(root, 0700);
    snprintf(dir, sizeof(dir), "%s/%s-%d-%d", root, program_invocation_short_name, (int)getpid(),
             ++seq);
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "harness: cannot keep artifacts in %s: %s\n", dir, strerror(errno));
        return;
    }
    if (s->pg) {
        if (!s->shares_db) {
            (void)it_pg_dump(s->db, dir);
        }
        keep_file(s->log, dir, "server.log");
        return;
    }
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char name[32];
        snprintf(from, sizeof(from), "%s%s", s->db, suffixes[i]);
        snprintf(name, sizeof(name), "qrlogin.db%s", suffixes[i]);
        keep_file(from, dir, name);
    }
    keep_file(s->log, dir, "server.log");
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void it_server_free(it_server *s)
{
    if (s == NULL) {
        return;
    }
    if (s->pid > 0) {
        int status;
        kill(s->pid, SIGKILL);
        waitpid(s->pid, &status, 0);
        s->pid = 0;
    }
    reap_io(s);
    keep_artifacts(s);
    if (getenv("QRL_IT_KEEP") != NULL) {
        fprintf(stderr, "harness: keeping %s%s%s\n", s->dir, s->pg ? " and " : "",
                s->pg ? s->db : "");
    } else {
        if (s->dir[0] != '\0') {
            nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        }
        if (s->pg && !s->shares_db) {
            (void)it_pg_db_release(s->db);
        }
    }
    free(s);
}

/* Template databases, one per accounts array, removed at exit. */
#define IT_MAX_TEMPLATES 8
static struct {
    const it_account *key;
    it_server *tmpl;
} templates[IT_MAX_TEMPLATES];

static void free_templates(void)
{
    for (int i = 0; i < IT_MAX_TEMPLATES; i++) {
        it_server_free(templates[i].tmpl);
        templates[i].tmpl = NULL;
    }
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (in == NULL) {
        assert_int_equal(errno, ENOENT); /* -wal and -shm may not exist */
        return;
    }
    FILE *out = fopen(to, "wb");
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    assert_int_equal(ferror(in), 0);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

it_server *it_server_new_with_accounts(const it_account *accounts)
{
    int slot = -1;
    for (int i = 0; i < IT_MAX_TEMPLATES && slot < 0; i++) {
        if (templates[i].key == accounts || templates[i].key == NULL) {
            slot = i;
        }
    }
    assert_true(slot >= 0);
    if (templates[slot].key == NULL) {
        it_server *t = it_server_new();
        for (const it_account *a = accounts; a->user != NULL; a++) {
            it_account_add(t, a->user, a->password, a->display_name);
        }
        if (slot == 0) {
            atexit(free_templates);
        }
        templates[slot].key = accounts;
        templates[slot].tmpl = t;
    }
    if (templates[slot].tmpl->pg) {
        return server_new(templates[slot].tmpl->db, 1);
    }
    it_server *s = it_server_new();
    static const char *const suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        char from[320], to[320];
        snprintf(from, sizeof(from), "%s%s", templates[slot].tmpl->db, suffixes[i]);
        snprintf(to, sizeof(to), "%s%s", s->db, suffixes[i]);
        copy_file(from, to);
    }
    return s;
}

static const it_account alice_only[] = {{IT_USER, IT_PASSWORD, IT_DISPLAY_NAME},
                                        {NULL, NULL, NULL}};

int it_setup_alice(void **state)
{
    it_server *s = it_server_new_with_accounts(alice_only);
    it_server_start(s);
    *state = s;
    return 0;
}

int it_teardown(void **state)
{
    it_server *s = *state;
    if (s != NULL && getenv("QRL_IT_TIMING") != NULL) {
        fprintf(stderr, "harness: test took %.2f s\n", it_now() - s->created_at);
    }
    if (s != NULL && s->pid > 0) {
        it_server_stop(s);
    }
    it_server_free(s);
    *state = NULL;
    return 0;
}

/* --- HTTP ---------------------------------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    it_resp *r = ud;
    size_t n = size * nmemb;
    if (r->body_len + n > IT_MAX_RESPONSE) {
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    char *nb = realloc(r->body, r->body_len + n + 1);
    if (nb == NULL) {
        return 0;
    }
    memcpy(nb + r->body_len, ptr, n);
    r->body = nb;
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

static void keep_header(char *dst, size_t cap, const char *value, size_t vlen)
{
    if (vlen >= cap) {
        vlen = cap - 1;
    }
    memcpy(dst, value, vlen);
    dst[vlen] = '\0';
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    it_resp *r = ud;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): forget headers of the previous one. */
        r->cache_control[0] = r->pragma[0] = r->preference_applied[0] = '\0';
        r->retry_after[0] = r->www_authenticate[0] = r->allow[0] = r->content_type[0] = '\0';
        r->csp[0] = r->referrer_policy[0] = r->nosniff[0] = '\0';
        r->n_set_cookie = 0;
        return n;
    }
    const char *colon = memchr(ptr, ':', n);
    if (colon == NULL) {
        return n;
    }
    size_t name_len = (size_t)(colon - ptr);
    const char *v = colon + 1;
    size_t vlen = n - name_len - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ')) {
        vlen--;
    }
    static const struct {
        const char *name;
        size_t off;
        size_t cap;
    } wanted[] = {
        {"Cache-Control", offsetof(it_resp, cache_control), sizeof(((it_resp *)0)->cache_control)},
        {"Pragma", offsetof(it_resp, pragma), sizeof(((it_resp *)0)->pragma)},
        {"Preference-Applied", offsetof(it_resp, preference_applied),
         sizeof(((it_resp *)0)->preference_applied)},
        {"Retry-After", offsetof(it_resp, retry_after), sizeof(((it_resp *)0)->retry_after)},
        {"WWW-Authenticate", offsetof(it_resp, www_authenticate),
         sizeof(((it_resp *)0)->www_authenticate)},
        {"Allow", offsetof(it_resp, allow), sizeof(((it_resp *)0)->allow)},
        {"Content-Type", offsetof(it_resp, content_type), sizeof(((it_resp *)0)->content_type)},
        {"Content-Security-Policy", offsetof(it_resp, csp), sizeof(((it_resp *)0)->csp)},
        {"Referrer-Policy", offsetof(it_resp, referrer_policy),
         sizeof(((it_resp *)0)->referrer_policy)},
        {"X-Content-Type-Options", offsetof(it_resp, nosniff), sizeof(((it_resp *)0)->nosniff)},
    };
    if (name_len == 10 && strncasecmp(ptr, "Set-Cookie", 10) == 0 &&
        r->n_set_cookie < (int)(sizeof r->set_cookie / sizeof r->set_cookie[0])) {
        keep_header(r->set_cookie[r->n_set_cookie++], sizeof r->set_cookie[0], v, vlen);
    }
    for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
        if (strlen(wanted[i].name) == name_len && strncasecmp(ptr, wanted[i].name, name_len) == 0) {
            keep_header((char *)r + wanted[i].off, wanted[i].cap, v, vlen);
        }
    }
    return n;
}

it_resp *it_http(const it_server *s, const it_req *req)
{
    it_resp *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    r->body = calloc(1, 1);
    CURL *h = curl_easy_init();
    if (r->body == NULL || h == NULL) {
        curl_easy_cleanup(h);
        it_resp_free(r);
        return NULL;
    }
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", s->base, req->path);
    const char *method = req->method;
    if (method == NULL) {
        method = req->body != NULL ? "POST" : "GET";
    }
    struct curl_slist *hdrs = NULL;
    char line[512];
    /* No "Expect: 100-continue": send bodies at once, as most clients do. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (req->content_type != NULL) {
        snprintf(line, sizeof(line), "Content-Type: %s", req->content_type);
        hdrs = curl_slist_append(hdrs, line);
    } else {
        hdrs = curl_slist_append(hdrs, "Content-Type:"); /* drop curl's form default */
    }
    if (req->bearer != NULL) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", req->bearer);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (req->prefer_wait > 0) {
        snprintf(line, sizeof(line), "Prefer: wait=%d", req->prefer_wait);
        hdrs = curl_slist_append(hdrs, line);
    }
    if (req->extra_header != NULL) {
        hdrs = curl_slist_append(hdrs, req->extra_header);
    }
    for (size_t i = 0; req->headers != NULL && req->headers[i] != NULL; i++) {
        hdrs = curl_slist_append(hdrs, req->headers[i]);
    }
    long timeout = req->timeout_ms > 0 ? req->timeout_ms : IT_DEFAULT_TIMEOUT_MS;
    if (req->timeout_ms <= 0 && req->prefer_wait > 0) {
        timeout += req->prefer_wait * 1000L;
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout);
    if (req->source != NULL)
        curl_easy_setopt(h, CURLOPT_INTERFACE, req->source);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->curl_error);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (req->body != NULL) {
        size_t len = req->body_len > 0 ? req->body_len : strlen(req->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    if (req->basic_user != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, req->basic_user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, req->basic_pass != NULL ? req->basic_pass : "");
    }
    double t0 = it_now();
    CURLcode cc = curl_easy_perform(h);
    r->elapsed_s = it_now() - t0;
    if (cc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    } else if (r->curl_error[0] == '\0') {
        snprintf(r->curl_error, sizeof(r->curl_error), "%s", curl_easy_strerror(cc));
    }
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (r->body_len > 0) {
        r->json = json_loadb(r->body, r->body_len, 0, NULL);
    }
    return r;
}

void it_resp_free(it_resp *r)
{
    if (r == NULL) {
        return;
    }
    json_decref(r->json);
    free(r->body);
    free(r);
}

char *it_form(const char *const *kv)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return NULL;
    }
    size_t cap = 256, len = 0;
    char *out = malloc(cap);
    if (out == NULL) {
        curl_easy_cleanup(h);
        return NULL;
    }
    out[0] = '\0';
    for (size_t i = 0; kv[i] != NULL && kv[i + 1] != NULL; i += 2) {
        char *k = curl_easy_escape(h, kv[i], 0);
        char *v = curl_easy_escape(h, kv[i + 1], 0);
        size_t need = len + strlen(k) + strlen(v) + 3;
        if (need > cap) {
            while (cap < need) {
                cap *= 2;
            }
            char *n = realloc(out, cap);
            if (n == NULL) {
                curl_free(k);
                curl_free(v);
                free(out);
                curl_easy_cleanup(h);
                return NULL;
            }
            out = n;
        }
        len += (size_t)sprintf(out + len, "%s%s=%s", len > 0 ? "&" : "", k, v);
        curl_free(k);
        curl_free(v);
    }
    curl_easy_cleanup(h);
    return out;
}

it_resp *it_form_post(const it_server *s, const char *path, const char *const *kv,
                      const it_req *opt)
{
    char *body = it_form(kv);
    if (body == NULL) {
        return NULL;
    }
    it_req req = {0};
    if (opt != NULL) {
        req = *opt;
    }
    req.method = "POST";
    req.path = path;
    req.content_type = "application/x-www-form-urlencoded";
    req.body = body;
    req.body_len = strlen(body);
    if (req.body_len == 0) {
        req.body = NULL;
    }
    it_resp *r = it_http(s, &req);
    free(body);
    return r;
}

it_resp *it_json_send(const it_server *s, const char *method, const char *path, const char *bearer,
                      json_t *body)
{
    char *text = NULL;
    if (body != NULL) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL) {
            return NULL;
        }
    }
    it_req req = {
        .method = method,
        .path = path,
        .bearer = bearer,
        .content_type = text != NULL ? "application/json" : NULL,
        .body = text,
    };
    it_resp *r = it_http(s, &req);
    free(text);
    return r;
}

it_resp *it_try_token_poll(const it_server *s, const char *client_id, const char *device_code,
                           int wait_s)
{
    it_req opt = {.prefer_wait = wait_s};
    return it_form_post(s, "/oauth/token",
                        (const char *[]){"grant_type", IT_DEVICE_CODE_GRANT, "device_code",
                                         device_code, "client_id", client_id, NULL},
                        &opt);
}

static char *escape_path(const char *code)
{
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return NULL;
    }
    char *e = curl_easy_escape(h, code, 0);
    char *copy = e != NULL ? strdup(e) : NULL;
    curl_free(e);
    curl_easy_cleanup(h);
    return copy;
}

it_resp *it_try_approve(const it_server *s, const char *session, const char *code,
                        const char *user_code, const char *password)
{
    char *esc = escape_path(code);
    if (esc == NULL) {
        return NULL;
    }
    char path[512];
    snprintf(path, sizeof(path), "/v1/login-requests/%s/approve", esc);
    free(esc);
    return it_json_send(s, "POST", path, session,
                        json_pack("{s:s, s:s}", "user_code", user_code, "password", password));
}

/* --- response accessors -------------------------------------------------------------------- */

const char *it_jstr(const it_resp *r, const char *key)
{
    if (r == NULL || !json_is_object(r->json)) {
        return NULL;
    }
    return json_string_value(json_object_get(r->json, key));
}

long long it_jint(const it_resp *r, const char *key)
{
    if (r == NULL || !json_is_object(r->json)) {
        return -1;
    }
    json_t *v = json_object_get(r->json, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

int it_jbool(const it_resp *r, const char *key)
{
    if (r == NULL || !json_is_object(r->json)) {
        return -1;
    }
    json_t *v = json_object_get(r->json, key);
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

int it_has_prefix(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

int it_contains_ci(const char *haystack, const char *needle)
{
    return haystack != NULL && strcasestr(haystack, needle) != NULL;
}

void it_expect_(const it_resp *r, long status, const char *error, const char *file, int line)
{
    if (r == NULL) {
        print_error("no response (out of memory)\n");
        _fail(file, line);
        return;
    }
    if (r->status != status) {
        print_error("expected HTTP %ld, got %ld%s%s; body: %.600s\n", status, r->status,
                    r->curl_error[0] ? "; curl: " : "", r->curl_error, r->body);
        _fail(file, line);
    }
    if (error != NULL) {
        const char *got = it_jstr(r, "error");
        if (got == NULL || strcmp(got, error) != 0) {
            print_error("expected error \"%s\", got %s%s%s; body: %.600s\n", error, got ? "\"" : "",
                        got ? got : "none", got ? "\"" : "", r->body);
            _fail(file, line);
        }
    }
}

void it_expect_error_shape_(const it_resp *r, const char *file, int line)
{
    if (r == NULL || !json_is_object(r->json)) {
        print_error("error body is not a JSON object: %.600s\n", r ? r->body : "(null)");
        _fail(file, line);
        return;
    }
    const char *e = it_jstr(r, "error");
    const char *d = it_jstr(r, "error_description");
    if (e == NULL || e[0] == '\0' || d == NULL) {
        print_error("error body lacks the RFC 6749 5.2 \"error\"/\"error_description\" "
                    "strings: %.600s\n",
                    r->body);
        _fail(file, line);
    }
    if (!it_contains_ci(r->content_type, "application/json")) {
        print_error("error body Content-Type is \"%s\", expected application/json\n",
                    r->content_type);
        _fail(file, line);
    }
}

void it_expect_oauth_error_(const it_resp *r, const char *error, const char *file, int line)
{
    it_expect_(r, 400, error, file, line);
    it_expect_error_shape_(r, file, line);
    if (!it_contains_ci(r->cache_control, "no-store") || !it_contains_ci(r->pragma, "no-cache")) {
        print_error("token endpoint answer lacks Cache-Control: no-store / Pragma: no-cache "
                    "(got \"%s\" / \"%s\")\n",
                    r->cache_control, r->pragma);
        _fail(file, line);
    }
}

/* --- flow steps ---------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
    assert_non_null(src);
    assert_true(strlen(src) < cap);
    memcpy(dst, src, strlen(src) + 1);
}

void it_device_authorization(const it_server *s, const char *client_id, const char *name,
                             const char *kind, const char *scope, it_devauth *out)
{
    const char *kv[12];
    int i = 0;
    kv[i++] = "client_id";
    kv[i++] = client_id;
    if (name != NULL) {
        kv[i++] = "device_name";
        kv[i++] = name;
    }
    if (kind != NULL) {
        kv[i++] = "device_kind";
        kv[i++] = kind;
    }
    if (scope != NULL) {
        kv[i++] = "scope";
        kv[i++] = scope;
    }
    kv[i] = NULL;
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, NULL);
    it_expect(r, 200, NULL);
    memset(out, 0, sizeof(*out));
    copy_str(out->device_code, sizeof(out->device_code), it_jstr(r, "device_code"));
    copy_str(out->user_code, sizeof(out->user_code), it_jstr(r, "user_code"));
    copy_str(out->verification_uri, sizeof(out->verification_uri), it_jstr(r, "verification_uri"));
    copy_str(out->verification_uri_complete, sizeof(out->verification_uri_complete),
             it_jstr(r, "verification_uri_complete"));
    out->expires_in = it_jint(r, "expires_in");
    out->interval = it_jint(r, "interval");
    const char *hash = strchr(out->verification_uri_complete, '#');
    if (hash == NULL) {
        print_error("verification_uri_complete has no '#' fragment: %s\n",
                    out->verification_uri_complete);
        fail();
    }
    copy_str(out->scan_secret, sizeof(out->scan_secret), hash + 1);
    it_resp_free(r);
}

void it_phone_sign_in(const it_server *s, const char *user, const char *password,
                      const char *device_name, it_phone *out)
{
    json_t *body = json_pack("{s:s, s:s}", "username", user, "password", password);
    if (device_name != NULL) {
        json_object_set_new(body, "device_name", json_string(device_name));
    }
    it_resp *r = it_json_send(s, "POST", "/v1/sessions", NULL, body);
    it_expect(r, 201, NULL);
    memset(out, 0, sizeof(*out));
    copy_str(out->session, sizeof(out->session), it_jstr(r, "session_token"));
    out->device_id = it_jint(r, "device_id");
    json_t *acct = json_object_get(r->json, "account");
    out->account_id = json_is_integer(json_object_get(acct, "id"))
                          ? (long long)json_integer_value(json_object_get(acct, "id"))
                          : -1;
    it_resp_free(r);
}

static it_resp *lr_call(const it_server *s, const char *method, const it_phone *p, const char *code,
                        const char *suffix, json_t *body)
{
    char *esc = escape_path(code);
    assert_non_null(esc);
    char path[512];
    snprintf(path, sizeof(path), "/v1/login-requests/%s%s", esc, suffix);
    free(esc);
    it_resp *r = it_json_send(s, method, path, p != NULL ? p->session : NULL, body);
    assert_non_null(r);
    return r;
}

it_resp *it_view(const it_server *s, const it_phone *p, const char *code)
{
    return lr_call(s, "GET", p, code, "", NULL);
}

it_resp *it_approve(const it_server *s, const it_phone *p, const char *code, const char *user_code,
                    const char *password)
{
    return lr_call(s, "POST", p, code, "/approve",
                   json_pack("{s:s, s:s}", "user_code", user_code, "password", password));
}

it_resp *it_deny(const it_server *s, const it_phone *p, const char *code)
{
    return lr_call(s, "POST", p, code, "/deny", json_object());
}

it_resp *it_token_poll(const it_server *s, const char *client_id, const char *device_code,
                       int wait_s)
{
    it_resp *r = it_try_token_poll(s, client_id, device_code, wait_s);
    assert_non_null(r);
    return r;
}

it_resp *it_refresh(const it_server *s, const char *client_id, const char *refresh_token)
{
    it_resp *r = it_form_post(s, "/oauth/token",
                              (const char *[]){"grant_type", "refresh_token", "refresh_token",
                                               refresh_token, "client_id", client_id, NULL},
                              NULL);
    assert_non_null(r);
    return r;
}

it_resp *it_introspect(const it_server *s, const char *token)
{
    it_req opt = {.bearer = IT_INTROSPECTION_SECRET};
    it_resp *r = it_form_post(s, "/oauth/introspect", (const char *[]){"token", token, NULL}, &opt);
    assert_non_null(r);
    return r;
}

int it_introspect_active(const it_server *s, const char *token)
{
    it_resp *r = it_introspect(s, token);
    it_expect(r, 200, NULL);
    int active = it_jbool(r, "active");
    if (active < 0) {
        print_error("introspection body has no boolean \"active\": %s\n", r->body);
        fail();
    }
    it_resp_free(r);
    return active;
}

it_resp *it_revoke_device(const it_server *s, const it_phone *p, long long device_id)
{
    char path[64];
    snprintf(path, sizeof(path), "/v1/devices/%lld", device_id);
    it_resp *r = it_json_send(s, "DELETE", path, p->session, NULL);
    assert_non_null(r);
    return r;
}

void it_clock_advance(const it_server *s, long long ms)
{
    it_resp *r = it_json_send(s, "POST", "/_test/clock", NULL,
                              json_pack("{s:I}", "advance_ms", (json_int_t)ms));
    it_expect(r, 200, NULL);
    it_resp_free(r);
}

void it_expect_tokens(const it_resp *r, it_tokens *out)
{
    it_expect(r, 200, NULL);
    const char *at = it_jstr(r, "access_token");
    const char *rt = it_jstr(r, "refresh_token");
    if (!it_has_prefix(at, "qrl_at_") || !it_has_prefix(rt, "qrl_rt_")) {
        print_error("token response lacks qrl_at_/qrl_rt_ tokens: %s\n", r->body);
        fail();
    }
    const char *tt = it_jstr(r, "token_type");
    assert_non_null(tt);
    assert_string_equal(tt, "Bearer");
    assert_true(it_jint(r, "expires_in") > 0);
    if (!it_contains_ci(r->cache_control, "no-store")) {
        print_error("token response Cache-Control is \"%s\", expected no-store\n",
                    r->cache_control);
        fail();
    }
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
        copy_str(out->access_token, sizeof(out->access_token), at);
        copy_str(out->refresh_token, sizeof(out->refresh_token), rt);
        out->expires_in = it_jint(r, "expires_in");
    }
}

long long it_find_device(const it_server *s, const it_phone *p, const char *name)
{
    it_resp *r = it_json_send(s, "GET", "/v1/devices", p->session, NULL);
    it_expect(r, 200, NULL);
    json_t *arr = json_object_get(r->json, "devices");
    assert_true(json_is_array(arr));
    long long id = -1;
    size_t i;
    json_t *d;
    json_array_foreach(arr, i, d)
    {
        const char *n = json_string_value(json_object_get(d, "name"));
        json_t *jid = json_object_get(d, "id");
        if (n != NULL && strcmp(n, name) == 0 && json_is_integer(jid) &&
            json_integer_value(jid) > id) {
            id = (long long)json_integer_value(jid);
        }
    }
    it_resp_free(r);
    return id;
}

void it_login_screen(const it_server *s, const it_phone *p, it_tokens *out,
                     long long *device_id_out)
{
    it_devauth da;
    it_device_authorization(s, IT_CLIENT_ID, "Living Room TV", "tv", "profile", &da);
    it_resp *r = it_view(s, p, da.scan_secret);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_approve(s, p, da.scan_secret, da.user_code, IT_PASSWORD);
    it_expect(r, 200, NULL);
    it_resp_free(r);
    r = it_token_poll(s, IT_CLIENT_ID, da.device_code, 0);
    it_expect_tokens(r, out);
    it_resp_free(r);
    if (device_id_out != NULL) {
        *device_id_out = it_find_device(s, p, "Living Room TV");
        assert_true(*device_id_out > 0);
    }
}

long long it_db_count(const it_server *s, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long long n = -1;

    if (s->pg) {
        return it_pg_count(s->db, sql);
    }
    assert_int_equal(sqlite3_open_v2(s->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}
