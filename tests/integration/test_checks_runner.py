"""CheckRunner against real local targets on loopback: an HTTP server, open and closed TCP ports, scripts.
No agent process; every target is started by the test and gone at its end."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from pyconsul.agent.checks import probes
from pyconsul.agent.checks.parse import parse_check
from pyconsul.agent.checks.runner import CheckRunner
from pyconsul.agent.checks.schedule import BUF_SIZE, AliasCheckState
from pyconsul.agent.checks.spec import CheckSpec
from pyconsul.agent.errors import BadRequest

WAIT = 10.0


class Sink:
    def __init__(self) -> None:
        self.updates: list[tuple[str, str, str]] = []
        self._changed = asyncio.Event()

    def update_check(self, check_id: str, status: str, output: str) -> None:
        self.updates.append((check_id, status, output))
        self._changed.set()

    def of(self, check_id: str) -> list[tuple[str, str]]:
        return [(s, o) for c, s, o in self.updates if c == check_id]

    async def wait(self, check_id: str, n: int = 1, timeout: float = WAIT) -> tuple[str, str]:
        """The n-th result of `check_id`, waiting for it (deadline `timeout`)."""
        async with asyncio.timeout(timeout):
            while len(self.of(check_id)) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.of(check_id)[n - 1]


class Target:
    """A tiny HTTP/1.1 server on 127.0.0.1: /ok 200, /busy 429, /fail 500, /redirect 302 -> /landing,
    /slow (never answers), /big (1 MiB body), /echo (the request back)."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.handlers: set[asyncio.Task[object]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Target:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.handlers):
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)
        await self.server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = (await r.readuntil(b"\r\n\r\n")).decode()
            line, *hdrs = head.split("\r\n")
            method, path, _ = line.split(" ")
            headers = {h.split(":", 1)[0].lower(): h.split(":", 1)[1].strip() for h in hdrs if ":" in h}
            body = await r.readexactly(int(headers.get("content-length", "0")))
            self.hits[path] = self.hits.get(path, 0) + 1
            extra = ""
            if path == "/ok":
                code, reason, out = 200, "OK", b"all good"
            elif path == "/busy":
                code, reason, out = 429, "Too Many Requests", b"slow down"
            elif path == "/fail":
                code, reason, out = 500, "Internal Server Error", b"broken"
            elif path == "/redirect":
                code, reason, out, extra = 302, "Found", b"", f"Location: {self.url('/landing')}\r\n"
            elif path == "/slow":
                await asyncio.sleep(3600)  # a target that never answers (cancelled at __aexit__)
                return
            elif path == "/big":
                code, reason, out = 200, "OK", b"x" * (1 << 20)
            elif path == "/echo":
                code, reason, out = 200, "OK", f"{method} {headers} {body.decode()}".encode()
            else:
                code, reason, out = 404, "Not Found", b""
            w.write(f"HTTP/1.1 {code} {reason}\r\nContent-Length: {len(out)}\r\n{extra}Connection: close\r\n\r\n"
                    .encode() + out)
            await w.drain()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            w.close()
            self.handlers.discard(task)


def http(check_id: str, url: str, **kw: object) -> CheckSpec:
    return replace(CheckSpec(check_id=check_id, name=check_id, kind="http", http=url, interval=1.0), **kw)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


def test_http_status_mapping_redirects_and_caps() -> None:
    async def main() -> None:
        sink = Sink()
        async with Target() as t:
            r = CheckRunner(sink, rand=lambda: 0.0)
            r.start()
            for cid, path in [("ok", "/ok"), ("busy", "/busy"), ("fail", "/fail"), ("redir", "/redirect"),
                              ("big", "/big"), ("missing", "/nope")]:
                r.add(http(cid, t.url(path)))
            try:
                assert await sink.wait("ok") == ("passing", f"HTTP GET {t.url('/ok')}: 200 OK Output: all good")
                assert (await sink.wait("busy"))[0] == "warning"
                assert (await sink.wait("fail"))[0] == "critical"
                assert (await sink.wait("missing"))[0] == "critical"
                status, out = await sink.wait("redir")
                assert status == "critical" and "302 Found" in out
                assert t.hits.get("/landing", 0) == 0  # the redirect was not followed
                status, out = await sink.wait("big")
                assert status == "passing" and out.endswith("Output: " + "x" * BUF_SIZE)
                # the schedule goes on: a second round one interval later
                assert (await sink.wait("ok", 2))[0] == "passing"
            finally:
                await r.close()
    run(main)


