/* SPDX-License-Identifier: MIT */
/*
 * The schema of the SQLite store and its migrations.
 *
 * The file carries its schema version in PRAGMA user_version; migrations[] holds one SQL
 * string per version step, so a database of any earlier version is brought up to date when it
 * is opened, and a database written by a newer program is refused instead of misread. Entries
 * are never edited once released (a file in the field may have run them): a change is a new
 * entry at the end. The comments of each entry say why that version exists; several undo
 * random-keyed indexes that cost a WAL page per new login request (docs/benchmarks.md).
 */
#include <stdio.h>

#include <sqlite3.h>

#include "sqlite_internal.h"

/* Schema migrations: entry i brings the schema from user_version i to i + 1. */
static const char *const migrations[] = {
    /* Version 1: the initial schema. Hashes are 32-byte BLOBs, times INTEGER milliseconds,
     * "0" means "none" for optional ids and times (it is what the records use). */
    "CREATE TABLE accounts ("
    " id INTEGER PRIMARY KEY,"
    " username TEXT NOT NULL UNIQUE,"
    " display_name TEXT NOT NULL,"
    " pw_hash TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " disabled INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE devices ("
    " id INTEGER PRIMARY KEY,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " name TEXT NOT NULL,"
    " kind TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_seen_ms INTEGER NOT NULL,"
    " revoked_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX devices_account ON devices(account_id);"
    /* Looked up only by hash: WITHOUT ROWID makes the primary key the table itself. */
    "CREATE TABLE tokens ("
    " hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
    " kind INTEGER NOT NULL,"
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " used_ms INTEGER NOT NULL DEFAULT 0,"
    " revoked_ms INTEGER NOT NULL DEFAULT 0,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX tokens_device ON tokens(device_id);"
    "CREATE TABLE login_requests ("
    " id INTEGER PRIMARY KEY,"
    " device_code_hash BLOB NOT NULL UNIQUE CHECK (length(device_code_hash) = 32),"
    " scan_hash BLOB NOT NULL UNIQUE CHECK (length(scan_hash) = 32),"
    " user_code TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " device_name TEXT NOT NULL,"
    " device_kind TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " interval_s INTEGER NOT NULL,"
    " state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),"
    " updated_ms INTEGER NOT NULL,"
    " claimed_device_id INTEGER NOT NULL DEFAULT 0,"
    " account_id INTEGER NOT NULL DEFAULT 0,"
    " approving_device_id INTEGER NOT NULL DEFAULT 0,"
    " redeemed_device_id INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX login_requests_user_code ON login_requests(user_code, expires_ms);"
    "CREATE TABLE rate_limits ("
    " key TEXT PRIMARY KEY,"
    " start_ms INTEGER NOT NULL,"
    " window_ms INTEGER NOT NULL,"
    " hits INTEGER NOT NULL) WITHOUT ROWID;",
    /* Version 2: phone device keys and the approval nonce a phone signs. */
    "ALTER TABLE devices ADD COLUMN pubkey BLOB;"
    "ALTER TABLE login_requests ADD COLUMN nonce TEXT NOT NULL DEFAULT '';",
    /* Version 3: device codes and scan secrets carry the request id (store.h,
     * qrl_lr_secret_key), so their hashes need no unique index: each was a random-keyed index
     * leaf written per new request. SQLite drops a UNIQUE constraint only by rebuilding the
     * table. Requests made before carry no id in their codes and can no longer be found; they
     * expire as usual (minutes) and the screens ask for new ones. */
    "CREATE TABLE login_requests_v3 ("
    " id INTEGER PRIMARY KEY,"
    " device_code_hash BLOB NOT NULL CHECK (length(device_code_hash) = 32),"
    " scan_hash BLOB NOT NULL CHECK (length(scan_hash) = 32),"
    " user_code TEXT NOT NULL,"
    " client_id TEXT NOT NULL,"
    " scope TEXT NOT NULL,"
    " device_name TEXT NOT NULL,"
    " device_kind TEXT NOT NULL,"
    " address TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " interval_s INTEGER NOT NULL,"
    " state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 5),"
    " updated_ms INTEGER NOT NULL,"
    " claimed_device_id INTEGER NOT NULL DEFAULT 0,"
    " account_id INTEGER NOT NULL DEFAULT 0,"
    " approving_device_id INTEGER NOT NULL DEFAULT 0,"
    " redeemed_device_id INTEGER NOT NULL DEFAULT 0,"
    " nonce TEXT NOT NULL DEFAULT '');"
    "INSERT INTO login_requests_v3 SELECT id, device_code_hash, scan_hash, user_code, client_id,"
    " scope, device_name, device_kind, address, created_ms, expires_ms, interval_s, state,"
    " updated_ms, claimed_device_id, account_id, approving_device_id, redeemed_device_id, nonce"
    " FROM login_requests;"
    "DROP TABLE login_requests;"
    "ALTER TABLE login_requests_v3 RENAME TO login_requests;"
    "CREATE INDEX login_requests_user_code ON login_requests(user_code, expires_ms);",
    /* Version 4: which request a user code names is kept in memory (see "user codes"): the
     * index was the last random-keyed one, a leaf written per new request. */
    "DROP INDEX IF EXISTS login_requests_user_code;",
    /* Version 5: passkeys (store.h, qrl_passkey_rec). A credential id names one credential
     * wherever it is registered, hence the unique index; assertions look passkeys up by it. */
    "CREATE TABLE passkeys ("
    " id INTEGER PRIMARY KEY,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " cred_id BLOB NOT NULL CHECK (length(cred_id) BETWEEN 1 AND 255),"
    " alg INTEGER NOT NULL,"
    " pubkey BLOB NOT NULL CHECK (length(pubkey) BETWEEN 1 AND 259),"
    " sign_count INTEGER NOT NULL DEFAULT 0,"
    " name TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " last_used_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX passkeys_cred_id ON passkeys(cred_id);"
    "CREATE INDEX passkeys_account ON passkeys(account_id);",
    /* Version 6: the screen's platform ("Samsung Tizen", "Chrome on Linux") next to its name
     * and kind, shown on the approval page. Requests made before have none. */
    "ALTER TABLE login_requests ADD COLUMN device_platform TEXT NOT NULL DEFAULT '';",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Brings the schema to SCHEMA_VERSION: every missing migration and the new user_version in one
 * IMMEDIATE transaction, so a second process opening the file at the same moment waits and then
 * sees the finished schema. */
qrl_err qrl__sqlite_schema_migrate(struct conn *c, const char *path, char *errbuf, size_t errlen)
{
    char sql[64];
    char *msg = NULL;
    int v = 0;
    int in_tx = 0;
    qrl_err rc = QRL_ERR_STORE;

    if (user_version(c->db, &v) != SQLITE_OK)
        goto fail;
    if (v == SCHEMA_VERSION)
        return QRL_OK;
    if (sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    in_tx = 1;
    if (user_version(c->db, &v) != SQLITE_OK)
        goto fail;
    if (v < 0 || v > SCHEMA_VERSION) {
        qrl__sqlite_set_errbuf(errbuf, errlen,
                               "%s: schema version %d is not known to this program (%d)", path, v,
                               SCHEMA_VERSION);
        goto out;
    }
    for (int i = v; i < SCHEMA_VERSION; i++) {
        if (sqlite3_exec(c->db, migrations[i], NULL, NULL, &msg) != SQLITE_OK) {
            qrl__sqlite_set_errbuf(errbuf, errlen, "%s: migration to version %d: %s", path, i + 1,
                                   msg != NULL ? msg : "failed");
            goto out;
        }
    }
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", SCHEMA_VERSION);
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    in_tx = 0;
    rc = QRL_OK;
    goto out;
fail:
    qrl__sqlite_set_errbuf(errbuf, errlen, "%s: schema: %s", path, sqlite3_errmsg(c->db));
out:
    if (in_tx && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_free(msg);
    return rc;
}
