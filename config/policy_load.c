/*
 * Policy file loader: YAML (libyaml's document API) to struct policy. Every
 * problem is reported with its line and column and the fix, and loading goes
 * on after an error so that one run shows them all. Aliases are refused, so a
 * value is visited once and "billion laughs" files cost nothing.
 */
#include "policy_priv.h"

#include <errno.h>
#include <fcntl.h>
#define OPENSSL_SUPPRESS_DEPRECATED     /* SHA256_Init: see load_policy() */
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "hostname.h"
#include "psl.h"

#define DEFAULT_PORT 443
#define MAX_PORTS_PER_RULE 1024
#define HTTP_TOKEN_MAX 32       /* longest method name accepted */
#define HTTP_PATH_MAX 2048      /* longest path pattern accepted */
#define INCLUDE_MAX 64          /* files one policy may include, nested ones counted */

/* A file read for the policy: the policy's own, or one it includes. */
struct load_file {
    dev_t dev;
    ino_t ino;
    const char *path;           /* as the policy holds it */
    bool reading;               /* still being loaded: meeting it again is a cycle */
    const char *from;           /* where it was included (NULL: the policy itself) */
    unsigned line, col;
};

/* What the load of a policy and of every file it includes share. */
struct load_shared {
    struct policy *p;
    size_t rules_cap;
    size_t ranges_cap;
    SHA256_CTX hash;            /* the policy's bytes, then each included file's */
    struct load_file files[INCLUDE_MAX + 1];
    size_t n_files;
};

struct loader {
    struct diag_list *d;
    yaml_document_t *doc;
    uint8_t *seen;              /* per node: visited once already */
    size_t n_nodes;
    struct policy *p;
    const char *file;           /* the file being read, as rules and messages name it */
    bool included;              /* it is an included file, not the policy */
    struct load_shared *sh;
};

typedef void (*key_fn)(struct loader *ld, yaml_node_t *val, void *ctx);

struct key_handler {
    const char *key;
    key_fn fn;
};

