/*
 * The process core of sluice-proxy: opens what the command line names (flow
 * log, resolver, transparent listeners, DNS service, admin endpoints), drops
 * privileges, and runs the event loop: accept with backoff, signals (SIGHUP
 * reload, SIGTERM drain, SIGUSR1 log reopen), the policy file's directory
 * watch, and giving the heap back after a burst.
 */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "addr_class.h"
#include "admin.h"
#include "alerts.h"
#include "budget.h"
#include "clock.h"
#include "conn.h"
#include "dns_server.h"
#include "feedback.h"
#include "log.h"
#include "privdrop.h"
#include "resolver.h"
#include "route.h"
#include "sock.h"
#include "tls.h"
#include "vpool.h"

#define ACCEPT_BACKOFF_MS 100       /* out of descriptors: pause accepting this long */
#define ACCEPT_BATCH 64             /* connections taken per wake-up before others run */
#define LISTEN_BACKLOG 1024
#define RELOAD_SETTLE_MS 100        /* a burst of file events is one reload */
#define TRIM_INTERVAL_MS 1000       /* how often an idle proxy checks for heap to give back */
#define DRAIN_POLL_MS 50

static const int core_signals[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
#define N_SIGNALS (sizeof(core_signals) / sizeof(core_signals[0]))

struct listener {
    int fd;
    struct event *ev;
    struct proxy *px;
};

struct proxy_core {
    struct listener listeners[PROXY_MAX_LISTENERS];
    size_t n_listeners;
    struct dns_server *dns[PROXY_MAX_DNS];
    size_t n_dns;
    struct admin *admin;
    struct event *reload_timer, *drain_timer, *backoff_timer, *trim_timer;
    struct event *signals[N_SIGNALS];
    int inotify_fd;
    struct event *inotify_ev;
    struct event *route_ev;         /* the kernel announced a routing change */
    uint64_t trimmed_at_flow;       /* px->last_flow when the heap was last trimmed */
    uint64_t drain_deadline_ms;
};

void proxy_alert(struct proxy *px, const struct alert *a)
{
    struct flow_record r = {.event = EV_ALERT, .alert = a};

    proxy_log(px, &r);
}

void proxy_log(struct proxy *px, struct flow_record *r)
{
    clock_gettime(CLOCK_REALTIME, &r->ts);
    r->sandbox = px->id;
    if (!r->policy)                 /* a flow's records name the policy that decided it */
        r->policy = px->policy ? px->policy->hash : NULL;
    metrics_count(&px->metrics, r);
    if (px->alerts && r->event != EV_ALERT) {
        struct alert fired[ALERTS_PER_EVENT];
        size_t i, n = alerts_note(px->alerts, r, r->wildcard, clock_now_ms(), fired);

        for (i = 0; i < n; i++)
            proxy_alert(px, &fired[i]);
    }
    if (px->policy && px->policy->settings.feedback && r->verdict == VERDICT_DENY) {
        if (!px->feedback)
            px->feedback = feedback_new(PROXY_FEEDBACK_MAX);
        feedback_note(px->feedback, r);
    }
    if ((r->event == EV_DNS || r->event == EV_LIMIT || r->event == EV_REQUEST) &&
        !log_gate_pass(&px->gate, PROXY_LOG_PER_SECOND,
                       (uint64_t)r->ts.tv_sec * 1000 + (uint64_t)r->ts.tv_nsec / 1000000,
                       &r->suppressed))
        return;
    if (px->log)
        flowlog_write(px->log, r);
}

bool proxy_dest_allowed(const struct proxy *px, int family, const uint8_t *addr)
{
    if (addr_is_special(family, addr, NULL) && !policy_range_allowed(px->policy, family, addr))
        return false;
    return !px->route || route_is_local(px->route, family, addr) == 0;
}

/* ---- listeners ---- */

static void listeners_watch(struct proxy_core *core, bool on)
{
    size_t i;

    for (i = 0; i < core->n_listeners; i++) {
        if (on)
            event_add(core->listeners[i].ev, NULL);
        else
            event_del(core->listeners[i].ev);
    }
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;

    (void)fd;
    (void)what;
    if (!px->draining)
        listeners_watch(px->core, true);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;
    struct proxy_core *core = l->px->core;
    int i;

    (void)what;
    for (i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int c = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (c >= 0) {
            conn_accept(l->px, c, &peer);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* out of resources: stop accepting for a moment instead of spinning */
            struct timeval tv = clock_tv(ACCEPT_BACKOFF_MS);

            log_warnx("accept: %s; pausing new connections for %d ms", strerror(errno),
                      ACCEPT_BACKOFF_MS);
            listeners_watch(core, false);
            evtimer_add(core->backoff_timer, &tv);
        }
        return;                         /* EAGAIN, or a client that gave up */
    }
}

static int listen_on(struct proxy *px, const char *spec)
{
    struct proxy_core *core = px->core;
    struct listener *l = &core->listeners[core->n_listeners];
    struct sockaddr_storage ss;
    socklen_t len;

    if (!sock_parse(spec, &ss, &len)) {
        log_warnx("--listen %s: not ADDR:PORT or [ADDR]:PORT", spec);
        return -EINVAL;
    }
    /* TPROXY hands us connections for any address: the socket must accept them.
     * TCP_NODELAY is inherited by every accepted socket: a relay must not add
     * Nagle's wait to the endpoints' own. */
    l->fd = sock_bind(&ss, len, SOCK_STREAM, SOCK_TRANSPARENT | SOCK_NODELAY, LISTEN_BACKLOG);
    if (l->fd < 0) {
        log_warnx("--listen %s: %s (IP_TRANSPARENT needs CAP_NET_ADMIN; the address must be "
                  "local, e.g. the gateway address sluice-netsetup printed)", spec,
                  strerror(errno));
        return -1;
    }
    l->px = px;
    if (ss.ss_family == AF_INET6 && !px->v6) {
        px->v6 = true;
        memcpy(px->gw6, sock_addr(&ss), 16);
    } else if (ss.ss_family == AF_INET && !px->gw4[0]) {
        memcpy(px->gw4, sock_addr(&ss), 4);
    }
    l->ev = event_new(px->base, l->fd, EV_READ | EV_PERSIST, on_accept, l);
    core->n_listeners++;                /* closed by proxy_close() even if this fails */
    return l->ev && event_add(l->ev, NULL) == 0 ? 0 : -1;
}

/* Closed, not just unwatched: with no listener, netsetup's rules reset new
 * connections at once instead of leaving them in a backlog. */
static void listeners_close(struct proxy_core *core)
{
    size_t i;

    for (i = 0; i < core->n_listeners; i++) {
        if (core->listeners[i].ev)
            event_free(core->listeners[i].ev);
        close(core->listeners[i].fd);
    }
    core->n_listeners = 0;
}
bool proxy_is_feedback_name(const char *name, size_t len)
{
    return len == sizeof(PROXY_FEEDBACK_NAME) - 1 && memcmp(name, PROXY_FEEDBACK_NAME, len) == 0;
}

bool proxy_feedback_addr(const struct proxy *px, int family, uint8_t *out)
{
    static const uint8_t zero[16];

    if (family == AF_INET) {
        uint32_t base = htonl(VPOOL_V4_BASE);

        if (px->gw4[0] != 0 && px->gw4[0] != 127)
            memcpy(out, px->gw4, 4);
        else
            memcpy(out, &base, 4);
        return true;
    }
    if (!px->v6 || memcmp(px->gw6, zero, 15) == 0)     /* none, or ::1 (pod mode) */
        return false;
    memcpy(out, px->gw6, 16);
    return true;
}

int proxy_vpool_ensure(struct proxy *px, const struct policy *p)
{
    static const uint8_t ula[12] = VPOOL_ULA;

    if (px->vpool || p->settings.dns.answers != DNS_ANSWERS_VIRTUAL)
        return 0;
    px->vpool = vpool_new(px->vpool_max, ula, px->hash_key);
    return px->vpool ? 0 : -ENOMEM;
}

/*
 * The detectors P turns on: those running are kept when its thresholds are the
 * same (a reload does not reset what they counted), made anew when they changed.
 */
static int alerts_ensure(struct proxy *px, const struct policy *p)
{
    const struct policy_alerts *cfg = &p->settings.alerts;
    struct alerts *a = NULL;

    if (px->alerts && alerts_same(px->alerts, cfg))
        return 0;
    if (alerts_wanted(cfg) && !(a = alerts_new(cfg, px->hash_key)))
        return -ENOMEM;
    alerts_free(px->alerts);
    px->alerts = a;
    return 0;
}

/* ---- policy reload ---- */

/* Watches the directory of the file PATH: editors rename, ConfigMaps swap symlinks. A
 * directory watched already keeps its one watch. */
static int watch_dir_of(struct proxy_core *core, const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (slash)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path + 1), path);
    else
        snprintf(dir, sizeof(dir), ".");
    if (inotify_add_watch(core->inotify_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
                                                 IN_DELETE | IN_ATTRIB) < 0) {
        log_warnx("watching %s: %s; reload with SIGHUP", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* The directories of the files P includes: a change to one reloads too. */
static void watch_includes(struct proxy *px, const struct policy *p)
{
    size_t i;

    for (i = 0; px->core->inotify_fd >= 0 && i < p->n_includes; i++)
        watch_dir_of(px->core, p->includes[i]);
}

int proxy_reload(struct proxy *px, const char *why, char *msg, size_t cap)
{
    struct diag_list d;
    struct policy *p;
    struct flow_record r;
    int rc;

    diag_init(&d, px->policy_path);
    rc = policy_load_file(px->policy_path, &p, &d);
    if (rc == 0 && tls_policy_check(px->tls, p, &d) > 0) {
        policy_free(p);                 /* never an inspect rule passed by SNI alone */
        rc = -EINVAL;
    } else if (rc == 0 && (rc = proxy_vpool_ensure(px, p)) < 0) {
        diag_add(&d, DIAG_ERROR, 0, 0, "dns.answers: virtual: no memory for %u addresses "
                 "(sluice-proxy --virtual-pool)", px->vpool_max);
        policy_free(p);
    } else if (rc == 0 && (rc = alerts_ensure(px, p)) < 0) {
        diag_add(&d, DIAG_ERROR, 0, 0, "alerts: out of memory");
        policy_free(p);
    }
    memset(&r, 0, sizeof(r));
    r.event = EV_RELOAD;
    if (rc < 0) {
        /* the old policy stays in force; the record says why, with file:line:col */
        size_t i, off = 0;

        msg[0] = '\0';
        for (i = 0; i < d.n && off < cap - 1; i++) {
            int n = snprintf(msg + off, cap - off, "%s%s:%u:%u: %s", i ? "; " : "",
                             diag_file(&d, &d.v[i]), d.v[i].line, d.v[i].col, d.v[i].msg);

            if (n < 0)
                break;
            off += (size_t)n;
        }
        r.verdict = VERDICT_DENY;
        r.error = msg;
        proxy_log(px, &r);
        log_warnx("reload (%s) rejected, keeping policy %s: %s", why, px->policy->hash, msg);
        diag_clear(&d);
        return rc;
    }
    diag_clear(&d);
    if (strcmp(p->hash, px->policy->hash) == 0 && policy_same_secrets(p, px->policy)) {
        policy_free(p);                 /* the same bytes: nothing changes */
        return 0;
    }
    policy_free(px->policy);
    px->policy = p;
    watch_includes(px, p);
    r.verdict = VERDICT_ALLOW;
    proxy_log(px, &r);
    conn_revalidate(px);
    return 1;
}

static void reload(struct proxy *px, const char *why)
{
    char msg[1024];

    proxy_reload(px, why, msg, sizeof(msg));
}

static void on_reload_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reload(arg, "file changed");
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct proxy *px = arg;
    struct timeval tv = clock_tv(RELOAD_SETTLE_MS);

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    evtimer_add(px->core->reload_timer, &tv);   /* the hash decides whether it changed */
}

static void watch_policy(struct proxy *px)
{
    struct proxy_core *core = px->core;

    core->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (core->inotify_fd < 0) {
        log_warnx("inotify: %s; reload with SIGHUP", strerror(errno));
        return;
    }
    if (watch_dir_of(core, px->policy_path) < 0)
        return;
    watch_includes(px, px->policy);
    core->inotify_ev = event_new(px->base, core->inotify_fd, EV_READ | EV_PERSIST, on_inotify,
                                 px);
    if (core->inotify_ev)
        event_add(core->inotify_ev, NULL);
}

/* ---- memory ---- */

/* After a burst (a flood of connections, each with its sniff buffer), give the
 * heap back once no flow is open: free() returns only the top of the heap, so
 * without this the resident size stays at the burst's high-water mark. */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;

    (void)fd;
    (void)what;
    if (px->n_conns == 0 && px->last_flow != px->core->trimmed_at_flow) {
        malloc_trim(0);
        px->core->trimmed_at_flow = px->last_flow;
    }
}

