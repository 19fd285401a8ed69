/* SPDX-License-Identifier: MIT */
/*
 * The settings of `qrlogin serve` from three places: a configuration file, the environment and
 * the command line. A flag wins over its environment variable, which wins over the file, which
 * wins over the built-in default.
 *
 * Nothing here knows a single option. The file's keys are the long options of the command's
 * own option table (getopt's struct option) without the "--", and every option that takes a
 * value has the environment variable QRLOGIN_<NAME> (upper case, '-' as '_'). Both become
 * arguments "--name=value" placed before the command line's own, so that the command's one
 * getopt_long() loop sees the file first, then the environment, then the flags, and the last
 * one wins. An option added to the table is a file key and a variable at once, with no code
 * here. Each argument remembers where it came from, so that a message about a bad value names
 * the file and line with the key, or the variable, or the flag.
 *
 * Lifecycle: qrl_cli_conf_load() -> getopt_long() over conf.argv -> qrl_cli_conf_free(), also
 * after a failed load. Every string of conf.argv, and so every optarg, lives until then.
 *
 * The file: "key = value" lines; blank lines and lines whose first non-blank character is '#'
 * are skipped. The value runs to the end of the line, spaces around it dropped, so it may hold
 * '#' and '=' (a secret may); there is no quoting. A flag takes true or false (yes/no, on/off,
 * 1/0). Unknown keys, a key given twice, a line without '=', a flag that is neither true nor
 * false and an empty value are refused with FILE:LINE and the key: a typo in a service's
 * configuration must stop the service, not silently leave a default in place.
 *
 * The options that choose the file or are actions ("config", "check-config", "help") are not
 * settings: they come from the command line only. When adding such an option, add it to
 * is_setting().
 */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli.h"

/* The longest line: a value is at most a path (4095 bytes) or a URL (255). A longer line is
 * refused, never cut, so that a value is never silently shortened. */
#define CONF_LINE_MAX 8192
/* Lines in a file: one per option with its comments is a few hundred. Far more means the wrong
 * file was given (a database, a log), which is refused before it is read to the end. */
#define CONF_LINES_MAX 10000

/* One argument made from the file or the environment. `from` says where it came from for
 * messages ("FILE:LINE: key" or "QRLOGIN_KEY"); its first `where_len` bytes are the place alone
 * ("FILE:LINE"), for qrl_cli_conf_print(). */
struct qrl_cli_conf_arg {
    char *text; /* "--key=value" or "--key" */
    char *from;
    size_t where_len;
    bool secret;
};

static bool is_setting(const struct option *o)
{
    return strcmp(o->name, "config") != 0 && strcmp(o->name, "check-config") != 0 &&
           strcmp(o->name, "help") != 0;
}

/* Options whose value is never printed nor left in memory: their name says they hold a
 * secret. */
static bool is_secret(const char *name)
{
    return strstr(name, "secret") != NULL || strstr(name, "password") != NULL;
}

static int find_opt(const qrl_cli_conf *c, const char *name)
{
    for (int i = 0; i < c->nopts; i++)
        if (strcmp(c->opts[i].name, name) == 0)
            return i;
    return -1;
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

/* Appends one argument made from the file or the environment (before the command line's). */
static bool add_arg(qrl_cli_conf *c, int opt, const char *value, char *from, size_t where_len)
{
    struct qrl_cli_conf_arg *a = &c->args[c->nargs];
    const char *name = c->opts[opt].name;

    /* At most once per option from the file (a second line is refused) and once from the
     * environment: qrl_cli_conf_load() sized args for that. */
    assert(c->nargs < 2 * (size_t)c->nopts);
    a->text = value != NULL ? str_printf("--%s=%s", name, value) : str_printf("--%s", name);
    a->from = from;
    a->where_len = where_len;
    a->secret = is_secret(name);
    c->nargs++;
    if (a->text == NULL || a->from == NULL) {
        qrl_cli_err("out of memory");
        return false;
    }
    return true;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* true/false for a flag; -1 when the value is neither. */
static int flag_value(const char *v)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(v, yes[i]) == 0)
            return 1;
        if (strcasecmp(v, no[i]) == 0)
            return 0;
    }
    return -1;
}

