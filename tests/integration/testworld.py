"""The sluice integration test world: network namespaces holding a fake internet
(`inet`: dnsmasq, nginx, a capture server) and a simulated host (`host`).

Nothing here touches the machine's root network namespace: every `ip` call names
a namespace this module created (see World._own), and teardown removes them all,
even after a failure or a crash (atexit, SIGTERM, and reap_stale() on the next run).
"""

import atexit
import base64
import ctypes
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
NS_PREFIX = "slt"
ETC_NETNS = Path("/etc/netns")
RUN_NETNS = Path("/run/netns")
TMP_PREFIX = "sluice-world-"
NAME_RE = re.compile(r"^slt([0-9a-z]{6})-([a-z0-9]{1,5})$")
ROLE_RE = re.compile(r"^[a-z0-9]{1,5}$")
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class ADDR:
    """The address plan. Everything is TEST-NET, so the test policy reaches it
    only through `destinations.allow_ranges`."""
    # The "internet exchange": a bridge `ix` in inet; every client namespace
    # (host, pod, extras) plugs in with a veth and gets .N / ::N (N >= 2).
    LINK_NET4 = "198.51.100.0/24"
    LINK_NET6 = "2001:db8:1::/64"
    INET_GW4 = "198.51.100.1"        # inet's side of the exchange; default route of clients
    INET_GW6 = "2001:db8:1::1"
    HOST4 = "198.51.100.2"           # the `host` namespace (where proxies run)
    HOST6 = "2001:db8:1::2"
    # Servers, on inet's loopback (/32, /128).
    DNS4 = "203.0.113.53"            # dnsmasq
    DNS6 = "2001:db8:113::53"
    WWW4 = "203.0.113.10"            # nginx: www, api, plain vhosts
    WWW6 = "2001:db8:113::10"
    OTHER4 = "203.0.113.11"          # nginx: other, untrusted vhosts
    OTHER6 = "2001:db8:113::11"
    CAPTURE4 = "203.0.113.99"        # capture server (silent sink)
    CAPTURE6 = "2001:db8:113::99"
    # Sandbox ranges behind `host`; inet routes them back via HOST4/HOST6.
    SANDBOX_NET4 = "10.200.0.0/16"   # sluice-netsetup's default pool
    SANDBOX_NET6 = "2001:db8:200::/48"  # use with `sluice-netsetup up --ipv6`
    SPARE_NET4 = "192.0.2.0/24"      # unused: free for tests (e.g. an "attacker" address)


@dataclass(frozen=True)
class Site:
    """One nginx virtual host. Its body is `hello from NAME\\n` on every path but
    /whoami (a description of the request) and /files/ (1m.bin, 8m.bin)."""
    name: str
    addrs: tuple
    https: bool = True
    http: bool = True
    ca: str = "test"            # "test": signed by world.ca_cert; "rogue": by an untrusted CA;
                                # "expired": by the test CA, expired yesterday; "wrongname":
                                # by the test CA, for another name
    aliases: tuple = ()         # extra server_names (and certificate SANs)

    @property
    def body(self):
        return f"hello from {self.name}\n"


SITES = (
    Site("www.example.test", (ADDR.WWW4, ADDR.WWW6), aliases=("alias.example.test",)),
    # Same address as www: only SNI / Host tells the two apart.
    Site("api.example.test", (ADDR.WWW4, ADDR.WWW6)),
    Site("plain.example.test", (ADDR.WWW4, ADDR.WWW6), https=False),
    Site("other.example.test", (ADDR.OTHER4, ADDR.OTHER6)),
    # Valid name, certificate from a CA nobody trusts: upstream_cert_invalid.
    Site("untrusted.example.test", (ADDR.OTHER4, ADDR.OTHER6), ca="rogue"),
    # The test CA, but expired, or for another name: upstream_cert_invalid too.
    Site("expired.example.test", (ADDR.OTHER4, ADDR.OTHER6), ca="expired"),
    Site("wrongname.example.test", (ADDR.OTHER4, ADDR.OTHER6), ca="wrongname"),
)

# (name, type, value). Types: A, AAAA, CNAME (target must be in this table), TXT.
# Names not listed get NXDOMAIN; nothing is forwarded anywhere.
DNS_RECORDS = (
    ("www.example.test", "A", ADDR.WWW4),
    ("www.example.test", "AAAA", ADDR.WWW6),
    ("api.example.test", "A", ADDR.WWW4),
    ("api.example.test", "AAAA", ADDR.WWW6),
    ("plain.example.test", "A", ADDR.WWW4),            # IPv4 only
    ("other.example.test", "A", ADDR.OTHER4),
    ("other.example.test", "AAAA", ADDR.OTHER6),
    ("untrusted.example.test", "A", ADDR.OTHER4),
    ("expired.example.test", "A", ADDR.OTHER4),
    ("wrongname.example.test", "A", ADDR.OTHER4),
    ("alias.example.test", "CNAME", "www.example.test"),
    ("txt.example.test", "TXT", "sluice test txt record"),
    ("capture.test", "A", ADDR.CAPTURE4),
    ("capture.test", "AAAA", ADDR.CAPTURE6),
    ("private.example.test", "A", "10.0.0.1"),          # RFC 1918 answer (P5)
    ("metadata.example.test", "A", "169.254.169.254"),  # link-local metadata (P5)
)
DNS_TTL = 300

