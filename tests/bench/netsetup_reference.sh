#!/bin/bash
# The reference that bench_netsetup.py times sluice-netsetup against: the same
# sandbox (SPEC §4; netsetup/sandbox.c, netsetup/nft_rules.h) built the way an
# operator would build it in a shell, one `ip`/`sysctl` command per step and one
# `nft -f -` transaction for the rules, which mirrors sluice's single batch
# (base table, maps and chains created if missing and their rules rewritten, the
# sandbox's four chains and its four map/set elements).
#
#   netsetup_reference.sh up NAME SLOT    SLOT n takes 10.200.0.0/16's n-th /30
#   netsetup_reference.sh down NAME
#
# It must run inside a host network namespace made for it, never in the
# machine's own: it refuses unless it runs in the namespace that
# $SLUICE_BENCH_NETNS names (nsenter --net=/run/netns/HOST, with the same path
# in that variable). State (the slot of each sandbox) is kept under
# $SLUICE_RUN_DIR/reference.
set -euo pipefail

MARK=0x534c
TABLE=21324             # 0x534c, as NFT_ROUTE_TABLE
RULE_PRIO=9999
PROXY_PORT=15001
DNS_PORT=15053

die() { echo "netsetup_reference: $*" >&2; exit 1; }

here=$(stat -L -c %d:%i /proc/self/ns/net)
want=$(stat -L -c %d:%i "${SLUICE_BENCH_NETNS:-/nonexistent}" 2>/dev/null) || want=none
[ "$here" = "$want" ] ||
    die "refusing to run outside \$SLUICE_BENCH_NETNS (nsenter --net=/run/netns/HOST into it)"
STATE="${SLUICE_RUN_DIR:?set SLUICE_RUN_DIR}/reference"
mkdir -p "$STATE"

cmd=${1:-}
name=${2:-}
[[ "$name" =~ ^[a-z0-9-]{1,12}$ ]] || die "NAME must be 1-12 characters of [a-z0-9-]"
hif="sl-$name"          # sluice's host-side name for names of 12 characters or less