/* One line of the file; `first` holds, per option, the line that set it (0: none yet). */
static int parse_line(qrl_cli_conf *c, const char *path, int n, char *line, int *first)
{
    char *eq, *key, *val;
    int opt, on;

    line = trim(line);
    if (line[0] == '\0' || line[0] == '#')
        return 0;
    if ((eq = strchr(line, '=')) == NULL) {
        line[strcspn(line, " \t")] = '\0';
        qrl_cli_err("%s:%d: %s: no '=' on this line: write 'key = value' (a flag: 'key = true')",
                    path, n, line);
        return 2;
    }
    *eq = '\0';
    key = trim(line);
    val = trim(eq + 1);
    if (key[0] == '\0') {
        qrl_cli_err("%s:%d: the line starts with '=': write 'key = value'", path, n);
        return 2;
    }
    if (strncmp(key, "--", 2) == 0 && (opt = find_opt(c, key + 2)) >= 0) {
        qrl_cli_err("%s:%d: %s: write the key without '--', as '%s = ...'", path, n, key, key + 2);
        return 2;
    }
    if ((opt = find_opt(c, key)) < 0) {
        qrl_cli_err("%s:%d: %s: unknown key (the keys are the long options of 'qrlogin serve "
                    "--help' without '--')",
                    path, n, key);
        return 2;
    }
    if (!is_setting(&c->opts[opt])) {
        qrl_cli_err("%s:%d: %s: not a setting; it is given on the command line only", path, n, key);
        return 2;
    }
    if (first[opt] != 0) {
        qrl_cli_err("%s:%d: %s: set twice (first on line %d); keep one", path, n, key, first[opt]);
        return 2;
    }
    first[opt] = n;
    if (c->opts[opt].has_arg == no_argument) {
        if ((on = flag_value(val)) < 0) {
            qrl_cli_err("%s:%d: %s is a flag: its value must be true or false (got '%s')", path, n,
                        key, val);
            return 2;
        }
        if (on == 0)
            return 0; /* a flag is off unless given */
        return add_arg(c, opt, NULL, str_printf("%s:%d: %s", path, n, key),
                       (size_t)snprintf(NULL, 0, "%s:%d", path, n))
                   ? 0
                   : 1;
    }
    if (val[0] == '\0') {
        qrl_cli_err("%s:%d: %s has no value (remove the line to use the default)", path, n, key);
        return 2;
    }
    return add_arg(c, opt, val, str_printf("%s:%d: %s", path, n, key),
                   (size_t)snprintf(NULL, 0, "%s:%d", path, n))
               ? 0
               : 1;
}

/* The file's settings may include a secret: say so when every user may read it. */
static void check_mode(qrl_cli_conf *c, FILE *f, const char *path, size_t from_arg)
{
    struct stat st;
    bool secret = false;

    for (size_t i = from_arg; i < c->nargs; i++)
        secret = secret || c->args[i].secret;
    if (secret && fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH) != 0)
        qrl_cli_err("warning: %s holds a secret and every user of this machine may read it "
                    "(mode %04o): chmod o-r %s",
                    path, (unsigned)(st.st_mode & 07777), path);
}