# The capture server is silent: it accepts, records, never replies, and closes
# after the peer closes or after CAPTURE_HOLD idle seconds.
CAPTURE_TCP_PORTS = (22, 25, 53, 80, 443, 853, 5432, 8080, 8443)
CAPTURE_UDP_PORTS = (53, 123, 443)
CAPTURE_HOLD = 30

_LIVE = []        # worlds not yet torn down, for the atexit safety net


def _b36(n, width):
    s = ""
    while n:
        n, r = divmod(n, 36)
        s = _B36[r] + s
    return s.rjust(width, "0")[-width:]


def new_token():
    """6 chars: this process's pid in base 36 (for reap_stale) + 2 random."""
    return _b36(os.getpid(), 4) + "".join(random.choice(_B36) for _ in range(2))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sh(argv, timeout=10.0, check=True, input=None):
    """Run a root-namespace management command (ip netns add/del/-n NS, openssl)."""
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def list_netns():
    r = _sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def netns_pids(name):
    r = _sh(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def _kill_netns_procs(name, timeout=3.0):
    """SIGKILL every process inside test namespace NAME; wait (bounded) until gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [p for p in netns_pids(name) if p != os.getpid()]
        if not pids:
            return True
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    return not netns_pids(name)


def _delete_netns(name):
    if not name.startswith(NS_PREFIX):
        raise ValueError(f"refusing to delete non-test namespace {name!r}")
    _kill_netns_procs(name)
    _sh(["ip", "netns", "del", name], check=False)
    shutil.rmtree(ETC_NETNS / name, ignore_errors=True)


def _rmdir_etc_netns():
    try:
        ETC_NETNS.rmdir()          # only when empty: another user may still need it
    except OSError:
        pass


def reap_stale():
    """Remove namespaces, /etc/netns dirs and temp dirs left by test runs whose
    process is gone (a crashed or SIGKILLed pytest). Returns the names removed."""
    removed = []
    for name in list_netns():
        m = NAME_RE.match(name)
        if not m or _pid_alive(int(m.group(1)[:4], 36)):
            continue
        _delete_netns(name)
        removed.append(name)
    if ETC_NETNS.is_dir():
        for d in ETC_NETNS.iterdir():
            m = NAME_RE.match(d.name)
            if m and not _pid_alive(int(m.group(1)[:4], 36)) and d.name not in list_netns():
                shutil.rmtree(d, ignore_errors=True)
        _rmdir_etc_netns()
    for d in Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        tok = d.name[len(TMP_PREFIX):len(TMP_PREFIX) + 6]
        if len(tok) == 6 and not _pid_alive(int(tok[:4], 36)):
            shutil.rmtree(d, ignore_errors=True)
    return removed


def root_snapshot():
    """The root namespace's network state (read only), to prove the world never
    changes it: links, addresses, routes, rules, nftables ruleset, forwarding."""
    cmds = (["ip", "-br", "link"], ["ip", "-br", "addr"], ["ip", "route"],
            ["ip", "-6", "route"], ["ip", "rule"], ["ip", "-6", "rule"],
            ["nft", "list", "ruleset"])
    snap = {" ".join(c): _sh(c, check=False).stdout for c in cmds}
    for k in ("ipv4/ip_forward", "ipv6/conf/all/forwarding"):
        snap[k] = Path(f"/proc/sys/net/{k}").read_text()
    return snap


def _teardown_all():
    for w in list(_LIVE):
        try:
            w.teardown()
        except Exception as e:      # best effort at exit
            print(f"testworld: teardown at exit: {e}", file=sys.stderr)


atexit.register(_teardown_all)


def install_signal_handlers():
    """Turn SIGTERM/SIGHUP into SystemExit so atexit teardown runs."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, handler)


_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # Die with the test process (PR_SET_PDEATHSIG); teardown is the main path,
    # this only covers a SIGKILLed pytest. Cleared by the kernel on a uid change.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)


def _decode_addr(h):
    raw = bytes.fromhex(h)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, raw)


def listening(pid):
    """{(proto, addr, port)} listening in the network namespace of PID (read from
    /proc/PID/net, so no process is spawned)."""
    out = set()
    for proto, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 4 or f[3] != state:
                continue
            addr, port = f[1].split(":")
            out.add((proto.rstrip("6"), _decode_addr(addr), int(port, 16)))
    return out


def open_path_to(path):
    """Lets an unprivileged process reach PATH: every directory from / down to
    PATH (included) gets search permission for others, nothing more (no
    listing, no writing). sluice-proxy drops to 'nobody' once it serves, and
    must still read its policy file on reload; pytest's and the world's
    temporary directories are 0700."""
    p = Path(path).resolve()
    for d in [p, *p.parents]:
        mode = d.stat().st_mode
        if not mode & stat.S_IXOTH:
            d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return path


