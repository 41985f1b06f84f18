/*
 * sluice-proxy: one process per sandbox. Binds its transparent listeners,
 * loads the policy, and runs the event loop: accept, signals (SIGHUP reload,
 * SIGTERM drain, SIGUSR1 log reopen) and the policy file's directory watch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr_class.h"
#include "admin.h"
#include "conn.h"
#include "dns_server.h"
#include "privdrop.h"
#include "proxy.h"
#include "resolver.h"
#include "route.h"

#define MAX_LISTENERS 8
#define MAX_DNS_LISTENERS 4
#define DRAIN_GRACE_MS 10000        /* SIGTERM: how long flows may finish */
#define ACCEPT_BACKOFF_MS 100       /* out of descriptors: pause accepting this long */
#define RELOAD_SETTLE_MS 100        /* a burst of file events is one reload */
#define TRIM_INTERVAL_MS 1000       /* how often an idle proxy checks for heap to give back */

#define EXIT_USAGE 2

struct listener {
    int fd;
    struct event *ev;
    struct proxy *px;
};

static struct {
    struct proxy px;
    struct listener listeners[MAX_LISTENERS];
    size_t n_listeners;
    struct event *reload_timer, *drain_timer, *backoff_timer, *trim_timer;
    uint64_t trimmed_at_flow;       /* px.last_flow when the heap was last trimmed */
    int inotify_fd;
    struct event *inotify_ev;
    uint64_t drain_deadline_ms;
    struct dns_server *dns[MAX_DNS_LISTENERS];
    size_t n_dns;
    struct admin *admin;
} g;

