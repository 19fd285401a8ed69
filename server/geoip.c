/* SPDX-License-Identifier: MIT */
/*
 * The country of a client address (geoip.h): libmaxminddb over a file mapped once, read-only,
 * and a table of country names of our own.
 *
 * A lookup goes by socket address (MMDB_lookup_sockaddr) rather than by string: the string
 * form asks getaddrinfo(), which allocates, for an address we have already parsed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <maxminddb.h>

#include "geoip.h"
#include "netaddr.h"

struct qrl__geoip {
    MMDB_s mmdb;
};

qrl_err qrl__geoip_open(const char *path, qrl__geoip **out, char *err, size_t errlen)
{
    qrl__geoip *g;
    int st, saved;

    *out = NULL;
    if (errlen > 0)
        err[0] = '\0';
    if (path == NULL || path[0] == '\0') {
        snprintf(err, errlen, "no country database file named");
        return QRL_ERR_INVALID;
    }
    if ((g = calloc(1, sizeof *g)) == NULL) {
        snprintf(err, errlen, "cannot open the country database %s: out of memory", path);
        return QRL_ERR_NOMEM;
    }
    errno = 0;
    st = MMDB_open(path, MMDB_MODE_MMAP, &g->mmdb);
    saved = errno;
    if (st != MMDB_SUCCESS) {
        /* A file that is not there or not readable says so in errno; anything else is the
         * file's content, which libmaxminddb describes. */
        if ((st == MMDB_FILE_OPEN_ERROR || st == MMDB_IO_ERROR) && saved != 0)
            snprintf(err, errlen, "cannot open the country database %s: %s", path, strerror(saved));
        else
            snprintf(err, errlen,
                     "cannot open the country database %s: not a MaxMind DB file (.mmdb) that "
                     "libmaxminddb can read: %s",
                     path, MMDB_strerror(st));
        free(g);
        return st == MMDB_OUT_OF_MEMORY_ERROR ? QRL_ERR_NOMEM : QRL_ERR_INVALID;
    }
    *out = g;
    return QRL_OK;
}

void qrl__geoip_close(qrl__geoip *g)
{
    if (g == NULL)
        return;
    MMDB_close(&g->mmdb);
    free(g);
}

/* Addresses that say nothing about where a person is: this machine, private and shared
 * (carrier-grade NAT) networks, link-local, benchmarking, documentation (RFC 5737, RFC 3849:
 * never a real client, yet some files give them a country), multicast and reserved ranges. */
static bool no_country(const qrl__ip *ip)
{
    static const uint8_t zero[15];
    const uint8_t *b = ip->b;

    if (ip->family == 4)
        return b[0] == 0 || b[0] == 10 || b[0] == 127 || b[0] >= 224 ||
               (b[0] == 100 && (b[1] & 0xc0) == 64) || (b[0] == 169 && b[1] == 254) ||
               (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
               (b[0] == 198 && (b[1] & 0xfe) == 18) || (b[0] == 192 && b[1] == 0 && b[2] == 2) ||
               (b[0] == 198 && b[1] == 51 && b[2] == 100) ||
               (b[0] == 203 && b[1] == 0 && b[2] == 113);
    if (memcmp(b, zero, 15) == 0) /* :: and ::1 */
        return true;
    return (b[0] & 0xfe) == 0xfc || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) || b[0] == 0xff ||
           (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8);
}

/* The two-letter code at `path` of an entry, into code[3]; false when there is none. */
static bool entry_code(MMDB_entry_s *e, const char *const *path, char code[3])
{
    MMDB_entry_data_s d;

    if (MMDB_aget_value(e, &d, path) != MMDB_SUCCESS || !d.has_data ||
        d.type != MMDB_DATA_TYPE_UTF8_STRING || d.data_size != 2)
        return false;
    code[0] = d.utf8_string[0];
    code[1] = d.utf8_string[1];
    code[2] = '\0';
    return true;
}

