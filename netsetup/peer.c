/*
 * Inbound port forwards and peer links: the only ways in to a sandbox, and
 * the only sandbox-to-sandbox path. Neither lets a sandbox open anything it
 * could not open before: a forward answers connections the host side opened
 * (their replies are let back, nothing else), and a link is a (source,
 * destination, port) element an operator added.
 *
 * Each change is recorded before the kernel sees it (a crash leaves a record
 * that a rerun converges on) and goes to nftables in one batch. The sysctls of
 * the host-side interface follow from the record: forwarding on while the
 * sandbox has a link (either end) or a forward from another address, so that
 * the kernel routes those packets at all; route_localnet while it has a
 * forward on a loopback address, so that 127.0.0.1 may be DNATed out of lo.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sandbox_int.h"

#define HANDLES_MAX (FORWARD_FROM_MAX + 2)

void sandbox_forward_view(const struct sandbox *s, const struct forward *f, char *key,
                          struct nft_forward *out)
{
    uint8_t a[16];
    size_t i;

    memset(out, 0, sizeof(*out));
    forward_key(f, key);
    out->name = s->name;
    out->key = key;
    out->proto = f->proto;
    memcpy(out->addr, f->addr, 4);
    out->port = f->port;
    sandbox_address(&s->subnet, a);
    memcpy(out->to_addr, a, 4);
    out->to_port = f->to_port;
    out->n_from = f->n_from;
    for (i = 0; i < f->n_from; i++) {
        memcpy(out->from_addr[i], f->from[i].addr, 4);
        out->from_len[i] = f->from[i].len;
    }
}

int sandbox_build_forwards(struct nft_batch *b, const struct sandbox *s)
{
    char key[FORWARD_KEY_LEN];
    struct nft_forward nf;
    int r = 0;

    for (size_t i = 0; i < s->n_forwards && r == 0; i++) {
        sandbox_forward_view(s, &s->forwards[i], key, &nf);
        r = nft_build_forward_add(b, &nf);
    }
    return r;
}

static void addr4(const struct sandbox *s, uint8_t out[4])
{
    uint8_t a[16];

    sandbox_address(&s->subnet, a);
    memcpy(out, a, 4);
}

/* ---- sysctls ---- */

static int write_sysctl(struct ns_error *e, const char *ifname, const char *key, bool on)
{
    char path[PATH_MAX];
    int fd, r = 0;

    snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/%s", ifname, key);
    sandbox_note(e, "writing %s", path);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;        /* the interface is gone: nothing to do */
    if (write(fd, on ? "1" : "0", 1) != 1)
        r = -errno;
    close(fd);
    return r;
}

/* What S's interface needs, given every record (ALL, N; S's own may be among them). */
int sandbox_peer_sysctls(struct ns_error *e, const struct sandbox *s,
                         const struct sandbox *all, size_t n)
{
    bool forwarding = s->n_links > 0, localnet = false;
    size_t i, j;
    int r;

    if (s->mode == SANDBOX_ISOLATED)
        return 0;
    for (i = 0; i < s->n_forwards; i++) {
        if (s->forwards[i].addr[0] == 127)
            localnet = true;
        else
            forwarding = true;
    }
    for (i = 0; i < n && !forwarding; i++)
        for (j = 0; j < all[i].n_links; j++)
            if (strcmp(all[i].links[j].peer, s->name) == 0)
                forwarding = true;
    if ((r = write_sysctl(e, s->host_if, "forwarding", forwarding)) < 0)
        return r;
    return write_sysctl(e, s->host_if, "route_localnet", localnet);
}

static int sysctls_of(struct ns_error *e, const struct sandbox *s)
{
    struct sandbox *all;
    size_t n;
    int r;

    if ((r = state_list(&all, &n)) < 0)
        return r;
    r = sandbox_peer_sysctls(e, s, all, n);
    free(all);
    return r;
}

/* ---- loading under the lock ---- */