def wait_for(pred, timeout=5.0, interval=0.05, what="condition"):
    """Poll PRED until it returns a truthy value (returned) or TIMEOUT passes
    (AssertionError naming WHAT)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A long-running process inside a test namespace, in its own process group.
    The world stops it on teardown; tests may stop it earlier."""

    def __init__(self, name, ns, argv, popen, log_path):
        self.name, self.ns, self.argv = name, ns, argv
        self.popen = popen
        self.log_path = log_path

    @property
    def pid(self):
        return self.popen.pid

    def _exited(self):
        if self.popen.returncode is not None:
            return True
        try:   # WNOWAIT: leave the zombie so the pid (and pgid) cannot be reused yet
            r = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return r is not None

    def alive(self):
        return not self._exited()

    def signal(self, sig):
        if not self._exited():
            os.kill(self.pid, sig)

    def stop(self, timeout=3.0):
        """SIGTERM the group, SIGKILL after TIMEOUT; returns the exit status."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self._exited():
                break
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.02)
        try:   # leftovers of the group (e.g. nginx workers), while the leader's pid is held
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.popen.wait(timeout=timeout)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self):
        return f"<Proc {self.name} pid={self.pid} ns={self.ns}>"


@dataclass
class Link:
    ns: str
    iface: str
    addr4: str
    addr6: str
    inet_port: str


@dataclass
class DigResult:
    status: str                     # NOERROR, NXDOMAIN, REFUSED, ... or "" when no reply
    answers: list = field(default_factory=list)   # [(name, type, data, ttl)]
    raw: str = ""

    def values(self, rtype):
        return [d for (_, t, d, _) in self.answers if t == rtype]


class World:
    """Build with World().setup(); always call teardown() (or use `with`)."""

    def __init__(self, services=True, keep=None):
        self.token = new_token()
        self.prefix = f"{NS_PREFIX}{self.token}-"
        self.inet = self.prefix + "inet"
        self.host = self.prefix + "host"
        self.addr = ADDR
        self.services = services
        self.keep = os.environ.get("SLUICE_WORLD_KEEP") == "1" if keep is None else keep
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.token}-"))
        self.tmp.chmod(0o755)        # workloads running as other uids read the CA
        self.sites = list(SITES)
        self.dns_records = list(DNS_RECORDS)
        self.dns_ttls = {}          # (name, type, value) -> TTL, when not DNS_TTL
        self.links = {}
        self.procs = []
        self.namespaces = []
        self.dnsmasq = self.nginx = self.capture = None
        self.ca_cert = self.ca_key = self.rogue_ca_cert = None
        self._next_link = 2
        self._ns_counter = itertools.count(1)
        self._log_counter = itertools.count(1)
        self._torn_down = False
        _LIVE.append(self)

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self):
        try:
            return self.setup()
        except BaseException:
            self.teardown()
            raise

    def __exit__(self, *exc):
        self.teardown()

    def setup(self):
        self._build_inet()
        self.add_ns("host")
        self.connect_to_inet(self.host)
        self.sysctl(self.host, {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1})
        if self.services:
            self._make_certs()
            self._write_files()
            self.dnsmasq = self._start_dnsmasq()
            self.nginx = self._start_nginx()
            self.capture = self._start_capture()
            self._wait_services()
        return self

    def teardown(self):
        """Stop every process, delete every namespace (ours, and any other with
        our prefix, e.g. sandboxes sluice-netsetup made), remove /etc/netns
        entries and the temp dir. Idempotent; keeps going past errors."""
        if self._torn_down:
            return
        self._torn_down = True
        errors = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:
                errors.append(f"stop {p.name}: {e}")
        try:
            names = [n for n in list_netns() if n.startswith(self.prefix)]
        except Exception as e:
            errors.append(f"ip netns list: {e}")
            names = []
        names = sorted(set(names) | set(self.namespaces),
                       key=lambda n: (n == self.inet, n == self.host))  # inet last
        for n in names:
            try:
                _delete_netns(n)
            except Exception as e:
                errors.append(f"delete {n}: {e}")
        if ETC_NETNS.is_dir():
            for d in ETC_NETNS.glob(self.prefix + "*"):
                shutil.rmtree(d, ignore_errors=True)
            _rmdir_etc_netns()
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if self in _LIVE:
            _LIVE.remove(self)
        left = [n for n in list_netns() if n.startswith(self.prefix)]
        if left:
            errors.append(f"namespaces left: {left}")
        if errors:
            raise RuntimeError("world teardown: " + "; ".join(errors))

    # ---------------------------------------------------------------- namespaces

    def _own(self, ns):
        if not isinstance(ns, str) or not ns.startswith(self.prefix):
            raise ValueError(f"{ns!r} is not a namespace of this test world ({self.prefix}*)")
        return ns

    def _ip(self, *args, check=True):
        return _sh(["ip", *args], check=check)

    def name(self, role):
        """The namespace name for ROLE (1-5 of [a-z0-9]); use it for sandboxes
        made by sluice-netsetup so teardown finds them."""
        if not ROLE_RE.match(role):
            raise ValueError(f"role {role!r}: want 1-5 chars of [a-z0-9]")
        return self.prefix + role

    def add_ns(self, role=None, connect=False):
        """Create namespace PREFIX+ROLE (loopback up, IPv6 DAD off); with
        CONNECT, plug it into the exchange (connect_to_inet). Returns its name."""
        name = self.name(role or f"n{next(self._ns_counter)}")
        self._ip("netns", "add", name)
        self.namespaces.append(name)
        self._ip("-n", name, "link", "set", "lo", "up")
        self.sysctl(name, {"net.ipv6.conf.all.accept_dad": 0,
                           "net.ipv6.conf.default.accept_dad": 0})
        if connect:
            self.connect_to_inet(name)
        return name

    def remove_ns(self, name):
        """Kill everything inside NAME and delete it (and its /etc/netns dir)."""
        self._own(name)
        for p in self.procs:
            if p.ns == name:
                p.stop()
        _delete_netns(name)
        if name in self.namespaces:
            self.namespaces.remove(name)
        self.links.pop(name, None)

    def sysctl(self, ns, values):
        args = [f"{k}={v}" for k, v in values.items()]
        self.run(ns, ["sysctl", "-qw", *args], check=True)

    def connect_to_inet(self, ns):
        """Plug NS into the exchange bridge: veth `uplink` in NS with
        198.51.100.N/24 and 2001:db8:1::N/64, default routes via inet, and
        the test DNS server in its resolv.conf."""
        self._own(ns)
        n = self._next_link
        if n > 250:
            raise RuntimeError("exchange full")
        self._next_link += 1
        port = f"ix{n}"
        a4, a6 = f"198.51.100.{n}", f"2001:db8:1::{n:x}"
        self._ip("-n", self.inet, "link", "add", port, "type", "veth",
                 "peer", "name", "uplink", "netns", ns)
        self._ip("-n", self.inet, "link", "set", port, "master", "ix", "up")
        self._ip("-n", ns, "addr", "add", f"{a4}/24", "dev", "uplink")
        self._ip("-n", ns, "addr", "add", f"{a6}/64", "dev", "uplink", "nodad")
        self._ip("-n", ns, "link", "set", "uplink", "up")
        self._ip("-n", ns, "route", "add", "default", "via", ADDR.INET_GW4)
        self._ip("-n", ns, "-6", "route", "add", "default", "via", ADDR.INET_GW6)
        self.write_resolv_conf(ns)
        link = Link(ns, "uplink", a4, a6, port)
        self.links[ns] = link
        return link

    def veth(self, a, b, a_if, b_if, a_addrs=(), b_addrs=()):
        """A veth pair between test namespaces A and B (created inside A, peer
        moved straight into B), addresses in CIDR form, both ends up."""
        self._own(a)
        self._own(b)
        self._ip("-n", a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b)
        for ns, ifname, addrs in ((a, a_if, a_addrs), (b, b_if, b_addrs)):
            for cidr in addrs:
                extra = ["nodad"] if ":" in cidr else []
                self._ip("-n", ns, "addr", "add", cidr, "dev", ifname, *extra)
            self._ip("-n", ns, "link", "set", ifname, "up")

    def route_via_host(self, cidr):
        """Make inet route CIDR back through `host` (for sandbox ranges)."""
        six = ":" in cidr
        via = ADDR.HOST6 if six else ADDR.HOST4
        self._ip("-n", self.inet, *(["-6"] if six else []), "route", "replace", cidr,
                 "via", via)

    def add_inet_addr(self, addr):
        """Give inet one more local address (on lo), e.g. an "attacker" server."""
        plen = 128 if ":" in addr else 32
        extra = ["nodad"] if ":" in addr else []
        self._ip("-n", self.inet, "addr", "add", f"{addr}/{plen}", "dev", "lo", *extra)

    def write_resolv_conf(self, ns, servers=(ADDR.DNS4, ADDR.DNS6)):
        """/etc/netns/NS/resolv.conf: `ip netns exec NS` bind-mounts it over
        /etc/resolv.conf. Removed on teardown."""
        self._own(ns)
        d = ETC_NETNS / ns
        d.mkdir(parents=True, exist_ok=True)
        lines = [f"nameserver {s}" for s in servers] + ["options timeout:1 attempts:2"]
        (d / "resolv.conf").write_text("\n".join(lines) + "\n")

    def _build_inet(self):
        inet = self.add_ns("inet")
        # A fixed MAC: a bridge without one takes its lowest port's, so it would
        # change as namespaces come and go, and their neighbour caches (host's
        # above all) would go on sending to an address nobody answers any more.
        self._ip("-n", inet, "link", "add", "ix", "address", "02:73:6c:74:00:01", "type",
                 "bridge", "mcast_snooping", "0")
        self._ip("-n", inet, "addr", "add", f"{ADDR.INET_GW4}/24", "dev", "ix")
        self._ip("-n", inet, "addr", "add", f"{ADDR.INET_GW6}/64", "dev", "ix", "nodad")
        self._ip("-n", inet, "link", "set", "ix", "up")
        for a in (ADDR.DNS4, ADDR.WWW4, ADDR.OTHER4, ADDR.CAPTURE4,
                  ADDR.DNS6, ADDR.WWW6, ADDR.OTHER6, ADDR.CAPTURE6):
            self.add_inet_addr(a)
        # Replies to sandboxes go back through host. A correct proxy never lets a
        # sandbox address reach inet; the routes make a leak complete its
        # handshake so the capture server records it, and the watch counters
        # below count it.
        self.route_via_host(ADDR.SANDBOX_NET4)
        self.route_via_host(ADDR.SANDBOX_NET6)
        ruleset = f"""