__attribute__((format(printf, 1, 2)))
static void log_warnx(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sluice-proxy: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

void proxy_log(struct proxy *px, struct flow_record *r)
{
    clock_gettime(CLOCK_REALTIME, &r->ts);
    r->sandbox = px->id;
    if (!r->policy)                 /* a flow's records name the policy that decided it */
        r->policy = px->policy ? px->policy->hash : NULL;
    metrics_count(&px->metrics, r);
    if ((r->event == EV_DNS || r->event == EV_LIMIT) &&
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

bool proxy_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + 8];
    char *colon, *host = buf;
    uint16_t port;

    if (strlen(s) >= sizeof(buf))
        return false;
    strcpy(buf, s);
    colon = strrchr(buf, ':');
    if (!colon)
        return false;
    *colon = '\0';
    if (!port_parse(colon + 1, &port))
        return false;
    memset(ss, 0, sizeof(*ss));
    if (buf[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        size_t n = strlen(buf);

        if (n < 3 || buf[n - 1] != ']')
            return false;
        buf[n - 1] = '\0';
        host = buf + 1;
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return false;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
        return true;
    }
    {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return false;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
    }
    return true;
}

static void on_backoff(evutil_socket_t fd, short what, void *arg)
{
    size_t i;

    (void)fd;
    (void)what;
    (void)arg;
    if (g.px.draining)
        return;
    for (i = 0; i < g.n_listeners; i++)
        event_add(g.listeners[i].ev, NULL);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct listener *l = arg;
    int i;

    (void)what;
    for (i = 0; i < 64; i++) {          /* a bounded batch, then let others run */
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int c = accept4(fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (c >= 0) {
            conn_accept(l->px, c, &peer);
            continue;
        }
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* out of resources: stop accepting for a moment instead of spinning */
            struct timeval tv = {0, ACCEPT_BACKOFF_MS * 1000};
            size_t j;

            log_warnx("accept: %s; pausing new connections for %d ms", strerror(errno),
                      ACCEPT_BACKOFF_MS);
            for (j = 0; j < g.n_listeners; j++)
                event_del(g.listeners[j].ev);
            evtimer_add(g.backoff_timer, &tv);
        }
        return;                         /* EAGAIN, or a client that gave up */
    }
}

static int listen_on(const char *spec)
{
    struct sockaddr_storage ss;
    struct listener *l;
    socklen_t len;
    int one = 1, fd;

    if (g.n_listeners == MAX_LISTENERS) {
        log_warnx("--listen %s: at most %d listeners", spec, MAX_LISTENERS);
        return -1;
    }
    if (!proxy_parse_hostport(spec, &ss, &len)) {
        log_warnx("--listen %s: not ADDR:PORT or [ADDR]:PORT", spec);
        return -EINVAL;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    /* TPROXY hands us connections for any address: the socket must accept them.
     * TCP_NODELAY is inherited by every accepted socket: a relay must not add
     * Nagle's wait to the endpoints' own. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        (ss.ss_family == AF_INET
             ? setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one, sizeof(one))
             : setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof(one))) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0)
        goto fail;
    l = &g.listeners[g.n_listeners];
    l->fd = fd;
    l->px = &g.px;
    l->ev = event_new(g.px.base, fd, EV_READ | EV_PERSIST, on_accept, l);
    if (!l->ev || event_add(l->ev, NULL) < 0)
        goto fail;
    g.n_listeners++;
    return 0;
fail:
    log_warnx("--listen %s: %s (IP_TRANSPARENT needs CAP_NET_ADMIN; the address must be "
              "local, e.g. the gateway address sluice-netsetup printed)", spec,
              strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* ---- policy reload ---- */

int proxy_reload(struct proxy *px, const char *why, char *msg, size_t cap)
{
    struct diag_list d;
    struct policy *p;
    struct flow_record r;
    int rc;

    diag_init(&d, px->policy_path);
    rc = policy_load_file(px->policy_path, &p, &d);
    memset(&r, 0, sizeof(r));
    r.event = EV_RELOAD;
    if (rc < 0) {
        /* the old policy stays in force; the record says why, with file:line:col */
        size_t i, off = 0;

        msg[0] = '\0';
        for (i = 0; i < d.n && off < cap - 1; i++) {
            int n = snprintf(msg + off, cap - off, "%s%s:%u:%u: %s", i ? "; " : "",
                             d.file, d.v[i].line, d.v[i].col, d.v[i].msg);

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
    if (strcmp(p->hash, px->policy->hash) == 0) {
        policy_free(p);                 /* the same bytes: nothing changes */
        return 0;
    }
    policy_free(px->policy);
    px->policy = p;
    r.verdict = VERDICT_ALLOW;
    proxy_log(px, &r);
    conn_revalidate(px);
    return 1;
}

static void reload(const char *why)
{
    char msg[1024];

    proxy_reload(&g.px, why, msg, sizeof(msg));
}

static void on_reload_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    reload("file changed");
}

static void on_inotify(evutil_socket_t fd, short what, void *arg)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct timeval tv = {0, RELOAD_SETTLE_MS * 1000};

    (void)what;
    (void)arg;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    evtimer_add(g.reload_timer, &tv);   /* the hash decides whether it really changed */
}

/* Watches the policy file's directory: editors rename, ConfigMaps swap symlinks. */
static void watch_policy(void)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(g.px.policy_path, '/');

    if (slash)
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - g.px.policy_path + 1),
                 g.px.policy_path);
    else
        snprintf(dir, sizeof(dir), ".");
    g.inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (g.inotify_fd < 0 ||
        inotify_add_watch(g.inotify_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
                                             IN_DELETE | IN_ATTRIB) < 0) {
        log_warnx("watching %s: %s; reload with SIGHUP", dir, strerror(errno));
        return;
    }
    g.inotify_ev = event_new(g.px.base, g.inotify_fd, EV_READ | EV_PERSIST, on_inotify, NULL);
    if (g.inotify_ev)
        event_add(g.inotify_ev, NULL);
}

/* ---- memory ---- */

/* After a burst (a flood of connections, each with its sniff buffer), give the
 * heap back once no flow is open: free() returns only the top of the heap, so
 * without this the resident size stays at the burst's high-water mark. */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (g.px.n_conns == 0 && g.px.last_flow != g.trimmed_at_flow) {
        malloc_trim(0);
        g.trimmed_at_flow = g.px.last_flow;
    }
}

