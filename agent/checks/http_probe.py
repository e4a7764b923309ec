"""The HTTP check's request (probes.py has the contract): one request with one deadline, in a worker thread.

Its own module so an agent imports the stdlib http.client (and the email package under it, ~0.8 MiB) only
when it runs its first HTTP check (probes.http_check imports it then).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.client import HTTPConnection, HTTPException, HTTPResponse
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pyconsul.agent.checks.probes import ACCEPT, USER_AGENT, TLSContexts, _reason
from pyconsul.agent.checks.schedule import BUF_SIZE, timeout_of
from pyconsul.agent.checks.spec import CheckSpec
from pyconsul.agent.flags import format_duration

if TYPE_CHECKING:
    import ssl

    from pyconsul.agent.checks.probes import Result


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
