/* SPDX-License-Identifier: MIT */
/*
 * The handle of the SQLite store: qrl_store_sqlite_open(), close, the table of methods, and the
 * write methods generated from QRL__SQLITE_WRITES (sqlite_internal.h, which also describes the
 * whole backend and the files of this folder).
 *
 * Why the writes are generated: every write runs on the writer thread (writer.c), so each
 * write method packs its arguments into a struct, hands a thunk that unpacks them to
 * qrl__sqlite_submit() with its durability, and waits. Written by hand that was three copies
 * per method (an args struct, a thunk, the method) for eighteen methods, where a wrong field
 * or a swapped durability hid easily. Now each write is one line of the table; the body
 * qrl__sqlite_<name>_w stays hand-written in its entity's file and the compiler checks it
 * against the prototype the same line generates.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "../walbuf.h"
#include "sqlite_internal.h"

static void store_close(qrl_store *st)
{
    sqlite_store *s = (sqlite_store *)st;
    struct conn *c, *next;

    if (s == NULL)
        return;
    /* A scope the closing thread left open (a caller that stopped halfway) must not outlive
     * the handle. */
    qrl__sqlite_scope_drop(s);
    qrl__sqlite_writer_stop(s);
    qrl__sqlite_stamps_close(s);
    pthread_key_delete(s->key);
    for (c = s->conns; c != NULL; c = next) {
        next = c->next;
        qrl__sqlite_conn_close(c);
    }
    pthread_cond_destroy(&s->rfree_cv);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->uc.mu);
    free(s->uc.slot);
    free(s->path);
    free(s);
}

/* The durabilities QRL__SQLITE_WRITES names: the flag qrl__sqlite_submit() takes. */
#define DURABLE 1
#define LAZY 0

/* A claim or an expiry decides nothing (store.h): lazy, like the request's creation. */
static int lr_transition_durability(const qrl_lr_cas *cas)
{
    return cas == NULL || (cas->to != QRL_LR_SCANNED && cas->to != QRL_LR_EXPIRED) ? DURABLE : LAZY;
}

/* One write method from its line of QRL__SQLITE_WRITES:
 *   struct name##_args { qrl_store *st; T1 n1; ... };
 *   static qrl_err name##_thunk(void *p)       -- on the writer: qrl__sqlite_name_w(a->st, ...)
 *   static qrl_err name(qrl_store *st, T1 n1, ...) -- queues the thunk, waits, returns its rc */
