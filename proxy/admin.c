/*
 * --metrics: libevent's HTTP server answering GET /metrics and /healthz.
 * --control: a unix socket taking one JSON request line ({"cmd": "stats"},
 * "flows" or "reload") and answering one JSON line, then closing. Requests
 * are read with libyaml (JSON is YAML's flow style), replies written with
 * the flow log's escaping, so no byte of a hostile SNI can break them.
 */
#include "admin.h"

#include <dirent.h>
#include <netinet/in.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <yaml.h>

#include "budget.h"
#include "clock.h"
#include "conn.h"
#include "json.h"
#include "leaf.h"
#include "vpool.h"
#include "log.h"
#include "sock.h"
#include "tls.h"

#define ADMIN_BACKLOG 64

struct admin {
    struct proxy *px;
    struct evhttp *http;
    struct evconnlistener *control;
    char *control_path;
    struct bufferevent *clients[ADMIN_CLIENTS_MAX];
    size_t n_clients;
};

/* ---- metrics ---- */

static double timeval_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* The process's own figures; each is cheap (a syscall or a small /proc read). */
static void process_gauges(const struct proxy *px, struct metrics_gauges *g)
{
    struct rusage ru;
    struct rlimit rl;
    unsigned long long pages = 0, resident = 0;
    FILE *f;
    DIR *dir;

    memset(g, 0, sizeof(*g));
    g->active_flows = px->n_conns;
    g->policy_generation = px->policy->generation;
    g->start_time = (double)px->started.tv_sec + (double)px->started.tv_nsec / 1e9;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        g->cpu_seconds = timeval_s(&ru.ru_utime) + timeval_s(&ru.ru_stime);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        g->max_fds = rl.rlim_cur;
    f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%llu %llu", &pages, &resident) == 2)
            g->rss_bytes = resident * (unsigned long long)sysconf(_SC_PAGESIZE);
        fclose(f);
    }
    dir = opendir("/proc/self/fd");
    if (dir) {
        while (readdir(dir))
            g->open_fds++;
        closedir(dir);
        g->open_fds -= g->open_fds >= 3 ? 3 : g->open_fds;  /* ".", ".." and the listing */
    }
    if (px->tls) {
        struct leaf_stats ls;

        tls_leaf_stats(px->tls, &ls);
        g->inspect = true;
        g->leaf_cached = ls.hits;
        g->leaf_minted = ls.minted;
        g->leaf_mint_seconds = (double)ls.mint_ns / 1e9;
    }
    if (px->vpool) {
        struct vpool_stats vs;

        vpool_stats(px->vpool, &vs);
        g->virtual_pool = true;
        g->virtual_mapped = vs.mapped;
        g->virtual_in_use = vs.in_use;
        g->virtual_evictions = vs.evictions;
    }
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    struct metrics_gauges g;
    struct evbuffer *out = evbuffer_new();

    if (!out || (process_gauges(a->px, &g), metrics_render(&a->px->metrics, &g, out)) < 0) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        if (out)
            evbuffer_free(out);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

/* Liveness and readiness: the event loop answers, and a policy is in force. */
static void on_healthz(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    struct evbuffer *out = evbuffer_new();

    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    evbuffer_add_printf(out, "ok %s\n", a->px->policy->hash);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
    evhttp_send_reply(req, HTTP_OK, "OK", out);
    evbuffer_free(out);
}

/*
 * Serves --metrics. The IPv4 wildcard also binds the IPv6 one ([::], v6 only)
 * where the host has IPv6: in a pod, a port the proxy leaves unbound in one
 * family is one the workload could listen on itself, behind the pod rules'
 * allowance for the metrics port's replies.
 */
