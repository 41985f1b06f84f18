/*
 * rtnetlink over libmnl: the links, addresses, routes and policy rules that
 * netsetup creates. One request, one ACK; every failure returns -errno and
 * leaves a description of the call in its handle's rtnl_last_call().
 */
#ifndef SLUICE_RTNL_H
#define SLUICE_RTNL_H

#include <stdbool.h>
#include <stdint.h>

#include "cidr.h"

struct rtnl;

/* Opens a socket in the calling thread's current network namespace. */
int rtnl_open(struct rtnl **out);
void rtnl_close(struct rtnl *r);

/* "RTM_NEWLINK veth sl-a1": R's last call, for messages (R NULL: opening one). */
const char *rtnl_last_call(const struct rtnl *r);

/* Index of IFNAME in the socket's namespace; -ENODEV when it has none. */
int rtnl_link_index(struct rtnl *r, const char *ifname);

/* A veth pair: HOST_IF here, PEER_IF created directly in the namespace NETNS_FD. */
int rtnl_link_add_veth(struct rtnl *r, const char *host_if, const char *peer_if,
                       int netns_fd);
int rtnl_link_del(struct rtnl *r, const char *ifname);
int rtnl_link_set_up(struct rtnl *r, int ifindex);
/* Deleting many links at once: each joins GROUP, then the group goes in one request. */
int rtnl_link_set_group(struct rtnl *r, const char *ifname, uint32_t group);
int rtnl_link_del_group(struct rtnl *r, uint32_t group);
/* 1 when a link of this namespace is in GROUP, 0 when none is, -errno. */
int rtnl_link_group_used(struct rtnl *r, uint32_t group);

/* ADDR/LEN of FAMILY on IFINDEX (a host address with the subnet's prefix length). */
int rtnl_addr_add(struct rtnl *r, int ifindex, int family, const uint8_t *addr, unsigned len);
int rtnl_addr_del(struct rtnl *r, int ifindex, int family, const uint8_t *addr, unsigned len);

/* Calls FN for every IPv4 address in the namespace (the pool is IPv4); stops early
 * when FN returns non-zero. */
int rtnl_addr_each(struct rtnl *r, int (*fn)(const struct cidr *prefix, int ifindex,
                                             void *data), void *data);

/* Default route of FAMILY via GW (unicast, main table). */
int rtnl_route_add_default(struct rtnl *r, int family, const uint8_t *gw, int oif);

/* "local 0.0.0.0/0 dev lo table TABLE" (or ::/0): where TPROXY-marked packets go. */
int rtnl_route_local_default(struct rtnl *r, bool add, int family, uint32_t table, int lo);

/* "from all fwmark MARK/MASK lookup TABLE" at PRIO. -EEXIST/-ENOENT pass through. */
int rtnl_rule_fwmark(struct rtnl *r, bool add, int family, uint32_t mark, uint32_t table,
                     uint32_t prio);

/* True when a rule for MARK -> TABLE exists for FAMILY. */
int rtnl_rule_fwmark_exists(struct rtnl *r, int family, uint32_t mark, uint32_t table);

/* True when the local default route of TABLE exists. */
int rtnl_route_local_default_exists(struct rtnl *r, int family, uint32_t table);

/* Link state for verify: whether IFNAME exists and is administratively up. */
int rtnl_link_is_up(struct rtnl *r, const char *ifname);

#endif
