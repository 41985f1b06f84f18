/*
 * Talking to the kernel: sending a batch with every ACK checked, and reading
 * back what exists (tables, chains, set elements), counters and rule text.
 */
#include "nft_int.h"

/* ---- talking to the kernel ---- */

static struct mnl_socket *nf_open(uint32_t *portid)
{
    struct mnl_socket *nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);

    if (!nl)
        return NULL;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int e = errno;

        mnl_socket_close(nl);
        errno = e;
        return NULL;
    }
    *portid = mnl_socket_get_portid(nl);
    return nl;
}

int nft_send(struct nft_batch *b, char *what, size_t what_len)
{
    return nft_send_keep(b, what, what_len, NULL);
}

void nft_release(struct nft_socket *s)
{
    if (s)
        mnl_socket_close((struct mnl_socket *)s);
}

int nft_send_keep(struct nft_batch *b, char *what, size_t what_len, struct nft_socket **keep)
{
    char buf[NL_BUF_SIZE];
    struct mnl_socket *nl;
    const void *data;
    uint32_t portid, acks, expect;
    size_t len;
    int ret = 0, left;

    snprintf(what, what_len, "building the batch");
    if (b->err)
        return b->err;
    data = nft_batch_data(b, &len);
    if (b->err)
        return b->err;
    snprintf(what, what_len, "socket(NETLINK_NETFILTER)");
    nl = nf_open(&portid);
    if (!nl)
        return -errno;
    snprintf(what, what_len, "sending the batch");
    if (mnl_socket_sendto(nl, data, len) < 0) {
        ret = -errno;
        goto out;
    }
    /* one ACK per message between begin and end */
    expect = b->seq - b->seq0 - 2;
    for (acks = 0; acks < expect;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        const struct nlmsghdr *nlh;

        if (n < 0) {
            ret = -errno;
            goto out;
        }
        left = (int)n;
        for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, left);
             nlh = mnl_nlmsg_next(nlh, &left)) {
            if (nlh->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);

                acks++;
                if (e->error && !ret) {
                    ret = e->error;
                    snprintf(what, what_len, "%s", nft_batch_describe(b, nlh->nlmsg_seq));
                }
            }
        }
        /* after a failure the kernel aborts the batch: no more ACKs come */
        if (ret)
            break;
    }
out:
    if (keep && ret == 0)
        *keep = (struct nft_socket *)nl;
    else
        mnl_socket_close(nl);
    return ret;
}

/* A GET request (dump when DUMP) run through CB; -ENOENT when the object is missing. */
static int nf_get(uint16_t type, bool dump, void (*build)(struct nlmsghdr *, const void *),
                  const void *arg, mnl_cb_t cb, void *data)
{
    char buf[NL_BUF_SIZE];
    struct mnl_socket *nl;
    struct nlmsghdr *nlh;
    uint32_t portid, seq = (uint32_t)time(NULL);
    int ret;

    nl = nf_open(&portid);
    if (!nl)
        return -errno;
    nlh = nftnl_nlmsg_build_hdr(buf, type, NFPROTO_INET, dump ? NLM_F_DUMP : NLM_F_ACK, seq);
    build(nlh, arg);
    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
        ret = -errno;
        goto out;
    }
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));

        if (n < 0) {
            ret = -errno;
            break;
        }
        ret = mnl_cb_run(buf, (size_t)n, seq, portid, cb, data);
        if (ret <= 0) {
            ret = ret < 0 ? -errno : 0;
            break;
        }
    }
out:
    mnl_socket_close(nl);
    return ret;
}

static void build_table_get(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_table *t = nftnl_table_alloc();

    (void)arg;
    if (!t)
        return;
    nftnl_table_set_str(t, NFTNL_TABLE_NAME, NFT_TABLE);
    nftnl_table_nlmsg_build_payload(nlh, t);
    nftnl_table_free(t);
}

static int count_cb(const struct nlmsghdr *nlh, void *data)
{
    (void)nlh;
    (*(int *)data)++;
    return MNL_CB_OK;
}

