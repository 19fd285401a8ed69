/* SPDX-License-Identifier: MIT */
/*
 * A small libcurl client for the terminal roles (`qrlogin phone`, and `qrlogin tv whoami`): one
 * request with any method, a JSON body and a bearer token, a JSON answer. Answers are bounded
 * (ours are small) and wiped before they are freed; redirects are not followed, so a bearer
 * token only goes to the server the user named.
 *
 * Why not the client SDK's transport (client/transport.c): that one is the screen's, hidden
 * inside libqrlogin-client, and shaped for it: one kept-alive connection per qrl_client handle,
 * GET or form POST only, no bearer token, cancellation through a multi handle. The phone needs
 * JSON bodies, bearer tokens and PUT and DELETE. Sharing would mean either the CLI including
 * the SDK's internal header (the CLI uses public headers only) or a general HTTP call in the
 * SDK's public API, which its users do not need and would hold us to. What the two share is a
 * few lines of libcurl options and a bounded buffer; they stay two small copies on purpose.
 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <sodium.h>

#include "cli.h"

/* Largest answer we accept; the biggest is a device list of a few kilobytes. The buffer is
 * allocated at this size once per request (a terminal command makes a handful) and never
 * grown, so no copy of an answer, which may carry a session token, is left in freed memory:
 * only the bytes written are wiped at the end. */
#define MAX_ANSWER (1024 * 1024)

struct buf {
    char *p; /* MAX_ANSWER + 1 bytes */
    size_t n;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct buf *b = ud;
    size_t add = size * nmemb;

    if (add > MAX_ANSWER - b->n)
        return 0;
    memcpy(b->p + b->n, ptr, add);
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

int qrl_cli_http(const char *method, const char *url, const char *bearer, const char *json_body,
                 qrl_cli_resp *out)
{
    return qrl_cli_http_wait(method, url, bearer, json_body, 0, out);
}

int qrl_cli_http_wait(const char *method, const char *url, const char *bearer,
                      const char *json_body, int wait_s, qrl_cli_resp *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct buf b = {0};
    char auth[256], prefer[32];
    CURLcode cc;
    int rc = -1;

    memset(out, 0, sizeof *out);
    b.p = malloc(MAX_ANSWER + 1);
    if (c == NULL || b.p == NULL) {
        snprintf(out->error, sizeof out->error, "out of memory");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    /* A held request answers within its wait: the usual 30 s come on top. */
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L + (wait_s > 0 ? (long)wait_s : 0L));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    if (bearer != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        h = curl_slist_append(h, auth);
        sodium_memzero(auth, sizeof auth);
    }
    if (wait_s > 0) {
        snprintf(prefer, sizeof prefer, "Prefer: wait=%d", wait_s);
        h = curl_slist_append(h, prefer);
    }
    if (json_body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json_body);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        snprintf(out->error, sizeof out->error, "%s", curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    if (b.n > 0)
        out->json = json_loadb(b.p, b.n, JSON_REJECT_DUPLICATES, NULL);
    rc = 0;
out:
    if (b.p != NULL)
        sodium_memzero(b.p, b.n);
    free(b.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc;
}

void qrl_cli_resp_free(qrl_cli_resp *r)
{
    json_decref(r->json);
    r->json = NULL;
}

const char *qrl_cli_resp_str(const qrl_cli_resp *r, const char *key)
{
    json_t *v = r->json != NULL ? json_object_get(r->json, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void qrl_cli_resp_report(const char *what, const qrl_cli_resp *r)
{
    const char *d = qrl_cli_resp_str(r, "error_description");
    const char *e = qrl_cli_resp_str(r, "error");

    if (r->error[0] != '\0')
        qrl_cli_err("%s: cannot reach the server: %s", what, r->error);
    else
        qrl_cli_err("%s: %s (HTTP %ld%s%s)", what, d != NULL ? d : "failed", r->status,
                    e != NULL ? ", " : "", e != NULL ? e : "");
}