static int metrics_bind(struct admin *a, const char *spec)
{
    static const uint8_t any4[4];
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;

    if (!sock_parse(spec, &ss, &len)) {
        log_warnx("--metrics %s: not ADDR:PORT or [ADDR]:PORT", spec);
        return -EINVAL;
    }
    a->http = evhttp_new(a->px->base);
    if (!a->http)
        goto fail;
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(a->http, ADMIN_REQUEST_MAX * 2);
    evhttp_set_max_body_size(a->http, 0);
    evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
    evhttp_set_cb(a->http, "/metrics", on_metrics, a);
    evhttp_set_cb(a->http, "/healthz", on_healthz, a);
    fd = sock_bind(&ss, len, SOCK_STREAM, 0, ADMIN_BACKLOG);
    if (fd < 0)
        goto fail;
    if (!evhttp_accept_socket_with_handle(a->http, fd)) {
        close(fd);
        goto fail;
    }
    if (ss.ss_family == AF_INET && memcmp(sock_addr(&ss), any4, 4) == 0) {
        struct sockaddr_storage ss6 = {.ss_family = AF_INET6};

        ((struct sockaddr_in6 *)&ss6)->sin6_port = htons(sock_port(&ss));
        fd = sock_bind(&ss6, sizeof(struct sockaddr_in6), SOCK_STREAM, SOCK_V6ONLY,
                       ADMIN_BACKLOG);
        if (fd < 0 && errno != EAFNOSUPPORT && errno != EADDRNOTAVAIL)
            goto fail;
        if (fd >= 0 && !evhttp_accept_socket_with_handle(a->http, fd)) {
            close(fd);
            goto fail;
        }
    }
    return 0;
fail:
    log_warnx("--metrics %s: %s (is the port in use by another proxy? give each sandbox's "
              "proxy its own)", spec, strerror(errno));
    return -1;
}

struct budget_json {
    struct json_out *o;
    bool first;
};

/* "NAME":{"upload_spent":N,"upload_left":N,...,"window_left_s":N}, each way it limits */
static void budget_member(const struct budget_view *v, void *arg)
{
    static const char *const ways[2] = {"upload", "download"};
    struct budget_json *bj = arg;
    struct json_out *o = bj->o;
    int w;

    json_printf(o, "%s", bj->first ? "" : ",");
    bj->first = false;
    json_str(o, v->name, strlen(v->name));
    json_printf(o, ":{\"window_left_s\":%llu", (unsigned long long)(v->window_left_ms / 1000));
    for (w = 0; w < 2; w++) {
        char key[32];

        if (!v->limit[w])
            continue;
        snprintf(key, sizeof(key), "%s_spent", ways[w]);
        json_key_u64(o, key, v->spent[w]);
        snprintf(key, sizeof(key), "%s_left", ways[w]);
        json_key_u64(o, key, v->spent[w] < v->limit[w] ? v->limit[w] - v->spent[w] : 0);
    }
    json_printf(o, "}");
}

/* ---- control socket ---- */

static void reply_stats(struct admin *a, struct json_out *o)
{
    const struct proxy *px = a->px;
    const struct metrics *m = &px->metrics;
    const struct policy *p = px->policy;
    uint64_t by_verdict[METRICS_VERDICTS] = {0}, dns = 0, dns_denied = 0;
    struct timespec now;
    size_t v, r, i;

    for (v = 0; v < METRICS_VERDICTS; v++) {
        for (r = 0; r < REASON_COUNT; r++)
            for (i = 0; i < METRICS_PROTOS; i++)
                by_verdict[v] += m->flows[v][r][i];
        for (i = 0; i < METRICS_QTYPES; i++) {
            dns += m->dns[v][i];
            if (v == VERDICT_DENY)
                dns_denied += m->dns[v][i];
        }
    }
    clock_gettime(CLOCK_REALTIME, &now);
    json_printf(o, "{\"ok\":true");
    json_key_str(o, "sandbox", px->id, 0);
    json_key_u64(o, "pid", (uint64_t)getpid());
    json_key_u64(o, "uptime_s", (uint64_t)(now.tv_sec - px->started.tv_sec));
    json_printf(o, ",\"policy\":{\"generation\":%llu", (unsigned long long)p->generation);
    json_key_str(o, "file", p->file, 0);
    json_key_str(o, "hash", p->hash, 0);
    json_key_str(o, "mode", p->settings.mode == POLICY_AUDIT ? "audit" : "enforce", 0);
    json_key_u64(o, "rules", p->n_rules);
    json_printf(o, "}");
    json_key_u64(o, "active_flows", px->n_conns);
    json_key_u64(o, "flows_allowed", by_verdict[VERDICT_ALLOW]);
    json_key_u64(o, "flows_denied", by_verdict[VERDICT_DENY]);
    json_key_u64(o, "flows_audited", by_verdict[VERDICT_AUDIT]);
    json_key_u64(o, "bytes_up", m->bytes_up);
    json_key_u64(o, "bytes_down", m->bytes_down);
    json_key_u64(o, "dns_queries", dns);
    json_key_u64(o, "dns_denied", dns_denied);
    json_key_u64(o, "reloads_ok", m->reloads_ok);
    json_key_u64(o, "reloads_failed", m->reloads_failed);
    json_printf(o, ",\"rate_limited\":{");
    for (i = LIMIT_NONE + 1; i < LIMIT_COUNT; i++)
        json_printf(o, "%s\"%s\":%llu", i > LIMIT_NONE + 1 ? "," : "",
                    flow_limit_name((enum flow_limit)i), (unsigned long long)m->rate_limited[i]);
    json_printf(o, "}");
    if (px->vpool) {
        struct vpool_stats vs;

        vpool_stats(px->vpool, &vs);
        json_printf(o, ",\"virtual\":{\"size\":%u,\"mapped\":%u,\"in_use\":%u,"
                    "\"evictions\":%llu}", vs.size, vs.mapped, vs.in_use,
                    (unsigned long long)vs.evictions);
    }
    if (px->budgets) {
        struct budget_json bj = {o, true};

        json_printf(o, ",\"budgets\":{");
        budgets_each(px->budgets, clock_now_ms(), budget_member, &bj);
        json_printf(o, "}");
    }
    json_printf(o, "}");
}