/* Reads the file at `path`. A missing file is no error when `optional` (the default path). */
static int read_file(qrl_cli_conf *c, const char *path, bool optional)
{
    char line[CONF_LINE_MAX];
    int *first = NULL, n = 0, rc = 0;
    size_t from_arg = c->nargs;
    FILE *f = fopen(path, "re");

    if (f == NULL) {
        if (optional && errno == ENOENT)
            return 0;
        qrl_cli_err("cannot read the configuration file %s: %s%s", path, strerror(errno),
                    optional ? " (--config none runs without one)" : "");
        return 2;
    }
    first = calloc((size_t)c->nopts + 1, sizeof *first);
    if (first == NULL || (c->path = strdup(path)) == NULL) {
        qrl_cli_err("out of memory");
        rc = 1;
        goto out;
    }
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        size_t len = strlen(line);
        if (++n > CONF_LINES_MAX) {
            qrl_cli_err("%s:%d: more than %d lines: is this a configuration file?", path, n,
                        CONF_LINES_MAX);
            rc = 2;
        } else if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            qrl_cli_err("%s:%d: the line is longer than %d bytes", path, n, CONF_LINE_MAX - 2);
            rc = 2;
        } else {
            rc = parse_line(c, path, n, line, first);
        }
        explicit_bzero(line, sizeof line); /* it may have held a secret */
    }
    if (rc == 0 && ferror(f)) {
        qrl_cli_err("cannot read the configuration file %s: %s", path, strerror(errno));
        rc = 2;
    }
    if (rc == 0)
        check_mode(c, f, path, from_arg);
out:
    fclose(f);
    free(first);
    return rc;
}

/* QRLOGIN_<NAME> for every setting that takes a value. */
static int read_env(qrl_cli_conf *c)
{
    char var[128];

    for (int i = 0; i < c->nopts; i++) {
        const char *v;
        size_t k = 0;

        if (c->opts[i].has_arg == no_argument || !is_setting(&c->opts[i]))
            continue;
        k = (size_t)snprintf(var, sizeof var, "QRLOGIN_%s", c->opts[i].name);
        if (k >= sizeof var)
            continue;
        for (char *p = var; *p != '\0'; p++)
            *p = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
        v = getenv(var);
        if (v == NULL || v[0] == '\0') /* empty counts as unset, as for every variable */
            continue;
        if (!add_arg(c, i, v, strdup(var), k))
            return 1;
    }
    return 0;
}

/* The command line alone, before anything else is read: which file (--config) and whether only
 * the help is asked for. Errors are left to the command's own pass over the arguments. */
static void scan_command_line(const qrl_cli_conf *c, const char *shortopts, int argc, char **argv,
                              const char **config, bool *help)
{
    int ch, li, saved = opterr;

    opterr = 0;
    optind = 0;
    for (li = -1; (ch = getopt_long(argc, argv, shortopts, c->opts, &li)) != -1; li = -1) {
        if (li >= 0 && strcmp(c->opts[li].name, "config") == 0)
            *config = optarg;
        for (int i = 0; i < c->nopts; i++)
            if (strcmp(c->opts[i].name, "help") == 0 &&
                (li == i || (c->opts[i].flag == NULL && ch == c->opts[i].val)))
                *help = true;
    }
    opterr = saved;
}

/* Runs getopt_long() once over the assembled arguments, as the command will, and notes each
 * option's effective value and where it came from (the last one wins, as for the command). */
static void note_values(qrl_cli_conf *c, const char *shortopts)
{
    int ch, li, saved = opterr;

    opterr = 0;
    optind = 0;
    for (li = -1; (ch = getopt_long(c->argc, c->argv, shortopts, c->opts, &li)) != -1; li = -1) {
        if (li < 0)
            continue;
        c->value[li] = c->opts[li].has_arg == no_argument ? "true" : optarg;
        /* Arguments 1..nargs are the file's and the environment's, in that order; getopt
         * moves only non-options, which are all on the command line, after them. */
        if (optind - 1 >= 1 && (size_t)(optind - 1) <= c->nargs)
            c->value_from[li] = &c->args[optind - 2];
        else
            c->value_from[li] = NULL;
    }
    opterr = saved;
    optind = 0;
}

