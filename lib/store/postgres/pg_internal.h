/* SPDX-License-Identifier: MIT */
/*
 * Internal to the PostgreSQL store (lib/store/postgres/): what its files share.
 *
 * The PostgreSQL store backend: several server processes ("nodes") on one database, each
 * implementing every function of qrl_store_methods (include/qrlogin/store.h) with libpq.
 *
 * Why it looks the way it does: on one machine the SQLite store makes every write atomic by
 * running it on one writer thread; here other nodes write the same rows at the same moment, so
 * every guarantee of store.h has to come from the database itself:
 * - a login request changes state only through one conditional UPDATE whose success is judged
 *   by the number of rows it returned: under READ COMMITTED PostgreSQL re-checks the WHERE
 *   clause against the newest version of a row a concurrent transaction changed, so of any
 *   number of racing nodes exactly one wins (PST_LR_TRANSITION, statements.c);
 * - writes of more than one statement (redemption, rotation, a device with its tokens) run in
 *   one transaction that locks the rows it decides on first (SELECT ... FOR UPDATE), always in
 *   the order login request -> device -> token, so two of them cannot deadlock;
 * - commits are durable: synchronous_commit is never "off" on a connection of this store
 *   (connections.c); the lazy writes of store.h turn it off for their own transaction only;
 * - every write that changes a login request's state tells every node once it has committed
 *   (notify.c): the statement returns the ids it changed, and the node's notifier thread sends
 *   them, many commits' ids in one NOTIFY, from a connection of its own; so do a device
 *   revocation and a new notice. Notifying inside the writes' own transactions would serialise
 *   every state change of the whole cluster on PostgreSQL's notification lock, held across
 *   each commit's WAL flush;
 * - nothing is kept in a node's memory that another node could make stale: user codes are an
 *   index, the RFC 8628 poll bookkeeping is a column (lr_poll), and lr_stamp is NULL.
 *
 * Usage profile it is tuned for: a few nodes, each with dozens of worker threads running short
 * methods, against one PostgreSQL server on the same network. A method leases one connection of
 * the node's pool for its duration (connections.c), runs prepared statements on it (prepared
 * once per connection, on first use) and gives it back; a round trip costs tens of
 * microseconds, a durable commit a WAL flush of the server, which PostgreSQL shares between
 * concurrent commits.
 *
 * Lifecycle: qrl_store_postgres_open() -> methods from any thread -> st->m->close() once no
 * thread uses the handle any more. Close stops the listener thread and closes every connection.
 *
 * Where things are (this folder; each file opens with why it is shaped the way it is):
 * - store.c: the handle: open, close, the method table, read scopes;
 * - schema.c: the migrations and the schema version table, under an advisory lock;
 * - statements.c: every SQL statement, the column lists and the row decoders, parameters,
 *   errors, the transaction helpers;
 * - connections.c: connecting, the pool, reconnection after the database went away;
 * - notify.c: LISTEN/NOTIFY: the listener thread and set_notify;
 * - health.c: the health method: write statistics and the readiness probe;
 * - accounts.c, devices.c, tokens.c, login_requests.c, rate_limits.c (with the sweep),
 *   passkeys.c, notices.c, challenges.c: the bodies of the methods, one file per entity. A body
 *   is a static <method>_c(struct pg_conn *c, ...) made a method by PG_READ or PG_WRITE
 *   (below), which lease the connection around it.
 * Only this header is shared between them; no file includes another's code. Functions shared
 * across files carry the qrl__pg_ prefix.
 *
 * What to update when...
 * - the schema changes: append one SQL string to migrations[] (schema.c; never edit a released
 *   entry);
 * - a statement is added: one enum pg_stmt entry (below) and its SQL and parameter types in
 *   stmt_def[] (statements.c);
 * - a record field is added: the *_COLS list and its qrl__pg_read_*() (statements.c), and the
 *   INSERT;
 * - a method is added: its body in its entity's file, its prototype below, the table in store.c.
 *
 * Backend failures are logged to stderr as "qrlogin: postgres: <message>": the SQLSTATE and the
 * primary message of the server's error, never its DETAIL (which quotes the values of a key) and
 * never a bound value. No libpq type leaves this folder.
 */