bool qrl__geoip_lookup(qrl__geoip *g, const char *address, qrl__country *out)
{
    /* Where the files we understand keep the country: MaxMind's, then ip-location-db's, then
     * MaxMind's registered country (for ranges whose users' country MaxMind does not know). */
    static const char *const paths[][3] = {
        {"country", "iso_code", NULL},
        {"country_code", NULL, NULL},
        {"registered_country", "iso_code", NULL},
    };
    struct sockaddr_storage ss;
    MMDB_lookup_result_s res;
    qrl__ip ip;
    char code[3];
    int err = MMDB_SUCCESS;

    *out = (qrl__country){.code = "", .name = NULL};
    if (g == NULL || address == NULL || !qrl__ip_parse(address, strlen(address), &ip) ||
        no_country(&ip))
        return false;
    memset(&ss, 0, sizeof ss);
    if (ip.family == 4) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
        in4->sin_family = AF_INET;
        memcpy(&in4->sin_addr, ip.b, 4);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, ip.b, 16);
    }
    res = MMDB_lookup_sockaddr(&g->mmdb, (const struct sockaddr *)&ss, &err);
    if (err != MMDB_SUCCESS || !res.found_entry)
        return false;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        if (!entry_code(&res.entry, paths[i], code))
            continue;
        const char *name = qrl__country_name(code);
        if (name == NULL)
            continue; /* a code that names no country (MaxMind's old "EU", say) */
        memcpy(out->code, code, sizeof code);
        out->name = name;
        return true;
    }
    return false;
}

void qrl__geoip_origin(qrl__geoip *g, const char *request, const char *phone, qrl__origin *out)
{
    bool a = qrl__geoip_lookup(g, request, &out->request);
    bool b = qrl__geoip_lookup(g, phone, &out->phone);

    out->same = a && b ? strcmp(out->request.code, out->phone.code) == 0 : -1;
}

static json_t *country_json(const qrl__country *c)
{
    if (c->name == NULL)
        return json_null();
    return json_pack("{s:s, s:s}", "code", c->code, "name", c->name);
}

void qrl__origin_json_set(json_t *o, const qrl__origin *p)
{
    if (o == NULL)
        return;
    json_object_set_new(o, "request_country", country_json(&p->request));
    json_object_set_new(o, "phone_country", country_json(&p->phone));
    json_object_set_new(o, "same_country", p->same < 0 ? json_null() : json_boolean(p->same));
}

/* True when s can stand inside a JSON string as it is (printable ASCII without '"' or '\'). */
static bool plain(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f || *s == '"' || *s == '\\')
            return false;
    return true;
}

/* One country member as text at out + at; returns the new length, or len (full) on failure. */
static size_t country_text(const char *key, const qrl__country *c, char *out, size_t at, size_t len)
{
    int n;

    if (c->name == NULL)
        n = snprintf(out + at, len - at, "\"%s\":null,", key);
    else if (plain(c->name))
        n = snprintf(out + at, len - at, "\"%s\":{\"code\":\"%s\",\"name\":\"%s\"},", key, c->code,
                     c->name);
    else
        return len;
    return n < 0 || (size_t)n >= len - at ? len : at + (size_t)n;
}

size_t qrl__origin_json_text(const qrl__origin *p, char *out, size_t len)
{
    static const char *const same[] = {"null", "false", "true"};
    size_t at = 0;
    int n;

    if (len == 0)
        return 0;
    at = country_text("request_country", &p->request, out, at, len);
    if (at < len)
        at = country_text("phone_country", &p->phone, out, at, len);
    if (at >= len)
        return 0;
    n = snprintf(out + at, len - at, "\"same_country\":%s", same[p->same < 0 ? 0 : 1 + !!p->same]);
    return n < 0 || (size_t)n >= len - at ? 0 : at + (size_t)n;
}

/* ISO 3166-1 alpha-2 codes and the short names people use (Russia, not the Russian
 * Federation), sorted by code for bsearch(). XK (Kosovo) is not in ISO 3166-1 but is the code
 * the regional registries and most databases use. */
