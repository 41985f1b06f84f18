"""Deployment (issue 9): `meson install`, the Kubernetes manifests, the container
image's Containerfile and the systemd units.

Each is read as written and then run in the test world the way its platform
would run it:
- the pod: a namespace plugged into inet stands in for the pod's network
  namespace; the init container's command runs there as root with only the
  capabilities the manifest adds, the proxy's command as UID 1337 with the
  image's file capability, the workload as UID 1000 with none; the policy is
  the ConfigMap's file, mounted the way the kubelet mounts it (a `..data`
  symlink to a timestamped directory) and swapped the way it swaps it;
- the systemd units: their ExecStart/ExecStop/ExecReload lines, %i expanded and
  environment files applied as systemd does, run inside the world's `host`
  (nsenter), the proxy as an unprivileged UID with the ambient capability the
  unit grants;
- the image: no base image can be pulled on this machine, so the Containerfile
  is checked statically against the tree.
The programs run are the ones `meson install --destdir` installed.

Every option the manifests and units pass to sluice-proxy must be one its
--help names (known_proxy_args()); the command lines run as written.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from testworld import ADDR, Site, wait_for
from test_netsetup import Netsetup

yaml = pytest.importorskip("yaml", reason="python3-yaml is missing (run scripts/deps)")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
UNITS = DEPLOY / "systemd"
SCRIPTS = ROOT / "scripts"

PROXY_UID, WORKLOAD_UID = 1337, 1000
DYNAMIC_UID = 61999             # stands in for the proxy unit's DynamicUser
# The one adaptation the ConfigMap's policy needs here: the test internet lives in
# TEST-NET space, which P5 refuses unless allow_ranges lists it.
TEST_RANGES = "allow_ranges: [203.0.113.0/24, 2001:db8::/32]"

def token():
    return uuid.uuid4().hex[:10]


# ------------------------------------------------------------------ helpers

def proxy_flags(binary):
    """The options BINARY's --help names."""
    r = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    return set(re.findall(r"(--[a-z][a-z-]*)", r.stdout))


def known_proxy_args(argv, supported):
    """ARGV, after checking that every option in it is one this sluice-proxy's
    --help names: a manifest or unit passing an option the binary does not
    have would fail to start in production."""
    unknown = [a for a in argv if a.startswith("--") and a.split("=", 1)[0] not in supported]
    assert not unknown, f"options sluice-proxy does not know: {unknown}"
    return argv


def is_sanitized(binary):
    return b"__asan_init" in Path(binary).read_bytes()


def policy_for_world(text):
    """The shipped policy with the one change the test world needs (TEST_RANGES)."""
    assert text.count("allow_ranges: []") == 1, "the policy's allow_ranges line moved"
    return text.replace("allow_ranges: []", TEST_RANGES)


def proxy_records(text):
    """The flow-log records among a log's lines (stderr lines are not JSON)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_serving(proc, timeout=5.0):
    def up():
        if not proc.alive():
            raise AssertionError(f"{proc.name} exited: {proc.log()[-2000:]}")
        return "serving with policy" in proc.log()
    wait_for(up, timeout, what=f"{proc.name} serving")


class Sanitizers:
    """Programs of a sanitizer build that run as another UID cannot write their
    reports into tests/run's log directory (root's): they get a directory they
    can write, whose reports are moved to tests/run's at the end, so a report
    still fails the run."""

    def __init__(self, world):
        self.dir = world.tmp / f"san-{token()}"
        self.dir.mkdir(mode=0o1777)
        self.dir.chmod(0o1777)
        self.moves = {}

    def env(self):
        env = dict(os.environ)
        for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            opts = env.get(var, "")
            m = re.search(r"log_path=([^:]+)", opts)
            if m:
                orig = Path(m.group(1))
                self.moves[orig.parent] = True
                env[var] = opts.replace(m.group(0), f"log_path={self.dir / orig.name}")
        return env

    def collect(self):
        for dest in self.moves:
            for f in self.dir.iterdir():
                shutil.copy(f, dest / f"deploy-{f.name}")


# ------------------------------------------------------------------ install

class Installed:
    def __init__(self, dest, opts):
        self.dest = dest
        prefix = opts["prefix"]

        def at(d):
            return str(Path(prefix) / d)
        self.prefix = prefix
        self.bindir, self.sbindir = at(opts["bindir"]), at(opts["sbindir"])
        self.docdir = at(Path(opts["datadir"]) / "doc" / "sluice")
        self.presetdir = at(Path(opts["datadir"]) / "sluice" / "presets")
        self.unitdir = at("lib/systemd/system")

    def path(self, p):
        """The file installed as P (an absolute path under the prefix)."""
        return self.dest / str(p).lstrip("/")

    def prog(self, name):
        d = self.bindir if name == "sluicectl" else self.sbindir
        return str(self.path(f"{d}/{name}"))


@pytest.fixture(scope="module")
def installed(world, sluice_bin):
    """`meson install --destdir` of the build under test, in the world's temp dir
    (0755, so unprivileged UIDs can run what is there)."""
    build = Path(sluice_bin("sluicectl")).parents[1]
    dest = world.tmp / "destdir"
    r = subprocess.run(["meson", "install", "-C", str(build), "--destdir", str(dest),
                        "--no-rebuild"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    intro = subprocess.run(["meson", "introspect", "--buildoptions", str(build)],
                           capture_output=True, text=True, timeout=60, check=True)
    opts = {o["name"]: o["value"] for o in json.loads(intro.stdout)}
    for d in [dest, *dest.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    return Installed(dest, opts)


@pytest.fixture(scope="module")
def san(world):
    s = Sanitizers(world)
    yield s
    s.collect()


def served(world, name):
    """NAME served by the test world (DNS and an HTTPS vhost) for the time of the
    caller's fixture, then removed again: the world is shared."""
    site = Site(name, (ADDR.WWW4, ADDR.WWW6))
    world.dns_add(name, "A", ADDR.WWW4)
    try:
        world.add_site(site)
        yield site
    finally:
        world.dns_remove(name)
        if site in world.sites:
            world.sites.remove(site)
            world.nginx_restart()


@pytest.fixture(scope="module")
def github(world):
    """api.github.com, the shipped policy's inspect rule."""
    yield from served(world, "api.github.com")


@pytest.fixture(scope="module")
def pypi(world):
    """pypi.org, the first name of the shipped policy, so that policy runs
    unchanged but for its allow_ranges."""
    yield from served(world, "pypi.org")