/* 1 when the GET found the object, 0 when the kernel says there is none, -errno. */
static int exists(uint16_t type, void (*build)(struct nlmsghdr *, const void *),
                  const void *arg)
{
    int n = 0, ret = nf_get(type, false, build, arg, count_cb, &n);

    if (ret == -ENOENT)
        return 0;
    return ret < 0 ? ret : n > 0;
}

int nft_table_exists(void)
{
    return exists(NFT_MSG_GETTABLE, build_table_get, NULL);
}

static void build_chain_get(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_chain *c = nftnl_chain_alloc();

    if (!c)
        return;
    nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, NFT_TABLE);
    nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, arg);
    nftnl_chain_nlmsg_build_payload(nlh, c);
    nftnl_chain_free(c);
}

int nft_chain_exists(const char *chain)
{
    return exists(NFT_MSG_GETCHAIN, build_chain_get, chain);
}

struct elem_key {
    const char *set;
    const void *key;
    uint32_t len;
};

static void build_elem_get(struct nlmsghdr *nlh, const void *arg)
{
    const struct elem_key *k = arg;
    struct nftnl_set *s = nftnl_set_alloc();
    struct nftnl_set_elem *e = nftnl_set_elem_alloc();

    if (!s || !e) {
        nftnl_set_free(s);
        nftnl_set_elem_free(e);
        return;
    }
    nftnl_set_set_str(s, NFTNL_SET_TABLE, NFT_TABLE);
    nftnl_set_set_str(s, NFTNL_SET_NAME, k->set);
    nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, k->key, k->len);
    nftnl_set_elem_add(s, e);
    nftnl_set_elems_nlmsg_build_payload(nlh, s);
    nftnl_set_free(s);
}

int nft_sandbox_elem_exists(const char *ifname)
{
    char key[IFNAMSIZ] = {0};
    struct elem_key k = {SET_IFS, key, IFNAMSIZ};

    strncpy(key, ifname, IFNAMSIZ - 1);
    return exists(NFT_MSG_GETSETELEM, build_elem_get, &k);
}

int nft_link_exists(const uint8_t src[4], const uint8_t dst[4], uint16_t port)
{
    uint8_t key[NFT_LINK_KEY_LEN] = {0};
    uint16_t be = htons(port);
    struct elem_key k = {SET_LINKS, key, sizeof(key)};

    memcpy(key, src, 4);
    memcpy(key + 4, dst, 4);
    memcpy(key + 8, &be, 2);
    return exists(NFT_MSG_GETSETELEM, build_elem_get, &k);
}

static void build_rule_dump(struct nlmsghdr *nlh, const void *arg)
{
    struct nftnl_rule *r = nftnl_rule_alloc();

    if (!r)
        return;
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, NFT_TABLE);
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, arg);
    nftnl_rule_nlmsg_build_payload(nlh, r);
    nftnl_rule_free(r);
}

static int comment_cb(const struct nftnl_udata *attr, void *data)
{
    if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT)
        *(const char **)data = nftnl_udata_get(attr);
    return 0;
}

/* R's comment, or NULL. */
static const char *rule_comment(const struct nftnl_rule *r)
{
    const char *comment = NULL;
    const void *ud;
    uint32_t udlen;

    ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &udlen);
    if (!ud || nftnl_udata_parse(ud, udlen, comment_cb, &comment) < 0)
        return NULL;
    return comment;
}

static bool comment_matches(const char *comment, const char *want, bool prefix)
{
    if (!want)
        return true;
    if (!comment)
        return false;
    return prefix ? strncmp(comment, want, strlen(want)) == 0 : strcmp(comment, want) == 0;
}

/* Every rule of a dump, parsed, with its comment, handed to FN. */
struct rule_walk {
    void (*fn)(struct nftnl_rule *r, const char *comment, void *arg);
    void *arg;
};