table inet watch {{
    counter from_sandboxes {{ }}
    counter to_capture {{ }}
    chain prerouting {{
        type filter hook prerouting priority -300; policy accept;
        ip saddr {ADDR.SANDBOX_NET4} counter name "from_sandboxes"
        ip6 saddr {ADDR.SANDBOX_NET6} counter name "from_sandboxes"
        ip daddr {ADDR.CAPTURE4} counter name "to_capture"
        ip6 daddr {ADDR.CAPTURE6} counter name "to_capture"
    }}
}}
"""
        path = self.tmp / "inet-watch.nft"
        path.write_text(ruleset)
        self.run(inet, ["nft", "-f", str(path)], check=True)

    # ---------------------------------------------------------------- processes

    def _wrap(self, ns, argv, uid=None, gid=None, nsenter=False):
        self._own(ns)
        argv = [str(a) for a in argv]
        if uid is not None:
            g = uid if gid is None else gid
            argv = ["setpriv", f"--reuid={uid}", f"--regid={g}", "--clear-groups", "--", *argv]
        if nsenter:
            return ["nsenter", f"--net={RUN_NETNS / ns}", "--", *argv]
        return ["ip", "netns", "exec", ns, *argv]

    def run(self, ns, argv, timeout=10.0, check=False, uid=None, gid=None, input=None,
            text=True, env=None, cwd=None, nsenter=False):
        """Run ARGV inside namespace NS (optionally as UID/GID) and wait at most
        TIMEOUT seconds (then the whole process group is killed and
        subprocess.TimeoutExpired raised). Returns a CompletedProcess.

        By default this is `ip netns exec NS`, which also applies
        /etc/netns/NS/* (resolv.conf) but runs ARGV in a private mount namespace:
        namespaces it creates (`ip netns add`, `sluice-netsetup up`) vanish when it
        exits. NSENTER=True uses `nsenter --net` instead (network namespace
        only, mounts persist, no /etc/netns)."""
        full = self._wrap(ns, argv, uid, gid, nsenter)
        p = subprocess.Popen(full, stdin=subprocess.PIPE if input is not None else
                             subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=text, env=env, cwd=cwd,
                             start_new_session=True)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                out, err = p.communicate(timeout=5)
            except subprocess.TimeoutExpired:   # a stray grandchild holds the pipes
                p.kill()
                out, err = None, None
            raise subprocess.TimeoutExpired(full, timeout, out, err)
        r = subprocess.CompletedProcess(full, p.returncode, out, err)
        if check and r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, full, out, err)
        return r

    def spawn(self, ns, argv, name=None, uid=None, gid=None, env=None, cwd=None,
              nsenter=False):
        """Start a long-running ARGV inside NS (as run() does); stdout+stderr go
        to a log file (Proc.log()). Stopped on teardown (or remove_ns) at the latest."""
        full = self._wrap(ns, argv, uid, gid, nsenter)
        name = name or Path(str(argv[0])).name
        logdir = self.tmp / "logs"
        logdir.mkdir(exist_ok=True)
        log_path = logdir / f"{next(self._log_counter):02d}-{name}.log"
        with open(log_path, "ab") as f:
            popen = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=f,
                                     stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                     start_new_session=True, preexec_fn=_child_setup)
        proc = Proc(name, ns, full, popen, log_path)
        self.procs.append(proc)
        return proc

    def wait_listening(self, proc, wanted, timeout=5.0):
        """Wait until every (proto, addr, port) in WANTED listens in PROC's namespace."""
        wanted = set(wanted)

        def ready():
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited: {proc.log()[-2000:]}")
            return wanted <= listening(proc.pid)
        wait_for(ready, timeout, what=f"{proc.name} listening on {sorted(wanted)}")

    # ---------------------------------------------------------------- services

    def _openssl(self, *args):
        _sh(["openssl", *args, "-config", str(self.tmp / "pki" / "openssl.cnf")])

    def _make_ca(self, stem, cn):
        d = self.tmp / "pki"
        self._openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-noenc", "-days", "30",
                      "-keyout", str(d / f"{stem}.key"), "-out", str(d / f"{stem}.pem"),
                      "-subj", f"/O=sluice tests/CN={cn}",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        return d / f"{stem}.pem", d / f"{stem}.key"

    def make_leaf(self, names, ca="test"):
        """A server certificate for NAMES (SANs) signed by the test (or rogue) CA
        (see Site.ca). Returns (cert_path, key_path)."""
        d = self.tmp / "pki"
        ca_cert, ca_key = ((self.rogue_ca_cert, d / "rogue-ca.key") if ca == "rogue" else
                           (self.ca_cert, self.ca_key))
        stem = names[0]
        if ca == "expired":
            return self._make_expired_leaf(stem, names)
        if ca == "wrongname":
            names = ("someone-else.example.test",)
        san = ",".join(f"DNS:{n}" for n in names)
        self._openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-noenc", "-days", "30",
                      "-keyout", str(d / f"{stem}.key"), "-out", str(d / f"{stem}.pem"),
                      "-subj", f"/CN={names[0]}", "-CA", str(ca_cert), "-CAkey", str(ca_key),
                      "-addext", f"subjectAltName={san}",
                      "-addext", "basicConstraints=critical,CA:FALSE",
                      "-addext", "keyUsage=critical,digitalSignature",
                      "-addext", "extendedKeyUsage=serverAuth")
        (d / f"{stem}.key").chmod(0o600)
        return d / f"{stem}.pem", d / f"{stem}.key"

    def _make_expired_leaf(self, stem, names):
        """openssl req cannot backdate: the cryptography module (python3-cryptography) can."""
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        d = self.tmp / "pki"
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
        ca = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=10))
                .not_valid_after(now - datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (d / f"{stem}.key").chmod(0o600)
        return d / f"{stem}.pem", d / f"{stem}.key"

    def _make_certs(self):
        d = self.tmp / "pki"
        d.mkdir(mode=0o755, exist_ok=True)
        (d / "openssl.cnf").write_text("[req]\ndistinguished_name = dn\n[dn]\n")
        self.ca_cert, self.ca_key = self._make_ca("ca", "sluice test CA")
        self.rogue_ca_cert, _ = self._make_ca("rogue-ca", "rogue CA (not trusted)")
        for k in (self.ca_key, d / "rogue-ca.key"):
            k.chmod(0o600)
        for s in self.sites:
            if s.https:
                self.make_leaf((s.name, *s.aliases), s.ca)

    def _write_files(self):
        www = self.tmp / "www" / "files"
        www.mkdir(parents=True, exist_ok=True)
        for label, size in (("1m", 1 << 20), ("8m", 8 << 20)):
            with open(www / f"{label}.bin", "wb") as f:
                f.write(random.Random(size).randbytes(size))
        (self.tmp / "nginx-tmp").mkdir(exist_ok=True)
        (self.tmp / "dns").mkdir(exist_ok=True)
        (self.tmp / "capture").mkdir(exist_ok=True)

    # dnsmasq ----------------------------------------------------------------

    def _dnsmasq_conf(self):
        d = self.tmp / "dns"
        lines = [
            "keep-in-foreground", "no-resolv", "no-hosts", "no-poll", "bind-interfaces",
            f"listen-address={ADDR.DNS4}", f"listen-address={ADDR.DNS6}", "port=53",
            "user=root", "group=root", "pid-file=", "log-queries",
            f"log-facility={d / 'queries.log'}", f"local-ttl={DNS_TTL}",
            "local=/#/",                      # answer only from this file: NXDOMAIN otherwise
        ]
        for name, rtype, value in self.dns_records:
            if rtype in ("A", "AAAA"):
                ttl = self.dns_ttls.get((name, rtype, value))
                lines.append(f"host-record={name},{value}" + (f",{ttl}" if ttl else ""))
            elif rtype == "CNAME":
                lines.append(f"cname={name},{value}")
            elif rtype == "TXT":
                lines.append(f'txt-record={name},"{value}"')
            else:
                raise ValueError(f"DNS record type {rtype} not supported by the test world")
        path = d / "dnsmasq.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _start_dnsmasq(self):
        conf = self._dnsmasq_conf()
        return self.spawn(self.inet, ["dnsmasq", f"--conf-file={conf}"], name="dnsmasq")

    def _dns_wanted(self):
        return {(p, a, 53) for p in ("udp", "tcp") for a in (ADDR.DNS4, ADDR.DNS6)}

    def dns_restart(self):
        """Apply self.dns_records (dnsmasq reads them only at start)."""
        if self.dnsmasq:
            self.dnsmasq.stop()
            self.procs.remove(self.dnsmasq)
        self.dnsmasq = self._start_dnsmasq()
        self.wait_listening(self.dnsmasq, self._dns_wanted())

    def dns_add(self, name, rtype, value, restart=True, ttl=None):
        """Add a record (TTL: A/AAAA only, default DNS_TTL) and restart dnsmasq."""
        self.dns_records.append((name, rtype, value))
        if ttl is not None:
            self.dns_ttls[(name, rtype, value)] = ttl
        if restart:
            self.dns_restart()

    def dns_remove(self, name, rtype=None, restart=True):
        self.dns_records = [r for r in self.dns_records
                            if not (r[0] == name and rtype in (None, r[1]))]
        self.dns_ttls = {k: v for k, v in self.dns_ttls.items() if k in self.dns_records}
        if restart:
            self.dns_restart()

    def dns_queries(self):
        """[{qtype, qname, client}] from dnsmasq's query log, oldest first."""
        path = self.tmp / "dns" / "queries.log"
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return []
        rx = re.compile(r"query\[([^\]]+)\] (\S+) from (\S+)")
        return [{"qtype": m.group(1), "qname": m.group(2), "client": m.group(3)}
                for m in rx.finditer(text)]

    def dns_reset(self):
        """Forget logged queries (dnsmasq appends with O_APPEND, so truncating is safe)."""
        os.truncate(self.tmp / "dns" / "queries.log", 0)

    # nginx ------------------------------------------------------------------

    def _nginx_conf(self):
        t, pki = self.tmp, self.tmp / "pki"
        body = lambda s: json.dumps(s.body)    # noqa: E731 (quoted nginx string)
        whoami = ('"site=$server_name host=$host sni=$ssl_server_name scheme=$scheme '
                  'remote=$remote_addr server=$server_addr:$server_port\\n"')
        fmt = ('\'{"time":"$time_iso8601","remote":"$remote_addr","remote_port":"$remote_port",'
               '"server_addr":"$server_addr","server_port":"$server_port","scheme":"$scheme",'
               '"site":"$server_name","host":"$host","sni":"$ssl_server_name",'
               '"request":"$request","status":$status,"bytes":$body_bytes_sent,'
               '"request_length":$request_length,"auth":"$http_authorization"}\'')
        out = [
            "daemon off;", "master_process on;", "worker_processes 1;", "user root root;",
            f"pid {t / 'nginx.pid'};", f"error_log {t / 'nginx-error.log'} notice;",
            "events { worker_connections 512; }",
            "http {",
            "  default_type text/plain;",
            f"  log_format sluice escape=json {fmt};",
            f"  access_log {t / 'nginx-access.log'} sluice;",
            *(f"  {k}_temp_path {t / 'nginx-tmp' / k};"
              for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
            "  keepalive_timeout 10s;",
            "  ssl_protocols TLSv1.2 TLSv1.3;",
            f"  root {t / 'www'};",
        ]
        addrs = sorted({a for s in self.sites for a in s.addrs})
        lst = lambda a, port: f"[{a}]:{port}" if ":" in a else f"{a}:{port}"  # noqa: E731
        # Defaults: an unknown SNI gets a TLS unrecognized_name alert, an unknown Host a 421.
        out.append("  server {")
        out += [f"    listen {lst(a, 80)} default_server;" for a in addrs]
        out.append('    return 421 "nginx default server: no vhost for $host\\n";')
        out.append("  }")
        out.append("  server {")
        out += [f"    listen {lst(a, 443)} ssl default_server;" for a in addrs]
        out.append("    ssl_reject_handshake on;")
        out.append("  }")
        for s in self.sites:
            out.append("  server {")
            for a in s.addrs:
                if s.http:
                    out.append(f"    listen {lst(a, 80)};")
                if s.https:
                    out.append(f"    listen {lst(a, 443)} ssl;")
            out.append(f"    server_name {' '.join((s.name, *s.aliases))};")
            if s.https:
                out.append(f"    ssl_certificate {pki / (s.name + '.pem')};")
                out.append(f"    ssl_certificate_key {pki / (s.name + '.key')};")
            out.append(f"    location / {{ return 200 {body(s)}; }}")
            out.append(f"    location = /whoami {{ return 200 {whoami}; }}")
            out.append("    location /files/ { }")
            # PUT stores the body under www/uploads/ (uploads through a proxy are
            # compared byte for byte); the default 1 MiB body cap would refuse them
            out.append("    location /uploads/ { dav_methods PUT; create_full_put_path on; "
                       "client_max_body_size 64m; }")
            out.append("  }")
        out.append("}")
        path = t / "nginx.conf"
        path.write_text("\n".join(out) + "\n")
        return path

    def _nginx_wanted(self):
        return {("tcp", a, port) for s in self.sites for a in s.addrs for port in (80, 443)}

    def _start_nginx(self):
        conf = self._nginx_conf()
        return self.spawn(self.inet, ["nginx", "-p", str(self.tmp), "-c", str(conf),
                                      "-e", str(self.tmp / "nginx-error.log")], name="nginx")

    def nginx_restart(self):
        """Apply self.sites (new certificates are made for new HTTPS sites)."""
        for s in self.sites:
            if s.https and not (self.tmp / "pki" / f"{s.name}.pem").exists():
                self.make_leaf((s.name, *s.aliases), s.ca)
        if self.nginx:
            self.nginx.stop()
            self.procs.remove(self.nginx)
        self.nginx = self._start_nginx()
        self.wait_listening(self.nginx, self._nginx_wanted())

    def add_site(self, site, restart=True):
        self.sites.append(site)
        if restart:
            self.nginx_restart()

    def site(self, name):
        return next(s for s in self.sites if s.name == name)

    def nginx_requests(self):
        """nginx access log records (dicts: remote, server_addr, server_port,
        scheme, site, host, sni, request, status, bytes), oldest first."""
        try:
            lines = (self.tmp / "nginx-access.log").read_text(errors="replace").splitlines()
        except OSError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def nginx_reset(self):
        os.truncate(self.tmp / "nginx-access.log", 0)

    # capture ----------------------------------------------------------------

    def _start_capture(self):
        d = self.tmp / "capture"
        argv = [PYTHON, str(HERE / "capture_server.py"), "--dir", str(d),
                "--addr", ADDR.CAPTURE4, "--addr", ADDR.CAPTURE6,
                "--tcp", ",".join(map(str, CAPTURE_TCP_PORTS)),
                "--udp", ",".join(map(str, CAPTURE_UDP_PORTS)),
                "--hold", str(CAPTURE_HOLD)]
        return self.spawn(self.inet, argv, name="capture")

    def _capture_events(self):
        try:
            lines = (self.tmp / "capture" / "events.jsonl").read_text(errors="replace")
        except OSError:
            return []
        out = []
        for line in lines.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:      # a line cut by capture_reset()
                pass
        return out

    def capture_records(self):
        """Everything that reached the capture server since the last reset, one
        dict per TCP connection or UDP datagram: proto, peer, peer_port, local,
        local_port, start, end (None while open), data (bytes), bytes (count)."""
        recs = {}
        for ev in self._capture_events():
            cid = ev.get("conn")
            kind = ev.get("event")
            if kind in ("open", "datagram"):
                recs[cid] = {"proto": ev["proto"], "peer": ev["peer"],
                             "peer_port": ev["peer_port"], "local": ev["local"],
                             "local_port": ev["local_port"], "start": ev["ts"],
                             "end": ev["ts"] if kind == "datagram" else None,
                             "data": base64.b64decode(ev.get("data", "")),
                             "bytes": ev.get("bytes", 0)}
                continue
            r = recs.setdefault(cid, {"proto": "tcp", "peer": None, "peer_port": None,
                                      "local": None, "local_port": None,
                                      "start": ev["ts"], "end": None, "data": b"",
                                      "bytes": 0})
            if kind == "data":
                r["data"] += base64.b64decode(ev["data"])
                r["bytes"] = len(r["data"])
            elif kind == "count":
                r["bytes"] = ev["bytes"]
            elif kind == "close":
                r["end"] = ev["ts"]
                r["bytes"] = ev.get("bytes", r["bytes"])
        return sorted(recs.values(), key=lambda r: r["start"])

    def capture_bytes(self, port=None):
        """All bytes received (optionally only on local PORT), concatenated."""
        return b"".join(r["data"] for r in self.capture_records()
                        if port is None or r["local_port"] == port)

    def inet_counters(self):
        """Packet counts seen entering inet: from_sandboxes (source in the
        sandbox ranges: never legitimate) and to_capture (any protocol)."""
        r = self.run(self.inet, ["nft", "-j", "list", "counters", "table", "inet", "watch"],
                     check=True)
        return {c["counter"]["name"]: c["counter"]["packets"]
                for c in json.loads(r.stdout)["nftables"] if "counter" in c}

    def capture_reset(self):
        """Forget captured traffic and zero the inet watch counters."""
        path = self.tmp / "capture" / "events.jsonl"
        if path.exists():
            os.truncate(path, 0)
        self.run(self.inet, ["nft", "reset", "counters", "table", "inet", "watch"], check=True)

    def _wait_services(self):
        ready = self.tmp / "capture" / "ready"

        def capture_ready():
            if not self.capture.alive():
                raise RuntimeError(f"capture server exited: {self.capture.log()[-2000:]}")
            return ready.exists()
        self.wait_listening(self.dnsmasq, self._dns_wanted())
        self.wait_listening(self.nginx, self._nginx_wanted())
        wait_for(capture_ready, 10.0, what="capture server ready")

    # ---------------------------------------------------------------- clients

    def curl(self, ns, url, *args, max_time=5, uid=None):
        """curl -sS URL from NS trusting the test CA; CompletedProcess."""
        argv = ["curl", "-sS", "--max-time", str(max_time), "--cacert", str(self.ca_cert),
                *args, url]
        return self.run(ns, argv, timeout=max_time + 5, uid=uid)

    def dig(self, ns, name, qtype="A", server=ADDR.DNS4, tcp=False, timeout=2):
        """dig NAME QTYPE @SERVER from NS; DigResult(status, answers, raw)."""
        argv = ["dig", f"+time={timeout}", "+tries=1", "+noall", "+comments", "+answer",
                f"@{server}", name, qtype]
        if tcp:
            argv.insert(1, "+tcp")
        r = self.run(ns, argv, timeout=timeout + 5)
        m = re.search(r"status: (\w+)", r.stdout)
        answers = []
        for line in r.stdout.splitlines():
            if line.startswith(";") or not line.strip():
                continue
            f = line.split(None, 4)
            if len(f) == 5 and f[2] == "IN":
                answers.append((f[0].rstrip("."), f[3], f[4].strip(), int(f[1])))
        return DigResult(m.group(1) if m else "", answers, r.stdout + r.stderr)
