/*
 * A flow's insides, shared by the files that drive it and by nothing else:
 * conn.c (lifecycle and decisions), connect.c (resolve, connect), relay.c
 * (splice, pipes, bandwidth), conn_http.c (each request of a plain HTTP flow)
 * and inspect.c (inspect mode).
 *
 * Steps never free a flow. Each returns what it left the flow in, and the
 * event callback that ran it hands that to conn_settle(), the only caller of
 * conn_close(): no helper, however deep, can free a flow under its caller.
 */
#ifndef SLUICE_CONN_INT_H
#define SLUICE_CONN_INT_H

#include <event2/util.h>
#include <string.h>

#include "alerts.h"
#include "budget.h"
#include "conn.h"
#include "http_head.h"
#include "sock.h"

#define HTTP_BUF_MAX (HTTP_HEAD_MAX + 4096) /* user-space window of an HTTP direction */

struct event;
struct inspect;
struct resolver_query;
struct resolver_addr;

/* TLS: an inspected flow's handshake with the sandbox (inspect.c), within timeouts.sniff.
 * PEEK: raw TCP to a virtual address, connected, the first bytes of either side awaited
 * (the client's are held until they are known not to be TLS or HTTP for another name) */
enum conn_state { CONN_SNIFF, CONN_TLS, CONN_RESOLVE, CONN_CONNECT, CONN_PEEK, CONN_RELAY };

enum step {
    STEP_WAIT,                  /* alive: waiting for an event, or moved on by itself */
    STEP_DENY,                  /* refuse it as its protocol understands (c->why), close */
    STEP_CLOSE,                 /* close it: flow_end if it started */
};

struct conn;

/* One direction of the relay. Bytes in buf go first, then the pipe is used. */
struct dir {
    struct conn *c;
    int from, to;
    struct event *rev, *wev;    /* up: rev reads the client from accept on, wev
                                   waits for the upstream connect from then on */
    uint8_t *buf;               /* user-space bytes: [off, checked) may be written */
    size_t cap, off, len, checked;
    int pipe[2];                /* splice path; -1 until first used */
    size_t in_pipe;
    bool use_splice;
    bool http;                  /* check each request head (client to server, plain HTTP) */
    bool await_upgrade;         /* a websocket upgrade went out: hold the rest until the
                                   server's status line says whether it was accepted */
    uint32_t requests;          /* heads let through to this upstream connection */
    bool rehost;                /* a request for another allowed host is held at checked:
                                   it gets its own upstream once this one is done */
    struct http_framing fr;
    bool eof, shut;
    uint64_t bytes;
    uint64_t *total;            /* the process's counter for this direction */
    int way;                    /* RELAY_UP or RELAY_DOWN */
    struct list wait;           /* on the pool's bandwidth queue while out of budget */
    bool limit_logged;          /* this flow's limit record for this direction is out */
    bool budget_logged;         /* and its budget record */
    uint64_t budget_wait_ms;    /* out of its name's budget: until the window moves on;
                                   0: out of bandwidth, if anything */
};

enum { RELAY_UP, RELAY_DOWN };  /* sandbox to server, server to sandbox */