/* A link, address, route or rule changed: what route.c knows of the host's own
 * addresses is forgotten before the next flow asks (the same loop turn at the
 * latest: a connection decided in it raced the change as it would without a cache). */
static void on_route_change(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;

    (void)fd;
    (void)what;
    route_probe_changed(px->route);
}

/* ---- signals ---- */

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct proxy *px = arg;
    struct timeval tv = clock_tv(DRAIN_POLL_MS);

    (void)fd;
    (void)what;
    if (px->n_conns == 0 || clock_now_ms() >= px->core->drain_deadline_ms) {
        conn_close_all(px);
        event_base_loopexit(px->base, NULL);
        return;
    }
    evtimer_add(px->core->drain_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct proxy *px = arg;

    (void)what;
    if (sig == SIGHUP) {
        reload(px, "SIGHUP");
    } else if (sig == SIGUSR1) {
        if (px->log && flowlog_reopen(px->log) < 0)
            log_warnx("reopening the flow log: %s", strerror(errno));
    } else if (!px->draining) {         /* SIGTERM, SIGINT: stop accepting, drain */
        px->draining = true;
        listeners_close(px->core);
        px->core->drain_deadline_ms = clock_now_ms() + PROXY_DRAIN_GRACE_MS;
        on_drain(-1, 0, px);
    }
}