#ifndef QRL_STORE_PG_INTERNAL_H
#define QRL_STORE_PG_INTERNAL_H

#include <endian.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <libpq-fe.h>

#include "qrlogin/store.h"

/* The channel every node LISTENs on and every state change NOTIFYs (notify.c). */
#define QRL__PG_CHANNEL "qrlogin"

/* The first key of the advisory locks of this program ("QRLG"); the second says which. The
 * one-key locks are challenge_put's, keyed by a device id: PostgreSQL keeps one-key and
 * two-key advisory locks apart, so the two kinds never meet. */
#define QRL__PG_LOCK_CLASS 1364348999
#define QRL__PG_LOCK_MIGRATE 1
#define QRL__PG_LOCK_SWEEP 2

enum pg_stmt {
    PST_ACCOUNT_INSERT,
    PST_ACCOUNT_GET,
    PST_ACCOUNT_BY_NAME,
    PST_ACCOUNT_SET_PW,
    PST_DEVICE_INSERT,
    PST_DEVICE_GET,
    PST_DEVICE_LIST,
    PST_DEVICE_TOUCH,
    PST_DEVICE_REVOKE,
    PST_DEVICE_LOCK,
    PST_DEVICE_SET_PUBKEY,
    PST_TOKEN_INSERT,
    PST_TOKEN_LOOKUP,
    PST_TOKEN_LOOKUP_LOCK,
    PST_TOKEN_DEVICE,
    PST_TOKEN_AUTH,
    PST_TOKEN_SET_USED,
    PST_TOKEN_REVOKE,
    PST_LR_INSERT,
    PST_LR_EXPIRE_CODE,
    PST_LR_GET,
    PST_LR_GET_LOCK,
    PST_LR_BY_CODE,
    PST_LR_TRANSITION,
    PST_LR_APPROVER,
    PST_LR_SET_DENIED,
    PST_LR_SET_REDEEMED,
    PST_LR_BY_DEVICE,
    PST_LR_POLL,
    PST_RL_HIT,
    PST_RL_PEEK,
    PST_RL_TAKE,
    PST_RL_GIVE,
    PST_SWEEP_LOCK,
    PST_SWEEP_LR,
    PST_SWEEP_LR_UNDECIDED,
    PST_SWEEP_RL,
    PST_PASSKEY_INSERT,
    PST_PASSKEY_LIST,
    PST_PASSKEY_GET,
    PST_PASSKEY_USE,
    PST_PASSKEY_DELETE,
    PST_NOTICE_INSERT,
    PST_NOTICE_LIST,
    PST_NOTICE_GET,
    PST_NOTICE_ACK,
    PST_CHAL_LOCK,
    PST_CHAL_PUT,
    PST_CHAL_TAKE,
    PST_SWEEP_CHAL,
    PST_LR_POLL_FIND,
    PST_RL_FIRST_HIT,
    PST_LR_REDEEM,
    PST_COUNT
};

/* One connection of the pool. Used by one thread at a time (the one leasing it). */
/* Change ids a connection's open transaction made, told to every node once it commits. */
#define PG_CONN_NOTES 8

struct pg_conn {
    PGconn *pg;                        /* NULL: not connected (yet, or since it broke) */
    uint64_t epoch;                    /* the pool's epoch when it connected */
    unsigned char prepared[PST_COUNT]; /* statement i is prepared on this connection */
    int broken;                        /* a statement found it broken: close on release */
    struct pg_conn *next;              /* in pg_store.idle */
    struct pg_store *store;            /* its pool's (NULL: the probe's, which changes nothing) */
    int64_t notes[PG_CONN_NOTES];      /* qrl__pg_changed() inside a transaction */
    int nnotes;
    int notes_lost; /* more than PG_CONN_NOTES: "0" (anything may have changed) instead */
};

