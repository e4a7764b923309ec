"""py-consul 1.8.0's root conftest.py with ONE change: the fixture starts a `pyconsul agent` process instead of
a `hashicorp/consul` Docker container (conftest.py.orig is the upstream file, unchanged).

What is the same: the agent's configuration (ports.https/dns/grpc_tls = -1, raft_multiplier 1,
enable_script_checks, and for `acl_consul_instance` primary_datacenter + acl.enabled + an initial management
token), `-dev` and `-log-level trace`, the wait for a leader, the service-register probe, the fixture names and
what they yield, one fresh agent per test.
What differs, and why:
- one process on loopback instead of a container: `-bind` gets its own 127.x.y.z address (so gossip and server
  RPC keep Consul's default ports without colliding), HTTP listens on 127.0.0.1 because the tests build
  `Consul(port=...)` with the default host, on port 8500 when it is free (as inside the container, where some
  tests aim HTTP checks at http://localhost:8500, the agent itself), else on a free port; the JSON config goes
  in a file (-config-file) instead of the CONSUL_LOCAL_CONFIG environment variable of the Docker image;
- one version parameter, "pyconsul", whose reported version is 1.7.0 (the Consul whose behaviour pyconsul
  implements; `should_skip` compares against it) instead of the three Consul images;
- the startup probe (register `test-service`, wait until /v1/health/service lists it) does not fail the
  fixture when it never succeeds: without agent services every test would error before it ran, hiding
  which features work; the tests that need the feature fail on their own;
- the agent's log goes to its work directory (under the runner's PYCONSUL_INTEROP_WORKDIR) instead of ./logs;
  the agent is stopped by PID.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests
from requests import RequestException

CONSUL_VERSIONS = ["pyconsul"]
EMULATED_CONSUL_VERSION = "1.7.0"
PYCONSUL_ROOT = os.environ["PYCONSUL_ROOT"]  # the agents' PYTHONPATH, set by tests/interop/upstream_suites.py

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

_addresses = itertools.count(1)


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    if "CONSUL_HTTP_TOKEN" in os.environ:
        del os.environ["CONSUL_HTTP_TOKEN"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bind_address() -> str:
    """A loopback address of our own for gossip and server RPC: in the suite's 127.<net>/16 (the runner's
    PYCONSUL_INTEROP_NET), salted with our PID so concurrent runs start apart, skipping any address whose
    Consul ports (8300-8302) are taken."""
    net = os.environ.get("PYCONSUL_INTEROP_NET", "250")
    while True:
        n = (os.getpid() % 200) * 250 + next(_addresses)
        ip = f"127.{net}.{n // 250 % 256}.{n % 250 + 1}"
        if all(_free(ip, port, kind) for port in (8300, 8301, 8302)
               for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)):
            return ip


def _free(ip: str, port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent binds: TIME_WAIT is no obstacle
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def start_consul_container(version: str, acl_master_token: str | None = None):
    """
    Starts a pyconsul agent. If acl_master_token is None, ACL will be disabled
    for this server, otherwise it will be enabled and the master token will be
    set to the supplied token.

    Returns: a tuple of the process object and the HTTP port the instance is listening on
    """
    base_config = {
        "ports": {
            "https": -1,
            "dns": -1,
            "grpc_tls": -1,
        },
        "performance": {"raft_multiplier": 1},
        "enable_script_checks": True,
    }
    config = base_config
    # Extend the base config with required ACL fields if needed
    if acl_master_token:
        acl_config = {
            "primary_datacenter": "dc1",
            "acl": {"enabled": True, "tokens": {"initial_management": acl_master_token}},
        }
        config = {**base_config, **acl_config}

    workdir = tempfile.mkdtemp(prefix="agent-", dir=os.environ.get("PYCONSUL_INTEROP_WORKDIR"))
    config_file = os.path.join(workdir, "local.json")
    with open(config_file, "w", encoding="utf-8") as f:
        json.dump(config, f)
    # Consul's own port when it is free (one agent at a time): some tests aim HTTP checks at
    # http://localhost:8500, the agent itself inside upstream's container. An agent that exits at once (a port
    # taken between the probe and its bind, by some other process) is started again on other ports.
    http_port = 8500 if _free("127.0.0.1", 8500, socket.SOCK_STREAM) else _free_port()
    for attempt in range(3):
        proc, http_port = _start_agent(workdir, config_file, http_port if attempt == 0 else _free_port())
        if _wait_leader(proc, http_port):
            break
        exited = proc.poll() is not None  # by itself, at start-up: try again; else it timed out
        stop_agent(proc)
        if not exited or attempt == 2:
            raise TimeoutError(f"pyconsul agent not ready (log: {workdir}/agent.log)")
    base_uri = f"http://127.0.0.1:{http_port}/v1/"

    # Additional check to ensure the agent is fully ready (not fatal: see the module docstring)
    for _ in range(10):
        try:
            requests.put(base_uri + "agent/service/register", json={"name": "test-service"}, timeout=2)
            response = requests.get(base_uri + "health/service/test-service", timeout=2)
            if response.status_code == 200 and response.json():
                requests.put(base_uri + "agent/service/deregister/test-service", timeout=2)
                return proc, http_port
        except (RequestException, ValueError):
            pass
        time.sleep(0.1)
    requests.put(base_uri + "agent/service/deregister/test-service", timeout=2)
    return proc, http_port


def _start_agent(workdir: str, config_file: str, http_port: int) -> tuple[subprocess.Popen, int]:
    log = open(os.path.join(workdir, "agent.log"), "ab")  # noqa: SIM115 -- closed with the process
    argv = [sys.executable, "-m", "pyconsul.agent", "agent", "-dev", "-client=127.0.0.1", "-log-level", "trace",
            f"-bind={_bind_address()}", f"-http-port={http_port}", f"-config-file={config_file}",
            f"-node=pyconsul-{uuid.uuid4().hex[:8]}"]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
                            env={**os.environ, "PYTHONPATH": PYCONSUL_ROOT})
    proc.log_file = log  # type: ignore[attr-defined]
    return proc, http_port


def _wait_leader(proc: subprocess.Popen, http_port: int) -> bool:
    """Wait for the agent to be ready: True once it has a leader, False if it exits or after 20 s."""
    base_uri = f"http://127.0.0.1:{http_port}/v1/"
    start_time = time.time()
    global_timeout = 20
    while True:
        if time.time() - start_time > global_timeout or proc.poll() is not None:
            return False
        time.sleep(0.1)
        try:
            response = requests.get(base_uri + "status/leader", timeout=2)
            if response.status_code == 200 and response.json():
                return True
        except (RequestException, ValueError):
            continue


def stop_agent(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    proc.log_file.close()  # type: ignore[attr-defined]


def get_consul_version(port: int) -> str:
    base_uri = f"http://127.0.0.1:{port}/v1/"
    response = requests.get(base_uri + "agent/self", timeout=10)
    response.raise_for_status()  # pyconsul reports its own version; the tests compare with Consul's
    return EMULATED_CONSUL_VERSION


def setup_and_teardown_consul(request, version, acl_master_token: str | None = None):
    # Start the agent, yield, stop it (its log stays in its work directory)
    proc, port = start_consul_container(version=version, acl_master_token=acl_master_token)
    try:
        version = get_consul_version(port)
        instance = ConsulInstance(proc, port, version)

        yield instance if acl_master_token is None else (instance, acl_master_token)
    finally:
        stop_agent(proc)


@pytest.fixture(params=CONSUL_VERSIONS)
def consul_instance(request):
    yield from setup_and_teardown_consul(request, version=request.param)


@pytest.fixture(params=CONSUL_VERSIONS)
def acl_consul_instance(request):
    acl_master_token = uuid.uuid4().hex
    yield from setup_and_teardown_consul(request, version=request.param, acl_master_token=acl_master_token)


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version
