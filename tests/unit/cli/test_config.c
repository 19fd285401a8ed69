/* SPDX-License-Identifier: MIT */
/*
 * The configuration of `qrlogin serve` (cli/config.c): the file's syntax and its refusals, each
 * naming FILE:LINE and the key; the order file < environment < command line, as getopt_long()
 * sees it; where each value came from; the printout that never shows a secret; the warning
 * about a secret file that every user may read; and an option new to the table that is a file
 * key and an environment variable without code of its own.
 */
#include <getopt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"

/* The messages config.c prints (main.c's qrl_cli_err is not linked in). */
static char errors[8192];

void qrl_cli_err(const char *fmt, ...)
{
    size_t n = strlen(errors);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(errors + n, sizeof errors - n, fmt, ap);
    va_end(ap);
    n = strlen(errors);
    snprintf(errors + n, sizeof errors - n, "\n");
}

/* A table shaped like serve's, with an option serve does not have ("trusted-proxy"). */
static const struct option opts[] = {
    {"listen", required_argument, NULL, 'l'},
    {"db", required_argument, NULL, 'd'},
    {"introspection-secret", required_argument, NULL, 'i'},
    {"trusted-proxy", required_argument, NULL, 'T'},
    {"access-log", no_argument, NULL, 'L'},
    {"config", required_argument, NULL, 'c'},
    {"check-config", no_argument, NULL, 'C'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static char dir[64], path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/qrl-conf-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof path, "%s/q.conf", dir);
    errors[0] = '\0';
    unsetenv("QRLOGIN_CONFIG");
    unsetenv("QRLOGIN_LISTEN");
    unsetenv("QRLOGIN_DB");
    unsetenv("QRLOGIN_INTROSPECTION_SECRET");
    unsetenv("QRLOGIN_TRUSTED_PROXY");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

static void write_conf(const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* Loads with `args` (after "serve"), the file at `path` unless args choose another. */
static int load(qrl_cli_conf *c, const char *const *args)
{
    char *argv[16] = {"serve", "--config", path};
    int argc = 3;

    for (size_t i = 0; args != NULL && args[i] != NULL; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    return qrl_cli_conf_load(c, opts, "h", argc, argv);
}

/* The value getopt_long() leaves for option `val` after the whole loop: the last one wins. */
static const char *last_value(qrl_cli_conf *c, int val)
{
    const char *v = NULL;
    int ch;

    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(c->argc, c->argv, "h", opts, NULL)) != -1)
        if (ch == val)
            v = optarg != NULL ? optarg : "(flag)";
    return v;
}

static void expect_refused(const char *text, const char *message)
{
    qrl_cli_conf c;
    char want[512];

    errors[0] = '\0';
    write_conf(text, 0600);
    assert_int_equal(load(&c, NULL), 2);
    qrl_cli_conf_free(&c);
    snprintf(want, sizeof want, "%s:%s", path, message);
    if (strstr(errors, want) == NULL)
        fail_msg("for \"%s\" want \"%s\" in: %s", text, want, errors);
}

static void test_file_syntax(void **state)
{
    qrl_cli_conf c;

    (void)state;
    write_conf("# a comment\n"
               "\n"
               "   # an indented comment\n"
               "listen=127.0.0.1:1\r\n"
               "  db   =   /var/lib/q.db  \n"
               "introspection-secret = a#b=c  \n"
               "access-log = yes\n",
               0600);
    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(errors, "");
    assert_string_equal(c.path, path);
    assert_string_equal(last_value(&c, 'l'), "127.0.0.1:1");
    assert_string_equal(last_value(&c, 'd'), "/var/lib/q.db");
    assert_string_equal(last_value(&c, 'i'), "a#b=c"); /* '#' and '=' inside a value are its own */
    assert_string_equal(last_value(&c, 'L'), "(flag)");
    qrl_cli_conf_free(&c);

    write_conf("access-log = false\n", 0600); /* false: as if not given */
    assert_int_equal(load(&c, NULL), 0);
    assert_null(last_value(&c, 'L'));
    qrl_cli_conf_free(&c);
}

static void test_refusals_name_file_line_and_key(void **state)
{
    char longline[9000];

    (void)state;
    expect_refused("listen = 1\n\nlissten = 2\n", "3: lissten: unknown key");
    expect_refused("listen = 1\n# x\nlisten = 2\n", "3: listen: set twice (first on line 1)");
    expect_refused("db = a\nlisten 127.0.0.1:1\n", "2: listen: no '='");
    expect_refused("access-log = maybe\n", "1: access-log is a flag");
    expect_refused("db =   \n", "1: db has no value");
    expect_refused("--db = x\n", "1: --db: write the key without '--'");
    expect_refused("= x\n", "1: the line starts with '='");
    expect_refused("config = /etc/other.conf\n", "1: config: not a setting");
    expect_refused("help = true\n", "1: help: not a setting");
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "db = ", 5);
    longline[sizeof longline - 2] = '\n';
    longline[sizeof longline - 1] = '\0';
    expect_refused(longline, "1: the line is longer than");
}