def test_http_method_headers_body_and_timeout() -> None:
    async def main() -> None:
        sink = Sink()
        async with Target() as t:
            r = CheckRunner(sink, rand=lambda: 0.0)
            r.start()
            r.add(http("echo", t.url("/echo"), method="PUT", body="hello", header={"X-Probe": ("a",)}))
            r.add(http("slow", t.url("/slow"), timeout=0.3))
            loop = asyncio.get_running_loop()
            began = loop.time()
            try:
                status, out = await sink.wait("echo")
                assert status == "passing"
                assert "PUT" in out and "'x-probe': 'a'" in out and "'user-agent': 'Consul Health Check'" in out
                assert out.endswith(" hello")
                status, out = await sink.wait("slow")
                assert status == "critical" and "timed out after 300ms" in out
                assert loop.time() - began < 5.0  # the timeout, not the target, ended it
            finally:
                await r.close()
    run(main)


def test_http_connection_refused_is_critical() -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # bound, not listening: refused
            sink = Sink()
            r = CheckRunner(sink, rand=lambda: 0.0)
            r.start()
            r.add(http("down", f"http://127.0.0.1:{port}/"))
            r.add(http("scheme", "ftp://127.0.0.1/"))
            try:
                status, out = await sink.wait("down")
                assert status == "critical" and "refused" in out
                assert (await sink.wait("scheme")) == ("critical", 'GET "ftp://127.0.0.1/": unsupported protocol '
                                                                   'scheme "ftp"')
            finally:
                await r.close()
    run(main)


def test_tcp_open_and_closed_port() -> None:
    async def main() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        open_port = server.sockets[0].getsockname()[1]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed_port = s.getsockname()[1]
            sink = Sink()
            r = CheckRunner(sink, rand=lambda: 0.0)
            r.start()
            base = CheckSpec(check_id="x", name="x", kind="tcp", interval=1.0)
            r.add(replace(base, check_id="open", tcp=f"127.0.0.1:{open_port}"))
            r.add(replace(base, check_id="closed", tcp=f"127.0.0.1:{closed_port}"))
            r.add(replace(base, check_id="bad", tcp="127.0.0.1"))
            try:
                assert await sink.wait("open") == ("passing", f"TCP connect 127.0.0.1:{open_port}: Success")
                status, out = await sink.wait("closed")
                assert status == "critical" and out.startswith(f"dial tcp 127.0.0.1:{closed_port}: connect:")
                assert await sink.wait("bad") == ("critical", "dial tcp address 127.0.0.1: missing port in address")
            finally:
                await r.close()
                server.close()
                await server.wait_closed()
    run(main)


def script(check_id: str, *args: str, **kw: object) -> CheckSpec:
    return replace(CheckSpec(check_id=check_id, name=check_id, kind="script", args=args, interval=1.0), **kw)


def test_script_exit_codes_and_output() -> None:
    async def main() -> None:
        sink = Sink()
        r = CheckRunner(sink, rand=lambda: 0.0)
        r.start()
        r.add(script("zero", "/bin/sh", "-c", "echo fine; echo err >&2"))
        r.add(script("one", "/bin/sh", "-c", "exit 1"))
        r.add(script("two", "/bin/sh", "-c", "echo bad; exit 2"))
        r.add(script("noexec", "/nonexistent/check"))
        r.add(script("chatty", "/bin/sh", "-c", "head -c 10000 /dev/zero | tr '\\0' y"))
        r.add(script("literal", "/bin/echo", "$HOME; rm -rf /"))  # no shell: the argument is just printed
        try:
            assert await sink.wait("zero") == ("passing", "fine\nerr\n")
            assert await sink.wait("one") == ("warning", "")
            assert await sink.wait("two") == ("critical", "bad\n")
            status, out = await sink.wait("noexec")
            assert status == "critical" and "No such file" in out
            status, out = await sink.wait("chatty")
            assert status == "passing" and out == f"Captured {BUF_SIZE} of 10000 bytes\n...\n" + "y" * BUF_SIZE
            assert await sink.wait("literal") == ("passing", "$HOME; rm -rf /\n")
        finally:
            await r.close()
    run(main)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_script_timeout_kills_its_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        sink = Sink()
        r = CheckRunner(sink, rand=lambda: 0.0)
        r.start()
        # the child leaves a grandchild behind: both are in the check's process group
        r.add(script("hang", "/bin/sh", "-c", f"sleep 60 & echo $! > {pidfile}; echo started; wait",
                     timeout=0.5))
        loop = asyncio.get_running_loop()
        began = loop.time()
        ticks = 0

        async def ticker() -> None:  # the loop stays responsive while the script runs
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)  # a probe, not a wait: counts the loop's turns while the script runs

        tick = asyncio.ensure_future(ticker())
        try:
            status, out = await sink.wait("hang")
            assert status == "critical"
            assert out == "Timed out (500ms) running check\n\nstarted\n"
            assert loop.time() - began < 5.0
            assert ticks > 10
            pid = int(pidfile.read_text())
            await _until(lambda: not _alive(pid), 5.0, "the grandchild to be killed")
        finally:
            tick.cancel()
            await r.close()
    run(main)