static void reply_flows(struct admin *a, struct json_out *o)
{
    struct conn_info *v = calloc(a->px->n_conns + 1, sizeof(*v));
    size_t n, i;

    if (!v) {
        json_printf(o, "{\"ok\":false,\"error\":\"out of memory\"}");
        return;
    }
    n = conn_list(a->px, v, a->px->n_conns);
    json_printf(o, "{\"ok\":true,\"flows\":[");
    for (i = 0; i < n; i++) {
        json_printf(o, "%s{\"id\":%llu", i ? "," : "", (unsigned long long)v[i].id);
        json_key_str(o, "state", v[i].state, 0);
        json_key_str(o, "proto", v[i].proto, 0);
        json_key_str(o, "src", v[i].src, 0);
        json_key_str(o, "orig_dst", v[i].orig_dst, 0);
        if (v[i].virt)
            json_printf(o, ",\"virtual\":true");
        json_key_str(o, "host", v[i].host[0] ? v[i].host : NULL, 0);
        json_key_u64(o, "port", v[i].port);
        json_key_str(o, "upstream", v[i].upstream[0] ? v[i].upstream : NULL, 0);
        json_key_u64(o, "bytes_up", v[i].bytes_up);
        json_key_u64(o, "bytes_down", v[i].bytes_down);
        json_key_u64(o, "age_ms", v[i].age_ms);
        json_printf(o, "}");
    }
    json_printf(o, "]}");
    free(v);
}

static void reply_reload(struct admin *a, struct json_out *o)
{
    char msg[1024];
    int rc = proxy_reload(a->px, "control socket", msg, sizeof(msg));

    if (rc < 0) {
        json_printf(o, "{\"ok\":false");
        json_key_str(o, "error", msg, 0);
    } else {
        json_printf(o, "{\"ok\":true,\"changed\":%s", rc ? "true" : "false");
        json_key_str(o, "policy", a->px->policy->hash, 0);
    }
    json_printf(o, "}");
}

static const struct {
    const char *name;
    void (*fn)(struct admin *a, struct json_out *o);
} commands[] = {
    {"stats", reply_stats},
    {"flows", reply_flows},
    {"reload", reply_reload},
};

/*
 * The command of a request line: a JSON object with a string "cmd". Copies
 * it into CMD; false when the line is not such an object.
 */
static bool request_cmd(const char *line, size_t len, char *cmd, size_t cap)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    yaml_node_pair_t *pair;
    bool found = false;

    if (!yaml_parser_initialize(&parser))
        return false;
    yaml_parser_set_input_string(&parser, (const unsigned char *)line, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_parser_delete(&parser);
        return false;
    }
    root = yaml_document_get_root_node(&doc);
    for (pair = root && root->type == YAML_MAPPING_NODE ? root->data.mapping.pairs.start
                                                         : NULL;
         pair && pair < root->data.mapping.pairs.top && !found; pair++) {
        yaml_node_t *k = yaml_document_get_node(&doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(&doc, pair->value);

        if (k && v && k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, "cmd") == 0 &&
            v->data.scalar.length < cap) {
            memcpy(cmd, v->data.scalar.value, v->data.scalar.length + 1);
            found = true;
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return found;
}

static void client_free(struct bufferevent *bev, struct admin *a)
{
    size_t i;

    for (i = 0; i < a->n_clients; i++)
        if (a->clients[i] == bev)
            a->clients[i] = a->clients[--a->n_clients];
    bufferevent_free(bev);
}

static void on_client_written(struct bufferevent *bev, void *arg)
{
    client_free(bev, arg);              /* one request, one reply */
}

static void on_client_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;                         /* EOF, error or timeout: nothing to answer */
    client_free(bev, arg);
}