static unsigned node_line(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

static unsigned node_col(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.column + 1;
}

#define ld_error(ld, n, ...) \
    diag_add_in((ld)->d, (ld)->file, DIAG_ERROR, node_line(n), node_col(n), __VA_ARGS__)
#define ld_warn(ld, n, ...) \
    diag_add_in((ld)->d, (ld)->file, DIAG_WARNING, node_line(n), node_col(n), __VA_ARGS__)
/* A problem of the file as a whole (no position) */
#define ld_file_error(ld, ...) diag_add_in((ld)->d, (ld)->file, DIAG_ERROR, 0, 0, __VA_ARGS__)

/* Fetches a child node; a node met twice came through an alias. */
static yaml_node_t *ld_node(struct loader *ld, yaml_node_item_t idx)
{
    yaml_node_t *n = yaml_document_get_node(ld->doc, idx);
    size_t i = (size_t)idx - 1;

    if (!n || i >= ld->n_nodes)
        return NULL;
    if (ld->seen[i]) {
        ld_error(ld, n, "YAML aliases are not supported in a policy; write the value out");
        return NULL;
    }
    ld->seen[i] = 1;
    return n;
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static bool expect(struct loader *ld, yaml_node_t *n, yaml_node_type_t type, const char *what)
{
    static const char *const names[] = {
        [YAML_SCALAR_NODE] = "a value", [YAML_SEQUENCE_NODE] = "a list",
        [YAML_MAPPING_NODE] = "a mapping",
    };

    if (n->type == type)
        return true;
    ld_error(ld, n, "%s must be %s, not %s", what, names[type], node_kind(n));
    return false;
}

/* A scalar's text; NULL (after an error) for anything else or for embedded NULs. */
static const char *scalar(struct loader *ld, yaml_node_t *n, const char *what)
{
    const char *s;

    if (!expect(ld, n, YAML_SCALAR_NODE, what))
        return NULL;
    s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) {
        ld_error(ld, n, "%s contains a NUL byte", what);
        return NULL;
    }
    return s;
}

static bool parse_u64(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    *end = s;
    return true;
}

static bool get_uint(struct loader *ld, yaml_node_t *n, const char *what, uint64_t min,
                     uint64_t max, uint64_t *out)
{
    const char *s = scalar(ld, n, what), *end;

    if (!s)
        return false;
    if (!parse_u64(s, out, &end) || *end != '\0') {
        ld_error(ld, n, "%s must be a whole number, not '%s'", what, s);
        return false;
    }
    if (*out < min || *out > max) {
        ld_error(ld, n, "%s %s out of range (%llu-%llu)", what, s,
                 (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    return true;
}

static bool get_bool(struct loader *ld, yaml_node_t *n, const char *what, bool *out)
{
    const char *s = scalar(ld, n, what);

    if (!s)
        return false;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *out = s[0] == 't';
        return true;
    }
    ld_error(ld, n, "%s must be true or false, not '%s'", what, s);
    return false;
}

static bool get_enum(struct loader *ld, yaml_node_t *n, const char *what,
                     const char *const *choices, size_t n_choices, int *out)
{
    const char *s = scalar(ld, n, what);
    size_t i;

    if (!s)
        return false;
    for (i = 0; i < n_choices; i++) {
        if (strcmp(s, choices[i]) == 0) {
            *out = (int)i;
            return true;
        }
    }
    if (n_choices == 2)
        ld_error(ld, n, "%s must be %s or %s, not '%s'", what, choices[0], choices[1], s);
    else
        ld_error(ld, n, "%s: unknown value '%s'", what, s);
    return false;
}

struct unit {
    const char *suffix;
    uint64_t mult;
};

/* NUMBER[UNIT] with UNITS; a bare number takes the first unit's multiplier. */
static bool get_scaled(struct loader *ld, yaml_node_t *n, const char *what,
                       const struct unit *units, size_t n_units, const char *hint,
                       uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = scalar(ld, n, what), *end;
    uint64_t v;
    size_t i;

    if (!s)
        return false;
    if (!parse_u64(s, &v, &end))
        goto bad;
    for (i = 0; i < n_units; i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            if (v > max / units[i].mult || v * units[i].mult < min) {
                ld_error(ld, n, "%s %s out of range", what, s);
                return false;
            }
            *out = v * units[i].mult;
            return true;
        }
    }
bad:
    ld_error(ld, n, "%s: cannot read '%s' (write it like %s)", what, s, hint);
    return false;
}

static bool get_duration_ms(struct loader *ld, yaml_node_t *n, const char *what,
                            uint32_t *out)
{
    static const struct unit units[] = {
        {"", 1000}, {"s", 1000}, {"ms", 1}, {"m", 60000}, {"h", 3600000},
    };
    uint64_t v;

    if (!get_scaled(ld, n, what, units, sizeof(units) / sizeof(units[0]),
                    "'5s', '300ms', '2m' or '1h'", 1, 86400000, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

static bool get_rate_bytes(struct loader *ld, yaml_node_t *n, const char *what,
                           uint64_t *out)
{
    static const struct unit units[] = {
        {"", 1}, {"B", 1}, {"KB", 1000}, {"KiB", 1024}, {"MB", 1000000},
        {"MiB", 1u << 20}, {"GB", 1000000000}, {"GiB", 1u << 30},
    };

    return get_scaled(ld, n, what, units, sizeof(units) / sizeof(units[0]),
                      "'512KiB', '1MiB' or '10MB'", 0, 1ull << 40, out);
}

#define INCLUDED_WHERE "an included file"
static bool is_top_key(const char *key);

static unsigned edit_distance(const char *a, const char *b)
{
    unsigned row[32], i, j, prev, tmp;
    size_t la = strlen(a), lb = strlen(b);

    if (la >= 32 || lb >= 32)
        return 99;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        prev = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            unsigned best = prev + (a[i - 1] != b[j - 1]);

            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            tmp = row[j];
            row[j] = best;
            prev = tmp;
        }
    }
    return row[lb];
}

static void unknown_key(struct loader *ld, yaml_node_t *k, const char *key, const char *where,
                        const struct key_handler *keys, size_t n)
{
    char list[256] = "";
    size_t i, off = 0;

    if (ld->included && strcmp(where, INCLUDED_WHERE) == 0 && is_top_key(key)) {
        ld_error(ld, k, "'%s' is a setting of the policy, not of an included file (which "
                 "holds only version, include and egress); move it to the policy", key);
        return;
    }
    for (i = 0; i < n; i++) {
        if (edit_distance(key, keys[i].key) <= 2) {
            ld_error(ld, k, "unknown key '%s' in %s; did you mean '%s'?", key, where,
                     keys[i].key);
            return;
        }
    }
    for (i = 0; i < n && off < sizeof(list); i++) {
        int w = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", keys[i].key);

        if (w < 0)
            break;
        off += (size_t)w;
    }
    ld_error(ld, k, "unknown key '%s' in %s (known keys: %s)", key, where, list);
}

/*
 * Walks mapping MAP, dispatching each key to its handler; unknown and repeated
 * keys are errors. PRESENT (n entries, may be NULL) records the keys seen.
 */
static void load_map(struct loader *ld, yaml_node_t *map, const char *where,
                     const struct key_handler *keys, size_t n, void *ctx, bool *present)
{
    yaml_node_pair_t *pair;
    unsigned first_line[64] = {0};
    size_t i;

    if (!expect(ld, map, YAML_MAPPING_NODE, where))
        return;
    for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = ld_node(ld, pair->key), *v;
        const char *key;

        if (!k || !(key = scalar(ld, k, "a key")))
            continue;
        for (i = 0; i < n && strcmp(keys[i].key, key) != 0; i++)
            ;
        if (i == n) {
            unknown_key(ld, k, key, where, keys, n);
            continue;
        }
        if (first_line[i]) {
            ld_error(ld, k, "key '%s' appears twice in %s (first at line %u); keep one",
                     key, where, first_line[i]);
            continue;
        }
        first_line[i] = node_line(k);
        if (present)
            present[i] = true;
        v = ld_node(ld, pair->value);
        if (v)
            keys[i].fn(ld, v, ctx);
    }
}

/* Iterates a sequence's items; returns false (after an error) if N is not a list. */
#define for_each_item(ld, seq, what, item)                                            \
    for (yaml_node_item_t *it_ = expect((ld), (seq), YAML_SEQUENCE_NODE, (what))      \
                                     ? (seq)->data.sequence.items.start : NULL;        \
         it_ && it_ < (seq)->data.sequence.items.top; it_++)                           \
        if (((item) = ld_node((ld), *it_)) != NULL)

static bool seq_empty(const yaml_node_t *n)
{
    return n->type == YAML_SEQUENCE_NODE &&
           n->data.sequence.items.start == n->data.sequence.items.top;
}

static void *grow(void *v, size_t *cap, size_t n, size_t size)
{
    void *nv;
    size_t ncap;

    if (n < *cap)
        return v;
    ncap = *cap ? *cap * 2 : 8;
    nv = realloc(v, ncap * size);
    if (nv)
        *cap = ncap;
    return nv;
}

static bool push_str(struct loader *ld, yaml_node_t *n, char ***v, size_t *count, size_t *cap,
                     const char *s)
{
    char **nv = grow(*v, cap, *count, sizeof(char *));
    char *copy = strdup(s);

    if (!nv || !copy) {
        free(copy);
        if (nv)
            *v = nv;
        ld_error(ld, n, "out of memory");
        return false;
    }
    *v = nv;
    nv[(*count)++] = copy;
    return true;
}

/* ---- top level scalars ---- */

static void load_version(struct loader *ld, yaml_node_t *n, void *ctx)
{
    uint64_t v;
    const char *s = scalar(ld, n, "version"), *end;

    (void)ctx;
    if (!s)
        return;
    if (!parse_u64(s, &v, &end) || *end != '\0' || v != 1)
        ld_error(ld, n, "unknown policy version '%s' (this sluice reads version: 1)", s);
}

static void load_feedback(struct loader *ld, yaml_node_t *n, void *ctx)
{
    (void)ctx;
    get_bool(ld, n, "feedback", &ld->p->settings.feedback);
}

static void load_mode(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const char *const modes[] = {"enforce", "audit"};
    int m;

    (void)ctx;
    if (!get_enum(ld, n, "mode", modes, 2, &m))
        return;
    ld->p->settings.mode = (enum policy_mode)m;
    if (m == POLICY_AUDIT)
        ld_warn(ld, n, "mode: audit allows every flow and only logs what enforce would deny");
}

/* ---- egress rules ---- */

struct rule_ctx {
    struct policy_rule *r;
    yaml_node_t *domain, *cidr, *ports, *inject, *budget;
    bool have_allow_broad;
};

static void rule_domain(struct loader *ld, yaml_node_t *n, void *ctx)
{
    ((struct rule_ctx *)ctx)->domain = n;
    (void)ld;
}

static void rule_cidr(struct loader *ld, yaml_node_t *n, void *ctx)
{
    ((struct rule_ctx *)ctx)->cidr = n;
    (void)ld;
}

static void rule_ports(struct loader *ld, yaml_node_t *n, void *ctx)
{
    ((struct rule_ctx *)ctx)->ports = n;
    (void)ld;
}

static void rule_inspect(struct loader *ld, yaml_node_t *n, void *ctx)
{
    get_bool(ld, n, "inspect", &((struct rule_ctx *)ctx)->r->inspect);
}

static void rule_allow_broad(struct loader *ld, yaml_node_t *n, void *ctx)
{
    struct rule_ctx *rc = ctx;

    rc->have_allow_broad = get_bool(ld, n, "allow_broad", &rc->r->allow_broad);
}

static void budget_up(struct loader *ld, yaml_node_t *n, void *ctx)
{
    get_rate_bytes(ld, n, "budget.upload", &((struct rule_ctx *)ctx)->r->budget.up);
}

static void budget_down(struct loader *ld, yaml_node_t *n, void *ctx)
{
    get_rate_bytes(ld, n, "budget.download", &((struct rule_ctx *)ctx)->r->budget.down);
}

static void budget_per(struct loader *ld, yaml_node_t *n, void *ctx)
{
    get_duration_ms(ld, n, "budget.per", &((struct rule_ctx *)ctx)->r->budget.per_ms);
}

static void rule_budget(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"upload", budget_up}, {"download", budget_down}, {"per", budget_per},
    };
    struct rule_ctx *rc = ctx;

    rc->budget = n;
    rc->r->budget.per_ms = POLICY_BUDGET_PER_MS;
    load_map(ld, n, "budget", keys, 3, ctx, NULL);
    if (n->type == YAML_MAPPING_NODE && !rc->r->budget.up && !rc->r->budget.down)
        ld_error(ld, n, "a budget needs 'upload: SIZE' or 'download: SIZE' (and 'per: "
                 "DURATION', 1h by default)");
}

static bool http_token_ok(const char *s)
{
    size_t i, len = strlen(s);

    if (len == 0 || len > HTTP_TOKEN_MAX)
        return false;
    for (i = 0; i < len; i++)
        if (s[i] < 'A' || s[i] > 'Z')
            return false;
    return true;
}

/*
 * A paths entry: a glob over canonical request paths (policy_path_canonical()),
 * so it must be one itself, '*' taken literally (after a leading '*', as if a
 * '/' came first); no '?': the query is never matched.
 */