/* The statistics of the health method (health.c). */
struct pg_stats {
    _Atomic uint64_t count[QRL_STORE_HIST_MAX + 1];
    _Atomic uint64_t sum;
};

/* The listener of notify.c. */
/* The queue of notify.c: the ids of committed changes, waiting to be sent to every node. */
struct pg_notifier {
    pthread_mutex_t mu; /* guards q, n, cap and lost */
    int64_t *q;         /* in order of commit */
    size_t n, cap;
    int lost;              /* the queue overflowed: send "0" (anything may have changed) */
    _Atomic uint64_t sent; /* NOTIFY statements that succeeded */
};

/* The thread of notify.c and its connection, which listens for the other nodes' changes and
 * sends this node's. */
struct pg_listener {
    pthread_mutex_t mu; /* guards fn, ud, the start, failed and every call of fn */
    void (*fn)(void *ud, int64_t lr_id);
    void *ud;
    pthread_t thread;
    _Atomic int started;
    int failed;         /* it could not be started: changes are sent from the writers' own
                           connections */
    _Atomic int hooked; /* a hook was installed once: the connection LISTENs from then on */
    int wake[2];        /* a pipe: a byte wakes the thread (ids to send, a hook, or stop) */
    _Atomic int stop;
    _Atomic uint64_t listens; /* successful LISTENs so far (each is followed by fn(ud, 0)) */
};

typedef struct pg_store {
    struct qrl_store base; /* first member: the handle is a qrl_store */
    char *conninfo;        /* the caller's; may hold a password: zeroed at close */
    /* The pool (connections.c). */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pg_conn *conns; /* pool_size of them */
    int pool_size;
    struct pg_conn *idle;   /* not leased, linked by next */
    _Atomic uint64_t epoch; /* moves on when a connection is found broken */
    _Atomic int down;       /* the last connection attempt failed (logged once per outage) */
    struct pg_listener listen;
    struct pg_notifier notifier;
    /* The readiness probe's own connection (health.c). */
    pthread_mutex_t probe_mu;
    struct pg_conn probe;
    struct pg_stats commits;
} pg_store;

/* --- parameters (statements.c runs them) ---------------------------------------------------
 * Every parameter goes in binary form with the type the statement declares ('i' int8, 't'
 * text, 'b' bytea), so no value is ever formatted into SQL text or parsed by the server. */
#define PG_MAX_PARAMS 24

struct pg_params {
    int n;
    const char *v[PG_MAX_PARAMS];
    int len[PG_MAX_PARAMS];
    int fmt[PG_MAX_PARAMS];
    uint64_t be[PG_MAX_PARAMS]; /* integers in network byte order; v[] points here */
};

static inline void p_i64(struct pg_params *p, int64_t x)
{
    int k = p->n++;

    p->be[k] = htobe64((uint64_t)x);
    p->v[k] = (const char *)&p->be[k];
    p->len[k] = 8;
    p->fmt[k] = 1;
}

/* A string, or SQL NULL when s is NULL. */
static inline void p_text(struct pg_params *p, const char *s)
{
    int k = p->n++;

    p->v[k] = s;
    p->len[k] = s != NULL ? (int)strlen(s) : 0;
    p->fmt[k] = 1;
}

static inline void p_blob(struct pg_params *p, const void *b, size_t n)
{
    int k = p->n++;

    p->v[k] = b;
    p->len[k] = (int)n;
    p->fmt[k] = 1;
}

static inline void p_hash(struct pg_params *p, const qrl_hash *h)
{
    p_blob(p, h->b, QRL_HASH_BYTES);
}

/* A new device's columns, in the order of every statement that inserts one: name, kind,
 * address, created_ms, and its DPoP key (store.h, qrl_device_rec; SQL NULL when it has none). */