def test_removing_a_running_script_kills_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        sink = Sink()
        r = CheckRunner(sink, rand=lambda: 0.0)
        r.start()
        r.add(script("long", "/bin/sh", "-c", f"echo $$ > {pidfile}; sleep 60"))
        try:
            await _until(lambda: pidfile.exists() and pidfile.read_text().strip() != "", 5.0, "the script")
            pid = int(pidfile.read_text())
            r.remove("long")
            assert r.checks() == []
            await _until(lambda: not _alive(pid), 5.0, "the script to be killed")
            assert sink.of("long") == []
        finally:
            await r.close()
    run(main)


def test_ttl_expiry_and_updates() -> None:
    async def main() -> None:
        sink = Sink()
        r = CheckRunner(sink)
        r.start()
        r.add(CheckSpec(check_id="t", name="t", kind="ttl", ttl=0.3))
        try:
            assert await sink.wait("t") == ("critical", "TTL expired")
            assert r.ttl_update("t", "passing", "I am alive")
            assert sink.of("t")[-1] == ("passing", "I am alive")
            assert await sink.wait("t", 3) == ("critical", "TTL expired (last output before timeout follows): "
                                                            "I am alive")
            assert not r.ttl_update("nope", "passing", "")
        finally:
            await r.close()
    run(main)


def test_grpc_checks_report_critical() -> None:
    async def main() -> None:
        sink = Sink()
        r = CheckRunner(sink, rand=lambda: 0.0)
        r.start()
        r.add(CheckSpec(check_id="g", name="g", kind="grpc", grpc="127.0.0.1:50051/svc", interval=1.0))
        try:
            status, out = await sink.wait("g")
            assert status == "critical" and "not supported" in out and "127.0.0.1:50051/svc" in out
        finally:
            await r.close()
    run(main)


def test_a_failing_probe_reports_critical_and_keeps_its_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(spec: CheckSpec) -> tuple[str, str]:
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(probes, "tcp_check", boom)

    async def main() -> None:
        sink = Sink()
        r = CheckRunner(sink, rand=lambda: 0.0)
        r.start()
        r.add(CheckSpec(check_id="c", name="c", kind="tcp", tcp="127.0.0.1:1", interval=1.0))
        try:
            assert await sink.wait("c") == ("critical", "check failed to run: RuntimeError: probe exploded")
            assert (await sink.wait("c", 2))[0] == "critical"
        finally:
            await r.close()
    run(main)


def test_alias_mirrors_local_and_remote_health() -> None:
    async def main() -> None:
        checks: list[AliasCheckState] = [AliasCheckState("me", "web", "web-http", "passing", "ok")]
        index = 1
        changed = asyncio.Event()

        async def local(node: str, service_id: str, min_index: int) -> tuple[int, Sequence[AliasCheckState]]:
            while index <= min_index:
                changed.clear()
                await changed.wait()
            return index, list(checks)

        calls: list[tuple[str, str]] = []

        async def remote(node: str, service_id: str, min_index: int) -> tuple[int, Sequence[AliasCheckState]]:
            calls.append((node, service_id))
            if min_index:
                await asyncio.sleep(3600)  # the remote blocking query: nothing changes there (cancelled at close)
            return 7, [AliasCheckState("other", "db", "db-tcp", "critical", "down"),
                       AliasCheckState("me", "db", "x", "passing", "")]

        sink = Sink()
        r = CheckRunner(sink, node_name="me", local_health=local, remote_health=remote)
        r.start()
        r.add(CheckSpec(check_id="a", name="a", kind="alias", alias_service="web"))
        r.add(CheckSpec(check_id="b", name="b", kind="alias", alias_service="db", alias_node="other"))
        try:
            assert await sink.wait("a") == ("passing", "All checks passing.")
            checks[0] = checks[0]._replace(status="critical", output="500")
            index += 1
            changed.set()
            assert await sink.wait("a", 2) == ("critical", 'Aliased check "web-http" failing: 500')
            assert await sink.wait("b") == ("critical", 'Aliased check "db-tcp" failing: down')
            assert calls[0] == ("other", "db")
        finally:
            await r.close()
    run(main)