static bool http_path_ok(const char *s)
{
    char probe[HTTP_PATH_MAX + 2] = "/";
    size_t len = strlen(s);

    if (len == 0 || len > HTTP_PATH_MAX || (s[0] != '/' && s[0] != '*') || strchr(s, '?'))
        return false;
    if (s[0] == '/')
        return policy_path_canonical(s, len);
    memcpy(probe + 1, s, len + 1);
    return policy_path_canonical(probe, len + 1);
}

/* A list of strings under KEY, each accepted by OK; BAD says why one is not. */
static void load_strings(struct loader *ld, yaml_node_t *n, const char *key,
                         const char *item_what, bool (*ok)(const char *), const char *bad,
                         char ***v, size_t *count)
{
    yaml_node_t *item;
    size_t cap = 0;

    for_each_item(ld, n, key, item) {
        const char *s = scalar(ld, item, item_what);

        if (!s)
            continue;
        if (!ok(s))
            ld_error(ld, item, "%s '%s' %s", item_what + 2, s, bad);
        else
            push_str(ld, item, v, count, &cap, s);
    }
    if (seq_empty(n))
        ld_error(ld, n, "%s is empty; list some or drop the key to allow any", key);
}

static void http_methods(struct loader *ld, yaml_node_t *n, void *ctx)
{
    struct policy_http_rule *h = ctx;

    load_strings(ld, n, "methods", "a method", http_token_ok,
                 "is not an uppercase HTTP method (e.g. GET, POST)", &h->methods,
                 &h->n_methods);
}

static void http_paths(struct loader *ld, yaml_node_t *n, void *ctx)
{
    struct policy_http_rule *h = ctx;

    load_strings(ld, n, "paths", "a path", http_path_ok,
                 "must start with '/' (or '*') and be a canonical path: no '?' (the query "
                 "is not matched), no '.' or '..' segment, no '//', no '\\', no escaped '/', "
                 "'\\' or '%', no spaces or control characters", &h->paths,
                 &h->n_paths);
}

static void rule_http(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"methods", http_methods}, {"paths", http_paths},
    };
    struct policy_rule *r = ((struct rule_ctx *)ctx)->r;
    yaml_node_t *item;
    size_t cap = 0;

    for_each_item(ld, n, "http", item) {
        struct policy_http_rule *nv = grow(r->http, &cap, r->n_http, sizeof(*nv));

        if (!nv) {
            ld_error(ld, item, "out of memory");
            return;
        }
        r->http = nv;
        memset(&nv[r->n_http], 0, sizeof(*nv));
        nv[r->n_http].line = node_line(item);
        nv[r->n_http].col = node_col(item);
        load_map(ld, item, "an http rule", keys, 2, &nv[r->n_http++], NULL);
    }
}

/* ---- inject: credentials the proxy adds ---- */

struct inject_ctx {
    yaml_node_t *header, *file, *prefix;
};

static void inject_header(struct loader *ld, yaml_node_t *n, void *ctx)
{
    ((struct inject_ctx *)ctx)->header = n;
    (void)ld;
}

static void inject_file(struct loader *ld, yaml_node_t *n, void *ctx)
{
    ((struct inject_ctx *)ctx)->file = n;
    (void)ld;
}

static void inject_prefix(struct loader *ld, yaml_node_t *n, void *ctx)
{
    ((struct inject_ctx *)ctx)->prefix = n;
    (void)ld;
}

/* The headers that frame or route a request: the proxy's checks and the
 * origin's parsing depend on them, a credential never lives there. */
static bool header_reserved(const char *h)
{
    static const char *const names[] = {
        "host", "content-length", "transfer-encoding", "connection", "upgrade", "te",
        "trailer", "keep-alive", "proxy-connection", "expect",
    };
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(h, names[i]) == 0)
            return true;
    return false;
}

static bool tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool header_token_ok(const char *s)
{
    if (!*s || strlen(s) > HTTP_TOKEN_MAX * 2)
        return false;
    for (; *s; s++)
        if (!tchar((unsigned char)*s))
            return false;
    return true;
}

/* Index of the first byte of S[0, LEN) a header value may not hold (CR, LF, NUL, another
 * control byte; TAB is allowed), or LEN. */
static size_t value_bad_byte(const uint8_t *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++)
        if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
            return i;
    return len;
}

/* The fix for a value_file the proxy cannot read. */
#define INJECT_READ_FIX "(the proxy reads it at load and on every reload, as its own user " \
    "after the privilege drop: make it readable by that user)"

/*
 * Reads value_file into J->value after PREFIX. No message names a byte of
 * the file: only the file, a cause, an offset and the fix.
 */
static bool inject_read(struct loader *ld, yaml_node_t *at, const char *path,
                        const char *prefix, struct policy_inject *j)
{
    size_t plen = strlen(prefix), n = 0, bad;
    struct stat st;
    uint8_t *buf;
    ssize_t r = 0;
    int fd, err;

    /* stat() before open(): opening a FIFO blocks until a writer comes (a reload that never
     * ends) and opening a device can act on it; symlinks are followed, as Kubernetes mounts
     * secrets through them. O_NONBLOCK covers a swap between the two calls. */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        ld_error(ld, at, "value_file %s is not a regular file: point it at the file holding "
                 "the credential", path);
        return false;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        ld_error(ld, at, "value_file %s: %s " INJECT_READ_FIX, path, strerror(errno));
        return false;
    }
    if (fstat(fd, &st) < 0) {
        ld_error(ld, at, "value_file %s: %s " INJECT_READ_FIX, path, strerror(errno));
        close(fd);
        return false;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > POLICY_SECRET_MAX) {
        ld_error(ld, at, "value_file %s: %s", path, !S_ISREG(st.st_mode)
                 ? "not a regular file: point it at the file holding the credential"
                 : "larger than 8 KiB (a header value, not a document)");
        close(fd);
        return false;
    }
    buf = malloc(plen + POLICY_SECRET_MAX + 1);
    if (!buf) {
        close(fd);
        ld_error(ld, at, "out of memory");
        return false;
    }
    memcpy(buf, prefix, plen);
    /* st_size is only a hint (it is 0 in /proc and may change under us): read to EOF, one
     * byte past the cap so that a larger file is told apart from one of exactly 8 KiB */
    while (n <= POLICY_SECRET_MAX) {
        r = read(fd, buf + plen + n, POLICY_SECRET_MAX + 1 - n);
        if (r > 0)
            n += (size_t)r;
        else if (r == 0 || errno != EINTR)
            break;
    }
    err = r < 0 ? errno : 0;
    close(fd);
    if (err) {
        /* what was read so far taken for the whole file would inject a cut credential */
        ld_error(ld, at, "value_file %s: %s " INJECT_READ_FIX, path, strerror(err));
        goto bad;
    }
    if (n > POLICY_SECRET_MAX) {
        ld_error(ld, at, "value_file %s: larger than 8 KiB (a header value, not a document)",
                 path);
        goto bad;
    }
    /* one trailing newline (LF or CRLF) is how editors and `echo` end a file, not part of
     * the value; a lone CR is not, and is refused below like any control byte */
    if (n > 0 && buf[plen + n - 1] == '\n') {
        n--;
        if (n > 0 && buf[plen + n - 1] == '\r')
            n--;
    }
    if (n == 0) {
        ld_error(ld, at, "value_file %s is empty: write the credential into it", path);
        goto bad;
    }
    bad = value_bad_byte(buf + plen, n);
    if (bad < n) {
        ld_error(ld, at, "value_file %s: byte %zu is a line break, NUL or control character, "
                 "which a header value cannot hold (one trailing newline is allowed)", path,
                 bad + 1);
        goto bad;
    }
    buf[plen + n] = '\0';
    j->value = (char *)buf;
    j->value_len = plen + n;
    return true;