static inline void p_device(struct pg_params *p, const qrl_device_rec *dev)
{
    p_text(p, dev->name);
    p_text(p, dev->kind);
    p_text(p, dev->address);
    p_i64(p, dev->created_ms);
    if (dev->has_pubkey)
        p_blob(p, dev->pubkey, QRL_PUBKEY_BYTES);
    else
        p_blob(p, NULL, 0);
}

/* True when `s` is a NUL-terminated string that fits an array of `cap` bytes. */
static inline int str_fits(const char *s, size_t cap)
{
    return s != NULL && memchr(s, '\0', cap) != NULL;
}

/* Sizes handed to LIMIT. */
static inline int64_t limit_of(size_t max)
{
    return max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
}

/* --- statements.c: statements, errors, transactions, row decoders -------------------------- */

void qrl__pg_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Open-time errors go to the caller's buffer, or to the log when there is none. */
void qrl__pg_set_errbuf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* libpq's message for the connection, on one line (its messages end in newlines). */
void qrl__pg_conn_message(PGconn *pg, char *out, size_t len);

/* Runs statement `id` (prepared on `c` on first use) with `p`; on success *out is its result
 * (free it with PQclear), else NULL and the error mapped as qrl__pg_fail() does. Results come
 * in binary form (the qrl__pg_col_* readers). */
qrl_err qrl__pg_run(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p, PGresult **out,
                    const char *what);
/* As qrl__pg_run, for statements whose rows do not matter: *rows gets how many the statement
 * returned or changed. */
qrl_err qrl__pg_exec(struct pg_conn *c, enum pg_stmt id, const struct pg_params *p, int64_t *rows,
                     const char *what);
/* The SQLSTATE of the last failed qrl__pg_run on this thread ("" when none): passkey_add tells
 * a missing account (foreign key) from other failures. */
const char *qrl__pg_last_sqlstate(void);
/* Maps a failed result (or a NULL one: the connection) to a qrl_err: a unique violation is
 * QRL_ERR_EXISTS; a lost connection, a serialization failure, a deadlock, a lock or statement
 * timeout, a database shutting down or out of resources QRL_ERR_BUSY (the server answers 503
 * with Retry-After); the rest QRL_ERR_STORE. Logs all but the unique violation. */
qrl_err qrl__pg_fail(struct pg_conn *c, const PGresult *r, const char *what);
/* A value read back does not fit its record: someone else wrote the row, or it is damaged. */
qrl_err qrl__pg_bad_row(const char *what);

/* Transactions of several statements. Begin on a connection outside any; end commits when
 * `commit` (a COMMIT the server turned into ROLLBACK is QRL_ERR_STORE) and rolls back
 * otherwise, or when the commit failed. */
qrl_err qrl__pg_begin(struct pg_conn *c);
qrl_err qrl__pg_end(struct pg_conn *c, int commit);
/* The same transaction's writes need not wait for the flush (store.h's lazy writes). */
qrl_err qrl__pg_lazy(struct pg_conn *c);

/* Binary column readers. An integer column of any width (and a boolean) reads as int64; NULL
 * reads as 0. col_text/col_blob fail (-1) on NULL or when the value does not fit. */
int64_t qrl__pg_col_i64(const PGresult *r, int row, int col);
int qrl__pg_col_text(const PGresult *r, int row, int col, char *dst, size_t cap);
int qrl__pg_col_hash(const PGresult *r, int row, int col, qrl_hash *h);