int qrl_cli_conf_load(qrl_cli_conf *c, const struct option *opts, const char *shortopts, int argc,
                      char **argv)
{
    const char *config = NULL, *env;
    bool help = false;
    size_t cap;
    int rc;

    memset(c, 0, sizeof *c);
    c->opts = opts;
    while (opts[c->nopts].name != NULL)
        c->nopts++;
    /* The file and the environment give each option at most once (the file refuses a second
     * line), so twice the options bound what they add. */
    cap = 2 * (size_t)c->nopts;
    c->args = calloc(cap + 1, sizeof *c->args);
    c->argv = calloc(cap + (size_t)argc + 1, sizeof *c->argv);
    c->value = calloc((size_t)c->nopts + 1, sizeof *c->value);
    c->value_from = calloc((size_t)c->nopts + 1, sizeof *c->value_from);
    c->flags = calloc((size_t)c->nopts + 1, sizeof *c->flags);
    if (c->args == NULL || c->argv == NULL || c->value == NULL || c->value_from == NULL ||
        c->flags == NULL) {
        qrl_cli_err("out of memory");
        return 1;
    }
    for (int i = 0; i < c->nopts; i++)
        if ((c->flags[i] = str_printf("--%s", opts[i].name)) == NULL) {
            qrl_cli_err("out of memory");
            return 1;
        }
    scan_command_line(c, shortopts, argc, argv, &config, &help);
    if (!help) {
        if (config == NULL && (env = getenv("QRLOGIN_CONFIG")) != NULL && env[0] != '\0')
            config = env;
        if (config == NULL)
            rc = read_file(c, QRL_CLI_DEFAULT_CONFIG, true);
        else if (strcmp(config, "none") == 0)
            rc = 0;
        else
            rc = read_file(c, config, false);
        if (rc == 0)
            rc = read_env(c);
        if (rc != 0)
            return rc;
    }
    c->argv[c->argc++] = argv[0];
    for (size_t i = 0; i < c->nargs; i++)
        c->argv[c->argc++] = c->args[i].text;
    for (int i = 1; i < argc; i++)
        c->argv[c->argc++] = argv[i];
    c->argv[c->argc] = NULL;
    note_values(c, shortopts);
    return 0;
}

const char *qrl_cli_conf_from(const qrl_cli_conf *c, const char *name)
{
    int i = find_opt(c, name);

    if (i < 0 || c->value[i] == NULL)
        return NULL;
    return c->value_from[i] != NULL ? c->value_from[i]->from : c->flags[i];
}

void qrl_cli_conf_print(const qrl_cli_conf *c, FILE *f)
{
    fprintf(f, "# qrlogin serve: the effective configuration (configuration file: %s)\n",
            c->path != NULL ? c->path : "none");
    for (int i = 0; i < c->nopts; i++) {
        const struct option *o = &c->opts[i];
        const char *v = c->value[i];
        int len;

        if (!is_setting(o))
            continue;
        if (v == NULL)
            v = o->has_arg == no_argument ? "false" : "(default)";
        else if (is_secret(o->name))
            v = "(set)";
        len = fprintf(f, "%s = %s", o->name, v);
        if (c->value[i] != NULL && c->value_from[i] != NULL)
            fprintf(f, "%*s# from %.*s", len < 40 ? 40 - len : 1, "",
                    (int)c->value_from[i]->where_len, c->value_from[i]->from);
        else if (c->value[i] != NULL)
            fprintf(f, "%*s# from %s", len < 40 ? 40 - len : 1, "", c->flags[i]);
        fputc('\n', f);
    }
}

void qrl_cli_conf_free(qrl_cli_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; c->args != NULL && i < c->nargs; i++) {
        if (c->args[i].secret && c->args[i].text != NULL)
            explicit_bzero(c->args[i].text, strlen(c->args[i].text));
        free(c->args[i].text);
        free(c->args[i].from);
    }
    for (int i = 0; c->flags != NULL && i < c->nopts; i++)
        free(c->flags[i]);
    free(c->args);
    free(c->argv);
    free(c->value);
    free(c->value_from);
    free(c->flags);
    free(c->path);
    memset(c, 0, sizeof *c);
}