static int walk_cb(const struct nlmsghdr *nlh, void *data)
{
    struct rule_walk *w = data;
    struct nftnl_rule *r = nftnl_rule_alloc();

    if (r && nftnl_rule_nlmsg_parse(nlh, r) == 0)
        w->fn(r, rule_comment(r), w->arg);
    nftnl_rule_free(r);
    return MNL_CB_OK;
}

static int walk_chain(const char *chain, void (*fn)(struct nftnl_rule *, const char *, void *),
                      void *arg)
{
    struct rule_walk w = {fn, arg};

    return nf_get(NFT_MSG_GETRULE, true, build_rule_dump, chain, walk_cb, &w);
}

/* The packets and bytes of R's counter. */
static void rule_counter(struct nftnl_rule *r, uint64_t *pkts, uint64_t *bytes)
{
    struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
    struct nftnl_expr *e;

    *pkts = *bytes = 0;
    while (it && (e = nftnl_expr_iter_next(it)) != NULL) {
        if (strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") == 0) {
            *pkts = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
            *bytes = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
        }
    }
    nftnl_expr_iter_destroy(it);
}

static void sandbox_counter(struct nftnl_rule *r, const char *comment, void *arg)
{
    struct nft_counters *c = arg;
    uint64_t pkts, bytes;

    if (!comment)
        return;
    rule_counter(r, &pkts, &bytes);
    if (strcmp(comment, C_PROXY) == 0)
        c->proxy += pkts;
    else if (strcmp(comment, C_DNS) == 0)
        c->dns += pkts;
    else if (strcmp(comment, C_REJECT) == 0)
        c->rejected += pkts;
    else if (strcmp(comment, C_DROP) == 0)
        c->dropped += pkts;
    else if (strcmp(comment, C_IN) == 0)
        c->packets_in += pkts, c->bytes_in += bytes;
    else if (strcmp(comment, C_OUT) == 0)
        c->packets_out += pkts, c->bytes_out += bytes;
}

int nft_chain_counters(const char *chain, struct nft_counters *c)
{
    return walk_chain(chain, sandbox_counter, c);
}

int nft_sandbox_counters(const char *name, struct nft_counters *c)
{
    struct nft_chains ch;
    int r;

    memset(c, 0, sizeof(*c));
    nft_chain_names(name, &ch);
    if ((r = nft_chain_counters(ch.pre, c)) == 0 && (r = nft_chain_counters(ch.nat, c)) == 0)
        r = nft_chain_counters(ch.post, c);
    return r;
}

struct fwd_ctx {
    char conn[96], in[96], out[96];
    struct nft_forward_counters *c;
};

static void forward_counter(struct nftnl_rule *r, const char *comment, void *arg)
{
    struct fwd_ctx *f = arg;
    uint64_t pkts, bytes;

    if (!comment)
        return;
    rule_counter(r, &pkts, &bytes);
    if (strcmp(comment, f->conn) == 0)
        f->c->connections += pkts;      /* a nat rule sees a connection's first packet */
    else if (strcmp(comment, f->in) == 0)
        f->c->packets_in += pkts, f->c->bytes_in += bytes;
    else if (strcmp(comment, f->out) == 0)
        f->c->packets_out += pkts, f->c->bytes_out += bytes;
}

int nft_forward_counters(const char *name, const char *key, struct nft_forward_counters *c)
{
    struct fwd_ctx f = {.c = c};
    struct nft_chains ch;
    int r;

    memset(c, 0, sizeof(*c));
    snprintf(f.conn, sizeof(f.conn), "%s %s", name, key);
    snprintf(f.in, sizeof(f.in), "%s %s", C_IN, key);
    snprintf(f.out, sizeof(f.out), "%s %s", C_OUT, key);
    nft_chain_names(name, &ch);
    if ((r = walk_chain(CHAIN_FORWARDS, forward_counter, &f)) == 0)
        r = walk_chain(ch.fwd, forward_counter, &f);
    return r;
}

struct handles_ctx {
    const char *want;
    bool prefix;
    uint64_t *out;
    size_t max, n;
};