bad:
    explicit_bzero(buf, plen + POLICY_SECRET_MAX + 1);
    free(buf);
    return false;
}

static void load_inject_item(struct loader *ld, yaml_node_t *item, struct policy_rule *r)
{
    static const struct key_handler keys[] = {
        {"header", inject_header}, {"value_file", inject_file}, {"prefix", inject_prefix},
    };
    struct inject_ctx ic = {NULL, NULL, NULL};
    struct policy_inject j = {.line = node_line(item), .col = node_col(item)};
    const char *header = NULL, *file = NULL, *prefix = "";
    size_t i;

    load_map(ld, item, "an inject entry", keys, 3, &ic, NULL);
    if (item->type != YAML_MAPPING_NODE)
        return;
    if (!ic.header || !ic.file) {
        ld_error(ld, item, "an inject entry needs 'header: NAME' and 'value_file: PATH'");
        return;
    }
    if (!(header = scalar(ld, ic.header, "header")) ||
        !(file = scalar(ld, ic.file, "value_file")) ||
        (ic.prefix && !(prefix = scalar(ld, ic.prefix, "prefix"))))
        return;
    if (!header_token_ok(header)) {
        ld_error(ld, ic.header, "header '%s' is not an HTTP field name (letters, digits and "
                 "!#$%%&'*+-.^_`|~)", header);
        return;
    }
    if (header_reserved(header)) {
        ld_error(ld, ic.header, "header '%s' frames or routes the request: the proxy checks "
                 "it, a credential cannot go there (use e.g. Authorization)", header);
        return;
    }
    for (i = 0; i < r->n_inject; i++)
        if (strcasecmp(r->inject[i].header, header) == 0) {
            ld_error(ld, ic.header, "header '%s' is injected twice by this rule (first at line "
                     "%u); keep one", header, r->inject[i].line);
            return;
        }
    if (file[0] != '/') {
        ld_error(ld, ic.file, "value_file '%s' must be an absolute path (the proxy runs from "
                 "any directory)", file);
        return;
    }
    if (value_bad_byte((const uint8_t *)prefix, strlen(prefix)) < strlen(prefix)) {
        ld_error(ld, ic.prefix, "prefix holds a line break or control character, which a "
                 "header value cannot hold");
        return;
    }
    if (r->n_inject == POLICY_INJECT_MAX) {
        ld_error(ld, item, "a rule injects at most %d headers", POLICY_INJECT_MAX);
        return;
    }
    if (!inject_read(ld, ic.file, file, prefix, &j))
        return;
    j.header = strdup(header);
    j.file = strdup(file);
    if (!j.header || !j.file) {
        ld_error(ld, item, "out of memory");
        goto drop;
    }
    {
        struct policy_inject *nv = realloc(r->inject, (r->n_inject + 1) * sizeof(*nv));

        if (!nv) {
            ld_error(ld, item, "out of memory");
            goto drop;
        }
        r->inject = nv;
        nv[r->n_inject++] = j;
        return;
    }
drop:
    explicit_bzero(j.value, j.value_len);
    free(j.value);
    free(j.header);
    free(j.file);
}

static void rule_inject(struct loader *ld, yaml_node_t *n, void *ctx)
{
    struct rule_ctx *rc = ctx;
    yaml_node_t *item;

    rc->inject = n;
    for_each_item(ld, n, "inject", item)
        load_inject_item(ld, item, rc->r);
    if (seq_empty(n))
        ld_error(ld, n, "inject is empty; list headers or drop the key");
}

static bool has_non_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return true;
    return false;
}

/* Sets R's kind and pattern from a domain value; false after an error. */
static bool rule_set_domain(struct loader *ld, struct policy_rule *r, yaml_node_t *n)
{
    const char *s = scalar(ld, n, "domain"), *name;
    char norm[HOSTNAME_MAX + 1];
    enum hostname_status st;
    size_t len;
    bool wild;

    if (!s)
        return false;
    if (has_non_ascii(s)) {
        ld_error(ld, n, "domain '%s' is not ASCII; policies hold A-labels, so write its "
                 "xn-- form (idn2 prints it)", s);
        return false;
    }
    if (strcmp(s, "*") == 0 || strcmp(s, "*.") == 0) {
        r->kind = RULE_WILDCARD;
        r->pattern = strdup("*");
        return r->pattern != NULL;
    }
    wild = strncmp(s, "*.", 2) == 0;
    name = wild ? s + 2 : s;
    if (strchr(name, '*')) {
        ld_error(ld, n, "domain '%s': '*' may only stand as the whole first label, as in "
                 "'*.example.com'", s);
        return false;
    }
    st = hostname_normalize((const uint8_t *)name, strlen(name), norm, &len);
    if (st == HOSTNAME_IP_LITERAL) {
        ld_error(ld, n, "domain '%s' is an IP address; use 'cidr: %s/32' (or /128) for raw "
                 "TCP to an address", s, name);
        return false;
    }
    if (st != HOSTNAME_OK) {
        ld_error(ld, n, "domain '%s' is not a valid name: %s", s, hostname_strerror(st));
        return false;
    }
    r->kind = wild ? RULE_WILDCARD : RULE_EXACT;
    if (asprintf(&r->pattern, "%s%s", wild ? "*." : "", norm) < 0) {
        r->pattern = NULL;
        return false;
    }
    return true;
}

static bool rule_set_cidr(struct loader *ld, struct policy_rule *r, yaml_node_t *n)
{
    const char *s = scalar(ld, n, "cidr");
    char fixed[CIDR_STRLEN];

    if (!s)
        return false;
    switch (cidr_parse(s, &r->cidr)) {
    case CIDR_OK:
        break;
    case CIDR_HOST_BITS:
        cidr_format(&r->cidr, fixed);
        ld_error(ld, n, "cidr %s has host bits set; write %s", s, fixed);
        return false;
    case CIDR_BAD_LENGTH:
        ld_error(ld, n, "cidr %s: prefix length out of range (0-32 for IPv4, 0-128 for IPv6)",
                 s);
        return false;
    default:
        ld_error(ld, n, "cidr '%s' is not an address/prefix like 192.0.2.0/24 or "
                 "2001:db8::/32", s);
        return false;
    }
    cidr_format(&r->cidr, fixed);
    r->kind = RULE_CIDR;
    r->pattern = strdup(fixed);
    return r->pattern != NULL;
}