static const struct country_name {
    char code[3];
    const char *name;
} names[] = {
    {"AD", "Andorra"},
    {"AE", "United Arab Emirates"},
    {"AF", "Afghanistan"},
    {"AG", "Antigua and Barbuda"},
    {"AI", "Anguilla"},
    {"AL", "Albania"},
    {"AM", "Armenia"},
    {"AO", "Angola"},
    {"AQ", "Antarctica"},
    {"AR", "Argentina"},
    {"AS", "American Samoa"},
    {"AT", "Austria"},
    {"AU", "Australia"},
    {"AW", "Aruba"},
    {"AX", "Åland Islands"},
    {"AZ", "Azerbaijan"},
    {"BA", "Bosnia and Herzegovina"},
    {"BB", "Barbados"},
    {"BD", "Bangladesh"},
    {"BE", "Belgium"},
    {"BF", "Burkina Faso"},
    {"BG", "Bulgaria"},
    {"BH", "Bahrain"},
    {"BI", "Burundi"},
    {"BJ", "Benin"},
    {"BL", "Saint Barthélemy"},
    {"BM", "Bermuda"},
    {"BN", "Brunei"},
    {"BO", "Bolivia"},
    {"BQ", "Caribbean Netherlands"},
    {"BR", "Brazil"},
    {"BS", "Bahamas"},
    {"BT", "Bhutan"},
    {"BV", "Bouvet Island"},
    {"BW", "Botswana"},
    {"BY", "Belarus"},
    {"BZ", "Belize"},
    {"CA", "Canada"},
    {"CC", "Cocos Islands"},
    {"CD", "Democratic Republic of the Congo"},
    {"CF", "Central African Republic"},
    {"CG", "Congo"},
    {"CH", "Switzerland"},
    {"CI", "Côte d'Ivoire"},
    {"CK", "Cook Islands"},
    {"CL", "Chile"},
    {"CM", "Cameroon"},
    {"CN", "China"},
    {"CO", "Colombia"},
    {"CR", "Costa Rica"},
    {"CU", "Cuba"},
    {"CV", "Cabo Verde"},
    {"CW", "Curaçao"},
    {"CX", "Christmas Island"},
    {"CY", "Cyprus"},
    {"CZ", "Czechia"},
    {"DE", "Germany"},
    {"DJ", "Djibouti"},
    {"DK", "Denmark"},
    {"DM", "Dominica"},
    {"DO", "Dominican Republic"},
    {"DZ", "Algeria"},
    {"EC", "Ecuador"},
    {"EE", "Estonia"},
    {"EG", "Egypt"},
    {"EH", "Western Sahara"},
    {"ER", "Eritrea"},
    {"ES", "Spain"},
    {"ET", "Ethiopia"},
    {"FI", "Finland"},
    {"FJ", "Fiji"},
    {"FK", "Falkland Islands"},
    {"FM", "Micronesia"},
    {"FO", "Faroe Islands"},
    {"FR", "France"},
    {"GA", "Gabon"},
    {"GB", "United Kingdom"},
    {"GD", "Grenada"},
    {"GE", "Georgia"},
    {"GF", "French Guiana"},
    {"GG", "Guernsey"},
    {"GH", "Ghana"},
    {"GI", "Gibraltar"},
    {"GL", "Greenland"},
    {"GM", "Gambia"},
    {"GN", "Guinea"},
    {"GP", "Guadeloupe"},
    {"GQ", "Equatorial Guinea"},
    {"GR", "Greece"},
    {"GS", "South Georgia"},
    {"GT", "Guatemala"},
    {"GU", "Guam"},
    {"GW", "Guinea-Bissau"},
    {"GY", "Guyana"},
    {"HK", "Hong Kong"},
    {"HM", "Heard and McDonald Islands"},
    {"HN", "Honduras"},
    {"HR", "Croatia"},
    {"HT", "Haiti"},
    {"HU", "Hungary"},
    {"ID", "Indonesia"},
    {"IE", "Ireland"},
    {"IL", "Israel"},
    {"IM", "Isle of Man"},
    {"IN", "India"},
    {"IO", "British Indian Ocean Territory"},
    {"IQ", "Iraq"},
    {"IR", "Iran"},
    {"IS", "Iceland"},
    {"IT", "Italy"},
    {"JE", "Jersey"},
    {"JM", "Jamaica"},
    {"JO", "Jordan"},
    {"JP", "Japan"},
    {"KE", "Kenya"},
    {"KG", "Kyrgyzstan"},
    {"KH", "Cambodia"},
    {"KI", "Kiribati"},
    {"KM", "Comoros"},
    {"KN", "Saint Kitts and Nevis"},
    {"KP", "North Korea"},
    {"KR", "South Korea"},
    {"KW", "Kuwait"},
    {"KY", "Cayman Islands"},
    {"KZ", "Kazakhstan"},
    {"LA", "Laos"},
    {"LB", "Lebanon"},
    {"LC", "Saint Lucia"},
    {"LI", "Liechtenstein"},
    {"LK", "Sri Lanka"},
    {"LR", "Liberia"},
    {"LS", "Lesotho"},
    {"LT", "Lithuania"},
    {"LU", "Luxembourg"},
    {"LV", "Latvia"},
    {"LY", "Libya"},
    {"MA", "Morocco"},
    {"MC", "Monaco"},
    {"MD", "Moldova"},
    {"ME", "Montenegro"},
    {"MF", "Saint Martin"},
    {"MG", "Madagascar"},
    {"MH", "Marshall Islands"},
    {"MK", "North Macedonia"},
    {"ML", "Mali"},
    {"MM", "Myanmar"},
    {"MN", "Mongolia"},
    {"MO", "Macao"},
    {"MP", "Northern Mariana Islands"},
    {"MQ", "Martinique"},
    {"MR", "Mauritania"},
    {"MS", "Montserrat"},
    {"MT", "Malta"},
    {"MU", "Mauritius"},
    {"MV", "Maldives"},
    {"MW", "Malawi"},
    {"MX", "Mexico"},
    {"MY", "Malaysia"},
    {"MZ", "Mozambique"},
    {"NA", "Namibia"},
    {"NC", "New Caledonia"},
    {"NE", "Niger"},
    {"NF", "Norfolk Island"},
    {"NG", "Nigeria"},
    {"NI", "Nicaragua"},
    {"NL", "Netherlands"},
    {"NO", "Norway"},
    {"NP", "Nepal"},
    {"NR", "Nauru"},
    {"NU", "Niue"},
    {"NZ", "New Zealand"},
    {"OM", "Oman"},
    {"PA", "Panama"},
    {"PE", "Peru"},
    {"PF", "French Polynesia"},
    {"PG", "Papua New Guinea"},
    {"PH", "Philippines"},
    {"PK", "Pakistan"},
    {"PL", "Poland"},
    {"PM", "Saint Pierre and Miquelon"},
    {"PN", "Pitcairn"},
    {"PR", "Puerto Rico"},
    {"PS", "Palestine"},
    {"PT", "Portugal"},
    {"PW", "Palau"},
    {"PY", "Paraguay"},
    {"QA", "Qatar"},
    {"RE", "Réunion"},
    {"RO", "Romania"},
    {"RS", "Serbia"},
    {"RU", "Russia"},
    {"RW", "Rwanda"},
    {"SA", "Saudi Arabia"},
    {"SB", "Solomon Islands"},
    {"SC", "Seychelles"},
    {"SD", "Sudan"},
    {"SE", "Sweden"},
    {"SG", "Singapore"},
    {"SH", "Saint Helena"},
    {"SI", "Slovenia"},
    {"SJ", "Svalbard and Jan Mayen"},
    {"SK", "Slovakia"},
    {"SL", "Sierra Leone"},
    {"SM", "San Marino"},
    {"SN", "Senegal"},
    {"SO", "Somalia"},
    {"SR", "Suriname"},
    {"SS", "South Sudan"},
    {"ST", "Sao Tome and Principe"},
    {"SV", "El Salvador"},
    {"SX", "Sint Maarten"},
    {"SY", "Syria"},
    {"SZ", "Eswatini"},
    {"TC", "Turks and Caicos Islands"},
    {"TD", "Chad"},
    {"TF", "French Southern Territories"},
    {"TG", "Togo"},
    {"TH", "Thailand"},
    {"TJ", "Tajikistan"},
    {"TK", "Tokelau"},
    {"TL", "Timor-Leste"},
    {"TM", "Turkmenistan"},
    {"TN", "Tunisia"},
    {"TO", "Tonga"},
    {"TR", "Türkiye"},
    {"TT", "Trinidad and Tobago"},
    {"TV", "Tuvalu"},
    {"TW", "Taiwan"},
    {"TZ", "Tanzania"},
    {"UA", "Ukraine"},
    {"UG", "Uganda"},
    {"UM", "U.S. Outlying Islands"},
    {"US", "United States"},
    {"UY", "Uruguay"},
    {"UZ", "Uzbekistan"},
    {"VA", "Vatican City"},
    {"VC", "Saint Vincent and the Grenadines"},
    {"VE", "Venezuela"},
    {"VG", "British Virgin Islands"},
    {"VI", "U.S. Virgin Islands"},
    {"VN", "Vietnam"},
    {"VU", "Vanuatu"},
    {"WF", "Wallis and Futuna"},
    {"WS", "Samoa"},
    {"XK", "Kosovo"},
    {"YE", "Yemen"},
    {"YT", "Mayotte"},
    {"ZA", "South Africa"},
    {"ZM", "Zambia"},
    {"ZW", "Zimbabwe"},
};

static int by_code(const void *key, const void *elem)
{
    return strcmp(key, ((const struct country_name *)elem)->code);
}

const char *qrl__country_name(const char *code)
{
    const struct country_name *c;

    if (code == NULL || strlen(code) != 2)
        return NULL;
    c = bsearch(code, names, sizeof names / sizeof names[0], sizeof names[0], by_code);
    return c != NULL ? c->name : NULL;
}
