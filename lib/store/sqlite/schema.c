/* SPDX-License-Identifier: MIT */
/*
 * The schema of the SQLite store and its migrations.
 *
 * The file carries its schema version in PRAGMA user_version; migrations[] holds one SQL
 * string per version step, so a database of any earlier version is brought up to date when it
 * is opened, and a database written by a newer program is refused instead of misread, as is a
 * file that is not a qrlogin database at all (identify(): another program's database, a damaged
 * one, not a database), before anything is written to it. Entries are never edited once
 * released (a file in the field may have run them): a change is a new entry at the end. The
 * comments of each entry say why that version exists; several undo random-keyed indexes that
 * cost a WAL page per new login request (docs/benchmarks.md).
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
    /* Version 7: notices of new devices (store.h, qrl_notice_rec) and which device has
     * acknowledged which. The ids grow with time, so new notices append to the table; the
     * index serves an account's list and the pruning of its old notices, both by account and
     * time. An acknowledgement goes with its notice (ON DELETE CASCADE). */
    "CREATE TABLE notices ("
    " id INTEGER PRIMARY KEY,"
    " account_id INTEGER NOT NULL REFERENCES accounts(id),"
    " device_id INTEGER NOT NULL REFERENCES devices(id),"
    " created_ms INTEGER NOT NULL,"
    " platform TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX notices_account ON notices(account_id, created_ms);"
    "CREATE TABLE notice_acks ("
    " notice_id INTEGER NOT NULL REFERENCES notices(id) ON DELETE CASCADE,"
    " device_id INTEGER NOT NULL,"
    " acked_ms INTEGER NOT NULL,"
    " PRIMARY KEY (notice_id, device_id)) WITHOUT ROWID;",
    /* Version 8 (store version 11): the DPoP key a screen names when it makes a request
     * (RFC 9449 dpop_jkt), "" for none; notices of blocked requests next to those of new
     * devices: a kind (1 device linked, 2 request blocked), and why and what was blocked;
     * WebAuthn challenges (below). */
    "ALTER TABLE login_requests ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE notices ADD COLUMN kind INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE notices ADD COLUMN reason TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE notices ADD COLUMN screen_name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE notices ADD COLUMN screen_kind TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE notices ADD COLUMN screen_address TEXT NOT NULL DEFAULT '';"
    /* WebAuthn challenges (store.h, qrl_challenge_rec), by the hash of the challenge: taken
     * by it (challenge_take), and bounded per device through the index (challenge_put). A
     * row lives two minutes, so the table stays small; the sweep deletes the expired. */
    "CREATE TABLE webauthn_challenges ("
    " hash BLOB PRIMARY KEY CHECK (length(hash) = 32),"
    " account_id INTEGER NOT NULL,"
    " device_id INTEGER NOT NULL,"
    " lr_id INTEGER NOT NULL DEFAULT 0,"
    " purpose INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX webauthn_challenges_device ON webauthn_challenges(device_id, expires_ms);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* PRAGMA application_id of the files this program creates ("QRLG"), so that tools, and later
 * versions, can tell one from another program's database by its header alone. Files created
 * before it was set carry 0 and are recognised by their tables. */
#define APPLICATION_ID 0x51524c47

/* Tables of every schema version from 1 on. A file whose user_version claims a version but
 * lacks any of them was written by another program that also uses user_version. */
#define OWN_TABLES "'accounts','devices','tokens','login_requests','rate_limits'"
#define OWN_TABLES_N 5

/* One integer from a one-row query; an SQLite result code. */
static int query_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Says what is wrong when reading the file's schema failed: not a database at all, a damaged
 * one, or something else SQLite reports. */