/* ---- signals ---- */

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
    struct timespec t;
    struct timeval tv = {0, 50 * 1000};

    (void)fd;
    (void)what;
    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &t);
    if (g.px.n_conns == 0 ||
        (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000 >= g.drain_deadline_ms) {
        conn_close_all(&g.px);
        event_base_loopexit(g.px.base, NULL);
        return;
    }
    evtimer_add(g.drain_timer, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct timespec t;
    size_t i;

    (void)what;
    (void)arg;
    if (sig == SIGHUP) {
        reload("SIGHUP");
    } else if (sig == SIGUSR1) {
        if (g.px.log && flowlog_reopen(g.px.log) < 0)
            log_warnx("reopening the flow log: %s", strerror(errno));
    } else if (!g.px.draining) {        /* SIGTERM, SIGINT: stop accepting, drain */
        g.px.draining = true;
        /* closed, not just unwatched: with no listener, netsetup's rules reset
         * new connections at once instead of leaving them in a backlog */
        for (i = 0; i < g.n_listeners; i++) {
            event_free(g.listeners[i].ev);
            close(g.listeners[i].fd);
        }
        g.n_listeners = 0;
        clock_gettime(CLOCK_MONOTONIC, &t);
        g.drain_deadline_ms = (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000 +
                              DRAIN_GRACE_MS;
        on_drain(-1, 0, NULL);
    }
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice-proxy --policy FILE --listen ADDR:PORT [--listen ...]\n"
            "                    [--dns-listen ADDR:PORT ...] --upstream-dns ADDR[:PORT][,...]\n"
            "                    [--id NAME] [--log FILE|-] [--metrics ADDR:PORT]\n"
            "                    [--control PATH] [--user USER] [--no-seccomp]\n"
            "                    [--check] [--foreground]\n"
            "\n"
            "  --policy FILE        the policy (see sluicectl check); reloaded on SIGHUP and\n"
            "                       when the file changes\n"
            "  --listen ADDR:PORT   a transparent TCP listener ([V6]:PORT for IPv6); the\n"
            "                       proxy_listen address sluice-netsetup printed\n"
            "  --dns-listen ADDR:PORT  the DNS service (UDP and TCP): the dns_listen address\n"
            "                       sluice-netsetup printed; names no rule allows get NXDOMAIN\n"
            "  --upstream-dns LIST  the resolvers the proxy asks (never the sandbox's choice)\n"
            "  --id NAME            the sandbox's name in every log record\n"
            "  --log FILE|-         the flow log, JSON Lines (default -: standard output)\n"
            "  --metrics ADDR:PORT  serve Prometheus metrics on GET /metrics and a health\n"
            "                       check on GET /healthz (an address the sandbox cannot\n"
            "                       reach, e.g. 127.0.0.1:15090 on the host)\n"
            "  --control PATH       the control socket (unix, mode 0600) for\n"
            "                       sluicectl --control PATH stats|flows|reload\n"
            "  --user USER          who to become after binding, when started as root\n"
            "                       (default: '%s' if /etc/passwd has it, else '%s'); a\n"
            "                       proxy started as another user stays that user. All\n"
            "                       capabilities are dropped and no_new_privs is set\n"
            "  --no-seccomp         no syscall filter (debugging only; the default filter\n"
            "                       kills the process on a syscall it does not allow)\n"
            "  --check              validate the policy, print problems, exit 0 or 1\n"
            "  --foreground         stay in the foreground (it always does; for service files)\n"
            "\n"
            "signals: SIGHUP reloads, SIGUSR1 reopens the log, SIGTERM stops accepting and\n"
            "lets flows finish for %d s. exit codes: 0 ok, 1 runtime failure (including a\n"
            "failed privilege drop), 2 usage.\n",
            PRIVDROP_DEFAULT_USER, PRIVDROP_FALLBACK_USER, DRAIN_GRACE_MS / 1000);
}

static void raise_nofile(void)
{
    struct rlimit rl;

    /* each flow holds two sockets and up to four pipe ends */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    enum { O_POLICY = 256, O_LISTEN, O_DNS, O_UPSTREAM, O_ID, O_LOG, O_CHECK, O_FOREGROUND,
           O_METRICS, O_CONTROL, O_HELP, O_USER, O_NO_SECCOMP };
    static const struct option opts[] = {
        {"policy", required_argument, NULL, O_POLICY},
        {"listen", required_argument, NULL, O_LISTEN},
        {"dns-listen", required_argument, NULL, O_DNS},
        {"upstream-dns", required_argument, NULL, O_UPSTREAM},
        {"id", required_argument, NULL, O_ID},
        {"log", required_argument, NULL, O_LOG},
        {"check", no_argument, NULL, O_CHECK},
        {"foreground", no_argument, NULL, O_FOREGROUND},
        {"metrics", required_argument, NULL, O_METRICS},
        {"control", required_argument, NULL, O_CONTROL},
        {"help", no_argument, NULL, O_HELP},
        {"user", required_argument, NULL, O_USER},
        {"no-seccomp", no_argument, NULL, O_NO_SECCOMP},
        {NULL, 0, NULL, 0},
    };
    const char *listens[MAX_LISTENERS], *dns[MAX_DNS_LISTENERS], *upstream = NULL;
    const char *log_path = "-", *metrics = NULL, *control = NULL, *user = NULL;
    bool seccomp = true;
    struct privdrop_result priv;
    char priv_err[256];
    size_t n_listens = 0, n_dns = 0, i;
    bool check = false;
    struct diag_list d;
    struct event *sigs[4] = {NULL, NULL, NULL, NULL};
    static const int signals[] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1};
    int c, rc = 0;

    g.px.id = "";
    conn_shared_init(&g.px);
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_POLICY: g.px.policy_path = optarg; break;
        case O_LISTEN:
            if (n_listens == MAX_LISTENERS) {
                log_warnx("at most %d --listen (see --help)", MAX_LISTENERS);
                return EXIT_USAGE;
            }
            listens[n_listens++] = optarg;
            break;
        case O_DNS:
            if (n_dns == MAX_DNS_LISTENERS) {
                log_warnx("at most %d --dns-listen (see --help)", MAX_DNS_LISTENERS);
                return EXIT_USAGE;
            }
            dns[n_dns++] = optarg;
            break;
        case O_UPSTREAM: upstream = optarg; break;
        case O_ID: g.px.id = optarg; break;
        case O_LOG: log_path = optarg; break;
        case O_CHECK: check = true; break;
        case O_FOREGROUND: break;
        case O_METRICS: metrics = optarg; break;
        case O_CONTROL: control = optarg; break;
        case O_HELP: usage(stdout); return 0;
        case O_USER: user = optarg; break;
        case O_NO_SECCOMP: seccomp = false; break;
        default:
            log_warnx("unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (optind != argc || !g.px.policy_path) {
        log_warnx("%s (see --help)", optind != argc ? "unexpected arguments"
                                                    : "--policy FILE is required");
        return EXIT_USAGE;
    }

    diag_init(&d, g.px.policy_path);
    policy_load_file(g.px.policy_path, &g.px.policy, &d);
    diag_print(&d, stderr);
    diag_clear(&d);
    if (check) {
        rc = g.px.policy ? 0 : 1;
        policy_free(g.px.policy);
        return rc;
    }
    if (!g.px.policy)
        return 1;
    if (n_listens == 0 || !upstream) {
        log_warnx("%s is required (see --help)", n_listens ? "--upstream-dns" : "--listen");
        policy_free(g.px.policy);
        return EXIT_USAGE;
    }

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    g.px.base = event_base_new();
    g.px.log = flowlog_open(log_path);
    if (!g.px.base || !g.px.log) {
        log_warnx("%s: %s", g.px.base ? log_path : "event loop", strerror(errno));
        rc = 1;
        goto out;
    }
    g.px.resolver = resolver_new(g.px.base, upstream);
    if (!g.px.resolver) {
        log_warnx("--upstream-dns %s: %s", upstream, strerror(errno));
        rc = EXIT_USAGE;
        goto out;
    }
    rc = route_probe_open(&g.px.route);
    if (rc < 0) {
        log_warnx("opening the rtnetlink socket (the host's own addresses are refused as "
                  "destinations): %s", strerror(-rc));
        rc = 1;
        goto out;
    }
    g.reload_timer = evtimer_new(g.px.base, on_reload_timer, NULL);
    g.drain_timer = evtimer_new(g.px.base, on_drain, NULL);
    g.backoff_timer = evtimer_new(g.px.base, on_backoff, NULL);
    g.trim_timer = event_new(g.px.base, -1, EV_PERSIST, on_trim, NULL);
    if (g.trim_timer) {
        struct timeval tv = {TRIM_INTERVAL_MS / 1000, 0};

        event_add(g.trim_timer, &tv);
    }
    for (i = 0; i < n_listens; i++) {
        if (listen_on(listens[i]) < 0) {
            rc = 1;
            goto out;
        }
    }
    for (i = 0; i < n_dns; i++) {
        if (!(g.dns[g.n_dns++] = dns_server_new(&g.px, dns[i]))) {
            rc = 1;
            goto out;
        }
    }
    if ((metrics || control) && !(g.admin = admin_new(&g.px, metrics, control))) {
        rc = 1;
        goto out;
    }
    clock_gettime(CLOCK_REALTIME, &g.px.started);
    for (i = 0; i < 4; i++) {
        sigs[i] = evsignal_new(g.px.base, signals[i], on_signal, NULL);
        if (sigs[i])
            event_add(sigs[i], NULL);
    }
    watch_policy();
    /* every socket is bound and every file open: privileges go, for good */
    if (!seccomp)
        log_warnx("--no-seccomp: running without the syscall filter; for debugging only");
    if (privdrop_apply(user, seccomp, &priv, priv_err, sizeof(priv_err)) < 0) {
        log_warnx("dropping privileges: %s", priv_err);
        rc = 1;
        goto out;
    }
    log_warnx("running as %s (uid %u), no capabilities%s, no_new_privs, seccomp %s",
              priv.user, (unsigned)priv.uid,
              priv.bounding_dropped ? "" : " (bounding set kept: no CAP_SETPCAP)",
              priv.seccomp ? "on" : "OFF");
    log_warnx("%s: serving with policy %s (%zu rules)", g.px.id[0] ? g.px.id : "sandbox",
              g.px.policy->hash, g.px.policy->n_rules);
    event_base_dispatch(g.px.base);

out:
    for (i = 0; i < 4; i++)
        if (sigs[i])
            event_free(sigs[i]);
    admin_free(g.admin);
    conn_close_all(&g.px);
    conn_shared_free(&g.px);
    for (i = 0; i < g.n_dns; i++)
        dns_server_free(g.dns[i]);
    for (i = 0; i < g.n_listeners; i++) {
        event_free(g.listeners[i].ev);
        close(g.listeners[i].fd);
    }
    if (g.inotify_ev)
        event_free(g.inotify_ev);
    if (g.inotify_fd > 0)
        close(g.inotify_fd);
    if (g.reload_timer)
        event_free(g.reload_timer);
    if (g.drain_timer)
        event_free(g.drain_timer);
    if (g.backoff_timer)
        event_free(g.backoff_timer);
    if (g.trim_timer)
        event_free(g.trim_timer);
    resolver_free(g.px.resolver);
    route_probe_free(g.px.route);
    flowlog_close(g.px.log);
    policy_free(g.px.policy);
    if (g.px.base)
        event_base_free(g.px.base);
    return rc;
}