#define WRITE_FIELD(type, name) type name;
#define WRITE_FROM_ARGS(type, name) , a->name
#define WRITE_INIT(type, name) , .name = name
#define WRITE_METHOD(name, durability, ...)                                                        \
    struct name##_args {                                                                           \
        qrl_store *st;                                                                             \
        QRL__SQLITE_EACH(WRITE_FIELD, __VA_ARGS__)                                                 \
    };                                                                                             \
    static qrl_err name##_thunk(void *p)                                                           \
    {                                                                                              \
        struct name##_args *a = p;                                                                 \
        return qrl__sqlite_##name##_w(a->st QRL__SQLITE_EACH(WRITE_FROM_ARGS, __VA_ARGS__));       \
    }                                                                                              \
    static qrl_err name(qrl_store *st QRL__SQLITE_EACH(QRL__SQLITE_PARAM, __VA_ARGS__))            \
    {                                                                                              \
        struct name##_args a = {.st = st QRL__SQLITE_EACH(WRITE_INIT, __VA_ARGS__)};               \
        return qrl__sqlite_submit(st, name##_thunk, &a, durability);                               \
    }
QRL__SQLITE_WRITES(WRITE_METHOD)
#undef WRITE_METHOD

/* Changes made elsewhere (store.h, set_notify): this backend has none to report. Every change
 * it sees is made by a caller in this process, and the core reports those itself after the call
 * returns; calling the hook too would report each change twice. So the hook is accepted and
 * never called. (A second process on the same file is not watched: its changes show at the
 * next read, as they always have.) */
static qrl_err set_notify(qrl_store *st, void (*fn)(void *ud, int64_t lr_id), void *ud)
{
    (void)fn;
    (void)ud;
    return st == NULL ? QRL_ERR_INVALID : QRL_OK;
}

static const qrl_store_methods sqlite_methods = {
    .version = QRL_STORE_VERSION,
    .name = "sqlite",
    .close = store_close,
    .account_create = account_create,
    .account_get = qrl__sqlite_account_get,
    .account_by_name = qrl__sqlite_account_by_name,
    .account_set_password = account_set_password,
    .device_create = device_create,
    .device_get = qrl__sqlite_device_get,
    .device_list = qrl__sqlite_device_list,
    .device_touch = device_touch,
    .device_revoke = device_revoke,
    .token_insert = token_insert,
    .token_lookup = qrl__sqlite_token_lookup,
    .token_rotate = token_rotate,
    .token_revoke = token_revoke,
    .lr_create = lr_create,
    .lr_get = qrl__sqlite_lr_get,
    .lr_find = qrl__sqlite_lr_find,
    .lr_transition = lr_transition,
    .lr_redeem = lr_redeem,
    .lr_by_device = qrl__sqlite_lr_by_device,
    .ratelimit_hit = ratelimit_hit,
    .ratelimit_peek = qrl__sqlite_ratelimit_peek,
    .sweep = sweep,
    .device_set_pubkey = device_set_pubkey,
    .lr_approve_redeem = lr_approve_redeem,
    .token_auth = qrl__sqlite_token_auth,
    .read_begin = qrl__sqlite_read_begin,
    .read_end = qrl__sqlite_read_end,
    .passkey_add = passkey_add,
    .passkey_list = qrl__sqlite_passkey_list,
    .passkey_get = qrl__sqlite_passkey_get,
    .passkey_use = passkey_use,
    .passkey_delete = passkey_delete,
    .set_notify = set_notify,
    .lr_stamp = qrl__sqlite_lr_stamp,
    .ratelimit_take = ratelimit_take,
    .ratelimit_give = ratelimit_give,
    .health = qrl__sqlite_health,
    .notice_add = notice_add,
    .notice_list = qrl__sqlite_notice_list,
    .notice_get = qrl__sqlite_notice_get,
    .notice_ack = notice_ack,
    .challenge_put = challenge_put,
    .challenge_take = challenge_take,
};

/* Identifies an existing, non-empty file (and brings an older qrlogin schema up to date) on a
 * connection that changes nothing else: no WAL switch, no page size, no file created. A store
 * connection (qrl__sqlite_conn_open) turns the file to WAL mode as it opens, which must not
 * happen to another program's database, a damaged one or a newer qrlogin's; the migration
 * refuses those before it writes anything, and this connection, closed last, leaves no -wal or
 * -shm behind. A missing or empty file is a new database: nothing to check. */
static qrl_err probe_existing(const char *path, char *errbuf, size_t errlen)
{
    struct stat sb;
    struct conn *p;
    int src;
    qrl_err rc;

    if (stat(path, &sb) != 0) {
        if (errno == ENOENT)
            return QRL_OK;
        qrl__sqlite_set_errbuf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
        return QRL_ERR_STORE;
    }
    if (!S_ISREG(sb.st_mode) || sb.st_size == 0)
        return QRL_OK;
    if ((p = calloc(1, sizeof *p)) == NULL)
        return QRL_ERR_NOMEM;
    src = sqlite3_open_v2(path, &p->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                          qrl__walbuf_usable() ? QRL__WALBUF_VFS : NULL);
    if (src != SQLITE_OK) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "cannot open %s: %s", path,
                               p->db != NULL ? sqlite3_errmsg(p->db) : "out of memory");
        qrl__sqlite_conn_close(p);
        return QRL_ERR_STORE;
    }
    sqlite3_extended_result_codes(p->db, 1);
    /* As long as the opening thread's store connection waits for a lock (connections.c,
     * READ_BUSY_TIMEOUT_MS): a migration may wait for another process's. The migration sets the
     * synchronous mode a write through walbuf needs (walbuf.h) once it knows the file: the
     * pragma reads the schema, and the file may have none that SQLite can read. */
    sqlite3_busy_timeout(p->db, 10000);
    if (sqlite3_exec(p->db, "PRAGMA foreign_keys=ON", NULL, NULL, NULL) != SQLITE_OK) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "%s: %s", path, sqlite3_errmsg(p->db));
        rc = QRL_ERR_STORE;
    } else
        rc = qrl__sqlite_schema_migrate(p, path, errbuf, errlen);
    qrl__sqlite_conn_close(p);
    return rc;
}