/* The decoders of the *_COLS lists (statements.c), starting at column `b` of row `row`. */
qrl_err qrl__pg_read_account(const PGresult *r, int row, int b, qrl_account_rec *out);
qrl_err qrl__pg_read_device(const PGresult *r, int row, int b, qrl_device_rec *out);
qrl_err qrl__pg_read_token(const PGresult *r, int row, qrl_token_rec *out);
qrl_err qrl__pg_read_lr(const PGresult *r, int row, qrl_lr_rec *out);
qrl_err qrl__pg_read_passkey(const PGresult *r, int row, qrl_passkey_rec *out);
qrl_err qrl__pg_read_notice(const PGresult *r, int row, qrl_notice_rec *out);
/* PST_TOKEN_AUTH: TOKEN_COLS, then ACCOUNT_COLS at this column and DEVICE_COLS at the next. */
#define PG_AUTH_ACCOUNT_COL 12
#define PG_AUTH_DEVICE_COL 18

/* --- schema.c ------------------------------------------------------------------------------ */

/* Brings the database `pg` is connected to to the schema this program knows. */
qrl_err qrl__pg_schema_migrate(PGconn *pg, char *errbuf, size_t errlen);

/* --- connections.c ------------------------------------------------------------------------- */

/* Opens a connection to s->conninfo within timeout_ms, with the store's session settings.
 * On failure *out is NULL and `err` says why (libpq's words: never the password). */
qrl_err qrl__pg_connect(const pg_store *s, int timeout_ms, PGconn **out, char *err, size_t errlen);
/* Sets up the pool (the first connection, already open and migrated, becomes its first). */
qrl_err qrl__pg_pool_init(pg_store *s, PGconn *first);
void qrl__pg_pool_close(pg_store *s);
/* Leases a connection for one method, connected (reconnecting one that broke or went stale);
 * QRL_ERR_BUSY when the database cannot be reached. */
qrl_err qrl__pg_lease(pg_store *s, struct pg_conn **out);
/* Gives it back; closes it if it broke (and moves the epoch on: every connection opened before
 * is closed before its next use). */
void qrl__pg_release(pg_store *s, struct pg_conn *c);

/* A method from a body `name##_c(struct pg_conn *c, ...)`: lease, body, release. PG_WRITE also
 * counts the method's time in the commit statistics (health.c). */
#define PG_READ(name, params, args)                                                                \
    qrl_err qrl__pg_##name params                                                                  \
    {                                                                                              \
        struct pg_conn *c;                                                                         \
        qrl_err rc;                                                                                \
        if (st == NULL)                                                                            \
            return QRL_ERR_INVALID;                                                                \
        if ((rc = qrl__pg_lease((pg_store *)st, &c)) != QRL_OK)                                    \
            return rc;                                                                             \
        rc = name##_c args;                                                                        \
        qrl__pg_release((pg_store *)st, c);                                                        \
        return rc;                                                                                 \
    }
#define PG_WRITE(name, params, args)                                                               \
    qrl_err qrl__pg_##name params                                                                  \
    {                                                                                              \
        struct pg_conn *c;                                                                         \
        uint64_t t0 = qrl__pg_now_us();                                                            \
        qrl_err rc;                                                                                \
        if (st == NULL)                                                                            \
            return QRL_ERR_INVALID;                                                                \
        if ((rc = qrl__pg_lease((pg_store *)st, &c)) != QRL_OK)                                    \
            return rc;                                                                             \
        rc = name##_c args;                                                                        \
        qrl__pg_release((pg_store *)st, c);                                                        \
        qrl__pg_stat_write((pg_store *)st, t0, rc);                                                \
        return rc;                                                                                 \
    }

/* --- notify.c ------------------------------------------------------------------------------ */

qrl_err qrl__pg_set_notify(qrl_store *st, void (*fn)(void *ud, int64_t lr_id), void *ud);
void qrl__pg_listener_init(pg_store *s);
/* Sends what is queued (when the database can be reached), stops the thread (if it runs),
 * closes its connection and frees the queue. */
void qrl__pg_listener_stop(pg_store *s);
/* Statement results: `id` (a change id of store.h's set_notify) was changed on `c`. Told to
 * every node once the change has committed: at once when `c` is outside a transaction (the
 * statement committed by itself), else when qrl__pg_end commits (and never on a rollback). */