static int cmp_port(const void *a, const void *b)
{
    return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static bool rule_set_ports(struct loader *ld, struct policy_rule *r, yaml_node_t *n)
{
    size_t cap = 0, i, out;
    yaml_node_t *item;

    if (!n) {
        r->ports = malloc(sizeof(uint16_t));
        if (!r->ports)
            return false;
        r->ports[0] = DEFAULT_PORT;
        r->n_ports = 1;
        return true;
    }
    for_each_item(ld, n, "ports", item) {
        uint64_t v;
        uint16_t *nv;

        if (!get_uint(ld, item, "port", 1, 65535, &v))
            continue;
        if (r->n_ports >= MAX_PORTS_PER_RULE) {
            ld_error(ld, item, "more than %d ports in one rule; split the rule",
                     MAX_PORTS_PER_RULE);
            return false;
        }
        nv = grow(r->ports, &cap, r->n_ports, sizeof(*nv));
        if (!nv)
            return false;
        r->ports = nv;
        nv[r->n_ports++] = (uint16_t)v;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return false;
    if (seq_empty(n)) {
        ld_error(ld, n, "ports is empty; list at least one port, or drop the key for the "
                 "default [443]");
        return false;
    }
    if (r->n_ports == 0)
        return false;
    qsort(r->ports, r->n_ports, sizeof(uint16_t), cmp_port);
    for (i = 1, out = 1; i < r->n_ports; i++) {
        if (r->ports[i] == r->ports[out - 1])
            ld_warn(ld, n, "port %u is listed twice", r->ports[i]);
        else
            r->ports[out++] = r->ports[i];
    }
    r->n_ports = out;
    return true;
}

/* How wide a wildcard is: "*" and "*.SUFFIX" over a public suffix (com, co.uk,
 * github.io: anyone may register names under them) need allow_broad. */
static bool rule_is_broad(const struct policy_rule *r)
{
    return r->kind == RULE_WILDCARD && (!r->pattern[1] || psl_name_is_public(r->pattern + 2));
}

static void check_rule(struct loader *ld, struct rule_ctx *rc, yaml_node_t *item)
{
    struct policy_rule *r = rc->r;
    yaml_node_t *at = rc->domain ? rc->domain : rc->cidr;

    /* on a cidr rule, asking for inspect: true would only lead to the next refusal */
    if (rc->inject && r->kind == RULE_CIDR)
        ld_error(ld, rc->inject, "inject needs a name; it cannot apply to cidr %s (headers "
                 "are added inside inspected TLS, which needs a domain rule)", r->pattern);
    else if (rc->inject && !r->inspect)
        ld_error(ld, rc->inject, "inject on '%s' needs 'inspect: true' (the proxy can only add "
                 "headers to requests it can see)", r->pattern);
    if (r->kind == RULE_CIDR) {
        if (rc->budget)
            ld_error(ld, rc->budget, "a budget is per name; it cannot apply to cidr %s",
                     r->pattern);
        if (r->inspect)
            ld_error(ld, item, "inspect needs a name; it cannot apply to cidr %s", r->pattern);
        if (r->n_http)
            ld_error(ld, item, "http rules need a name; they cannot apply to cidr %s",
                     r->pattern);
        if (rc->have_allow_broad)
            ld_warn(ld, item, "allow_broad has no effect on a cidr rule");
        if (cidr_host_bits(&r->cidr) > (r->cidr.family == AF_INET ? 16u : 80u))
            ld_warn(ld, at, "cidr %s is wider than /%u: raw TCP to 2^%u addresses", r->pattern,
                    r->cidr.family == AF_INET ? 16 : 48, cidr_host_bits(&r->cidr));
        return;
    }
    if (rule_is_broad(r)) {
        if (!r->allow_broad)
            ld_error(ld, at, "domain '%s' allows every name%s%s%s; add 'allow_broad: true' to "
                     "the rule if that is really meant", r->pattern,
                     r->pattern[1] ? " under the public suffix '" : "",
                     r->pattern[1] ? r->pattern + 2 : "", r->pattern[1] ? "'" : "");
        else
            ld_warn(ld, at, "domain '%s' is broad (allowed by allow_broad)", r->pattern);
    } else if (rc->have_allow_broad && r->allow_broad) {
        ld_warn(ld, item, "allow_broad has no effect on '%s'", r->pattern);
    }
    if (r->n_http && !r->inspect)
        ld_warn(ld, item, "http rules on '%s' apply to plain HTTP only; add 'inspect: true' "
                "to apply them inside TLS", r->pattern);
}

static void load_rule(struct loader *ld, yaml_node_t *item)
{
    static const struct key_handler keys[] = {
        {"domain", rule_domain}, {"cidr", rule_cidr}, {"ports", rule_ports},
        {"inspect", rule_inspect}, {"http", rule_http}, {"allow_broad", rule_allow_broad},
        {"inject", rule_inject}, {"budget", rule_budget},
    };
    struct policy *p = ld->p;
    struct policy_rule rule = {.file = ld->file, .line = node_line(item), .col = node_col(item)};
    struct rule_ctx rc = {.r = &rule};
    size_t errors = ld->d->n_errors;
    struct policy_rule *nv;
    bool ok;

    if (item->type == YAML_SCALAR_NODE) {
        ld_error(ld, item, "an egress rule is a mapping; write '- domain: %s'",
                 (const char *)item->data.scalar.value);
        return;
    }
    load_map(ld, item, "an egress rule", keys, sizeof(keys) / sizeof(keys[0]), &rc, NULL);
    if (item->type != YAML_MAPPING_NODE)
        return;
    if (rc.domain && rc.cidr) {
        ld_error(ld, item, "an egress rule has 'domain' or 'cidr', not both; split it in two");
        ok = false;
    } else if (rc.domain) {
        ok = rule_set_domain(ld, &rule, rc.domain);
    } else if (rc.cidr) {
        ok = rule_set_cidr(ld, &rule, rc.cidr);
    } else {
        ld_error(ld, item, "an egress rule needs 'domain: NAME' or 'cidr: ADDR/LEN'");
        ok = false;
    }
    ok = rule_set_ports(ld, &rule, rc.ports) && ok;
    if (ok)
        check_rule(ld, &rc, item);
    if (!ok || ld->d->n_errors != errors) {
        if (ld->d->n_errors == errors)
            ld_error(ld, item, "out of memory");
        policy_rule_clear(&rule);
        return;
    }
    nv = grow(p->rules, &ld->sh->rules_cap, p->n_rules, sizeof(*nv));
    if (!nv) {
        ld_error(ld, item, "out of memory");
        policy_rule_clear(&rule);
        return;
    }
    p->rules = nv;
    nv[p->n_rules++] = rule;
}

static void load_egress(struct loader *ld, yaml_node_t *n, void *ctx)
{
    yaml_node_t *item;

    (void)ctx;
    for_each_item(ld, n, "egress", item) {
        if (ld->d->n_errors >= DIAG_MAX_ERRORS)
            return;
        load_rule(ld, item);
    }
}

/* ---- dns, timeouts, limits, destinations, tls ---- */

static void dns_unlisted(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const char *const v[] = {"nxdomain", "refused"};
    int m;

    (void)ctx;
    if (get_enum(ld, n, "dns.unlisted", v, 2, &m))
        ld->p->settings.dns.unlisted = (enum policy_dns_unlisted)m;
}

static void dns_answers(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const char *const v[] = {"real", "virtual"};
    int m;

    (void)ctx;
    if (get_enum(ld, n, "dns.answers", v, 2, &m))
        ld->p->settings.dns.answers = (enum policy_dns_answers)m;
}

#define UINT_SETTING(fn, what, min, max, field)                            \
    static void fn(struct loader *ld, yaml_node_t *n, void *ctx)           \
    {                                                                      \
        uint64_t v;                                                        \
        (void)ctx;                                                         \
        if (get_uint(ld, n, what, min, max, &v))                           \
            ld->p->settings.field = (uint32_t)v;                           \
    }

UINT_SETTING(dns_qps, "dns.queries_per_second", 0, 1000000, dns.queries_per_second)
UINT_SETTING(dns_max_name, "dns.max_name_length", 1, HOSTNAME_MAX, dns.max_name_length)
UINT_SETTING(dns_max_ttl, "dns.max_ttl", 0, 86400, dns.max_ttl)
UINT_SETTING(lim_conns, "limits.max_connections", 0, 1000000, limits.max_connections)
UINT_SETTING(lim_new, "limits.new_connections_per_second", 0, 1000000,
             limits.new_connections_per_second)

static void load_dns(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"unlisted", dns_unlisted}, {"answers", dns_answers}, {"queries_per_second", dns_qps},
        {"max_name_length", dns_max_name}, {"max_ttl", dns_max_ttl},
    };

    load_map(ld, n, "dns", keys, sizeof(keys) / sizeof(keys[0]), ctx, NULL);
}