/*
 * The record of NAME for a forward or a link. Pod mode has no record: a pod's
 * ports are published by Kubernetes. An isolated sandbox has no network.
 */
static int load_networked(struct ns_error *e, const char *name, struct sandbox *s)
{
    int r;

    sandbox_note(e, "reading the record of %s in %s", name, state_dir());
    r = state_load(name, s);
    if (r == -ENOENT && nft_chain_exists("pod_out") == 1) {
        sandbox_note(e, "this namespace is in pod mode");
        e->hint = "a pod's ports are the pod's own business: publish them with a Service "
                  "or a hostPort";
        return -EOPNOTSUPP;
    }
    if (r == -ENOENT) {
        sandbox_note(e, "no sandbox named %s in %s", name, state_dir());
        e->hint = "run 'sluice-netsetup up NAME' first";
    }
    if (r == 0 && s->mode == SANDBOX_ISOLATED) {
        sandbox_note(e, "sandbox %s is isolated: it has no network", name);
        return -EOPNOTSUPP;
    }
    return r;
}

/* Adds to B the deletion of every rule of F (live, found by its comments). */
static int build_forward_del(struct ns_error *e, struct nft_batch *b, const char *name,
                             const char *key)
{
    uint64_t h[HANDLES_MAX];
    char comment[96];
    struct nft_chains c;
    size_t n, i, k;
    int r;

    nft_chain_names(name, &c);
    for (k = 0; k < 3; k++) {
        const char *chain = k == 0 ? NFT_CHAIN_FORWARDS : c.fwd;

        snprintf(comment, sizeof(comment), "%s %s", k == 0 ? name : k == 1 ? "in" : "out",
                 key);
        sandbox_note(e, "reading chain %s", chain);
        r = nft_rule_handles(chain, comment, false, h, HANDLES_MAX, &n);
        if (r == -ENOENT)
            continue;
        if (r < 0)
            return r;
        for (i = 0; i < n; i++)
            nft_build_rule_del(b, chain, h[i]);
    }
    return 0;
}

/* ---- forward, unforward ---- */

static int apply_forward(struct ns_error *e, const struct sandbox *s, const struct forward *f,
                         bool add)
{
    char key[FORWARD_KEY_LEN];
    struct nft_forward nf;
    struct nft_batch *b = nft_batch_new();
    int r;

    if (!b)
        return -ENOMEM;
    sandbox_forward_view(s, f, key, &nf);
    r = build_forward_del(e, b, s->name, key);
    if (r == 0 && add)
        r = nft_build_forward_add(b, &nf);
    if (r == 0)
        r = sandbox_nft_commit(e, b);
    nft_batch_free(b);
    return r;
}

int sandbox_forward(struct ns_error *e, const char *name, const struct forward *f)
{
    struct sandbox s, old, *all = NULL;
    struct forward *have, was;
    char key[FORWARD_KEY_LEN];
    size_t n = 0, i;
    int lock, r;

    if ((lock = sandbox_lock(e)) < 0)
        return lock;
    if ((r = load_networked(e, name, &s)) < 0)
        goto out;
    forward_key(f, key);
    sandbox_note(e, "listing sandboxes in %s", state_dir());
    if ((r = state_list(&all, &n)) < 0)
        goto out;
    for (i = 0; i < n; i++) {
        if (strcmp(all[i].name, name) != 0 &&
            sandbox_find_forward(&all[i], f->proto, f->addr, f->port)) {
            sandbox_note(e, "%s is forwarded to sandbox %s", key, all[i].name);
            e->hint = "pick another port, or unforward it there first";
            r = -EADDRINUSE;
            goto out;
        }
    }
    old = s;
    have = sandbox_find_forward(&s, f->proto, f->addr, f->port);
    if (have)
        was = *have;
    if (!have && s.n_forwards == SANDBOX_FORWARDS_MAX) {
        sandbox_note(e, "sandbox %s has %d forwards, the most it may have", name,
                     SANDBOX_FORWARDS_MAX);
        e->hint = "unforward one first";
        r = -ENOSPC;
        goto out;
    }
    *(have ? have : &s.forwards[s.n_forwards++]) = *f;     /* again: replaces it */
    sandbox_note(e, "recording the forward in %s", state_dir());
    if ((r = state_save(&s)) < 0)
        goto out;
    if ((r = apply_forward(e, &s, f, true)) < 0) {
        struct ns_error ignored = {.hint = NULL};

        /* nothing half-made stays; a forward it was to replace is put back */
        apply_forward(&ignored, &old, have ? &was : f, have != NULL);
        state_save(&old);
        goto out;
    }
    r = sandbox_peer_sysctls(e, &s, all, n);
out:
    free(all);
    state_unlock(lock);
    return r;
}