qrl_err qrl_store_sqlite_open(const char *path, qrl_store **out, char *errbuf, size_t errlen)
{
    sqlite_store *s = NULL;
    struct conn *c = NULL;
    int have_key = 0, have_lock = 0;
    qrl_err rc = QRL_ERR_NOMEM;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (out == NULL || path == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    /* Every thread opens its own connection to `path`: an in-memory or temporary database
     * would give each thread a different, private database. */
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0) {
        qrl__sqlite_set_errbuf(errbuf, errlen,
                               "a database file is required (not in-memory or temporary)");
        return QRL_ERR_INVALID;
    }
    if (!sqlite3_threadsafe()) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "libsqlite3 was built without thread support");
        return QRL_ERR_STORE;
    }
    /* walbuf only with an SQLite it was tested with (../walbuf.c, "Versions"). */
    if (qrl__walbuf_usable() && qrl__walbuf_register() != SQLITE_OK) {
        qrl__sqlite_set_errbuf(errbuf, errlen, "cannot register the SQLite VFS " QRL__WALBUF_VFS);
        return QRL_ERR_STORE;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL || (s->path = strdup(path)) == NULL)
        goto out;
    if (pthread_key_create(&s->key, NULL) != 0)
        goto out;
    have_key = 1;
    if (pthread_mutex_init(&s->lock, NULL) != 0)
        goto out;
    if (pthread_mutex_init(&s->rmu, NULL) != 0) {
        pthread_mutex_destroy(&s->lock);
        goto out;
    }
    pthread_cond_init(&s->rfree_cv, NULL);
    pthread_mutex_init(&s->uc.mu, NULL);
    have_lock = 1;
    s->base.m = &sqlite_methods;

    /* An existing file is identified first; then the opening thread's connection checks that
     * the file is usable and migrates a new one. */
    if ((rc = probe_existing(path, errbuf, errlen)) != QRL_OK ||
        (rc = qrl__sqlite_conn_open(path, &c, errbuf, errlen)) != QRL_OK ||
        (rc = qrl__sqlite_schema_migrate(c, path, errbuf, errlen)) != QRL_OK)
        goto out;
    if (pthread_setspecific(s->key, c) != 0) {
        rc = QRL_ERR_NOMEM;
        goto out;
    }
    s->conns = c;
    c = NULL;
    qrl__sqlite_stamps_open(s, path);
    if ((rc = qrl__sqlite_writer_start(s, errbuf, errlen)) != QRL_OK)
        goto out;
    *out = &s->base;
    s = NULL;
    rc = QRL_OK;
out:
    qrl__sqlite_conn_close(c);
    if (s != NULL) {
        for (struct conn *o = s->conns, *next; o != NULL; o = next) {
            next = o->next;
            qrl__sqlite_conn_close(o);
        }
        qrl__sqlite_stamps_close(s);
        if (have_key)
            pthread_key_delete(s->key);
        if (have_lock) {
            pthread_mutex_destroy(&s->uc.mu);
            pthread_cond_destroy(&s->rfree_cv);
            pthread_mutex_destroy(&s->rmu);
            pthread_mutex_destroy(&s->lock);
        }
        free(s->path);
        free(s);
    }
    if (rc == QRL_ERR_NOMEM && errbuf != NULL && errlen > 0 && errbuf[0] == '\0')
        qrl__sqlite_set_errbuf(errbuf, errlen, "out of memory");
    return rc;
}
