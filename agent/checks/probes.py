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
import socket
import sys
import threading
import time
from concurrent.futures import Executor
from http.client import HTTPConnection, HTTPException, HTTPResponse
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

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


class _HTTPSConnection(HTTPConnection):
    """http.client's HTTPConnection over TLS (http.client defines its own HTTPSConnection only when ssl
    was importable when http.client itself was first imported, which in the agent it was not)."""

    default_port = 443

    def __init__(self, host: str, port: int | None, *, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if isinstance(e, ConnectionError) else e.strerror
    return str(e) or type(e).__name__


class HttpProbe:
    """One HTTP check request, run by `run()` in a worker thread; `abort()` (from any thread) ends it."""

    def __init__(self, spec: CheckSpec, tls: TLSContexts) -> None:
        self.spec = spec
        self.method = spec.method or "GET"
        self.timeout = timeout_of(spec)
        self._tls = tls
        self._lock = threading.Lock()
        self._conn: HTTPConnection | None = None
        self._aborted = False

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)

    def timed_out(self) -> Result:
        return "critical", (f"{self.method} {self.spec.http}: request timed out after "
                            f"{format_duration(self.timeout)} (Client.Timeout exceeded)")

    def run(self) -> Result:
        spec, method = self.spec, self.method
        url = spec.http
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            return "critical", f'parse "{url}": {e}'
        if parts.scheme not in ("http", "https"):
            return "critical", f'{method} "{url}": unsupported protocol scheme "{parts.scheme}"'
        if not parts.hostname:
            return "critical", f'{method} "{url}": no host in request URL'
        deadline = time.monotonic() + self.timeout
        conn: HTTPConnection
        if parts.scheme == "https":
            try:
                context = self._tls.get(spec.tls_skip_verify)
            except ImportError as e:  # a Python built without ssl
                return "critical", f'{method} "{url}": TLS is not available: {e}'
            conn = _HTTPSConnection(parts.hostname, port, timeout=self.timeout, context=context)
        else:
            conn = HTTPConnection(parts.hostname, port, timeout=self.timeout)
        with self._lock:
            if self._aborted:
                return self.timed_out()
            self._conn = conn
        try:
            return self._request(conn, parts.path or "/", parts.query, deadline)
        except (OSError, ValueError, EOFError, HTTPException) as e:
            if self._aborted or isinstance(e, TimeoutError):
                return self.timed_out()
            return "critical", f"{method} {url}: {_reason(e)}"
        finally:
            conn.close()

    def _request(self, conn: HTTPConnection, path: str, query: str, deadline: float) -> Result:
        spec, method = self.spec, self.method
        names = {k.lower() for k in spec.header}
        conn.connect()
        if self._aborted:
            return self.timed_out()
        conn.putrequest(method, path + (f"?{query}" if query else ""), skip_host="host" in names,
                        skip_accept_encoding=True)
        for name, values in spec.header.items():
            for value in values:
                conn.putheader(name, value)
        if "user-agent" not in names:
            conn.putheader("User-Agent", USER_AGENT)
        if "accept" not in names:
            conn.putheader("Accept", ACCEPT)
        conn.putheader("Connection", "close")
        body = spec.body.encode()
        if body and "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        self._settimeout(conn, deadline)
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = self._read_capped(conn, resp, deadline)
        status = f"{resp.status} {resp.reason}".strip()
        result = f"HTTP {method} {spec.http}: {status} Output: {data.decode('utf-8', 'replace')}"
        if 200 <= resp.status <= 299:
            return "passing", result
        if resp.status == 429:
            return "warning", result
        return "critical", result

    @staticmethod
    def _settimeout(conn: HTTPConnection, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline passed")
        if conn.sock is not None:
            conn.sock.settimeout(remaining)

    def _read_capped(self, conn: HTTPConnection, resp: HTTPResponse, deadline: float) -> bytes:
        """Up to BUF_SIZE bytes of the body; a body read that fails or runs out of time keeps what came."""
        data = bytearray()
        try:
            while len(data) < BUF_SIZE:
                self._settimeout(conn, deadline)
                chunk = resp.read1(BUF_SIZE - len(data))
                if not chunk:
                    break
                data += chunk
        except (OSError, ValueError, EOFError, HTTPException):
            pass
        return bytes(data)


async def http_check(spec: CheckSpec, executor: Executor, tls: TLSContexts) -> Result:
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
