/* SPDX-License-Identifier: MIT */
/*
 * qrl_store_open(): which backend a store specification names. The one place that tells a
 * PostgreSQL URI from an SQLite path, so that `qrlogin serve --db` and `qrlogin account --db`
 * take either and the backends stay unaware of each other.
 *
 * A libpq URI starts with postgresql:// or postgres:// (the two schemes libpq accepts); every
 * other string is a path, as before PostgreSQL existed here. A key=value connection string
 * ("host=... dbname=...") could be a file name too, so it is not guessed at: a caller that has
 * one calls qrl_store_postgres_open() itself.
 */
#include <string.h>

#include "qrlogin/store.h"

static int is_postgres(const char *spec)
{
    return strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0;
}

qrl_err qrl_store_open(const char *spec, qrl_store **out, char *errbuf, size_t errlen)
{
    if (spec == NULL || out == NULL) {
        if (errbuf != NULL && errlen > 0)
            errbuf[0] = '\0';
        return QRL_ERR_INVALID;
    }
    if (is_postgres(spec))
        return qrl_store_postgres_open(spec, out, errbuf, errlen);
    return qrl_store_sqlite_open(spec, out, errbuf, errlen);
}
