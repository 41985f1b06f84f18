"""Fixtures for the sluice integration tests: the session-wide test world
(testworld.World) and throwaway namespaces. See README.md in this directory."""

import os
import shutil
from pathlib import Path

import pytest

import testworld

HERE = Path(__file__).resolve().parent
TOOLS = ("ip", "nft", "nginx", "dnsmasq", "openssl", "curl", "dig", "nc", "socat", "setpriv")


def _why_skip():
    if os.geteuid() != 0:
        return "integration tests need root (they create network namespaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (run scripts/deps)"
    return None


def pytest_configure(config):
    testworld.install_signal_handlers()
    config.addinivalue_line("markers", "root: needs root and the test-world tools")


def pytest_collection_modifyitems(config, items):
    why = _why_skip()
    for item in items:
        if HERE in Path(item.fspath).resolve().parents:
            item.add_marker(pytest.mark.root)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def root_baseline():
    """The root namespace's network state before any world exists."""
    return testworld.root_snapshot()


@pytest.fixture(scope="session")
def world(root_baseline):
    """The shared world: `inet` (dnsmasq, nginx, capture server) and `host`.
    Tests that change it (DNS records, sites) must put it back."""
    testworld.reap_stale()
    w = testworld.World()
    try:
        w.setup()
        yield w
    finally:
        w.teardown()
    after = testworld.root_snapshot()
    changed = [k for k in root_baseline if root_baseline[k] != after.get(k)]
    assert not changed, f"root namespace changed during the run: {changed}"


@pytest.fixture
def netns(world):
    """Factory for extra namespaces removed at the end of the test:
    netns(role=None, connect=True) -> name. With connect, the namespace is
    plugged into the exchange like `host` (world.links[name] has its addresses)."""
    made = []

    def make(role=None, connect=True):
        name = world.add_ns(role)
        made.append(name)
        if connect:
            world.connect_to_inet(name)
        return name

    yield make
    for name in reversed(made):
        world.remove_ns(name)


@pytest.fixture
def capture(world):
    """The world with the capture server's records and inet counters zeroed."""
    world.capture_reset()
    yield world


@pytest.fixture(scope="session")
def sluice_bin():
    """Path of a built sluice program: sluice_bin('sluicectl'). The build
    directory comes from SLUICE_BUILD (tests/run sets it), default build/."""
    build = Path(os.environ.get("SLUICE_BUILD", HERE.parents[1] / "build"))
    where = {"sluicectl": "ctl", "sluice-netsetup": "netsetup", "sluice-proxy": "proxy"}

    def path(name):
        p = build / where[name] / name
        if not p.exists():
            pytest.fail(f"{p} is not built (run: meson setup build && ninja -C build)")
        return str(p)

    return path