int sandbox_unforward(struct ns_error *e, const char *name, uint8_t proto,
                      const uint8_t addr[4], uint16_t port)
{
    static const uint8_t protos[] = {IPPROTO_TCP, IPPROTO_UDP};
    struct sandbox s;
    int lock, r;

    if ((lock = sandbox_lock(e)) < 0)
        return lock;
    if ((r = load_networked(e, name, &s)) < 0)
        goto out;
    for (size_t k = 0; k < 2 && r == 0; k++) {
        struct forward *f;

        if (proto && protos[k] != proto)
            continue;
        if (!(f = sandbox_find_forward(&s, protos[k], addr, port)))
            continue;
        if ((r = apply_forward(e, &s, f, false)) < 0)
            break;
        *f = s.forwards[--s.n_forwards];          /* the record goes after the rules */
        sandbox_note(e, "recording the change in %s", state_dir());
        r = state_save(&s);
    }
    if (r == 0)
        r = sysctls_of(e, &s);
out:
    state_unlock(lock);
    return r;
}

/* ---- link, unlink ---- */

static int apply_link(struct ns_error *e, const struct sandbox *a, const struct sandbox *b,
                      const struct link *add, const struct link *del)
{
    uint8_t src[4], dst[4];
    struct nft_batch *nb = nft_batch_new();
    size_t i, j;
    int r = 0;

    if (!nb)
        return -ENOMEM;
    addr4(a, src);
    addr4(b, dst);
    for (i = 0; del && i < del->n_ports && r == 0; i++) {
        bool kept = false;

        for (j = 0; add && j < add->n_ports; j++)
            kept |= add->ports[j] == del->ports[i];
        if (!kept)
            r = nft_build_link(nb, false, src, dst, del->ports[i]);
    }
    for (i = 0; add && i < add->n_ports && r == 0; i++)
        r = nft_build_link(nb, true, src, dst, add->ports[i]);
    if (r == 0)
        r = sandbox_nft_commit(e, nb);
    nft_batch_free(nb);
    return r;
}

static int load_pair(struct ns_error *e, const char *a, const char *b, struct sandbox *sa,
                     struct sandbox *sb)
{
    int r;

    if (strcmp(a, b) == 0) {
        sandbox_note(e, "a sandbox cannot be linked to itself");
        return -EINVAL;
    }
    if ((r = load_networked(e, a, sa)) < 0 || (r = load_networked(e, b, sb)) < 0)
        return r;
    return 0;
}