struct conn {
    struct list link;           /* on px->conns */
    struct proxy *px;
    uint64_t id;
    enum conn_state state;
    int cfd, ufd;
    struct sockaddr_storage src, dst;
    struct sockaddr_storage upstream;   /* connected to (or trying), once CONNECT */
    char src_s[SOCK_ADDR_STR], dst_s[SOCK_ADDR_STR], up_s[SOCK_ADDR_STR];
    enum flow_proto proto;      /* tls, http, tcp */
    char host[HOSTNAME_MAX + 1];    /* for a virtual address, the name it was handed out for */
    bool virt;                  /* dialled a virtual address: holds its mapping; SNI and
                                   Host must be host, no other name rides on it */
    bool peek;                  /* raw TCP by name: PEEK once connected */
    uint16_t port;
    char rule[128];
    char policy[POLICY_HASH_HEX + 1];   /* the policy that decided; records carry it */
    enum flow_verdict verdict;
    enum reason refused;        /* a protocol-level refusal audit mode let through */
    enum reason why;            /* STEP_DENY's reason */
    enum reason end_reason;     /* why flow_end came early (revoked), or none */
    bool started;               /* flow_start written: flow_end is owed */
    struct event *timer;        /* the one deadline: sniff, resolve, connect, idle */
    struct resolver_query *rq;
    struct resolver_addr *addrs;    /* where to connect, until connected */
    size_t n_addrs, next_addr;
    struct dir up, down;        /* client to server, server to client */
    uint64_t start_ms;
    double connect_start;       /* for sluice_upstream_connect_seconds */
    uint64_t last_active_ms;
    struct inspect *in;         /* inspect mode (inspect.c), or NULL */
    char injected[128];         /* inspect: the headers its rule adds, "A,B" (names only) */
    const struct policy_rule *deny_rule;    /* what the last refusal named, of the policy */
    uint64_t deny_gen;                      /* of this generation: for the 403's hint */
    struct alert_flow alert;    /* upload_burst's hold on its destination (alerts.h) */
    struct budget_ref budget;   /* its name's data budget (budget.h); key 0: none */
};

/*
 * Room at the end of a user-space window of CAP bytes, where [OFF, LEN) is
 * still to send and CHECKED lies between: an emptied window starts over, a
 * full one moves what is left to the front.
 */
static inline void window_compact(uint8_t *buf, size_t cap, size_t *off, size_t *len,
                                  size_t *checked)
{
    if (*off > 0 && *off == *len) {
        *off = *len = *checked = 0;
    } else if (*len == cap && *off > 0) {
        memmove(buf, buf + *off, *len - *off);
        *len -= *off;
        *checked -= *off;
        *off = 0;
    }
}

/* conn.c */
void conn_settle(struct conn *c, enum step st);
enum step conn_refuse(struct conn *c, enum reason why);    /* STEP_DENY for WHY */
void conn_record(const struct conn *c, struct flow_record *r, enum flow_event ev);
void conn_end_record(struct conn *c);
bool conn_decide(struct conn *c, const char *host, size_t len, const struct http_head *req,
                 bool quiet, struct policy_decision *d);
bool conn_decide_refused(struct conn *c, enum reason why, bool quiet, struct policy_decision *d);
void conn_arm(struct conn *c, uint64_t ms);   /* (re)sets the flow's one timer */
/* The hint a refused HTTP request gets (deny_hint(), into BUF), or NULL with feedback off. */
const char *conn_hint(const struct conn *c, enum reason why, char *buf);
void on_client(evutil_socket_t fd, short what, void *arg);

enum step sniff_go(struct conn *c);    /* a sniffed flow is allowed: on to its upstream */
enum step peek_start(struct conn *c);  /* connected raw TCP by name: PEEK */
/* PEEK ends (the server spoke first, or the time is up): the client's bytes so
 * far are judged as they are (a partial ClientHello is no SNI), else raw */
enum step peek_over(struct conn *c);

/* connect.c */
enum step conn_resolve(struct conn *c);         /* the name is allowed: resolve, connect */
enum step conn_connect_next(struct conn *c);    /* the next address of the answer */
enum step conn_connect_orig(struct conn *c);    /* the address the sandbox dialled */

/* relay.c */
enum step relay_start(struct conn *c);
void relay_limits_changed(struct proxy *px);   /* the waiting directions look again */
/* Inspect mode's share of the sandbox's bandwidth buckets: the bytes of WANT
 * that WAY may move now, or 0 with *WAIT_MS until a wake-up's worth is back;
 * and what a read did not use, given back. */
size_t relay_take(struct dir *d, size_t want, uint64_t *wait_ms);
/* D's flow sent N more bytes its way (alerts watch what goes up). */
void relay_moved(struct dir *d, uint64_t n);
void relay_give_back(struct dir *d, size_t granted, size_t used);
enum step dir_pump(struct dir *d, bool drained);
void dir_release(struct dir *d);
void dir_free(struct dir *d);
void on_dir(evutil_socket_t fd, short what, void *arg);

/* conn_http.c */
enum step http_check(struct dir *d);
enum step conn_rehost(struct conn *c);
int upgrade_answered(struct conn *c, enum step *st);

#endif