def test_alias_query_errors_turn_critical() -> None:
    async def main() -> None:
        async def broken(node: str, service_id: str, min_index: int) -> tuple[int, Sequence[AliasCheckState]]:
            raise ConnectionError("no server")

        sink = Sink()
        r = CheckRunner(sink, node_name="me", remote_health=broken)
        r.start()
        r.add(CheckSpec(check_id="a", name="a", kind="alias", alias_service="db", alias_node="other"))
        r.add(CheckSpec(check_id="l", name="l", kind="alias", alias_service="web"))
        try:
            assert await sink.wait("a") == ("critical", "Failure checking aliased node or service: no server")
            assert await sink.wait("l") == ("critical", "Alias checks are not available on this agent")
        finally:
            await r.close()
    run(main)


def test_replacing_a_check_restarts_it_and_add_before_start_waits() -> None:
    async def main() -> None:
        async with Target() as t:
            sink = Sink()
            r = CheckRunner(sink, rand=lambda: 0.0)
            r.add(http("c", t.url("/fail")))
            assert [s.check_id for s in r.checks()] == ["c"]
            r.start()
            try:
                assert (await sink.wait("c"))[0] == "critical"
                r.add(http("c", t.url("/ok")))
                assert (await sink.wait("c", 2))[0] == "passing"
            finally:
                await r.close()
    run(main)


def test_parse_then_run_refuses_scripts_by_default() -> None:
    d = {"Name": "pwn", "Args": ["/bin/sh", "-c", "touch /tmp/pyconsul-pwned"], "Interval": "1s"}
    with pytest.raises(BadRequest, match="Scripts are disabled on this agent"):
        parse_check(d, allow_script=False)
    assert parse_check(d, allow_script=True).args[0] == "/bin/sh"


def test_no_process_left_behind() -> None:
    # every test above waits for its children; this one double-checks that none of ours is alive
    me = os.getpid()
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == me]
    assert children == []


def _ppid(p: Path) -> int:
    try:
        return int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


AGENT_LIKE_HTTPS_PROBE = """
import sys
sys.modules["ssl"] = sys.modules["_ssl"] = None
import asyncio, http.client
from concurrent.futures import ThreadPoolExecutor
from pyconsul.agent.checks import probes
from pyconsul.agent.checks.spec import CheckSpec
assert not hasattr(http.client, "HTTPSConnection")
spec = CheckSpec(check_id="s", name="s", kind="http", http=sys.argv[1], interval=1.0, tls_skip_verify=True)
print(asyncio.run(probes.http_check(spec, ThreadPoolExecutor(1), probes.TLSContexts())))
"""


def test_https_verifies_unless_tls_skip_verify(tmp_path: Path) -> None:
    import ssl

    cert_file, key_file = _self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await r.readuntil(b"\r\n\r\n")
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecure")
            await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-OpenSSH\r\n\r\n")
        await w.drain()
        w.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
        junk = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        junk_port = junk.sockets[0].getsockname()[1]
        sink = Sink()
        r = CheckRunner(sink, rand=lambda: 0.0)
        r.start()
        r.add(http("skip", f"https://127.0.0.1:{port}/", tls_skip_verify=True))
        r.add(http("verify", f"https://127.0.0.1:{port}/"))
        r.add(http("junk", f"http://127.0.0.1:{junk_port}/"))
        # as in `pyconsul agent`, which starts with ssl marked unavailable (agent/__init__.py): the https
        # probe loads it when it first needs it
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", AGENT_LIKE_HTTPS_PROBE, f"https://127.0.0.1:{port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(30):
                out_bytes, _ = await child.communicate()
            assert child.returncode == 0, out_bytes
            want = f"('passing', 'HTTP GET https://127.0.0.1:{port}/: 200 OK Output: secure')"
            assert out_bytes.decode().strip().endswith(want)
            assert (await sink.wait("skip")) == \
                ("passing", f"HTTP GET https://127.0.0.1:{port}/: 200 OK Output: secure")
            status, out = await sink.wait("verify")
            assert status == "critical" and "CERTIFICATE_VERIFY_FAILED" in out
            status, out = await sink.wait("junk")
            assert status == "critical" and out.startswith(f"GET http://127.0.0.1:{junk_port}/: ")
        finally:
            await r.close()
            for s in (server, junk):
                s.close()
                await s.wait_closed()
    run(main)