up() {
    local slot=$1 base gw sb
    if ! [[ "$slot" =~ ^[0-9]+$ ]] || [ "$slot" -ge 16384 ]; then
        die "SLOT must be 0-16383"
    fi
    base=$((slot * 4))
    gw="10.200.$((base / 256)).$((base % 256 + 1))"
    sb="10.200.$((base / 256)).$((base % 256 + 2))"
    echo "$slot" > "$STATE/$name"

    ip netns add "$name"
    ip link add "$hif" type veth peer name eth0 netns "$name"
    # inside the sandbox: lo, no IPv6, address, link, default route via the gateway
    ip -n "$name" link set lo up
    nsenter --net="/run/netns/$name" sysctl -qw \
        net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
        net.ipv6.conf.eth0.accept_ra=0 net.ipv6.conf.all.disable_ipv6=1 \
        net.ipv6.conf.default.disable_ipv6=1 net.ipv6.conf.eth0.disable_ipv6=1
    ip -n "$name" addr add "$sb/30" dev eth0
    ip -n "$name" link set eth0 up
    ip -n "$name" route add default via "$gw" dev eth0 proto static
    # the host side
    sysctl -qw "net.ipv6.conf.$hif.accept_ra=0" "net.ipv6.conf.$hif.disable_ipv6=1"
    ip addr add "$gw/30" dev "$hif"
    ip link set "$hif" up
    # TPROXY's policy routing, once
    if [ -z "$(ip rule list fwmark $MARK/$MARK table $TABLE 2>/dev/null)" ]; then
        ip rule add fwmark $MARK/$MARK lookup $TABLE priority $RULE_PRIO
    fi
    if [ -z "$(ip route list table $TABLE 2>/dev/null)" ]; then
        ip route add local 0.0.0.0/0 dev lo table $TABLE proto static
    fi
    nft -f - <<EOF
add table inet sluice
add map inet sluice sandbox_pre { type ifname : verdict; }
add map inet sluice sandbox_nat { type ifname : verdict; }
add set inet sluice sandboxes { type ifname; }
add map inet sluice sandbox_post { type ifname : verdict; }
add set inet sluice links { type ipv4_addr . ipv4_addr . inet_service; }
add chain inet sluice forwards
add chain inet sluice prerouting { type filter hook prerouting priority mangle; policy accept; }
add chain inet sluice dstnat { type nat hook prerouting priority dstnat; policy accept; }
add chain inet sluice input { type filter hook input priority filter; policy accept; }
add chain inet sluice forward { type filter hook forward priority filter; policy accept; }
add chain inet sluice postrouting { type filter hook postrouting priority filter; policy accept; }
add chain inet sluice dstnat_local { type nat hook output priority -100; policy accept; }
add chain inet sluice srcnat { type nat hook postrouting priority srcnat; policy accept; }
flush chain inet sluice prerouting
flush chain inet sluice dstnat
flush chain inet sluice input
flush chain inet sluice forward
flush chain inet sluice postrouting
flush chain inet sluice dstnat_local
flush chain inet sluice srcnat
add rule inet sluice prerouting iifname vmap @sandbox_pre
add rule inet sluice dstnat iifname vmap @sandbox_nat
add rule inet sluice dstnat iifname != @sandboxes jump forwards
add rule inet sluice dstnat_local jump forwards
add rule inet sluice srcnat oifname @sandboxes ct mark 0x534d masquerade
add rule inet sluice postrouting oifname vmap @sandbox_post
add rule inet sluice input iifname @sandboxes meta mark $MARK accept
add rule inet sluice input iifname @sandboxes ct status dnat accept
add rule inet sluice input iifname @sandboxes icmpv6 type nd-neighbor-solicit accept
add rule inet sluice input iifname @sandboxes icmpv6 type nd-neighbor-advert accept
add rule inet sluice input iifname @sandboxes counter drop comment "dropped"
add rule inet sluice forward ct mark 0x534d accept
add rule inet sluice forward ct mark 0x534e accept
add rule inet sluice forward iifname @sandboxes counter drop comment "dropped"
add rule inet sluice forward oifname @sandboxes counter drop comment "dropped"
add chain inet sluice fwd-$name
add chain inet sluice pre-$name
add chain inet sluice nat-$name
add chain inet sluice post-$name
flush chain inet sluice pre-$name
flush chain inet sluice nat-$name
flush chain inet sluice post-$name
flush chain inet sluice fwd-$name
add rule inet sluice pre-$name counter comment "out"
add rule inet sluice pre-$name ip saddr != $sb counter drop comment "dropped"
add rule inet sluice pre-$name meta nfproto ipv6 counter drop comment "dropped"
add rule inet sluice pre-$name ct state new ct count over 65536 counter drop comment "dropped"
add rule inet sluice pre-$name ct direction reply ct mark 0x534d goto fwd-$name
add rule inet sluice pre-$name ct mark 0x534e accept
add rule inet sluice pre-$name ct state new ip saddr . ip daddr . tcp dport @links ct mark set 0x534e accept
add rule inet sluice pre-$name meta nfproto ipv4 tcp dport 53 accept
add rule inet sluice nat-$name meta nfproto ipv4 tcp dport 53 counter dnat ip to $gw:$DNS_PORT comment "dns"
add rule inet sluice pre-$name meta nfproto ipv4 udp dport 53 accept
add rule inet sluice nat-$name meta nfproto ipv4 udp dport 53 counter dnat ip to $gw:$DNS_PORT comment "dns"
add rule inet sluice pre-$name meta nfproto ipv4 meta l4proto tcp counter tproxy ip to $gw:$PROXY_PORT meta mark set $MARK accept comment "proxy"
add rule inet sluice pre-$name meta nfproto ipv4 meta l4proto tcp counter reject with tcp reset comment "rejected"
add rule inet sluice pre-$name udp dport 443 counter reject with icmpx port-unreachable comment "rejected"
add rule inet sluice pre-$name counter drop comment "dropped"
add rule inet sluice post-$name counter comment "in"
add rule inet sluice post-$name ct mark 0x534d jump fwd-$name
add element inet sluice sandboxes { "$hif" }
add element inet sluice sandbox_pre { "$hif" : jump pre-$name }
add element inet sluice sandbox_nat { "$hif" : jump nat-$name }
add element inet sluice sandbox_post { "$hif" : jump post-$name }
EOF
    mkdir -p "/etc/netns/$name"
    printf '# written by netsetup_reference.sh\nnameserver %s\n' "$gw" \
        > "/etc/netns/$name/resolv.conf"
}

down() {
    local others
    [ -f "$STATE/$name" ] || return 0
    others=$(find "$STATE" -mindepth 1 -maxdepth 1 ! -name "$name" | wc -l)
    if [ "$others" -gt 0 ]; then
        nft -f - <<EOF
delete element inet sluice sandbox_pre { "$hif" }
delete element inet sluice sandbox_nat { "$hif" }
delete element inet sluice sandbox_post { "$hif" }
delete element inet sluice sandboxes { "$hif" }
flush chain inet sluice pre-$name
flush chain inet sluice nat-$name
flush chain inet sluice post-$name
flush chain inet sluice fwd-$name
delete chain inet sluice pre-$name
delete chain inet sluice nat-$name
delete chain inet sluice post-$name
delete chain inet sluice fwd-$name
EOF
    else                # the last one takes the shared pieces with it
        nft delete table inet sluice
        ip rule del fwmark $MARK/$MARK lookup $TABLE priority $RULE_PRIO
        ip route del local 0.0.0.0/0 dev lo table $TABLE
    fi
    ip link del "$hif"  # takes eth0 with it
    ip netns del "$name"
    rm -rf "/etc/netns/$name"
    rm -f "$STATE/$name"
}

case "$cmd" in
    up) up "${3:-}" ;;
    down) down ;;
    *) die "usage: netsetup_reference.sh up NAME SLOT | down NAME" ;;
esac