static void unreadable(sqlite3 *db, int src, const char *path, char *errbuf, size_t errlen)
{
    if ((src & 0xff) == SQLITE_NOTADB)
        qrl__sqlite_set_errbuf(errbuf, errlen,
                               "%s is not an SQLite database (is it the right file?); "
                               "qrlogin leaves it as it is",
                               path);
    else if ((src & 0xff) == SQLITE_CORRUPT)
        qrl__sqlite_set_errbuf(errbuf, errlen, "%s is damaged (%s); restore it from a backup", path,
                               sqlite3_errmsg(db));
    else
        qrl__sqlite_set_errbuf(errbuf, errlen, "%s: schema: %s", path, sqlite3_errmsg(db));
}

/* Refuses a file that is not a qrlogin database, or one from a newer qrlogin, before anything
 * is written to it: another program's database must never get our tables (nor, at open,
 * be switched to WAL mode: store.c runs this first on a connection that changes nothing). */
static qrl_err identify(sqlite3 *db, int v, const char *path, char *errbuf, size_t errlen)
{
    int objects = 0, own = 0, app = 0, src;

    if ((src = query_int(db, "PRAGMA application_id", &app)) != SQLITE_OK ||
        (src = query_int(db, "SELECT count(*) FROM sqlite_master", &objects)) != SQLITE_OK ||
        (src = query_int(db,
                         "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND"
                         " name IN (" OWN_TABLES ")",
                         &own)) != SQLITE_OK) {
        unreadable(db, src, path, errbuf, errlen);
        return QRL_ERR_STORE;
    }
    if (app != 0 && app != APPLICATION_ID) {
        qrl__sqlite_set_errbuf(errbuf, errlen,
                               "%s is a database of another program (application_id 0x%08x), "
                               "not a qrlogin database; qrlogin leaves it as it is",
                               path, (unsigned)app);
        return QRL_ERR_STORE;
    }
    if (v > SCHEMA_VERSION && own == OWN_TABLES_N) {
        qrl__sqlite_set_errbuf(errbuf, errlen,
                               "%s has schema version %d, newer than this qrlogin knows (%d): "
                               "it was written by a later qrlogin; run that one",
                               path, v, SCHEMA_VERSION);
        return QRL_ERR_STORE;
    }
    if ((v == 0 && objects > 0) || (v != 0 && own != OWN_TABLES_N)) {
        qrl__sqlite_set_errbuf(errbuf, errlen,
                               "%s is a database of another program (user_version %d, %d "
                               "schema objects, not qrlogin's tables); qrlogin leaves it as it is",
                               path, v, objects);
        return QRL_ERR_STORE;
    }
    return QRL_OK;
}

/* Brings the schema to SCHEMA_VERSION: every missing migration and the new user_version in one
 * IMMEDIATE transaction, so a second process opening the file at the same moment waits and then
 * sees the finished schema. A file that is not a qrlogin database, or is from a newer qrlogin,
 * is refused before anything is written (identify). */
qrl_err qrl__sqlite_schema_migrate(struct conn *c, const char *path, char *errbuf, size_t errlen)
{
    char sql[64];
    char *msg = NULL;
    int v = 0;
    int in_tx = 0;
    int src = query_int(c->db, "PRAGMA user_version", &v);
    qrl_err rc;

    if (src != SQLITE_OK) {
        unreadable(c->db, src, path, errbuf, errlen);
        return QRL_ERR_STORE;
    }
    if ((rc = identify(c->db, v, path, errbuf, errlen)) != QRL_OK)
        return rc;
    rc = QRL_ERR_STORE;
    if (v == SCHEMA_VERSION)
        return QRL_OK;
    /* Whichever connection migrates (store.c's probe of an existing file sets nothing else),
     * it writes through walbuf, which needs synchronous=FULL (walbuf.h). */
    if (sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    in_tx = 1;
    if (query_int(c->db, "PRAGMA user_version", &v) != SQLITE_OK)
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
    /* A file this program creates says whose it is (APPLICATION_ID). */
    snprintf(sql, sizeof sql, "PRAGMA application_id=%d", APPLICATION_ID);
    if (v == 0 && sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
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