static void on_client_read(struct bufferevent *bev, void *arg)
{
    struct admin *a = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct json_out o = {.grow = true};
    char cmd[32];
    size_t len, i;
    char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);

    if (!line && evbuffer_get_length(in) < ADMIN_REQUEST_MAX)
        return;                         /* the line is not all here yet */
    if (!line || !request_cmd(line, len, cmd, sizeof(cmd))) {
        json_printf(&o, "{\"ok\":false,\"error\":\"a request is one line of JSON, e.g. "
                        "{\\\"cmd\\\": \\\"stats\\\"}\"}");
    } else {
        for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            if (strcmp(cmd, commands[i].name) == 0)
                break;
        if (i < sizeof(commands) / sizeof(commands[0])) {
            commands[i].fn(a, &o);
        } else {
            json_printf(&o, "{\"ok\":false");
            json_key_str(&o, "error", "unknown command (stats, flows, reload)", 0);
            json_printf(&o, "}");
        }
    }
    free(line);
    json_raw(&o, "\n", 1);
    bufferevent_disable(bev, EV_READ);
    bufferevent_setcb(bev, NULL, on_client_written, on_client_event, a);
    if (o.failed || bufferevent_write(bev, o.p, o.n) < 0)
        client_free(bev, a);
    free(o.p);
}

static void on_control_accept(struct evconnlistener *l, evutil_socket_t fd,
                              struct sockaddr *sa, int salen, void *arg)
{
    struct admin *a = arg;
    struct timeval tv = clock_tv(ADMIN_TIMEOUT_S * 1000);
    struct bufferevent *bev;

    (void)l;
    (void)sa;
    (void)salen;
    if (a->n_clients >= ADMIN_CLIENTS_MAX) {
        close(fd);
        return;
    }
    bev = bufferevent_socket_new(a->px->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        close(fd);
        return;
    }
    a->clients[a->n_clients++] = bev;
    bufferevent_setcb(bev, on_client_read, NULL, on_client_event, a);
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setwatermark(bev, EV_READ, 0, ADMIN_REQUEST_MAX);
    bufferevent_enable(bev, EV_READ);
}

static int control_bind(struct admin *a, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old;
    int fd, rc;

    if (strlen(path) >= sizeof(sun.sun_path)) {
        log_warnx("--control %s: longer than %zu bytes (use a shorter path, e.g. "
                  "/run/sluice/NAME.sock)", path, sizeof(sun.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    /* a socket left by a proxy that died is replaced; any other file is not ours */
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    old = umask(077);                   /* born 0600: no window where others may connect */
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc < 0 || chmod(path, 0600) < 0)
        goto fail;
    a->control_path = strdup(path);
    a->control = evconnlistener_new(a->px->base, on_control_accept, a,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16, fd);
    if (!a->control_path || !a->control)
        goto fail;
    return 0;
fail:
    log_warnx("--control %s: %s (the directory must exist and be writable; a non-socket "
              "file there is never replaced)", path, strerror(errno));
    if (fd >= 0 && !a->control)
        close(fd);
    return -1;
}

struct admin *admin_new(struct proxy *px, const char *metrics, const char *control)
{
    struct admin *a = calloc(1, sizeof(*a));

    if (!a)
        return NULL;
    a->px = px;
    if ((metrics && metrics_bind(a, metrics) < 0) || (control && control_bind(a, control) < 0)) {
        admin_free(a);
        return NULL;
    }
    return a;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    while (a->n_clients > 0)
        client_free(a->clients[0], a);
    if (a->http)
        evhttp_free(a->http);
    if (a->control)
        evconnlistener_free(a->control);
    if (a->control_path) {
        unlink(a->control_path);
        free(a->control_path);
    }
    free(a);
}