static void test_missing_files(void **state)
{
    qrl_cli_conf c;
    char *argv[] = {"serve", "--config", "/nonexistent/q.conf", NULL};
    char *none[] = {"serve", "--config=none", NULL};

    (void)state;
    /* A file named explicitly must be there ... */
    assert_int_equal(qrl_cli_conf_load(&c, opts, "h", 3, argv), 2);
    assert_non_null(strstr(errors, "cannot read the configuration file /nonexistent/q.conf"));
    qrl_cli_conf_free(&c);
    errors[0] = '\0';
    setenv("QRLOGIN_CONFIG", "/nonexistent/env.conf", 1);
    assert_int_equal(qrl_cli_conf_load(&c, opts, "h", 1, none), 2);
    assert_non_null(strstr(errors, "/nonexistent/env.conf"));
    qrl_cli_conf_free(&c);
    /* ... and "none" is no file, also over QRLOGIN_CONFIG. */
    errors[0] = '\0';
    assert_int_equal(qrl_cli_conf_load(&c, opts, "h", 2, none), 0);
    assert_null(c.path);
    assert_string_equal(errors, "");
    qrl_cli_conf_free(&c);
}

static void test_config_from_the_environment(void **state)
{
    qrl_cli_conf c;
    char *argv[] = {"serve", NULL};

    (void)state;
    write_conf("listen = 127.0.0.1:7\n", 0600);
    setenv("QRLOGIN_CONFIG", path, 1);
    assert_int_equal(qrl_cli_conf_load(&c, opts, "h", 1, argv), 0);
    assert_string_equal(last_value(&c, 'l'), "127.0.0.1:7");
    qrl_cli_conf_free(&c);
}

/* The help is always there, even when the file is broken. */
static void test_help_reads_no_file(void **state)
{
    qrl_cli_conf c;

    (void)state;
    write_conf("broken\n", 0600);
    assert_int_equal(load(&c, (const char *const[]){"--help", NULL}), 0);
    assert_string_equal(errors, "");
    qrl_cli_conf_free(&c);
    assert_int_equal(load(&c, (const char *const[]){"-h", NULL}), 0);
    qrl_cli_conf_free(&c);
}

static void test_flag_beats_environment_beats_file(void **state)
{
    qrl_cli_conf c;

    (void)state;
    write_conf("listen = 127.0.0.1:1\ndb = file.db\nintrospection-secret = s\n", 0600);
    setenv("QRLOGIN_LISTEN", "127.0.0.1:2", 1);
    setenv("QRLOGIN_DB", "", 1); /* empty: as if unset */
    assert_int_equal(load(&c, (const char *const[]){"--listen", "127.0.0.1:3", NULL}), 0);
    assert_string_equal(last_value(&c, 'l'), "127.0.0.1:3");
    assert_string_equal(qrl_cli_conf_from(&c, "listen"), "--listen");
    assert_string_equal(last_value(&c, 'd'), "file.db");
    qrl_cli_conf_free(&c);

    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(last_value(&c, 'l'), "127.0.0.1:2");
    assert_string_equal(qrl_cli_conf_from(&c, "listen"), "QRLOGIN_LISTEN");
    qrl_cli_conf_free(&c);

    unsetenv("QRLOGIN_LISTEN");
    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(last_value(&c, 'l'), "127.0.0.1:1");
    char want[256];
    snprintf(want, sizeof want, "%s:1: listen", path);
    assert_string_equal(qrl_cli_conf_from(&c, "listen"), want);
    assert_null(qrl_cli_conf_from(&c, "trusted-proxy")); /* not given anywhere */
    assert_null(qrl_cli_conf_from(&c, "no-such-option"));
    qrl_cli_conf_free(&c);
}