void qrl__pg_changed(struct pg_conn *c, int64_t id);
/* Hands committed change ids to the node's notifier (starting it on first use). Without a
 * notifier thread the ids are sent at once on `c`, which must be outside a transaction. */
void qrl__pg_notify_post(struct pg_conn *c, const int64_t *ids, size_t n);
/* The NOTIFY payloads of `n` ids: comma-separated decimal ids, each payload shorter than
 * PostgreSQL's limit, the payloads separated by ';' in `out` (cap bytes). Returns the length
 * written (without the NUL), or 0 when `out` is too small. */
size_t qrl__pg_payloads(const int64_t *ids, size_t n, char *out, size_t cap);

/* --- health.c ------------------------------------------------------------------------------ */

uint64_t qrl__pg_now_us(void);
/* A write method that began at t0 (qrl__pg_now_us) ended with rc. */
void qrl__pg_stat_write(pg_store *s, uint64_t t0, qrl_err rc);
qrl_err qrl__pg_health(qrl_store *st, int probe, qrl_store_health *out);
void qrl__pg_probe_close(pg_store *s);

/* --- the methods (the table in store.c) ---------------------------------------------------- */

qrl_err qrl__pg_account_create(qrl_store *st, qrl_account_rec *acc);
qrl_err qrl__pg_account_get(qrl_store *st, int64_t id, qrl_account_rec *out);
qrl_err qrl__pg_account_by_name(qrl_store *st, const char *username, qrl_account_rec *out);
qrl_err qrl__pg_account_set_password(qrl_store *st, int64_t id, const char *pw_hash);
qrl_err qrl__pg_device_create(qrl_store *st, qrl_device_rec *dev, qrl_token_rec *tok, size_t ntok);
qrl_err qrl__pg_device_get(qrl_store *st, int64_t id, qrl_device_rec *out);
qrl_err qrl__pg_device_list(qrl_store *st, int64_t account_id, qrl_device_rec *out, size_t max,
                            size_t *n);
qrl_err qrl__pg_device_touch(qrl_store *st, int64_t device_id, int64_t now_ms, const char *address);
qrl_err qrl__pg_device_revoke(qrl_store *st, int64_t account_id, int64_t device_id, int64_t now_ms);
qrl_err qrl__pg_device_set_pubkey(qrl_store *st, int64_t account_id, int64_t device_id,
                                  const unsigned char pubkey[QRL_PUBKEY_BYTES]);
qrl_err qrl__pg_token_insert(qrl_store *st, const qrl_token_rec *tok);
qrl_err qrl__pg_token_lookup(qrl_store *st, const qrl_hash *h, qrl_token_rec *out);
qrl_err qrl__pg_token_rotate(qrl_store *st, const qrl_hash *old, int64_t now_ms,
                             qrl_token_rec *new_tok, size_t n, qrl_token_rec *old_out);
qrl_err qrl__pg_token_revoke(qrl_store *st, const qrl_hash *h, int64_t now_ms);
qrl_err qrl__pg_token_auth(qrl_store *st, const qrl_hash *h, qrl_token_rec *tok,
                           qrl_account_rec *acc, qrl_device_rec *dev);
qrl_err qrl__pg_lr_create(qrl_store *st, qrl_lr_rec *lr);
qrl_err qrl__pg_lr_get(qrl_store *st, int64_t id, qrl_lr_rec *out);
qrl_err qrl__pg_lr_find(qrl_store *st, qrl_lr_key kind, const void *key, int64_t now_ms,
                        qrl_lr_rec *out);
qrl_err qrl__pg_lr_transition(qrl_store *st, const qrl_lr_cas *cas);
qrl_err qrl__pg_lr_redeem(qrl_store *st, int64_t id, int64_t now_ms, qrl_device_rec *dev,
                          qrl_token_rec *tok, size_t ntok, qrl_lr_state *state_out);
