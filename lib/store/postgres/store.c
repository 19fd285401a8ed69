/* SPDX-License-Identifier: MIT */
/*
 * The handle of the PostgreSQL store: qrl_store_postgres_open(), close, the table of methods,
 * and the read scopes (pg_internal.h describes the whole backend and the files of this folder).
 *
 * Read scopes (store.h, read_begin/read_end) are accepted and change nothing: every read is
 * one statement, in a snapshot of its own, on whichever connection of the pool is free. A
 * scope that shared one snapshot would have to hold a pooled connection for the whole of an
 * HTTP request, with a BEGIN and a COMMIT around it, two more round trips; the SQLite store
 * gains from scopes because a read transaction there costs locks and a cache check, which
 * PostgreSQL does not charge a statement for. store.h allows reads to stand alone.
 *
 * lr_stamp is NULL: the change stamps of the SQLite store live in memory every process on the
 * file maps; there is no such memory between nodes, and a stamp read from the database would
 * cost what the read it saves costs. The core then reads the store for every poll, which is
 * right whichever node changed the request.
 */
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <sodium.h>

#include "pg_internal.h"

/* The connection the opening thread makes, and migrates with: as long as a node waits for a
 * database that is still starting. */
#define OPEN_CONNECT_TIMEOUT_MS 10000

static void free_handle(pg_store *s)
{
    qrl__pg_listener_stop(s);
    qrl__pg_pool_close(s);
    qrl__pg_probe_close(s);
    pthread_mutex_destroy(&s->probe_mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    if (s->conninfo != NULL) {
        sodium_memzero(s->conninfo, strlen(s->conninfo));
        free(s->conninfo);
    }
    free(s);
}

static void store_close(qrl_store *st)
{
    if (st != NULL)
        free_handle((pg_store *)st);
}

static qrl_err read_begin(qrl_store *st)
{
    return st == NULL ? QRL_ERR_INVALID : QRL_OK;
}

static void read_end(qrl_store *st)
{
    (void)st;
}

static const qrl_store_methods pg_methods = {
    .version = QRL_STORE_VERSION,
    .name = "postgres",
    .close = store_close,
    .account_create = qrl__pg_account_create,
    .account_get = qrl__pg_account_get,
    .account_by_name = qrl__pg_account_by_name,
    .account_set_password = qrl__pg_account_set_password,
    .device_create = qrl__pg_device_create,
    .device_get = qrl__pg_device_get,
    .device_list = qrl__pg_device_list,
    .device_touch = qrl__pg_device_touch,
    .device_revoke = qrl__pg_device_revoke,
    .token_insert = qrl__pg_token_insert,
    .token_lookup = qrl__pg_token_lookup,
    .token_rotate = qrl__pg_token_rotate,
    .token_revoke = qrl__pg_token_revoke,
    .lr_create = qrl__pg_lr_create,
    .lr_get = qrl__pg_lr_get,
    .lr_find = qrl__pg_lr_find,
    .lr_transition = qrl__pg_lr_transition,
    .lr_redeem = qrl__pg_lr_redeem,
    .lr_by_device = qrl__pg_lr_by_device,
    .ratelimit_hit = qrl__pg_ratelimit_hit,
    .ratelimit_peek = qrl__pg_ratelimit_peek,
    .sweep = qrl__pg_sweep,
    .device_set_pubkey = qrl__pg_device_set_pubkey,
    .lr_approve_redeem = qrl__pg_lr_approve_redeem,
    .token_auth = qrl__pg_token_auth,
    .read_begin = read_begin,
    .read_end = read_end,
    .passkey_add = qrl__pg_passkey_add,
    .passkey_list = qrl__pg_passkey_list,
    .passkey_get = qrl__pg_passkey_get,
    .passkey_use = qrl__pg_passkey_use,
    .passkey_delete = qrl__pg_passkey_delete,
    .set_notify = qrl__pg_set_notify,
    .lr_stamp = NULL,
    .ratelimit_take = qrl__pg_ratelimit_take,
    .ratelimit_give = qrl__pg_ratelimit_give,
    .health = qrl__pg_health,
    .lr_poll = qrl__pg_lr_poll,
    .notice_add = qrl__pg_notice_add,
    .notice_list = qrl__pg_notice_list,
    .notice_get = qrl__pg_notice_get,
    .notice_ack = qrl__pg_notice_ack,
    .challenge_put = qrl__pg_challenge_put,
    .challenge_take = qrl__pg_challenge_take,
    .lr_poll_find = qrl__pg_lr_poll_find,
    .ratelimit_first_hit = qrl__pg_ratelimit_first_hit,
};

qrl_err qrl_store_postgres_open(const char *conninfo, qrl_store **out, char *errbuf, size_t errlen)
{
    pg_store *s;
    PGconn *first = NULL;
    char err[256];
    qrl_err rc;

    if (errbuf != NULL && errlen > 0)
        errbuf[0] = '\0';
    if (out == NULL || conninfo == NULL)
        return QRL_ERR_INVALID;
    *out = NULL;
    if (conninfo[0] == '\0') {
        qrl__pg_set_errbuf(errbuf, errlen, "a connection URI is required");
        return QRL_ERR_INVALID;
    }
    if (!PQisthreadsafe()) {
        qrl__pg_set_errbuf(errbuf, errlen, "libpq was built without thread support");
        return QRL_ERR_STORE;
    }
    if (sodium_init() < 0)
        return QRL_ERR_CRYPTO;
    s = calloc(1, sizeof *s);
    if (s == NULL)
        return QRL_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->probe_mu, NULL);
    qrl__pg_listener_init(s);
    s->base.m = &pg_methods;
    if ((s->conninfo = strdup(conninfo)) == NULL) {
        rc = QRL_ERR_NOMEM;
        goto fail;
    }
    rc = qrl__pg_connect(s, OPEN_CONNECT_TIMEOUT_MS, &first, err, sizeof err);
    if (rc != QRL_OK) {
        /* libpq's words name the host, port, user and database, never the password. */
        qrl__pg_set_errbuf(errbuf, errlen, "cannot connect: %s", err);
        goto fail;
    }
    if ((rc = qrl__pg_schema_migrate(first, errbuf, errlen)) != QRL_OK ||
        (rc = qrl__pg_pool_init(s, first)) != QRL_OK) {
        if (s->conns == NULL)
            PQfinish(first);
        goto fail;
    }
    *out = &s->base;
    return QRL_OK;
fail:
    if (rc == QRL_ERR_NOMEM && errbuf != NULL && errlen > 0 && errbuf[0] == '\0')
        qrl__pg_set_errbuf(errbuf, errlen, "out of memory");
    free_handle(s);
    return rc;
}