/* An option the table gains is a file key and QRLOGIN_<NAME> with no code for it. */
static void test_new_option_needs_no_code(void **state)
{
    qrl_cli_conf c;

    (void)state;
    write_conf("trusted-proxy = 10.0.0.0/8\n", 0600);
    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(last_value(&c, 'T'), "10.0.0.0/8");
    qrl_cli_conf_free(&c);
    setenv("QRLOGIN_TRUSTED_PROXY", "192.0.2.0/24", 1);
    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(last_value(&c, 'T'), "192.0.2.0/24");
    qrl_cli_conf_free(&c);
}

/* The command line's own arguments keep their order and their non-options after the file's. */
static void test_command_line_kept(void **state)
{
    qrl_cli_conf c;

    (void)state;
    write_conf("db = f.db\n", 0600);
    assert_int_equal(load(&c, (const char *const[]){"extra", "--db", "cli.db", NULL}), 0);
    assert_string_equal(last_value(&c, 'd'), "cli.db");
    assert_int_equal(optind, c.argc - 1); /* getopt moved the non-option to the end */
    assert_string_equal(c.argv[optind], "extra");
    qrl_cli_conf_free(&c);
}

static void test_print_hides_secrets(void **state)
{
    qrl_cli_conf c;
    char *out = NULL, want[256];
    size_t len = 0;
    FILE *f;

    (void)state;
    write_conf("db = q.db\nintrospection-secret = hunter2\naccess-log = true\n", 0600);
    assert_int_equal(load(&c, (const char *const[]){"--listen", "127.0.0.1:9", NULL}), 0);
    f = open_memstream(&out, &len);
    assert_non_null(f);
    qrl_cli_conf_print(&c, f);
    fclose(f);
    qrl_cli_conf_free(&c);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "\nintrospection-secret = (set)"));
    assert_non_null(strstr(out, "\ntrusted-proxy = (default)\n"));
    assert_non_null(strstr(out, "\nlisten = 127.0.0.1:9 "));
    assert_non_null(strstr(out, "# from --listen\n"));
    snprintf(want, sizeof want, "# from %s:3\n", path);
    assert_non_null(strstr(out, want));
    /* Not settings: never printed. */
    assert_null(strstr(out, "\nconfig ="));
    assert_null(strstr(out, "\ncheck-config ="));
    assert_null(strstr(out, "\nhelp ="));
    free(out);
}

static void test_secret_file_readable_by_all_is_warned_about(void **state)
{
    qrl_cli_conf c;

    (void)state;
    write_conf("introspection-secret = s\n", 0644);
    assert_int_equal(load(&c, NULL), 0);
    assert_non_null(strstr(errors, "holds a secret and every user of this machine may read it"));
    qrl_cli_conf_free(&c);
    errors[0] = '\0';
    write_conf("introspection-secret = s\n", 0640); /* root:qrlogin 0640 is the way */
    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(errors, "");
    qrl_cli_conf_free(&c);
    write_conf("listen = 127.0.0.1:1\n", 0644); /* no secret: nothing to hide */
    assert_int_equal(load(&c, NULL), 0);
    assert_string_equal(errors, "");
    qrl_cli_conf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_syntax, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_name_file_line_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_from_the_environment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_reads_no_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flag_beats_environment_beats_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_option_needs_no_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_hides_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_file_readable_by_all_is_warned_about, setup,
                                        teardown),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