def test_install_puts_programs_docs_and_units_in_place(installed):
    for name in ("sluicectl", "sluice-netsetup", "sluice-proxy"):
        prog = installed.prog(name)
        assert os.access(prog, os.X_OK), prog
        r = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0 and r.stdout.startswith("usage:"), (name, r)
        # the installed help text is what the installed program prints
        txt = installed.path(f"{installed.docdir}/{name}.txt")
        assert txt.read_text() == r.stdout, name
    assert installed.prog("sluice-proxy").endswith("/sbin/sluice-proxy")
    assert installed.prog("sluice-netsetup").endswith("/sbin/sluice-netsetup")
    ex = installed.path(f"{installed.docdir}/examples/example.yaml")
    assert ex.read_bytes() == (ROOT / "config/example.yaml").read_bytes()
    assert installed.path(f"{installed.docdir}/README.md").is_file()
    for unit in ("sluice-netsetup@.service", "sluice-proxy@.service"):
        text = installed.path(f"{installed.unitdir}/{unit}").read_text()
        assert "@" + "SBINDIR@" not in text and "@DOCDIR@" not in text
        assert f"ExecStart={installed.sbindir}/" in text, unit
    presets = sorted(p.name for p in (ROOT / "config/presets").glob("*.yaml"))
    assert sorted(p.name for p in installed.path(installed.presetdir).iterdir()) == presets
    for name in presets:
        assert installed.path(f"{installed.presetdir}/{name}").read_bytes() == \
            (ROOT / "config/presets" / name).read_bytes()
    tap = installed.path(f"{installed.docdir}/examples/vm-tap.conf").read_text()
    assert f"ExecStart={installed.sbindir}/sluice-netsetup attach %i --iface @IFACE@" in tap


