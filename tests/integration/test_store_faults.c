/* SPDX-License-Identifier: MIT */
/*
 * The database in trouble: locked by another process (an operator's `sqlite3` shell holding a
 * write transaction, a backup tool). Writes cannot go through, and the client must be told to
 * come back later (503 with Retry-After), not that the server is broken (500); nothing half
 * happens, and once the lock goes the server works on as before.
 */
#include "harness.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static void test_locked_database_is_503_with_retry_after(void **state)
{
    it_server *s = *state;
    sqlite3 *db = NULL;
    it_devauth da;

    assert_int_equal(sqlite3_open(s->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    const char *kv[] = {"client_id", IT_CLIENT_ID, "device_name", "Locked TV", NULL};
    it_req opt = {.timeout_ms = 30000};
    it_resp *r = it_form_post(s, "/oauth/device_authorization", kv, &opt);
    it_expect(r, 503, "temporarily_unavailable");
    it_expect_error_shape(r);
    assert_true(r->retry_after[0] != '\0');
    it_resp_free(r);
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    /* The lock is gone: the same request goes through. */
    it_device_authorization(s, IT_CLIENT_ID, "Unlocked TV", "tv", NULL, &da);
    assert_true(da.device_code[0] != '\0');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_locked_database_is_503_with_retry_after,
                                        it_setup_alice, it_teardown),
    };
    return cmocka_run_group_tests_name("integration/store_faults", tests, NULL, NULL);
}