static void rule_handle(struct nftnl_rule *r, const char *comment, void *arg)
{
    struct handles_ctx *h = arg;

    if (comment_matches(comment, h->want, h->prefix) && h->n < h->max)
        h->out[h->n++] = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
}

int nft_rule_handles(const char *chain, const char *comment, bool prefix, uint64_t *out,
                     size_t max, size_t *n)
{
    struct handles_ctx h = {comment, prefix, out, max, 0};
    int r = walk_chain(chain, rule_handle, &h);

    *n = h.n;
    return r;
}

struct text_ctx {
    char *out;
    size_t len, off;
    const char *prefix;         /* only rules whose comment starts with it */
};

/* libnftnl's text of R with counter values and handle stripped. */
static void rule_text(struct nftnl_rule *r, struct text_ctx *t)
{
    char line[1024];
    struct nftnl_expr_iter *it = nftnl_expr_iter_create(r);
    struct nftnl_expr *e;
    size_t off = 0;
    int n;

    while (it && (e = nftnl_expr_iter_next(it)) != NULL && off < sizeof(line)) {
        const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

        if (strcmp(name, "counter") == 0) {
            n = snprintf(line + off, sizeof(line) - off, "[ counter ] ");
        } else if (strcmp(name, "nat") == 0) {
            /* the kernel echoes addr_max/proto_max/flags it filled in itself */
            n = snprintf(line + off, sizeof(line) - off, "[ nat type %u family %u ] ",
                         nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_TYPE),
                         nftnl_expr_get_u32(e, NFTNL_EXPR_NAT_FAMILY));
        } else {
            n = snprintf(line + off, sizeof(line) - off, "[ %s ", name);
            if (n > 0 && (size_t)n < sizeof(line) - off) {
                off += (size_t)n;
                n = nftnl_expr_snprintf(line + off, sizeof(line) - off, e, NFTNL_OUTPUT_DEFAULT,
                                        0);
                if (n >= 0 && (size_t)n < sizeof(line) - off) {
                    off += (size_t)n;
                    n = snprintf(line + off, sizeof(line) - off, "] ");
                }
            }
        }
        if (n < 0)
            break;
        off += (size_t)n;
    }
    nftnl_expr_iter_destroy(it);
    if (off >= sizeof(line))
        off = sizeof(line) - 1;
    line[off] = '\0';
    if (t->off < t->len) {
        n = snprintf(t->out + t->off, t->len - t->off, "%s\n", line);
        if (n > 0)
            t->off += (size_t)n;
    }
}

static void text_rule(struct nftnl_rule *r, const char *comment, void *arg)
{
    struct text_ctx *t = arg;

    if (comment_matches(comment, t->prefix, true))
        rule_text(r, t);
}

int nft_chain_text(const char *chain, const char *prefix, char *out, size_t len)
{
    struct text_ctx t = {.out = out, .len = len, .prefix = prefix};

    out[0] = '\0';
    return walk_chain(chain, text_rule, &t);
}

int nft_expect_text(struct nft_batch *b, const char *chain, const char *prefix, char *out,
                    size_t len)
{
    struct text_ctx t = {.out = out, .len = len, .prefix = prefix};
    const struct nlmsghdr *nlh;
    const void *data;
    size_t size;
    int left;

    out[0] = '\0';
    data = nft_batch_data(b, &size);
    if (b->err)
        return b->err;
    left = (int)size;
    for (nlh = data; mnl_nlmsg_ok(nlh, left); nlh = mnl_nlmsg_next(nlh, &left)) {
        struct nftnl_rule *rule;

        if ((nlh->nlmsg_type & 0xff) != NFT_MSG_NEWRULE)
            continue;
        rule = nftnl_rule_alloc();
        if (rule && nftnl_rule_nlmsg_parse(nlh, rule) == 0 &&
            strcmp(nftnl_rule_get_str(rule, NFTNL_RULE_CHAIN), chain) == 0)
            text_rule(rule, rule_comment(rule), &t);
        nftnl_rule_free(rule);
    }
    return 0;
}