#define DURATION_SETTING(fn, what, field)                                  \
    static void fn(struct loader *ld, yaml_node_t *n, void *ctx)           \
    {                                                                      \
        (void)ctx;                                                         \
        get_duration_ms(ld, n, what, &ld->p->settings.field);              \
    }

DURATION_SETTING(to_sniff, "timeouts.sniff", timeouts.sniff_ms)
DURATION_SETTING(to_connect, "timeouts.connect", timeouts.connect_ms)
DURATION_SETTING(to_idle, "timeouts.idle", timeouts.idle_ms)

static void load_timeouts(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"sniff", to_sniff}, {"connect", to_connect}, {"idle", to_idle},
    };

    load_map(ld, n, "timeouts", keys, sizeof(keys) / sizeof(keys[0]), ctx, NULL);
}

static void lim_up(struct loader *ld, yaml_node_t *n, void *ctx)
{
    (void)ctx;
    get_rate_bytes(ld, n, "limits.upload_bytes_per_second",
                   &ld->p->settings.limits.upload_bytes_per_second);
}

static void lim_down(struct loader *ld, yaml_node_t *n, void *ctx)
{
    (void)ctx;
    get_rate_bytes(ld, n, "limits.download_bytes_per_second",
                   &ld->p->settings.limits.download_bytes_per_second);
}

static void lim_budget(struct loader *ld, yaml_node_t *n, void *ctx)
{
    (void)ctx;
    get_rate_bytes(ld, n, "limits.upload_per_destination",
                   &ld->p->settings.limits.upload_per_destination);
}

static void load_limits(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"max_connections", lim_conns}, {"new_connections_per_second", lim_new},
        {"upload_bytes_per_second", lim_up}, {"download_bytes_per_second", lim_down},
        {"upload_per_destination", lim_budget},
    };

    load_map(ld, n, "limits", keys, sizeof(keys) / sizeof(keys[0]), ctx, NULL);
}

/* ---- alerts ---- */

UINT_SETTING(scan_ports, "alerts.port_scan.ports", 1, POLICY_ALERT_SET_MAX,
             alerts.port_scan.ports)
DURATION_SETTING(scan_window, "alerts.port_scan.window", alerts.port_scan.window_ms)
UINT_SETTING(tunnel_names, "alerts.dns_tunnel.names", 1, POLICY_ALERT_SET_MAX,
             alerts.dns_tunnel.names)
UINT_SETTING(tunnel_encoded, "alerts.dns_tunnel.encoded", 1, POLICY_ALERT_SET_MAX,
             alerts.dns_tunnel.encoded)
UINT_SETTING(tunnel_label, "alerts.dns_tunnel.label_length", 8, 63,
             alerts.dns_tunnel.label_length)
DURATION_SETTING(tunnel_window, "alerts.dns_tunnel.window", alerts.dns_tunnel.window_ms)
UINT_SETTING(burst_ratio, "alerts.upload_burst.ratio", 2, 1000000, alerts.upload_burst.ratio)
DURATION_SETTING(burst_window, "alerts.upload_burst.window", alerts.upload_burst.window_ms)
UINT_SETTING(denied_count, "alerts.denied_burst.denials", 1, 1000000,
             alerts.denied_burst.denials)
DURATION_SETTING(denied_window, "alerts.denied_burst.window", alerts.denied_burst.window_ms)

/* bits per character, 1.0-6.0, kept in hundredths */
static void tunnel_entropy(struct loader *ld, yaml_node_t *n, void *ctx)
{
    const char *s = scalar(ld, n, "alerts.dns_tunnel.entropy");
    unsigned whole = 0, frac = 0, digits = 0;

    (void)ctx;
    if (!s)
        return;
    if (s[0] >= '0' && s[0] <= '9' && (s[1] == '\0' || s[1] == '.')) {
        whole = (unsigned)(s[0] - '0');
        for (s += s[1] ? 2 : 1; *s >= '0' && *s <= '9' && digits < 2; s++, digits++)
            frac = frac * 10 + (unsigned)(*s - '0');
        if (*s == '\0' && (digits > 0 || s[-1] != '.')) {
            unsigned v = whole * 100 + (digits == 1 ? frac * 10 : frac);

            if (v >= 100 && v <= 600) {
                ld->p->settings.alerts.dns_tunnel.entropy_centi = v;
                return;
            }
        }
    }
    ld_error(ld, n, "alerts.dns_tunnel.entropy must be bits per character from 1.0 to 6.0 "
             "with at most two decimals (hex data has 4, base32 5, base64 6), not '%s'",
             (const char *)n->data.scalar.value);
}

static void burst_bytes(struct loader *ld, yaml_node_t *n, void *ctx)
{
    (void)ctx;
    get_rate_bytes(ld, n, "alerts.upload_burst.bytes", &ld->p->settings.alerts.upload_burst.bytes);
}

static void burst_after(struct loader *ld, yaml_node_t *n, void *ctx)
{
    (void)ctx;
    get_rate_bytes(ld, n, "alerts.upload_burst.ratio_after",
                   &ld->p->settings.alerts.upload_burst.ratio_after);
}

/*
 * A detector's value: a mapping of its thresholds, or false to turn it off.
 * True when N was false (the detector is off), or not a mapping (an error).
 */
static bool detector_off(struct loader *ld, yaml_node_t *n, const char *what)
{
    bool on = true;

    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (get_bool(ld, n, what, &on) && on)
        ld_error(ld, n, "%s: true is the default; give a mapping of thresholds, or false "
                 "to turn it off", what);
    return true;
}

static void load_port_scan(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {{"ports", scan_ports}, {"window", scan_window}};

    if (detector_off(ld, n, "alerts.port_scan"))
        ld->p->settings.alerts.port_scan.ports = 0;
    else
        load_map(ld, n, "alerts.port_scan", keys, 2, ctx, NULL);
}

static void load_dns_tunnel(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"names", tunnel_names}, {"encoded", tunnel_encoded}, {"window", tunnel_window},
        {"label_length", tunnel_label}, {"entropy", tunnel_entropy},
    };

    if (detector_off(ld, n, "alerts.dns_tunnel"))
        ld->p->settings.alerts.dns_tunnel.names = ld->p->settings.alerts.dns_tunnel.encoded = 0;
    else
        load_map(ld, n, "alerts.dns_tunnel", keys, sizeof(keys) / sizeof(keys[0]), ctx, NULL);
}

static void load_upload_burst(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"bytes", burst_bytes}, {"window", burst_window}, {"ratio", burst_ratio},
        {"ratio_after", burst_after},
    };

    if (detector_off(ld, n, "alerts.upload_burst"))
        ld->p->settings.alerts.upload_burst.bytes = ld->p->settings.alerts.upload_burst.ratio = 0;
    else
        load_map(ld, n, "alerts.upload_burst", keys, sizeof(keys) / sizeof(keys[0]), ctx,
                 NULL);
}

static void load_denied_burst(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"denials", denied_count}, {"window", denied_window},
    };

    if (detector_off(ld, n, "alerts.denied_burst"))
        ld->p->settings.alerts.denied_burst.denials = 0;
    else
        load_map(ld, n, "alerts.denied_burst", keys, 2, ctx, NULL);
}

static void load_alerts(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {
        {"port_scan", load_port_scan}, {"dns_tunnel", load_dns_tunnel},
        {"upload_burst", load_upload_burst}, {"denied_burst", load_denied_burst},
    };

    if (detector_off(ld, n, "alerts"))
        memset(&ld->p->settings.alerts, 0, sizeof(ld->p->settings.alerts));
    else
        load_map(ld, n, "alerts", keys, sizeof(keys) / sizeof(keys[0]), ctx, NULL);
}