qrl_err qrl__pg_lr_by_device(qrl_store *st, int64_t device_id, int64_t *ids, size_t max, size_t *n);
qrl_err qrl__pg_lr_approve_redeem(qrl_store *st, const qrl_lr_cas *cas, qrl_device_rec *dev,
                                  qrl_token_rec *tok, size_t ntok);
qrl_err qrl__pg_lr_poll(qrl_store *st, int64_t id, int64_t now_ms, int exempt, int slack_ms,
                        int step_s, int max_s, int *interval_s);
qrl_err qrl__pg_lr_poll_find(qrl_store *st, const qrl_lr_poll_req *poll, qrl_lr_rec *out,
                             int *interval_s);
qrl_err qrl__pg_ratelimit_first_hit(qrl_store *st, const char *seen_key, const char *count_key,
                                    int64_t now_ms, int64_t window_ms, int64_t *count);
qrl_err qrl__pg_ratelimit_hit(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                              int64_t *count);
qrl_err qrl__pg_ratelimit_peek(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                               int64_t *count);
qrl_err qrl__pg_ratelimit_take(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                               int64_t limit, int64_t *retry_ms);
qrl_err qrl__pg_ratelimit_give(qrl_store *st, const char *key, int64_t now_ms, int64_t window_ms,
                               int64_t limit);
qrl_err qrl__pg_sweep(qrl_store *st, int64_t now_ms, int64_t keep_ms);
qrl_err qrl__pg_passkey_add(qrl_store *st, qrl_passkey_rec *pk);
qrl_err qrl__pg_passkey_list(qrl_store *st, int64_t account_id, qrl_passkey_rec *out, size_t max,
                             size_t *n);
qrl_err qrl__pg_passkey_get(qrl_store *st, const unsigned char *cred_id, size_t cred_id_len,
                            qrl_passkey_rec *out);
qrl_err qrl__pg_passkey_use(qrl_store *st, int64_t id, uint32_t old_count, uint32_t new_count,
                            int64_t now_ms);
qrl_err qrl__pg_passkey_delete(qrl_store *st, int64_t account_id, int64_t id);
qrl_err qrl__pg_notice_add(qrl_store *st, const qrl_notice_rec *n, int64_t older_than_ms);
qrl_err qrl__pg_notice_list(qrl_store *st, int64_t account_id, int64_t device_id, int64_t since_ms,
                            qrl_notice_rec *out, size_t max, size_t *n);
qrl_err qrl__pg_notice_get(qrl_store *st, int64_t account_id, int64_t id, qrl_notice_rec *out);
qrl_err qrl__pg_notice_ack(qrl_store *st, int64_t account_id, int64_t id, int64_t device_id,
                           int64_t now_ms);
qrl_err qrl__pg_challenge_put(qrl_store *st, const qrl_challenge_rec *ch, int64_t now_ms);
qrl_err qrl__pg_challenge_take(qrl_store *st, const qrl_hash *h, int64_t now_ms,
                               qrl_challenge_rec *out);

/* --- devices.c and tokens.c: pieces shared with other entities, run inside the caller's
 * transaction ------------------------------------------------------------------------------- */

int qrl__pg_device_valid(const qrl_device_rec *dev);
int qrl__pg_tokens_valid(const qrl_token_rec *tok, size_t n);
qrl_err qrl__pg_insert_device(struct pg_conn *c, const qrl_device_rec *dev, int64_t account_id,
                              int64_t *id);
qrl_err qrl__pg_insert_tokens(struct pg_conn *c, const qrl_token_rec *tok, size_t n,
                              int64_t device_id);
/* Revokes active device `device_id` of `account_id` with its tokens and notifies "-<id>";
 * *changed says whether it was active. */
qrl_err qrl__pg_revoke_device(struct pg_conn *c, int64_t account_id, int64_t device_id,
                              int64_t now_ms, int *changed);

#endif