def test_installed_programs_check_the_installed_example(installed):
    ex = str(installed.path(f"{installed.docdir}/examples/example.yaml"))
    r = subprocess.run([installed.prog("sluicectl"), "check", ex], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r
    r = subprocess.run([installed.prog("sluicectl"), "explain", ex, "pypi.org:443"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "pypi.org" in r.stdout, r
    r = subprocess.run([installed.prog("sluice-proxy"), "--check", "--policy", ex],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r
    # a policy including an installed preset by the path the README gives
    inc = Path(installed.dest) / "inc.yaml"
    inc.write_text("version: 1\ninclude:\n  - " +
                   str(installed.path(f"{installed.presetdir}/pypi.yaml")) + "\n")
    r = subprocess.run([installed.prog("sluicectl"), "explain", str(inc),
                        "files.pythonhosted.org:443"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "presets/pypi.yaml:" in r.stdout, r
    bad = Path(installed.dest) / "bad.yaml"
    bad.write_text("version: 1\negress:\n  - domain: '*.com'\n")
    r = subprocess.run([installed.prog("sluicectl"), "check", str(bad)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and f"{bad}:3:" in r.stdout + r.stderr, r


def test_static_proxy_option_builds_one_self_contained_binary(installed, sluice_bin, tmp_path):
    """-Dstatic_proxy=true (proxy/meson.build): a sluice-proxy that links no
    shared library at all and works: it validates the installed example and
    refuses a broken policy. (Its behaviour in a sandbox is the same code: run
    the suite with SLUICE_BUILD pointing at such a build to see it serve.)"""
    if is_sanitized(sluice_bin("sluice-proxy")):
        pytest.skip("the sanitizer runtimes cannot be linked statically")
    build = tmp_path / "static"
    r = subprocess.run(["meson", "setup", str(build), str(ROOT), "-Dstatic_proxy=true",
                        "-Dtests=false"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["ninja", "-C", str(build), "proxy/sluice-proxy"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    proxy = build / "proxy" / "sluice-proxy"
    ldd = subprocess.run(["ldd", str(proxy)], capture_output=True, text=True, timeout=10)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr, ldd
    example = installed.path(f"{installed.docdir}/examples/example.yaml")
    ok = subprocess.run([str(proxy), "--policy", str(example), "--check"],
                        capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\negress:\n  - domain: x.test\n    ports: [70000]\n")
    r = subprocess.run([str(proxy), "--policy", str(bad), "--check"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1 and f"{bad}:4:" in r.stderr, r


def _packages(path):
    return [w for line in path.read_text().splitlines()
            for w in [line.split("#", 1)[0].strip()] if w]


def test_runtime_packages_cover_every_linked_library(installed):
    runtime = set(_packages(SCRIPTS / "packages-runtime.txt"))
    needed = {}
    for name in ("sluicectl", "sluice-netsetup", "sluice-proxy"):
        prog = installed.prog(name)
        sanitized = is_sanitized(prog)
        out = subprocess.run(["ldd", prog], capture_output=True, text=True, timeout=10,
                             check=True).stdout
        for lib in re.findall(r"=> (/\S+)", out):
            real = os.path.realpath(lib)
            r = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
            if r.returncode != 0:
                r = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
            assert r.returncode == 0, f"{lib} belongs to no package"
            pkg = r.stdout.split(":", 1)[0]
            # a sanitizer build also links the sanitizer runtimes: not shipped
            if sanitized and re.match(r"lib(asan|ubsan|lsan|gcc-s|stdc\+\+)\d", pkg):
                continue
            needed.setdefault(pkg, set()).add(name)
    missing = {p: n for p, n in needed.items() if p not in runtime and p != "libc6"}
    assert not missing, f"linked but not in scripts/packages-runtime.txt: {missing}"


def test_runtime_packages_give_the_proxy_its_upstream_store():
    """In inspect mode the proxy verifies servers against OpenSSL's default file
    unless --upstream-ca names one, and does not start without it: the image
    must hold it, as on a host (tls_ctx_open)."""
    assert "ca-certificates" in _packages(SCRIPTS / "packages-runtime.txt")
    owner = subprocess.run(["dpkg", "-S", "/usr/lib/ssl/cert.pem"], capture_output=True,
                           text=True, timeout=10)
    assert owner.returncode == 0 and owner.stdout.split(":")[0] == "openssl", owner
    deps = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}", "ca-certificates"],
                          capture_output=True, text=True, timeout=10)
    assert re.match(r"openssl\b", deps.stdout), deps


# ------------------------------------------------------------------ container image

def containerfile_stages():
    """[(base, name, [(instruction, args)])] of deploy/Containerfile, with
    continuation lines joined."""
    stages, logical, buf = [], [], ""
    for line in (DEPLOY / "Containerfile").read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    for line in logical:
        instr, _, args = line.strip().partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            f = args.split()
            stages.append((f[0], f[2] if len(f) == 3 and f[1].upper() == "AS" else None, []))
        else:
            assert stages, f"{instr} before FROM"
            stages[-1][2].append((instr, args.strip()))
    return stages


def test_containerfile_is_multi_stage_debian_and_non_root():
    stages = containerfile_stages()
    assert len(stages) == 2, [s[:2] for s in stages]
    (b_base, b_name, build), (r_base, _, runtime) = stages
    assert b_base.endswith("debian:12") and b_name == "build"
    assert r_base.endswith("debian:12-slim")
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage sets no USER (it would run as root)"
    uid = users[-1].split(":")[0]
    assert uid not in ("0", "root") and int(uid) == PROXY_UID, users
    # the build stage installs the one shared build list, the runtime stage the
    # runtime list, and scripts/deps reads the same build list
    build_runs = " ".join(a for i, a in build if i == "RUN")
    runtime_runs = " ".join(a for i, a in runtime if i == "RUN")
    assert ("COPY", "scripts/packages-build.txt /tmp/packages-build.txt") in build
    assert "/tmp/packages-build.txt" in build_runs and "apt-get install" in build_runs
    assert ("COPY", "scripts/packages-runtime.txt /tmp/packages-runtime.txt") in runtime
    assert "/tmp/packages-runtime.txt" in runtime_runs
    assert "packages-build.txt" in (SCRIPTS / "deps").read_text()
    assert "-Dtests=false" in build_runs and "meson install" in build_runs
    # no compiler in the runtime image: it installs nothing from the build list
    # (setcap's package aside, which it removes again)
    build_pkgs = set(_packages(SCRIPTS / "packages-build.txt"))
    assert not build_pkgs & set(runtime_runs.split())
    assert "setcap cap_net_admin=ep /usr/sbin/sluice-proxy" in runtime_runs
    assert "apt-get purge -y --auto-remove libcap2-bin" in runtime_runs
    assert "-perm /6000" in runtime_runs


def test_containerfile_copies_what_exists_and_what_the_build_needs(installed):
    stages = containerfile_stages()
    copied = set()
    for _, _, instrs in stages:
        for instr, args in instrs:
            if instr != "COPY":
                continue
            words = args.split()
            if words[0].startswith("--from="):
                # from the build stage's `meson install --prefix=/usr --destdir /out`:
                # the same files our install has under its own prefix
                src = words[1]
                assert src.startswith("/out/usr/"), src
                rel = src[len("/out/usr/"):]
                assert installed.path(f"{installed.prefix}/{rel}").exists(), src
                continue
            for src in words[:-1]:
                assert (ROOT / src).exists(), f"COPY {src}: not in the tree"
                copied.add(src.rstrip("/"))
    # every directory the top-level meson.build descends into outside the tests
    top = (ROOT / "meson.build").read_text().split("if get_option('tests')")[0]
    for d in re.findall(r"subdir\('([^']+)'\)", top):
        assert d in copied, f"meson.build needs {d}/, the Containerfile does not copy it"
    for f in ("meson.build", "meson_options.txt"):
        assert f in copied
    bins = [w for _, _, i in stages for x, a in i if x == "COPY" for w in a.split()]
    assert "/out/usr/sbin/" in bins and "/out/usr/bin/" in bins


# ------------------------------------------------------------------ Kubernetes: static

def load_k8s(name):
    return yaml.safe_load((K8S / name).read_text())


def pod_spec():
    return load_k8s("pod.yaml")["spec"]


def container(spec, name):
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def flag_value(argv, flag):
    i = argv.index(flag)
    return argv[i + 1]


def test_deployment_runs_the_pod_of_pod_yaml():
    dep = load_k8s("deployment.yaml")
    pod = load_k8s("pod.yaml")
    assert dep["kind"] == "Deployment" and pod["kind"] == "Pod"
    assert dep["spec"]["template"]["spec"] == pod["spec"]
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert dep["spec"]["template"]["metadata"]["labels"] == pod["metadata"]["labels"]


def test_pod_security_contexts():
    spec = pod_spec()
    assert spec["automountServiceAccountToken"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    inits = [c["name"] for c in spec["initContainers"]]
    assert inits == ["sluice-netsetup", "sluice-proxy"], "netsetup must run before the proxy"

    ns = container(spec, "sluice-netsetup")
    sc = ns["securityContext"]
    assert ns["command"][:2] == ["/usr/sbin/sluice-netsetup", "pod"]
    assert sc["runAsUser"] == 0 and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "restartPolicy" not in ns, "the netsetup init container must run once and exit"

    px = container(spec, "sluice-proxy")
    sc = px["securityContext"]
    assert px["restartPolicy"] == "Always"        # native sidecar
    assert sc["runAsUser"] == PROXY_UID and sc["runAsGroup"] == PROXY_UID
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN"]}
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # escalation only through the image's file capability, bounded by NET_ADMIN
    assert sc["allowPrivilegeEscalation"] is True

    wl = container(spec, "sandbox")
    sc = wl["securityContext"]
    assert sc["runAsUser"] == WORKLOAD_UID and sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_ports_probes_and_policy_mount_agree():
    spec = pod_spec()
    ns_cmd = container(spec, "sluice-netsetup")["command"]
    px = container(spec, "sluice-proxy")
    args = px["args"]
    # the rules let out the proxy's UID, and send traffic to its ports
    assert int(flag_value(ns_cmd, "--proxy-uid")) == px["securityContext"]["runAsUser"]
    assert flag_value(args, "--listen") == f"127.0.0.1:{flag_value(ns_cmd, '--proxy-port')}"
    assert flag_value(args, "--dns-listen") == f"127.0.0.1:{flag_value(ns_cmd, '--dns-port')}"
    metrics = int(flag_value(ns_cmd, "--metrics-port"))
    assert metrics == 15090
    assert flag_value(args, "--metrics") == f"0.0.0.0:{metrics}"   # the kubelet probes it
    (port,) = px["ports"]
    assert (port["name"], port["containerPort"], port["protocol"]) == ("metrics", metrics,
                                                                       "TCP")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert px[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    # the policy: the ConfigMap's directory (no subPath, or updates never arrive)
    policy = flag_value(args, "--policy")
    mounts = {m["name"]: m for m in px["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    pm = mounts["policy"]
    assert "subPath" not in pm and pm["readOnly"] is True
    assert os.path.dirname(policy) == pm["mountPath"]
    assert vols["policy"]["configMap"]["name"] == "sluice-policy"
    # the control socket lives on a writable volume (the root filesystem is not)
    control = flag_value(args, "--control")
    assert any(control.startswith(m["mountPath"] + "/") and "emptyDir" in vols[n]
               for n, m in mounts.items())
    assert flag_value(args, "--log") == "-"
    # nothing of the pod mounts the policy, the socket or the CA key into the
    # workload: it gets the CA's certificate alone
    assert not container(spec, "sandbox").get("env")
    assert {m["name"] for m in container(spec, "sandbox")["volumeMounts"]} == {"tmp", "ca-cert"}
    assert vols["ca-cert"]["secret"]["items"] == [{"key": "ca.pem", "path": "ca.pem",
                                                    "mode": 0o444}]
    ca = mounts["ca"]
    assert flag_value(args, "--ca-cert") == ca["mountPath"] + "/ca.pem"
    assert flag_value(args, "--ca-key") == ca["mountPath"] + "/ca.key"
    assert vols["ca"]["secret"]["secretName"] == vols["ca-cert"]["secret"]["secretName"]


def test_kustomization_generates_the_configmaps_the_pod_uses():
    k = load_k8s("kustomization.yaml")
    assert k["resources"] == ["deployment.yaml"]
    assert k["generatorOptions"]["disableNameSuffixHash"] is True
    gens = {g["name"]: g for g in k["configMapGenerator"]}
    assert gens["sluice-policy"]["files"] == ["policy.yaml"]
    # kustomize reads no file outside this directory: a copy, kept identical here
    assert (K8S / "policy.yaml").read_bytes() == (ROOT / "config/example.yaml").read_bytes()
    literals = dict(lit.split("=", 1) for lit in gens["sluice-settings"]["literals"])
    spec = pod_spec()
    px = container(spec, "sluice-proxy")
    assert os.path.basename(flag_value(px["args"], "--policy")) == "policy.yaml"
    for env in px["env"]:
        ref = env.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            assert ref["key"] in literals, ref
            assert ref["name"] in gens
    for v in spec["volumes"]:
        if "configMap" in v:
            assert v["configMap"]["name"] in gens


def test_kubectl_kustomize_renders_the_same_pod():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (it is not a Debian package)")
    r = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    docs = {d["kind"] + "/" + d["metadata"]["name"]: d for d in yaml.safe_load_all(r.stdout)}
    assert set(docs) == {"ConfigMap/sluice-policy", "ConfigMap/sluice-settings",
                         "Deployment/sandbox"}
    assert docs["ConfigMap/sluice-policy"]["data"]["policy.yaml"] == \
        (ROOT / "config/example.yaml").read_text()
    assert docs["Deployment/sandbox"]["spec"]["template"]["spec"] == pod_spec()


# ------------------------------------------------------------------ Kubernetes: run

class SecretVolume:
    """A Secret volume: its files, as the kubelet writes them, in ROOT."""

    def __init__(self, root):
        self.root = root


class ConfigMapVolume:
    """A ConfigMap volume as the kubelet writes it: DIR/..<timestamp>/<key>,
    DIR/..data -> ..<timestamp>, DIR/<key> -> ..data/<key>. update() swaps it the
    kubelet's way: a new timestamped directory, a ..data_tmp symlink renamed over
    ..data (atomic), the old directory removed."""

    def __init__(self, root, data, mode=0o444):
        self.root = root
        self.mode = mode
        self.n = 0
        root.mkdir(parents=True)
        root.chmod(0o755)
        self.current = self._write(data)
        os.symlink(self.current, root / "..data")
        for key in data:
            os.symlink(f"..data/{key}", root / key)

    def _write(self, data):
        self.n += 1
        name = time.strftime("..%Y_%m_%d_%H_%M_%S.") + f"{self.n:09d}"
        d = self.root / name
        d.mkdir()
        d.chmod(0o755)
        for key, value in data.items():
            (d / key).write_text(value)
            (d / key).chmod(self.mode)
        return name

    def update(self, data):
        new = self._write(data)
        tmp = self.root / "..data_tmp"
        os.symlink(new, tmp)
        os.rename(tmp, self.root / "..data")
        shutil.rmtree(self.root / self.current)
        self.current = new


def k8s_expand(argv, env):
    """$(VAR) references as the kubelet expands them in command and args."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                   lambda m: env.get(m.group(1), m.group(0)), a) for a in argv]


def map_path(arg, mapping):
    for src in sorted(mapping, key=len, reverse=True):
        if arg == src or arg.startswith(src.rstrip("/") + "/"):
            return str(mapping[src]) + arg[len(src.rstrip("/")):]
    return arg


def caps_proxy_binary(world, installed):
    """sluice-proxy as the image holds it: cap_net_admin=ep (the Containerfile's
    setcap). A sanitizer build gets ambient capabilities instead (None here): a
    program with file capabilities is not dumpable, and LeakSanitizer cannot
    work in a process that is not."""
    src = installed.prog("sluice-proxy")
    if is_sanitized(src) or not shutil.which("setcap"):
        return None
    d = world.tmp / f"image-{token()}"
    d.mkdir(mode=0o755)
    dst = d / "sluice-proxy"
    shutil.copy2(src, dst)
    subprocess.run(["setcap", "cap_net_admin=ep", str(dst)], check=True, timeout=10)
    return str(dst)


def setpriv_for(sc, file_caps, groups=()):
    """setpriv options that give a process what SECURITYCONTEXT gives a
    container: its UID/GID, the pod's supplementary GROUPS (its fsGroup), a
    bounding set of the added capabilities, no inherited ones, and
    no_new_privs unless privilege escalation is allowed. Without FILE_CAPS
    (see caps_proxy_binary), the added capabilities of a non-root UID come as
    ambient ones."""
    add = [c.lower() for c in sc.get("capabilities", {}).get("add", [])]
    assert sc["capabilities"].get("drop") == ["ALL"]
    opts = [f"--bounding-set=-all{''.join(',+' + c for c in add)}"]
    uid = sc["runAsUser"]
    if uid != 0:
        opts += [f"--reuid={uid}", f"--regid={sc.get('runAsGroup', uid)}",
                 f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"]
    if uid != 0 and add and not file_caps:
        caps = ",".join("+" + c for c in add)
        opts += [f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}"]
    else:
        opts += ["--inh-caps=-all"]
    if not sc.get("allowPrivilegeEscalation", True):
        opts.append("--no-new-privs")
    return ["setpriv", *opts, "--"]


@pytest.fixture(scope="module")
def k8s_pod(world, installed, pypi, github, san):
    """The pod of pod.yaml, run as the kubelet would run it, in a namespace of its
    own plugged into inet (its resolv.conf names the test DNS server, as a pod's
    names the cluster DNS)."""
    spec = pod_spec()
    meta = load_k8s("pod.yaml")["metadata"]
    kust = load_k8s("kustomization.yaml")
    settings = dict(lit.split("=", 1) for g in kust["configMapGenerator"]
                    if g["name"] == "sluice-settings" for lit in g["literals"])
    # the cluster's DNS service is the test world's DNS server here (unavoidable)
    settings["upstream-dns"] = ADDR.DNS4
    base = world.tmp / f"k8s-{token()}"
    base.mkdir(mode=0o755)
    policy_text = policy_for_world((K8S / "policy.yaml").read_text())
    fs_group = spec["securityContext"].get("fsGroup")
    groups = (fs_group,) if fs_group else ()
    # the sluice-ca Secret, made as the manifest's comment says
    ca_dir = base / "ca-made"
    (base / "ca-policy.yaml").write_text(policy_text)
    r = subprocess.run([installed.prog("sluicectl"), "ca", "init", str(ca_dir), "--policy",
                        str(base / "ca-policy.yaml")], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r
    name = world.add_ns("kpod", connect=True)
    try:
        # volumes: the ConfigMap as the kubelet mounts it, emptyDirs owned by the pod;
        # a Secret's files root-owned, group fsGroup, with the modes the manifest asks
        vols = {}
        for v in spec["volumes"]:
            d = base / v["name"]
            if "configMap" in v:
                assert v["configMap"]["name"] == "sluice-policy"
                vols[v["name"]] = ConfigMapVolume(d, {"policy.yaml": policy_text},
                                                  v["configMap"]["defaultMode"])
            elif "secret" in v:
                sec = v["secret"]
                assert sec["secretName"] == "sluice-ca"
                d.mkdir(mode=0o755)
                items = sec.get("items") or [{"key": k, "path": k} for k in ("ca.pem", "ca.key")]
                for it in items:
                    shutil.copyfile(ca_dir / it["key"], d / it["path"])
                    os.chown(d / it["path"], 0, fs_group or 0)
                    os.chmod(d / it["path"], it.get("mode", sec.get("defaultMode", 0o644)))
                vols[v["name"]] = SecretVolume(d)
            else:
                d.mkdir(mode=0o755)
                vols[v["name"]] = d

        def paths(c):
            m = {"/usr/sbin/": installed.path(installed.sbindir)}
            for vm in c.get("volumeMounts", []):
                v = vols[vm["name"]]
                m[vm["mountPath"]] = v.root if isinstance(v, (ConfigMapVolume, SecretVolume)) else v
                if not isinstance(v, (ConfigMapVolume, SecretVolume)):
                    os.chown(v, c["securityContext"]["runAsUser"],
                             c["securityContext"].get("runAsGroup", 0))
            return m

        def env_of(c):
            env = {}
            for e in c.get("env", []):
                src = e.get("valueFrom", {})
                if "configMapKeyRef" in src:
                    env[e["name"]] = settings[src["configMapKeyRef"]["key"]]
                elif "fieldRef" in src:
                    assert src["fieldRef"]["fieldPath"] == "metadata.name"
                    env[e["name"]] = meta["name"]
                else:
                    env[e["name"]] = e["value"]
            return env

        # 1. the init container, with NET_ADMIN and nothing else
        init = container(spec, "sluice-netsetup")
        cmd = [map_path(a, paths(init)) for a in init["command"] + init.get("args", [])]
        nocaps = dict(init["securityContext"], capabilities={"drop": ["ALL"]})
        r = world.run(name, [*setpriv_for(nocaps, False), *cmd], nsenter=True)
        assert r.returncode == 3 and "CAP_NET_ADMIN" in r.stderr, r   # it needs NET_ADMIN
        r = world.run(name, [*setpriv_for(init["securityContext"], False), *cmd],
                      nsenter=True)
        assert r.returncode == 0, r
        assert "table inet sluice" in world.run(name, ["nft", "list", "tables"],
                                                check=True).stdout

        # 2. the proxy sidecar, as UID 1337
        px = container(spec, "sluice-proxy")
        binary = caps_proxy_binary(world, installed)
        argv = k8s_expand(px["command"] + px["args"], env_of(px))
        argv = [map_path(a, paths(px)) for a in argv]
        if binary:
            argv[0] = binary
        supported = proxy_flags(argv[0])
        argv = [argv[0], *known_proxy_args(argv[1:], supported)]
        # the one change the test world needs: its servers' certificates come from
        # the test CA, not from the public roots the image trusts
        argv += ["--upstream-ca", str(world.ca_cert)]
        proc = world.spawn(name, [*setpriv_for(px["securityContext"], bool(binary), groups),
                                  *argv],
                           name="k8s-sluice-proxy", nsenter=True, env=san.env())
        wait_serving(proc)

        wl = container(spec, "sandbox")
        yield type("Pod", (), dict(
            name=name, proxy=proc, policy=vols["policy"], policy_text=policy_text,
            supported=supported, addr=world.links[name].addr4, file_caps=bool(binary),
            workload=setpriv_for(wl["securityContext"], False, groups),
            workload_ca=map_path("/etc/sluice/ca/ca.pem", paths(wl))))
    finally:
        world.remove_ns(name)


def workload_curl(world, pod, url, *args, max_time=5):
    """curl as the sandbox container runs: UID 1000, no capabilities, no_new_privs;
    through `ip netns exec`, so the pod's resolv.conf applies."""
    argv = [*pod.workload, "curl", "-sS", "--max-time", str(max_time), "--cacert",
            str(world.ca_cert), *args, url]
    return world.run(pod.name, argv, timeout=max_time + 5)


def nginx_saw(world, site):
    return [q for q in world.nginx_requests() if q["site"] == site]


def test_pod_processes_run_as_the_manifest_says(world, k8s_pod):
    status = Path(f"/proc/{k8s_pod.proxy.pid}/status").read_text()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
    assert set(uids) == {str(PROXY_UID)} and set(gids) == {str(PROXY_UID)}
    bounding = int(re.search(r"^CapBnd:\s+(\w+)$", status, re.M).group(1), 16)
    assert bounding == 1 << 12, f"bounding set {bounding:#x}: only CAP_NET_ADMIN"
    r = world.run(k8s_pod.name, [*k8s_pod.workload, "grep", "-E", "^(Uid|CapEff|CapBnd|NoNewPrivs)",
                                 "/proc/self/status"], check=True)
    fields = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert fields["Uid"].split() == [str(WORKLOAD_UID)] * 4
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"


def test_pod_workload_reaches_allowed_name_and_not_denied_one(world, k8s_pod, capture):
    world.nginx_reset()
    world.dns_reset()
    ok = workload_curl(world, k8s_pod, "https://pypi.org/")
    assert ok.returncode == 0 and ok.stdout == "hello from pypi.org\n", ok
    reqs = wait_for(lambda: nginx_saw(world, "pypi.org"), 3.0, what="nginx log for pypi.org")
    # the proxy made the connection: from the pod's address, by SNI
    assert [(q["remote"], q["sni"]) for q in reqs] == [(k8s_pod.addr, "pypi.org")]
    # a name no rule allows: NXDOMAIN from the proxy, never asked upstream
    bad = workload_curl(world, k8s_pod, "https://www.example.test/")
    assert bad.returncode == 6, bad             # curl: could not resolve host
    # dialled by address anyway: the TLS alert, and nothing reaches the server
    bad = workload_curl(world, k8s_pod, "https://www.example.test/", "--resolve",
                        f"www.example.test:443:{ADDR.WWW4}")
    assert bad.returncode != 0
    assert "unrecognized name" in bad.stderr or "alert" in bad.stderr, bad.stderr
    # and the workload cannot go around the proxy: raw TCP to the capture server
    raw = workload_curl(world, k8s_pod, f"http://{ADDR.CAPTURE4}:8080/", "-f", max_time=3)
    assert raw.returncode != 0
    # IPv6: no [::1] listener in the manifest, so v6 TCP fails closed, at once
    t0 = time.monotonic()
    v6 = workload_curl(world, k8s_pod, "https://pypi.org/", "-6", "--resolve",
                       f"pypi.org:443:[{ADDR.WWW6}]")
    assert v6.returncode != 0 and time.monotonic() - t0 < 2, v6
    assert nginx_saw(world, "www.example.test") == []
    assert len(nginx_saw(world, "pypi.org")) == 1
    assert not [q for q in world.dns_queries() if q["qname"] == "www.example.test"]
    assert world.capture_records() == []
    assert world.inet_counters()["to_capture"] == 0
    log = proxy_records(k8s_pod.proxy.log())
    assert [r for r in log if r.get("event") == "flow_start" and r.get("host") == "pypi.org"]
    assert [r for r in log if r.get("event") == "deny" and r.get("host") == "www.example.test"
            and r.get("reason") == "not_allowlisted"]
    assert all(r.get("sandbox") == "sandbox" for r in log)     # --id $(POD_NAME)


def test_pod_workload_request_is_inspected_through_the_sidecar(world, k8s_pod):
    """The shipped policy's inspect rule, from the workload (UID 1000) trusting
    the CA certificate its volume holds: GET on an allowed path reaches the
    server, a POST gets a 403 from the proxy inside TLS and never leaves."""
    world.nginx_reset()
    ok = workload_curl(world, k8s_pod, "https://api.github.com/repos/x/y", "--cacert",
                       k8s_pod.workload_ca)
    assert ok.returncode == 0 and ok.stdout == "hello from api.github.com\n", ok
    bad = workload_curl(world, k8s_pod, "https://api.github.com/repos/x/y", "--cacert",
                        k8s_pod.workload_ca, "-X", "POST", "-i")
    assert "HTTP/1.1 403" in bad.stdout and "X-Sluice-Reason: method_not_allowed" in bad.stdout
    assert [q["request"] for q in nginx_saw(world, "api.github.com")] == \
        ["GET /repos/x/y HTTP/1.1"]
    reqs = [r for r in proxy_records(k8s_pod.proxy.log()) if r.get("event") == "request"]
    assert [(r["method"], r["status"], r["verdict"]) for r in reqs[-2:]] == \
        [("GET", 200, "allow"), ("POST", 403, "deny")]
    # the key is the proxy's alone: the workload's volume holds the certificate only
    spec = pod_spec()
    wl_vols = {m["name"] for m in container(spec, "sandbox")["volumeMounts"]}
    for v in spec["volumes"]:
        if v["name"] in wl_vols and "secret" in v:
            assert [i["key"] for i in v["secret"]["items"]] == ["ca.pem"]
    r = world.run(k8s_pod.name, [*k8s_pod.workload, "cat",
                                 str(Path(k8s_pod.workload_ca).with_name("ca.key"))])
    assert r.returncode != 0


def test_pod_configmap_symlink_swap_is_reloaded(world, k8s_pod):
    before = k8s_pod.policy_text
    v2 = before.replace("  - domain: pypi.org ", "  - domain: www.example.test ", 1)
    assert v2 != before
    reloads = len([r for r in proxy_records(k8s_pod.proxy.log()) if r["event"] == "reload"])
    try:
        k8s_pod.policy.update({"policy.yaml": v2})
        wait_for(lambda: workload_curl(world, k8s_pod, "https://www.example.test/",
                                       max_time=2).returncode == 0, 10.0,
                 what="the swapped ConfigMap allowing www.example.test")
        r = workload_curl(world, k8s_pod, "https://www.example.test/")
        assert r.stdout == "hello from www.example.test\n"
        assert workload_curl(world, k8s_pod, "https://pypi.org/").returncode != 0
        recs = [r for r in proxy_records(k8s_pod.proxy.log()) if r["event"] == "reload"]
        assert len(recs) == reloads + 1 and recs[-1]["verdict"] == "allow"
        assert k8s_pod.proxy.alive()
    finally:
        k8s_pod.policy.update({"policy.yaml": before})
    wait_for(lambda: workload_curl(world, k8s_pod, "https://pypi.org/",
                                   max_time=2).returncode == 0, 10.0,
             what="the ConfigMap swapped back")


def test_kubelet_probe_reaches_the_metrics_port(world, k8s_pod, netns):
    """The kubelet probes from outside the pod, at the pod's address."""
    kubelet = netns("kubel")
    url = f"http://{k8s_pod.addr}:15090/healthz"
    r = world.run(kubelet, ["curl", "-sS", "--max-time", "3", "-w", " %{http_code}", url],
                  timeout=10)
    assert r.returncode == 0 and re.fullmatch(r"ok [0-9a-f]{12}\n 200", r.stdout), r
    # the workload still cannot reach that port on loopback
    r = world.run(k8s_pod.name, [*k8s_pod.workload, "curl", "-sS", "--max-time", "2",
                                 "http://127.0.0.1:15090/healthz"], timeout=10)
    assert r.returncode == 7, r                 # refused


# ------------------------------------------------------------------ systemd: static

def parse_unit(text, unit=None):
    """{section: [(key, value)]} of a unit file, continuation lines joined; with
    UNIT, TEXT is a drop-in applied on top of it (an empty value resets a list)."""
    out = {k: list(v) for k, v in (unit or {}).items()}
    section, buf = None, ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip()[0] in "#;"):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        line, buf = (buf + line.strip()).strip(), ""
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, [])
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if value == "":
            out[section] = [(k, v) for k, v in out[section] if k != key]
        else:
            out[section].append((key, value))
    return out


def unit_get(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def unit_one(unit, section, key):
    (v,) = unit_get(unit, section, key)
    return v


def installed_unit(installed, name):
    return parse_unit(installed.path(f"{installed.unitdir}/{name}").read_text())


def test_unit_files_have_the_sandboxing(installed):
    ns = installed_unit(installed, "sluice-netsetup@.service")
    assert unit_one(ns, "Service", "Type") == "oneshot"
    assert unit_one(ns, "Service", "RemainAfterExit") == "yes"
    assert unit_one(ns, "Service", "ExecStart") == \
        f"{installed.sbindir}/sluice-netsetup up %i $SLUICE_NETSETUP_ARGS"
    assert unit_one(ns, "Service", "ExecStop") == f"{installed.sbindir}/sluice-netsetup down %i"
    assert unit_one(ns, "Service", "StandardOutput") == "truncate:/run/sluice-%i.env"
    assert set(unit_one(ns, "Service", "CapabilityBoundingSet").split()) == {
        "CAP_NET_ADMIN", "CAP_SYS_ADMIN"}
    # its bind mounts under /run/netns must reach the host: no mount namespace
    for key in ("ProtectSystem", "PrivateTmp", "ProtectHome", "PrivateDevices",
                "ProtectKernelTunables", "RestrictNamespaces"):
        assert not unit_get(ns, "Service", key), key

    px = installed_unit(installed, "sluice-proxy@.service")
    assert unit_one(px, "Unit", "Requires") == "sluice-netsetup@%i.service"
    assert unit_one(px, "Unit", "After") == "sluice-netsetup@%i.service"
    s = dict(px["Service"])
    assert s["DynamicUser"] == "yes" and "User" not in s
    assert s["AmbientCapabilities"] == "CAP_NET_ADMIN"
    assert s["CapabilityBoundingSet"] == "CAP_NET_ADMIN"
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
    assert s["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"]
    assert s["SystemCallFilter"].split()[0] == "@system-service"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "/run/sluice-%i.env" in unit_get(px, "Service", "EnvironmentFile")
    exec_start = s["ExecStart"]
    assert "--policy /etc/sluice/%i.yaml" in exec_start
    assert "--listen ${proxy_listen} --dns-listen ${dns_listen}" in exec_start


def test_systemd_analyze_verify_passes(installed, tmp_path):
    """The installed units, with their paths pointing into the install."""
    for name in ("sluice-netsetup@.service", "sluice-proxy@.service"):
        text = installed.path(f"{installed.unitdir}/{name}").read_text()
        text = text.replace(f"{installed.prefix}/", f"{installed.dest}{installed.prefix}/")
        (tmp_path / name).write_text(text)
    for name in ("sluice-netsetup@.service", "sluice-proxy@.service"):
        r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"))
        assert r.returncode == 0 and r.stderr.strip() == "", (name, r.stderr)
    # and it does fail on a broken unit: a command that is not there
    broken = tmp_path / "sluice-proxy@.service"
    broken.write_text(broken.read_text().replace(f"{installed.dest}{installed.prefix}/sbin/"
                                                 "sluice-proxy", "/nonexistent/sluice-proxy"))
    r = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "/nonexistent/sluice-proxy" in r.stderr


# ------------------------------------------------------------------ systemd: run

def read_env_file(path):
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        k, _, v = line.partition("=")
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        env[k.strip()] = v
    return env


def systemd_argv(line, instance, env):
    """An Exec line as systemd runs it: %i and %% expanded; ${VAR} replaced
    within its word; $VAR alone as a word split into words (none when empty)."""
    line = line.replace("%%", "\0").replace("%i", instance).replace("\0", "%")
    if line[:1] in "-@+!":
        line = line[1:]
    out = []
    for w in shlex.split(line):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            out += env.get(m.group(1), "").split()
            continue
        out.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                          lambda m: env.get(m.group(1), ""), w))
    return out


class HostService:
    """The two template units of instance NAME, run inside the world's `host` as
    systemd would run them. Paths map into the install and the world's temp dir:
    /etc/sluice, /run (with netsetup's state dir /run/sluice through
    SLUICE_RUN_DIR), /var/log/sluice."""

    def __init__(self, world, installed, san, instance, dropin=None, proxy_dropin=None):
        self.world, self.installed, self.san = world, installed, san
        self.instance = instance
        self.root = world.tmp / f"systemd-{token()}"
        for d in ("etc/sluice", "run/sluice", "log"):
            (self.root / d).mkdir(parents=True, mode=0o755)
        self.map = {
            f"{installed.prefix}/": f"{installed.dest}{installed.prefix}/",
            "/etc/sluice/": f"{self.root}/etc/sluice/",
            "/run/": f"{self.root}/run/",
            "/var/log/sluice/": f"{self.root}/log/",
        }
        self.netsetup = installed_unit(installed, "sluice-netsetup@.service")
        if dropin:
            self.netsetup = parse_unit(dropin, self.netsetup)
        self.proxy_unit = installed_unit(installed, "sluice-proxy@.service")
        if proxy_dropin:
            self.proxy_unit = parse_unit(proxy_dropin, self.proxy_unit)
        # %d: the credentials directory systemd makes for the service (LoadCredential)
        self.creds = Path(self.path(f"/run/credentials/sluice-proxy@{instance}.service"))
        self.tool = Netsetup(world, installed.prog("sluice-netsetup"), self.root / "run/sluice")
        self.tool.made.append(instance)
        self.proxy = None

    def path(self, p):
        p = p.replace("%i", self.instance)
        return map_path(p, {k.rstrip("/"): v.rstrip("/") for k, v in self.map.items()})

    def env(self, unit):
        env = {}
        for line in unit_get(unit, "Service", "Environment"):
            for w in shlex.split(line.replace("%i", self.instance)
                                 .replace("%d", str(self.creds))):
                k, _, v = w.partition("=")
                env[k] = v
        for f in unit_get(unit, "Service", "EnvironmentFile"):
            optional = f.startswith("-")
            p = Path(self.path(f.lstrip("-")))
            if not p.exists():
                assert optional, f"EnvironmentFile {f} is missing"
                continue
            env.update(read_env_file(p))
        return env

    def argv(self, unit, key, env):
        (line,) = unit_get(unit, "Service", key)
        return [self.path(a) for a in systemd_argv(line, self.instance, env)]

    def netsetup_run(self, key):
        env = self.env(self.netsetup)
        argv = self.argv(self.netsetup, key, env)
        r = self.world.run(self.world.host, argv, nsenter=True, timeout=20,
                           env=dict(os.environ, SLUICE_RUN_DIR=str(self.root / "run/sluice")))
        out = self.path(unit_one(self.netsetup, "Service", "StandardOutput")
                        .split(":", 1)[1])
        Path(out).write_text(r.stdout)          # truncate: the file holds this run's output
        return r

    def proxy_argv(self):
        """ExecStart, its RuntimeDirectory and LogsDirectory made for the unit's
        user as systemd makes them before it starts the command."""
        for key, base in (("RuntimeDirectory", "/run/"), ("LogsDirectory", "/var/log/")):
            d = Path(self.path(base + unit_one(self.proxy_unit, "Service", key)))
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, DYNAMIC_UID, DYNAMIC_UID)
        # LoadCredential=ID:PATH: a copy in the credentials directory, 0400, the
        # service's user's alone
        for cred in unit_get(self.proxy_unit, "Service", "LoadCredential"):
            ident, _, src = cred.replace("%i", self.instance).partition(":")
            self.creds.mkdir(parents=True, exist_ok=True, mode=0o500)
            os.chown(self.creds, DYNAMIC_UID, DYNAMIC_UID)
            dst = self.creds / ident
            shutil.copyfile(self.path(src), dst)
            os.chmod(dst, 0o400)
            os.chown(dst, DYNAMIC_UID, DYNAMIC_UID)
        env = self.env(self.proxy_unit)
        argv = self.argv(self.proxy_unit, "ExecStart", env)
        return [argv[0], *known_proxy_args(argv[1:], proxy_flags(argv[0]))]

    def start_proxy(self):
        """ExecStart as the unit's DynamicUser: an unprivileged UID with
        CAP_NET_ADMIN as its ambient and bounding set, no_new_privs; its
        directories made for that UID (proxy_argv)."""
        s = dict(self.proxy_unit["Service"])
        caps = ",".join("+" + c.lower().removeprefix("cap_")
                        for c in s["AmbientCapabilities"].split())
        bounding = ",".join("+" + c.lower().removeprefix("cap_")
                            for c in s["CapabilityBoundingSet"].split())
        wrap = ["setpriv", f"--reuid={DYNAMIC_UID}", f"--regid={DYNAMIC_UID}",
                "--clear-groups", f"--bounding-set=-all,{bounding}",
                f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}"]
        if s.get("NoNewPrivileges") == "yes":
            wrap.append("--no-new-privs")
        self.proxy = self.world.spawn(self.world.host, [*wrap, "--", *self.proxy_argv()],
                                      name=f"unit-proxy-{self.instance}", nsenter=True,
                                      env=self.san.env())
        wait_serving(self.proxy)
        return self.proxy

    def reload(self):
        env = dict(self.env(self.proxy_unit), MAINPID=str(self.proxy.pid))
        r = self.world.run(self.world.host, self.argv(self.proxy_unit, "ExecReload", env),
                           nsenter=True)
        assert r.returncode == 0, r

    def flow_log(self):
        p = Path(self.path(f"/var/log/sluice/{self.instance}/flows.jsonl"))
        return proxy_records(p.read_text()) if p.exists() else []

    def stop(self):
        if self.proxy and self.proxy.alive():
            assert self.proxy.stop(timeout=15) == 0     # SIGTERM: drain, exit 0
        r = self.netsetup_run("ExecStop")
        assert r.returncode == 0, r

    def cleanup(self):
        if self.proxy and self.proxy.alive():
            self.proxy.stop()
        self.tool.cleanup()


@pytest.fixture
def host_service(world, installed, san, pypi):
    made = []

    def make(role, dropin=None):
        # the shipped policy has an inspect rule: its CA comes the way the shipped
        # drop-in says (sluicectl ca init, then LoadCredential)
        inspect = installed.path(f"{installed.docdir}/examples/inspect-ca.conf").read_text()
        svc = HostService(world, installed, san, world.name(role), dropin, inspect)
        made.append(svc)
        (svc.root / "etc/sluice/sluice.env").write_text(f"SLUICE_UPSTREAM_DNS={ADDR.DNS4}\n")
        shipped = installed.path(f"{installed.docdir}/examples/example.yaml").read_text()
        policy = svc.root / f"etc/sluice/{svc.instance}.yaml"
        policy.write_text(policy_for_world(shipped))
        policy.chmod(0o644)
        (svc.root / "etc/sluice/ca").mkdir(mode=0o700)
        r = subprocess.run([installed.prog("sluicectl"), "ca", "init",
                            svc.path(f"/etc/sluice/ca/{svc.instance}"), "--policy", str(policy)],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r
        return svc
    yield make
    for svc in made:
        svc.cleanup()


def test_systemd_units_run_a_sandbox_in_host(world, host_service, capture):
    svc = host_service("sd1")
    r = svc.netsetup_run("ExecStart")
    assert r.returncode == 0, r
    env = read_env_file(svc.path(f"/run/sluice-{svc.instance}.env"))
    assert env["netns"] == svc.instance and env["proxy_listen"].endswith(":15001")
    px = svc.start_proxy()
    assert f"--listen {env['proxy_listen']}" in " ".join(px.argv)
    assert re.search(r"^Uid:\s+61999\s", Path(f"/proc/{px.pid}/status").read_text(), re.M)

    world.nginx_reset()
    world.dns_reset()

    def curl(url, *args):
        return world.run(svc.instance, ["curl", "-sS", "--max-time", "5", "--cacert",
                                        str(world.ca_cert), *args, url], timeout=10)
    ok = curl("https://pypi.org/")      # DNS through the proxy (resolv.conf: the gateway)
    assert ok.returncode == 0 and ok.stdout == "hello from pypi.org\n", ok
    reqs = wait_for(lambda: nginx_saw(world, "pypi.org"), 3.0, what="nginx log for pypi.org")
    assert reqs[0]["remote"] == ADDR.HOST4 and reqs[0]["sni"] == "pypi.org"
    bad = curl("https://www.example.test/", "--resolve", f"www.example.test:443:{ADDR.WWW4}")
    assert bad.returncode != 0
    assert nginx_saw(world, "www.example.test") == [] and world.capture_records() == []
    assert world.inet_counters() == {"from_sandboxes": 0, "to_capture": 0}
    log = wait_for(lambda: [r for r in svc.flow_log() if r.get("event") == "deny"], 3.0,
                   what="deny record in the unit's flow log")
    assert log[0]["host"] == "www.example.test" and log[0]["sandbox"] == svc.instance

    # systemctl reload: ExecReload after an edit of /etc/sluice/NAME.yaml
    policy = Path(svc.path(f"/etc/sluice/{svc.instance}.yaml"))
    text, n = re.subn(r"^(egress:.*\n)", r"\1  - domain: www.example.test\n",
                      policy.read_text(), count=1, flags=re.M)
    assert n == 1
    policy.write_text(text)
    svc.reload()
    wait_for(lambda: [r for r in svc.flow_log() if r.get("event") == "reload"], 5.0,
             what="reload record")
    ok = curl("https://www.example.test/")
    assert ok.returncode == 0 and ok.stdout == "hello from www.example.test\n", ok

    # systemctl stop: the proxy drains and exits 0, `down` removes the namespace
    svc.stop()
    assert svc.instance not in world.run(world.host, ["ip", "netns", "list"],
                                         check=True).stdout


def test_systemd_proxy_refuses_to_start_without_upstream_dns(world, host_service, installed):
    svc = host_service("sd2")
    shipped = installed.path(f"{installed.docdir}/examples/sluice.env")
    shutil.copy(shipped, svc.root / "etc/sluice/sluice.env")
    assert svc.netsetup_run("ExecStart").returncode == 0
    r = world.run(world.host, svc.proxy_argv(), nsenter=True, timeout=10)
    assert r.returncode == 2 and "--upstream-dns" in r.stderr, r
    assert unit_one(svc.proxy_unit, "Service", "RestartPreventExitStatus") == "2"
    svc.stop()


def test_systemd_vm_tap_dropin_attaches_the_tap(world, installed, host_service, netns,
                                                capture):
    """The VM example: a tap the VMM made (a veth end here, as in test_netsetup's
    attach tests), adopted by the vm-tap.conf drop-in, the guest a namespace."""
    vm = netns("vm", connect=False)
    tap = f"tap{token()[:6]}"
    world.veth(world.host, vm, tap, "eth0")
    try:
        # the drop-in as installed, with the operator's one edit: the tap's name
        shipped = installed.path(f"{installed.docdir}/examples/vm-tap.conf").read_text()
        svc = host_service("sd3", dropin=shipped.replace("@IFACE@", tap))
        assert "attach" in unit_one(svc.netsetup, "Service", "ExecStart")
        r = svc.netsetup_run("ExecStart")
        assert r.returncode == 0, r
        env = read_env_file(svc.path(f"/run/sluice-{svc.instance}.env"))
        assert env["host_if"] == tap and env["netns"] == ""
        # the guest, configured from what netsetup printed
        gw = env["gateway_addr"].split("/")[0]
        world.run(vm, ["ip", "addr", "add", env["sandbox_addr"], "dev", "eth0"], check=True)
        world.run(vm, ["ip", "route", "add", "default", "via", gw], check=True)
        world.write_resolv_conf(vm, [ADDR.DNS4])     # any resolver: DNS goes to the proxy
        svc.start_proxy()
        world.nginx_reset()
        ok = world.run(vm, ["curl", "-sS", "--max-time", "5", "--cacert", str(world.ca_cert),
                            "https://pypi.org/"], timeout=10)
        assert ok.returncode == 0 and ok.stdout == "hello from pypi.org\n", ok
        bad = world.run(vm, ["curl", "-sS", "--max-time", "5", "--cacert", str(world.ca_cert),
                             "--resolve", f"www.example.test:443:{ADDR.WWW4}",
                             "https://www.example.test/"], timeout=10)
        assert bad.returncode != 0
        assert nginx_saw(world, "www.example.test") == []
        assert world.inet_counters() == {"from_sandboxes": 0, "to_capture": 0}
        svc.stop()
        # the tap is the VMM's: it stays, without sluice's address
        link = world.run(world.host, ["ip", "addr", "show", "dev", tap], check=True).stdout
        assert "inet " not in link
    finally:
        world.run(world.host, ["ip", "link", "del", tap])