/* Cloud metadata and platform endpoints: reaching them is almost never meant. */
static const struct {
    int family;
    uint8_t addr[16];
    const char *text;
} sensitive[] = {
    {AF_INET, {169, 254, 169, 254}, "169.254.169.254 (cloud metadata)"},
    {AF_INET, {168, 63, 129, 16}, "168.63.129.16 (Azure platform)"},
    {AF_INET6, {0xfd, 0, 0x0e, 0xc2, [15] = 0x54, [14] = 0x02},
     "fd00:ec2::254 (AWS metadata)"},
};

static void load_allow_ranges(struct loader *ld, yaml_node_t *n, void *ctx)
{
    struct policy *p = ld->p;
    yaml_node_t *item;
    char fixed[CIDR_STRLEN];

    (void)ctx;
    for_each_item(ld, n, "destinations.allow_ranges", item) {
        const char *s = scalar(ld, item, "an allow_ranges entry");
        struct cidr c, *nv;
        size_t i;

        if (!s)
            continue;
        switch (cidr_parse(s, &c)) {
        case CIDR_OK:
            break;
        case CIDR_HOST_BITS:
            cidr_format(&c, fixed);
            ld_error(ld, item, "allow_ranges entry %s has host bits set; write %s", s, fixed);
            continue;
        default:
            ld_error(ld, item, "allow_ranges entry '%s' is not a prefix like 10.0.0.0/8 or "
                     "fd00::/8", s);
            continue;
        }
        for (i = 0; i < sizeof(sensitive) / sizeof(sensitive[0]); i++)
            if (cidr_contains(&c, sensitive[i].family, sensitive[i].addr))
                ld_warn(ld, item, "allow_ranges entry %s lets the sandbox reach %s", s,
                        sensitive[i].text);
        nv = grow(p->allow_ranges, &ld->sh->ranges_cap, p->n_allow_ranges, sizeof(*nv));
        if (!nv) {
            ld_error(ld, item, "out of memory");
            return;
        }
        p->allow_ranges = nv;
        nv[p->n_allow_ranges++] = c;
    }
}

static void load_destinations(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {{"allow_ranges", load_allow_ranges}};

    load_map(ld, n, "destinations", keys, 1, ctx, NULL);
}

static void tls_ech(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const char *const v[] = {"deny", "allow-outer"};
    int m;

    (void)ctx;
    if (get_enum(ld, n, "tls.ech", v, 2, &m))
        ld->p->settings.ech = (enum policy_ech)m;
}

static void load_tls(struct loader *ld, yaml_node_t *n, void *ctx)
{
    static const struct key_handler keys[] = {{"ech", tls_ech}};

    load_map(ld, n, "tls", keys, 1, ctx, NULL);
}

/* ---- include: rule files ---- */

static void load_include(struct loader *ld, yaml_node_t *n, void *ctx);

static const struct key_handler top_keys[] = {
    {"version", load_version}, {"mode", load_mode}, {"egress", load_egress},
    {"include", load_include}, {"dns", load_dns}, {"timeouts", load_timeouts},
    {"limits", load_limits}, {"destinations", load_destinations}, {"tls", load_tls},
    {"feedback", load_feedback}, {"alerts", load_alerts},
};
enum {
    TOP_VERSION, TOP_MODE, TOP_EGRESS, TOP_INCLUDE,
    TOP_COUNT = sizeof(top_keys) / sizeof(top_keys[0])
};

/* An included file holds rules: its own, and those of the files it includes. */
static const struct key_handler include_keys[] = {
    {"version", load_version}, {"egress", load_egress}, {"include", load_include},
};

static bool is_top_key(const char *key)
{
    size_t i;

    for (i = 0; i < TOP_COUNT; i++)
        if (strcmp(top_keys[i].key, key) == 0)
            return true;
    return false;
}

/*
 * Reads the regular file PATH whole into *BUF (*LEN bytes), its identity in *ST.
 * Returns 0 or -errno: -EINVAL not a regular file, -EFBIG over POLICY_MAX_FILE.
 */
static int read_policy_file(const char *path, uint8_t **buf, size_t *len, struct stat *st)
{
    size_t off = 0;
    uint8_t *b = NULL;
    int fd, r = 0;

    *buf = NULL;
    /* O_NONBLOCK: opening a FIFO would wait for a writer, a reload that never ends */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0 || fstat(fd, st) < 0)
        r = -errno;
    else if (!S_ISREG(st->st_mode))
        r = -EINVAL;
    else if ((uint64_t)st->st_size > POLICY_MAX_FILE)
        r = -EFBIG;
    else if (!(b = malloc((size_t)st->st_size + 1)))
        r = -ENOMEM;
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return r;
    }
    while (off < (size_t)st->st_size) {
        ssize_t n = read(fd, b + off, (size_t)st->st_size - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            free(b);
            close(fd);
            return r;
        }
        if (n == 0)
            break;      /* the file shrank under us: take what is there */
        off += (size_t)n;
    }
    close(fd);
    *buf = b;
    *len = off;
    return 0;
}

/* What read_policy_file()'s R means, for "PATH: ..." (in BUF when it must be made) */
static const char *read_error(int r, char buf[128])
{
    switch (r) {
    case -EINVAL: return "not a regular file; give a policy file's path";
    case -EFBIG: return "larger than the 64 MiB a policy file may have";
    case -ENOMEM: return "out of memory";
    default:
        snprintf(buf, 128, "cannot open: %s", strerror(-r));
        return buf;
    }
}

