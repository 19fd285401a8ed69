/* SPDX-License-Identifier: MIT */
/*
 * Change stamps of login requests (the store method lr_stamp): how every process that uses one
 * database file learns, without reading it, that a login request may have changed.
 *
 * Why: the core answers the polls of a pending request from memory (lib/pending.c), the
 * hottest path of the server. That is only right while nothing has changed the request since
 * it was read, and another process may have: `qrlogin account` revoking the phone that scanned
 * it, or a second server on the same file. A read of the row per poll would be exact but
 * costs what the memory saves. So the processes share a small table of counters instead:
 *
 * - The file PATH-stamps (PATH the database), 2^16 slots of 64 bits, mapped MAP_SHARED by every
 *   process that opens the store, as SQLite maps its own PATH-shm. A request's slot is its id,
 *   hashed (lib/hashtab.h): requests share slots, which only costs a store read now and then.
 * - The writer notes the requests a batch changes (lr_transition, lr_redeem,
 *   lr_approve_redeem) and adds one to their slots after the batch's COMMIT, before it wakes
 *   any caller of the batch: so a change is stamped no later than it is acknowledged, in this
 *   process or any other. A batch that rolled back is stamped too (harmless).
 * - A reader takes the stamp before it reads the row. If a change commits after that read, its
 *   stamp comes later still, so the reader's copy is never taken for current once a change
 *   has been acknowledged. Counters only grow (2^64 changes do not happen), so equal means
 *   unchanged.
 * - The slots are lock-free 64-bit atomics in shared memory, which C11 atomics and Linux
 *   support across processes (lock-free atomics are address-free). A process that crashes
 *   leaves at worst a stamp too many.
 *
 * The file is made with the database's mode and, for root (the admin command run by root on
 * a server's database), given the database's owner, so that a server running as an
 * unprivileged user can map it; SQLite does the same for its -wal and -shm files. Like them, it
 * must not be deleted while a process uses the database. If it cannot be mapped (a read-only
 * directory), the store says so once and every stamp differs from the last: nothing is served
 * from memory, and nothing wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hashtab.h"
#include "sqlite_internal.h"

#define STAMP_SLOTS (1u << 16)
#define STAMP_BYTES ((size_t)STAMP_SLOTS * sizeof(uint64_t))

_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "stamps need lock-free 64-bit atomics");

static size_t slot_of(int64_t id)
{
    return qrl__hash_index((uint64_t)id, QRL__HASH_FIB, 64 - 16);
}

void qrl__sqlite_stamps_open(sqlite_store *s, const char *path)
{
    struct stat db;
    char *name = NULL;
    void *map;
    int fd = -1;

    s->stamps = NULL;
    if (stat(path, &db) != 0 || asprintf(&name, "%s-stamps", path) < 0) {
        name = NULL;
        goto fail;
    }
    fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, db.st_mode & 0666);
    if (fd < 0)
        goto fail;
    if (geteuid() == 0 && (db.st_uid != 0 || db.st_gid != 0))
        (void)fchown(fd, db.st_uid, db.st_gid);
    struct stat st;
    if (fstat(fd, &st) != 0)
        goto fail;
    /* Made by us or by another process just now: only ever grown, never shrunk. */
    if ((size_t)st.st_size < STAMP_BYTES && ftruncate(fd, (off_t)STAMP_BYTES) != 0)
        goto fail;
    map = mmap(NULL, STAMP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED)
        goto fail;
    close(fd);
    free(name);
    s->stamps = map;
    return;
fail:
    fprintf(stderr,
            "qrlogin: sqlite: cannot map %s-stamps (%s); every poll will read the database\n",
            path, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(name);
}

void qrl__sqlite_stamps_close(sqlite_store *s)
{
    if (s->stamps != NULL)
        munmap((void *)s->stamps, STAMP_BYTES);
    s->stamps = NULL;
}

uint64_t qrl__sqlite_lr_stamp(qrl_store *st, int64_t id)
{
    static _Atomic uint64_t never_same;
    sqlite_store *s = (sqlite_store *)st;

    if (s == NULL || s->stamps == NULL)
        return atomic_fetch_add(&never_same, 1) | (UINT64_C(1) << 63);
    return atomic_load_explicit(&s->stamps[slot_of(id)], memory_order_acquire);
}

void qrl__sqlite_stamp_later(qrl_store *st, int64_t id)
{
    sqlite_store *s = (sqlite_store *)st;

    if (s->nstamp < QRL__SQLITE_BATCH_MAX)
        s->stamp_ids[s->nstamp++] = id;
    else
        s->stamp_all = 1;
}

void qrl__sqlite_stamps_bump(sqlite_store *s)
{
    if (s->stamps != NULL) {
        if (s->stamp_all) {
            for (size_t i = 0; i < STAMP_SLOTS; i++)
                atomic_fetch_add_explicit(&s->stamps[i], 1, memory_order_release);
        } else {
            for (size_t i = 0; i < s->nstamp; i++)
                atomic_fetch_add_explicit(&s->stamps[slot_of(s->stamp_ids[i])], 1,
                                          memory_order_release);
        }
    }
    s->nstamp = 0;
    s->stamp_all = 0;
}
