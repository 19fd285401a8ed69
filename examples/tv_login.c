/* SPDX-License-Identifier: MIT */
/*
 * tv_login: the smallest complete screen app on the qrlogin client SDK.
 *
 * It shows the login request's QR code in the terminal with the user code, says "Confirm on
 * your phone" when a phone scans it, replaces the code when it expires, and on approval prints
 * when the access token expires. Ctrl-C cancels the wait cleanly: a signal thread turns it into
 * qrl_client_cancel(), which any thread may call.
 *
 *     make && ./tv_login http://127.0.0.1:8080
 *     QRLOGIN_SERVER=https://login.example.com ./tv_login
 *
 * Build it against the installed SDK with the Makefile next to this file (pkg-config
 * qrlogin-client). The tokens are secrets: a real app keeps the refresh token in the
 * platform's secure storage and never prints them.
 */
#define _POSIX_C_SOURCE 200809L /* sigwait, localtime_r, pthread_kill */

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <qrlogin/client.h>

struct app {
    qrl_client *client;
    int ansi; /* colours for the QR code on a terminal */
};

static void show_code(struct app *app, const qrl_client_event *ev)
{
    char *qr = NULL;
    size_t len = 0;

    if (qrl_client_qr_terminal(app->client, app->ansi, &qr, &len) == QRL_OK) {
        fwrite(qr, 1, len, stdout);
        qrl_client_buf_free(app->client, qr);
    }
    printf("Scan the code with your phone, or open %s and enter\n\n    Code: %s\n\n",
           ev->verification_uri, ev->user_code);
    printf("Link: %s\n", ev->qr_payload);
    printf("The code is valid for %d seconds.\n", ev->expires_in);
}

static void on_event(void *user, const qrl_client_event *ev)
{
    struct app *app = user;

    switch (ev->type) {
    case QRL_CLIENT_EV_STARTED:
        show_code(app, ev);
        break;
    case QRL_CLIENT_EV_RENEWED:
        printf("\nThe code expired; here is a new one.\n");
        show_code(app, ev);
        break;
    case QRL_CLIENT_EV_SCANNED:
        printf("Confirm on your phone.\n");
        break;
    case QRL_CLIENT_EV_RETRYING:
        printf("Connection problem (%s); trying again in %ld ms.\n", qrl_client_strerror(ev->error),
               ev->retry_in_ms);
        break;
    case QRL_CLIENT_EV_APPROVED:
    case QRL_CLIENT_EV_NONE:
        break;
    }
    fflush(stdout);
}

/* Waits for SIGINT/SIGTERM (cancel the login) or SIGUSR1 (the login ended: just return). */
static void *signal_main(void *arg)
{
    struct app *app = arg;
    sigset_t set;
    int sig = 0;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    if (sigwait(&set, &sig) == 0 && sig != SIGUSR1)
        qrl_client_cancel(app->client);
    return NULL;
}

int main(int argc, char **argv)
{
    struct app app = {.ansi = isatty(STDOUT_FILENO)};
    qrl_client_tokens tokens;
    pthread_t sig_thread;
    sigset_t set;
    char why[QRL_CLIENT_ERROR_MAX];
    qrl_err rc;

    /* The server comes from the command line or from QRLOGIN_SERVER: there is no default,
     * since every deployment has its own. */
    const char *server = argc >= 2 ? argv[1] : getenv("QRLOGIN_SERVER");

    if (argc > 3 || (argc >= 2 && strcmp(argv[1], "--help") == 0) || server == NULL ||
        server[0] == '\0') {
        fprintf(stderr,
                "usage: %s [SERVER_URL [CLIENT_ID]]\n"
                "SERVER_URL defaults to $QRLOGIN_SERVER; CLIENT_ID to tv-app.\n",
                argv[0]);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    qrl_client_options opts = {
        .server_url = server,
        .client_id = argc == 3 ? argv[2] : "tv-app",
        .scope = "profile",
        .device_name = "Terminal TV",
        .device_kind = "tv",
        .on_event = on_event,
        .user = &app,
    };
    rc = qrl_client_new(&opts, &app.client);
    if (rc != QRL_OK) {
        qrl_client_check_options(&opts, why, sizeof why);
        fprintf(stderr, "tv_login: %s\n", why[0] != '\0' ? why : qrl_client_strerror(rc));
        return 2;
    }

    /* Signals go to the signal thread only: block them here before any thread starts. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (pthread_create(&sig_thread, NULL, signal_main, &app) != 0) {
        qrl_client_free(app.client);
        return 1;
    }

    rc = qrl_client_login(app.client, &tokens);

    pthread_kill(sig_thread, SIGUSR1);
    pthread_join(sig_thread, NULL);
    if (rc == QRL_OK) {
        char when[32];
        time_t at = (time_t)tokens.expires_at;
        struct tm tm;
        strftime(when, sizeof when, "%H:%M:%S", localtime_r(&at, &tm));
        printf("Signed in. The access token expires in %ld seconds (at %s)%s%s.\n",
               tokens.expires_in, when, tokens.scope[0] != '\0' ? "; scope: " : "", tokens.scope);
    } else if (rc == QRL_CLIENT_ERR_CANCELLED) {
        printf("Cancelled.\n");
    } else {
        fprintf(stderr, "tv_login: sign-in failed: %s (%s)\n", qrl_client_strerror(rc),
                qrl_client_last_error(app.client));
    }
    qrl_client_tokens_clear(&tokens);
    qrl_client_free(app.client);
    return rc == QRL_OK ? 0 : 1;
}