/* ---- the process ---- */

static void raise_nofile(void)
{
    struct rlimit rl;

    /* each flow holds two sockets and up to four pipe ends */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Inspect mode: the CA is read now, before the privilege drop, and never
 * again; a policy with an inspect rule the proxy cannot serve is refused
 * rather than passed by SNI alone. Returns 0, or an exit code.
 */
static int open_inspect(struct proxy *px, const struct proxy_options *opt)
{
    char err[TLS_ERR_MAX];
    struct diag_list d;
    size_t bad;

    if (!opt->ca_cert != !opt->ca_key) {
        log_warnx("--ca-cert and --ca-key go together (see --help)");
        return 2;
    }
    if (opt->upstream_ca && !opt->ca_cert) {
        log_warnx("--upstream-ca is for inspect mode: it needs --ca-cert and --ca-key");
        return 2;
    }
    if (opt->ca_cert && tls_ctx_open(&px->tls, opt->ca_cert, opt->ca_key, opt->upstream_ca,
                                     err) < 0) {
        log_warnx("%s", err);
        return 1;
    }
    diag_init(&d, px->policy_path);
    bad = tls_policy_check(px->tls, px->policy, &d);
    diag_print(&d, stderr);
    diag_clear(&d);
    return bad ? 2 : 0;
}

int proxy_open(struct proxy *px, const struct proxy_options *opt, struct policy *policy)
{
    struct proxy_core *core;
    struct timeval trim = clock_tv(TRIM_INTERVAL_MS);
    size_t i;
    int rc;

    memset(px, 0, sizeof(*px));
    list_init(&px->conns);
    px->id = opt->id ? opt->id : "";
    px->policy_path = opt->policy_path;
    px->policy = policy;
    px->vpool_max = opt->virtual_pool ? opt->virtual_pool : PROXY_VIRTUAL_POOL;
    px->core = core = calloc(1, sizeof(*core));
    if (!core)
        return 1;
    core->inotify_fd = -1;

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if ((rc = open_inspect(px, opt)) != 0)
        return rc;
    if (getrandom(px->hash_key, sizeof(px->hash_key), 0) != (ssize_t)sizeof(px->hash_key)) {
        log_warnx("getrandom: %s", strerror(errno));
        return 1;
    }
    if (proxy_vpool_ensure(px, policy) < 0) {
        log_warnx("dns.answers: virtual: no memory for %u addresses (--virtual-pool)",
                  px->vpool_max);
        return 1;
    }
    if (alerts_ensure(px, policy) < 0) {
        log_warnx("alerts: out of memory");
        return 1;
    }
    px->base = event_base_new();
    px->log = flowlog_open(opt->log_path);
    if (!px->base || !px->log) {
        log_warnx("%s: %s", px->base ? opt->log_path : "event loop", strerror(errno));
        return 1;
    }
    px->relay = relay_pool_new(px);
    px->resolver = resolver_new(px->base, opt->upstream);
    if (!px->relay || !px->resolver) {
        log_warnx("--upstream-dns %s: %s", opt->upstream, strerror(errno));
        return px->relay ? 2 : 1;
    }
    rc = route_probe_open(&px->route);
    if (rc < 0) {
        log_warnx("opening the rtnetlink socket (the host's own addresses are refused as "
                  "destinations): %s", strerror(-rc));
        return 1;
    }
    core->reload_timer = evtimer_new(px->base, on_reload_timer, px);
    core->drain_timer = evtimer_new(px->base, on_drain, px);
    core->backoff_timer = evtimer_new(px->base, on_backoff, px);
    core->trim_timer = event_new(px->base, -1, EV_PERSIST, on_trim, px);
    if (!core->reload_timer || !core->drain_timer || !core->backoff_timer ||
        !core->trim_timer || event_add(core->trim_timer, &trim) < 0)
        return 1;
    if (route_probe_watch_fd(px->route) >= 0) {
        core->route_ev = event_new(px->base, route_probe_watch_fd(px->route),
                                   EV_READ | EV_PERSIST, on_route_change, px);
        if (!core->route_ev || event_add(core->route_ev, NULL) < 0)
            return 1;
    }
    for (i = 0; i < opt->n_listens; i++)
        if (listen_on(px, opt->listens[i]) < 0)
            return 1;
    for (i = 0; i < opt->n_dns; i++)
        if (!(core->dns[core->n_dns++] = dns_server_new(px, opt->dns[i])))
            return 1;
    if ((opt->metrics || opt->control) &&
        !(core->admin = admin_new(px, opt->metrics, opt->control)))
        return 1;
    clock_gettime(CLOCK_REALTIME, &px->started);
    for (i = 0; i < N_SIGNALS; i++) {
        core->signals[i] = evsignal_new(px->base, core_signals[i], on_signal, px);
        if (core->signals[i])
            event_add(core->signals[i], NULL);
    }
    watch_policy(px);
    return 0;
}

int proxy_run(struct proxy *px, const struct proxy_options *opt)
{
    struct privdrop_result priv;
    char err[256];

    /* every socket is bound and every file open: privileges go, for good */
    if (!opt->seccomp)
        log_warnx("--no-seccomp: running without the syscall filter; for debugging only");
    if (privdrop_apply(opt->user, opt->seccomp, &priv, err, sizeof(err)) < 0) {
        log_warnx("dropping privileges: %s", err);
        return 1;
    }
    log_warnx("running as %s (uid %u), no capabilities%s, no_new_privs, seccomp %s",
              priv.user, (unsigned)priv.uid,
              priv.bounding_dropped ? "" : " (bounding set kept: no CAP_SETPCAP)",
              priv.seccomp ? "on" : "OFF");
    log_warnx("%s: serving with policy %s (%zu rules)", px->id[0] ? px->id : "sandbox",
              px->policy->hash, px->policy->n_rules);
    event_base_dispatch(px->base);
    return 0;
}

void proxy_close(struct proxy *px)
{
    struct proxy_core *core = px->core;
    size_t i;

    if (core) {
        for (i = 0; i < N_SIGNALS; i++)
            if (core->signals[i])
                event_free(core->signals[i]);
        admin_free(core->admin);
    }
    conn_close_all(px);
    relay_pool_free(px->relay);
    if (core) {
        for (i = 0; i < core->n_dns; i++)
            dns_server_free(core->dns[i]);
        listeners_close(core);
        if (core->inotify_ev)
            event_free(core->inotify_ev);
        if (core->inotify_fd >= 0)
            close(core->inotify_fd);
        if (core->reload_timer)
            event_free(core->reload_timer);
        if (core->drain_timer)
            event_free(core->drain_timer);
        if (core->backoff_timer)
            event_free(core->backoff_timer);
        if (core->trim_timer)
            event_free(core->trim_timer);
        if (core->route_ev)
            event_free(core->route_ev);
        free(core);
    }
    resolver_free(px->resolver);
    route_probe_free(px->route);
    tls_ctx_free(px->tls);
    vpool_free(px->vpool);
    feedback_free(px->feedback);
    alerts_free(px->alerts);
    budgets_free(px->budgets);
    flowlog_close(px->log);
    policy_free(px->policy);
    if (px->base)
        event_base_free(px->base);
    memset(px, 0, sizeof(*px));
}