/* Parses BUF as LD->file's one YAML document and hands it to LOAD. */
static void parse_yaml(struct loader *ld, const uint8_t *buf, size_t len,
                       void (*load)(struct loader *ld))
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;

    if (!yaml_parser_initialize(&parser)) {
        ld_file_error(ld, "out of memory");
        return;
    }
    yaml_parser_set_input_string(&parser, buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        diag_add_in(ld->d, ld->file, DIAG_ERROR, (unsigned)parser.problem_mark.line + 1,
                    (unsigned)parser.problem_mark.column + 1, "YAML syntax error: %s%s%s",
                    parser.problem ? parser.problem : "unreadable",
                    parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return;
    }
    ld->doc = &doc;
    ld->n_nodes = (size_t)(doc.nodes.top - doc.nodes.start);
    ld->seen = calloc(ld->n_nodes + 1, 1);
    if (!ld->seen) {
        ld_file_error(ld, "out of memory");
    } else {
        load(ld);
        if (yaml_parser_load(&parser, &extra)) {
            yaml_node_t *root = yaml_document_get_root_node(&extra);

            if (root)
                ld_error(ld, root, "a second YAML document; a policy file holds exactly one");
            yaml_document_delete(&extra);
        }
    }
    free(ld->seen);
    ld->seen = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

static void load_included_document(struct loader *ld)
{
    yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    bool present[3] = {false};

    if (!root) {
        diag_add_in(ld->d, ld->file, DIAG_WARNING, 1, 1, "an empty file: it adds no rules");
        return;
    }
    ld->seen[0] = 1;
    load_map(ld, root, INCLUDED_WHERE, include_keys, 3, NULL, present);
    if (root->type == YAML_MAPPING_NODE && !present[1] && !present[2])
        ld_warn(ld, root, "no 'egress' rules: including this file adds nothing");
}

/* A relative NAME is relative to the directory of the file naming it. */
static char *include_path(const char *from, const char *name)
{
    const char *slash = strrchr(from, '/');
    char *path;

    if (name[0] == '/' || !slash)
        return strdup(name);
    if (asprintf(&path, "%.*s/%s", (int)(slash - from), from, name) < 0)
        return NULL;
    return path;
}

/*
 * Reads NAME (from an include list, at AT) into the policy: its rules join the
 * policy's, its bytes the policy's hash. Every file is read once: meeting one
 * again is a cycle when it is still being read, a duplicate otherwise.
 */
static void include_file(struct loader *ld, yaml_node_t *at, const char *name)
{
    struct load_shared *sh = ld->sh;
    struct loader child = {.d = ld->d, .p = ld->p, .included = true, .sh = sh};
    struct load_file *f;
    struct stat st;
    uint8_t *buf = NULL;
    uint64_t len64;
    char *path = include_path(ld->file, name), **nv, err[128];
    size_t len, i;
    int r;

    if (!path) {
        ld_error(ld, at, "out of memory");
        return;
    }
    if ((r = read_policy_file(path, &buf, &len, &st)) < 0) {
        ld_error(ld, at, "include %s: %s", path, read_error(r, err));
        goto out;
    }
    for (i = 0; i < sh->n_files; i++) {
        f = &sh->files[i];
        if (f->dev != st.st_dev || f->ino != st.st_ino)
            continue;
        if (f->reading)
            ld_error(ld, at, "include %s is a cycle: that file is being read already (it "
                     "includes %s, directly or through others); remove one of the two",
                     path, ld->file);
        else if (f->from)
            ld_error(ld, at, "include %s: that file is included already (at %s:%u:%u); "
                     "include it once", path, f->from, f->line, f->col);
        else
            ld_error(ld, at, "include %s is the policy itself; remove it", path);
        goto out;
    }
    if (sh->n_files > INCLUDE_MAX) {
        ld_error(ld, at, "include %s: more than %d included files; merge some", path,
                 INCLUDE_MAX);
        goto out;
    }
    nv = realloc(ld->p->includes, (ld->p->n_includes + 1) * sizeof(*nv));
    if (!nv) {
        ld_error(ld, at, "out of memory");
        goto out;
    }
    ld->p->includes = nv;
    nv[ld->p->n_includes++] = path;     /* the policy owns it: its rules point to it */
    child.file = path;
    path = NULL;
    f = &sh->files[sh->n_files++];
    *f = (struct load_file){.dev = st.st_dev, .ino = st.st_ino, .path = child.file,
                            .reading = true, .from = ld->file, .line = node_line(at),
                            .col = node_col(at)};
    len64 = len;                        /* each file's length first: the hash of a policy
                                           is not that of its files run together */
    SHA256_Update(&sh->hash, &len64, sizeof(len64));
    SHA256_Update(&sh->hash, buf, len);
    parse_yaml(&child, buf, len, load_included_document);
    f->reading = false;
out:
    free(path);
    free(buf);
}

static void load_include(struct loader *ld, yaml_node_t *n, void *ctx)
{
    yaml_node_t *item;
    const char *name;

    (void)ctx;
    for_each_item(ld, n, "include", item) {
        if (ld->d->n_errors >= DIAG_MAX_ERRORS)
            return;
        if (!(name = scalar(ld, item, "an include")))
            continue;
        if (!*name)
            ld_error(ld, item, "an include names a file; this one is empty");
        else
            include_file(ld, item, name);
    }
}

/* ---- the policy ---- */

/*
 * Under dns.answers: real a flow is matched to a name only by what it says
 * (SNI, Host): a domain rule's port other than 80 and 443 then works only for
 * TLS or HTTP on it. Inspect and http rules are HTTP(S) by definition.
 */
static void check_real_answers(struct loader *ld)
{
    const struct policy *p = ld->p;
    size_t i, j;

    if (p->settings.dns.answers != DNS_ANSWERS_REAL)
        return;
    for (i = 0; i < p->n_rules; i++) {
        const struct policy_rule *r = &p->rules[i];

        if (r->kind == RULE_CIDR || r->inspect || r->n_http)
            continue;
        for (j = 0; j < r->n_ports; j++)
            if (r->ports[j] != 80 && r->ports[j] != 443)
                diag_add_in(ld->d, r->file, DIAG_WARNING, r->line, r->col,
                            "port %u of '%s' needs dns.answers: virtual unless it carries "
                            "TLS or HTTP; otherwise such flows are denied unknown_protocol",
                            r->ports[j], r->pattern);
    }
}

static void load_document(struct loader *ld)
{
    yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    bool present[TOP_COUNT] = {false};

    if (!root) {
        diag_add_in(ld->d, ld->file, DIAG_ERROR, 1, 1,
                    "empty policy; a policy starts with 'version: 1'");
        return;
    }
    ld->seen[0] = 1;
    load_map(ld, root, "the policy", top_keys, TOP_COUNT, NULL, present);
    if (root->type != YAML_MAPPING_NODE)
        return;
    if (!present[TOP_VERSION])
        ld_error(ld, root, "the policy has no 'version'; add 'version: 1' at the top");
    if (!present[TOP_EGRESS] && !present[TOP_INCLUDE])
        ld_warn(ld, root, "the policy has no 'egress' rules, so every flow is denied");
    check_real_answers(ld);
}

/* The policy in BUF, read from NAME (ST: the file's identity, or NULL). */
static int load_policy(const char *name, const uint8_t *buf, size_t len, const struct stat *st,
                       struct policy **out, struct diag_list *diags)
{
    struct load_shared *sh = calloc(1, sizeof(*sh));
    struct loader ld = {.d = diags, .sh = sh};
    unsigned char md[SHA256_DIGEST_LENGTH];
    size_t i;
    int r = -EINVAL;

    *out = NULL;
    ld.p = policy_new(name);
    if (!sh || !ld.p) {
        policy_free(ld.p);
        free(sh);
        diag_add(diags, DIAG_ERROR, 0, 0, "out of memory");
        return -ENOMEM;
    }
    sh->p = ld.p;
    ld.file = ld.p->file;
    if (st)
        sh->files[sh->n_files++] = (struct load_file){.dev = st->st_dev, .ino = st->st_ino,
                                                      .path = ld.file, .reading = true};
    /*
     * SHA-256 through OpenSSL's low-level interface, on purpose: the EVP way
     * (EVP_Digest, and SHA256() too in OpenSSL 3) fetches the algorithm from a
     * provider, which loads the provider machinery and openssl.cnf into every
     * process, about 3 MiB of resident pages per proxy, for one hash per reload.
     * The low-level functions are deprecated in OpenSSL 3 but kept, and linked
     * from the static libcrypto they cost a few KiB.
     */
    SHA256_Init(&sh->hash);
    SHA256_Update(&sh->hash, buf, len);
    parse_yaml(&ld, buf, len, load_document);
    SHA256_Final(md, &sh->hash);
    for (i = 0; i < POLICY_HASH_HEX / 2; i++)
        snprintf(ld.p->hash + 2 * i, 3, "%02x", md[i]);
    if (diags->n_errors == 0)
        r = policy_compile(ld.p, diags);
    free(sh);
    if (r == 0)
        *out = ld.p;
    else
        policy_free(ld.p);
    return r;
}

int policy_load_buffer(const char *name, const uint8_t *buf, size_t len,
                       struct policy **out, struct diag_list *diags)
{
    *out = NULL;
    if (len > POLICY_MAX_FILE) {
        diag_add(diags, DIAG_ERROR, 0, 0, "policy is larger than %u MiB", POLICY_MAX_FILE >> 20);
        return -EFBIG;
    }
    return load_policy(name, buf, len, NULL, out, diags);
}

int policy_load_file(const char *path, struct policy **out, struct diag_list *diags)
{
    char err[128];
    struct stat st;
    uint8_t *buf;
    size_t len;
    int r;

    *out = NULL;
    if ((r = read_policy_file(path, &buf, &len, &st)) < 0) {
        diag_add(diags, DIAG_ERROR, 0, 0, "%s", read_error(r, err));
        return r;
    }
    r = load_policy(path, buf, len, &st, out, diags);
    free(buf);
    return r;
}