int sandbox_link(struct ns_error *e, const char *a, const char *b, const struct link *ports)
{
    struct sandbox sa, sb, old;
    struct link *have, *slot;
    int lock, r;

    if ((lock = sandbox_lock(e)) < 0)
        return lock;
    if ((r = load_pair(e, a, b, &sa, &sb)) < 0)
        goto out;
    old = sa;
    have = sandbox_find_link(&sa, b);
    if (!have && sa.n_links == SANDBOX_LINKS_MAX) {
        sandbox_note(e, "sandbox %s has %d links, the most it may have", a, SANDBOX_LINKS_MAX);
        e->hint = "unlink one first";
        r = -ENOSPC;
        goto out;
    }
    slot = have ? have : &sa.links[sa.n_links++];      /* again: its ports replace them */
    *slot = *ports;
    snprintf(slot->peer, sizeof(slot->peer), "%s", b);
    sandbox_note(e, "recording the link in %s", state_dir());
    if ((r = state_save(&sa)) < 0)
        goto out;
    if ((r = apply_link(e, &sa, &sb, slot, sandbox_find_link(&old, b))) < 0) {
        struct ns_error ignored = {.hint = NULL};

        apply_link(&ignored, &old, &sb, sandbox_find_link(&old, b), slot);
        state_save(&old);
        goto out;
    }
    if ((r = sysctls_of(e, &sa)) == 0)
        r = sysctls_of(e, &sb);
out:
    state_unlock(lock);
    return r;
}

int sandbox_unlink(struct ns_error *e, const char *a, const char *b)
{
    struct sandbox sa, sb;
    struct link *l;
    int lock, r;

    if ((lock = sandbox_lock(e)) < 0)
        return lock;
    if ((r = load_pair(e, a, b, &sa, &sb)) < 0 || !(l = sandbox_find_link(&sa, b)))
        goto out;                               /* not linked: nothing to do */
    if ((r = apply_link(e, &sa, &sb, NULL, l)) < 0)
        goto out;
    *l = sa.links[--sa.n_links];
    sandbox_note(e, "recording the change in %s", state_dir());
    if ((r = state_save(&sa)) == 0 && (r = sysctls_of(e, &sa)) == 0)
        r = sysctls_of(e, &sb);
out:
    state_unlock(lock);
    return r;
}

/* ---- down ---- */

int sandbox_build_peer_del(struct ns_error *e, struct nft_batch *b, const struct sandbox *s,
                           const struct sandbox *all, size_t n, const bool *done)
{
    uint8_t me[4], other[4];
    char key[FORWARD_KEY_LEN];
    size_t i, j, k;
    int r = 0;

    for (i = 0; i < s->n_forwards && r == 0; i++) {
        forward_key(&s->forwards[i], key);
        r = build_forward_del(e, b, s->name, key);
    }
    addr4(s, me);
    for (i = 0; i < n && r == 0; i++) {
        if (strcmp(all[i].name, s->name) == 0 || all[i].mode == SANDBOX_ISOLATED ||
            (done && done[i]))          /* its links to S went with it already */
            continue;
        addr4(&all[i], other);
        for (j = 0; j < s->n_links; j++)            /* S's own links to ALL[i] */
            if (strcmp(s->links[j].peer, all[i].name) == 0)
                for (k = 0; k < s->links[j].n_ports && r == 0; k++)
                    r = nft_build_link(b, false, me, other, s->links[j].ports[k]);
        for (j = 0; j < all[i].n_links; j++)        /* ALL[i]'s links to S */
            if (strcmp(all[i].links[j].peer, s->name) == 0)
                for (k = 0; k < all[i].links[j].n_ports && r == 0; k++)
                    r = nft_build_link(b, false, other, me, all[i].links[j].ports[k]);
    }
    return r;
}

void sandbox_forget_peer(const struct sandbox *s, struct sandbox *all, size_t n)
{
    struct ns_error ignored = {.hint = NULL};
    size_t i;

    for (i = 0; i < n; i++)                     /* its own links go with it */
        if (strcmp(all[i].name, s->name) == 0)
            all[i].n_links = 0;
    for (i = 0; i < n; i++) {
        struct link *l = sandbox_find_link(&all[i], s->name);

        if (!l || strcmp(all[i].name, s->name) == 0)
            continue;
        *l = all[i].links[--all[i].n_links];
        state_save(&all[i]);
        sandbox_peer_sysctls(&ignored, &all[i], all, n);
    }
}
