"""The probes of interval checks: one HTTP request, one TCP connect, one script run -> (status, output).

Contract (Consul 1.7's check semantics; see README "Health checks"):
- HTTP: `method` (default GET), `header` (each value sent; a `Host` header sets the request's host),
  `body`, `tls_skip_verify`; User-Agent "Consul Health Check" and Accept "text/plain, text/*, */*" unless
  given; no keep-alive. 2xx passing, 429 warning, anything else critical. Redirects are NOT followed: a
  3xx is reported as itself (critical), so a check cannot be steered to another host (the
  CVE-2022-29153 class). At most BUF_SIZE bytes of the body are read (Consul reads the whole body and
  keeps its last 4 KiB; stopping early bounds the work a hostile or endless body can cause). Output:
  "HTTP GET <url>: 200 OK Output: <body>". The whole request (connect, headers, body) has one deadline,
  the check's timeout (default 10 s).
  The request runs in a worker thread (the stdlib http.client; no async HTTP client is a dependency).
  At the deadline the loop shuts the worker's socket down, so a target that drips bytes cannot hold a
  worker past it.
- TCP: connect, then close; passing "TCP connect <addr>: Success", else critical with the error.
- Script: `args` exec'd directly (no shell), stdin /dev/null, stdout and stderr captured together, the last
  BUF_SIZE bytes kept; exit 0 passing, 1 warning, anything else critical. It runs in its own process
  group (session); at the timeout (default 30 s) the whole group gets SIGKILL and the check is critical
  "Timed out (30s) running check". Nothing of it blocks the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
import sys
import threading
from concurrent.futures import Executor
from types import ModuleType
from typing import TYPE_CHECKING

from pyconsul.agent.checks.schedule import BUF_SIZE, cap_tail, timeout_of
from pyconsul.agent.checks.spec import CheckSpec
from pyconsul.agent.flags import format_duration

if TYPE_CHECKING:  # ssl is imported when an https check runs: `pyconsul agent` keeps OpenSSL out by default
    import ssl

GRPC_UNSUPPORTED = "gRPC check {target}: gRPC health checks are not supported by this agent (pyconsul)"
USER_AGENT = "Consul Health Check"
ACCEPT = "text/plain, text/*, */*"
Result = tuple[str, str]


class TLSContexts:
    """The two client TLS contexts HTTP checks use (verifying, and tls_skip_verify), built once, lazily, in
    a worker thread (loading the CA bundle is disk and CPU work)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ctx: dict[bool, ssl.SSLContext] = {}

    def get(self, skip_verify: bool) -> ssl.SSLContext:
        """A client context; ImportError when this Python has no TLS at all."""
        with self._lock:
            ctx = self._ctx.get(skip_verify)
            if ctx is None:
                ssl = load_ssl()
                ctx = ssl.create_default_context()
                if skip_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._ctx[skip_verify] = ctx
            return ctx


def load_ssl() -> ModuleType:
    """The ssl module, imported on first use. `pyconsul agent` starts with ssl marked unavailable (see
    agent/__init__.py: libssl stays out of an agent that speaks no TLS); an https check is the one thing
    here that needs it, so the marks are lifted and it is loaded then, and only then."""
    for name in ("ssl", "_ssl"):
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    return importlib.import_module("ssl")


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if isinstance(e, ConnectionError) else e.strerror
    return str(e) or type(e).__name__


async def http_check(spec: CheckSpec, executor: Executor, tls: TLSContexts) -> Result:
    from pyconsul.agent.checks.http_probe import HttpProbe  # lazy: http.client (+ email) only for HTTP checks

    probe = HttpProbe(spec, tls)
    loop = asyncio.get_running_loop()
    fut = loop.run_in_executor(executor, probe.run)
    try:
        return await asyncio.wait_for(asyncio.shield(fut), probe.timeout)
    except TimeoutError:
        probe.abort()
        return probe.timed_out()
    except asyncio.CancelledError:
        probe.abort()
        raise


def split_host_port(addr: str) -> tuple[str, int]:
    """Go's net.SplitHostPort for "host:port" and "[v6]:port"; ValueError with Go's wording."""
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0:
            raise ValueError(f"address {addr}: missing ']' in address")
        host, rest = addr[1:end], addr[end + 1:]
        if not rest.startswith(":"):
            raise ValueError(f"address {addr}: missing port in address")
        port = rest[1:]
    else:
        host, sep, port = addr.rpartition(":")
        if not sep:
            raise ValueError(f"address {addr}: missing port in address")
        if ":" in host:
            raise ValueError(f"address {addr}: too many colons in address")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'address {addr}: invalid port "{port}"')
    return host, int(port)


async def tcp_check(spec: CheckSpec) -> Result:
    addr = spec.tcp
    try:
        host, port = split_host_port(addr)
    except ValueError as e:
        return "critical", f"dial tcp {e}"
    loop = asyncio.get_running_loop()
    timeout = timeout_of(spec)
    try:
        async with asyncio.timeout(timeout):
            transport, _ = await loop.create_connection(asyncio.Protocol, host or "localhost", port)
    except TimeoutError:
        return "critical", f"dial tcp {addr}: i/o timeout"
    except OSError as e:
        return "critical", f"dial tcp {addr}: connect: {_reason(e)}"
    transport.close()
    return "passing", f"TCP connect {addr}: Success"


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def script_check(spec: CheckSpec) -> Result:
    timeout = timeout_of(spec)
    try:
        proc = await asyncio.create_subprocess_exec(
            *spec.args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except (OSError, ValueError) as e:
        return "critical", str(e)
    tail = bytearray()
    total = 0

    async def read_all() -> None:
        nonlocal total
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            total += len(chunk)
            tail.extend(chunk)
            if len(tail) > BUF_SIZE:
                del tail[:-BUF_SIZE]

    reader = asyncio.ensure_future(read_all())
    try:
        async with asyncio.timeout(timeout):
            await reader  # EOF: the script and everything it left holding its output are done
            code = await proc.wait()
    except TimeoutError:
        _kill_group(proc)
        reader.cancel()
        await proc.wait()
        msg = f"Timed out ({format_duration(timeout)}) running check"
        out = cap_tail(bytes(tail), total)
        return "critical", f"{msg}\n\n{out}" if out else msg
    finally:
        if proc.returncode is None:  # cancelled (the check was removed, or the agent stops)
            _kill_group(proc)
            reader.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 5.0)
    out = cap_tail(bytes(tail), total)
    if code == 0:
        return "passing", out
    if code == 1:
        return "warning", out
    return "critical", out
