"""TLS on the server RPC port (8300), multiplexed as Consul does: one port, and the first byte of a connection
says what follows. RPC_TLS (3, Consul's pool.RPCTLS) means "a TLS handshake follows, then our framed RPC inside
it"; any other first byte is our plaintext framing (a frame starts with its 4-byte length, and a connection's first
frame is a HELLO of at most 4 KiB, so its first byte is 0). Consul clients cannot speak our framing anyway; the
byte is Consul's so the port reads the same to a scanner and to the docs.

Listener (used instead of loop.create_server when this server has a certificate or requires TLS):
  accept -> the connection limits (limits.rpc_max_conns_per_client and the total, counting connections still
  before or in their handshake) -> the first byte, peeked, within RpcLimits.hello_timeout -> RPC_TLS: the byte is
  consumed and the TLS handshake must finish within RpcTLS.handshake_timeout (limits.rpc_handshake_timeout,
  default TLS_HANDSHAKE_TIMEOUT as Consul 1.7.1's; a client certificate signed by the CA
  is required with verify_incoming / verify_incoming_rpc) -> the transport's usual protocol (HELLO, frames,
  limits) runs inside TLS. Plaintext is refused when verify_incoming(_rpc) is set.
Dialer: with verify_outgoing (or verify_server_hostname) every connection to another server sends RPC_TLS and
  does the handshake, checking the peer's chain against the CA; with verify_server_hostname the peer's
  certificate must name `server.<dc>.<domain>`: our datacenter for Raft peers, any datacenter of our domain for
  forwarded requests (the transport dials by address and does not know the target's datacenter; Consul checks
  the target's). So a server holding only a client certificate is never sent Raft traffic: it cannot join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyconsul.agent.supervise import start_tracked

if TYPE_CHECKING:
    import ssl

    from pyconsul.agent.raft.transport import Transport
    from pyconsul.agent.tlsutil import TLSConfig

log = logging.getLogger("agent.server.rpc")

RPC_TLS = 3  # Consul's pool.RPCTLS: the first byte of a server RPC connection that switches to TLS
TLS_HANDSHAKE_TIMEOUT = 5.0  # from the RPC_TLS byte to the end of the handshake (then closed): Consul's default


class PeerNameMismatch(ConnectionError):
    """The peer's certificate does not name a server of our domain (verify_server_hostname)."""


@dataclass
class RpcTLS:
    """What the transport needs: contexts built at start (this loads ssl) and the name rules; the listener and
    the dialler read them per connection, so a reload replaces them in place (update())."""

    server_ctx: ssl.SSLContext | None  # None: no certificate, TLS connections are refused
    client_ctx: ssl.SSLContext | None  # None: dial plaintext (verify_outgoing off)
    require_tls: bool  # verify_incoming / verify_incoming_rpc: plaintext connections are refused
    verify_name: bool  # verify_server_hostname
    datacenter: str
    domain: str
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT

    @classmethod
    def from_config(cls, tls: TLSConfig, datacenter: str, domain: str,
                    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT) -> RpcTLS | None:
        """None when server RPC stays plaintext both ways (nothing configured); `handshake_timeout`:
        limits.rpc_handshake_timeout."""
        server = tls.rpc_server_context() if tls.cert_file else None
        client = tls.rpc_client_context() if tls.outgoing_verified() else None
        if server is None and client is None and not tls.incoming_rpc_verified():
            return None
        return cls(server, client, tls.incoming_rpc_verified(), tls.verify_server_hostname, datacenter,
                   domain.strip("."), handshake_timeout)

    def update(self, new: RpcTLS | None) -> None:
        """Take `new`'s contexts and rules (None: TLS off) for the next connections accepted and dialled (a
        reload: agent/tlsreload.py); open connections keep theirs. The handshake timeout is kept."""
        if new is None:
            self.server_ctx = self.client_ctx = None
            self.require_tls = self.verify_name = False
            return
        self.server_ctx, self.client_ctx = new.server_ctx, new.client_ctx
        self.require_tls, self.verify_name = new.require_tls, new.verify_name
        self.datacenter, self.domain = new.datacenter, new.domain

    def listens(self) -> bool:
        return self.server_ctx is not None or self.require_tls

    def name_ok(self, peercert: Any, same_dc: bool) -> bool:
        """The certificate names server.<dc>.<domain> (our dc when `same_dc`) among its DNS SANs."""
        dc = re.escape(self.datacenter) if same_dc else r"[a-z0-9_-]+"
        want = re.compile(rf"server\.{dc}\.{re.escape(self.domain)}", re.IGNORECASE)
        sans = (peercert or {}).get("subjectAltName", ()) if isinstance(peercert, dict) else ()
        return any(kind == "DNS" and want.fullmatch(str(name)) for kind, name in sans)


async def dial(tls: RpcTLS | None, host: str, port: int, local_addr: tuple[str, int] | None,
               same_dc: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection, over TLS (RPC_TLS byte, handshake, name check) when verify_outgoing is on."""
    if tls is None or tls.client_ctx is None:
        return await asyncio.open_connection(host, port, local_addr=local_addr)
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, bytes([RPC_TLS]))
        name = f"server.{tls.datacenter}.{tls.domain}"
        reader, writer = await asyncio.open_connection(sock=sock, ssl=tls.client_ctx, server_hostname=name,
                                                       ssl_handshake_timeout=tls.handshake_timeout)
    except BaseException:
        sock.close()
        raise
    if tls.verify_name and not tls.name_ok(writer.get_extra_info("peercert"), same_dc):
        writer.close()
        where = f"server.{tls.datacenter}.{tls.domain}" if same_dc else f"server.<dc>.{tls.domain}"
        exc = PeerNameMismatch(f"{host}:{port}: the certificate is not for {where}")
        _warn_once(f"{host}:{port}", "server RPC: refusing %s (verify_server_hostname)", exc)
        raise exc
    return reader, writer


_warned: dict[str, float] = {}


def _warn_once(key: str, msg: str, *args: object) -> None:
    """Log at most once per 10 s per key (a Raft sender redials every 100 ms)."""
    now = asyncio.get_running_loop().time()
    if now - _warned.get(key, -1e9) >= 10.0:
        if len(_warned) > 1024:
            _warned.clear()
        _warned[key] = now
        log.warning(msg, *args)


class Listener:
    """The multiplexed port-8300 listener (see the module doc); `close()` stops it and drops pending handshakes."""

    def __init__(self, t: Transport, tls: RpcTLS, factory: Callable[[], asyncio.Protocol]) -> None:
        self.t, self.tls, self.factory = t, tls, factory
        self.pending: dict[str, int] = {}  # connections per source IP not yet handed to the transport
        self.tasks: set[asyncio.Task[None]] = set()
        self.sock: socket.socket | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=1024)
        self.sock.setblocking(False)
        self.task = self.t.supervisor.spawn("rpc-accept", self._accept_loop, restart=True)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1]) if self.sock is not None else 0

    async def close(self) -> None:
        tasks = [t for t in (self.task, *self.tasks) if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.sock is not None:
            self.sock.close()

    async def _accept_loop(self) -> None:
        """Never ends but by close(): a failed accept (EMFILE, ...) is logged and retried after a pause. Supervised
        (the transport's Supervisor, agent/supervise.py): anything else that ends it is logged and it restarts."""
        loop = asyncio.get_running_loop()
        assert self.sock is not None
        while True:
            try:
                conn, addr = await loop.sock_accept(self.sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                self.t._warn.warn("accept", "server RPC: accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            except Exception:  # a bug: logged, and the port keeps accepting
                log.exception("server RPC: accept failed")
                await asyncio.sleep(0.1)
                continue
            ip = str(addr[0]) if isinstance(addr, tuple) and addr else "?"
            if not self._admit(ip):
                conn.close()
                continue
            self.pending[ip] = self.pending.get(ip, 0) + 1
            start_tracked(self._open(conn, ip), self.tasks, "rpc-open")

    def _admit(self, ip: str) -> bool:
        """Transport._admit's limits, counting the connections still in their first byte or handshake too."""
        t, lim = self.t, self.t.limits
        waiting = sum(self.pending.values())
        if len(t._conns) + waiting >= lim.max_conns or (
                lim.max_conns_per_client and t._per_ip.get(ip, 0) + self.pending.get(ip, 0)
                >= lim.max_conns_per_client):
            t.stats.conns_refused += 1
            t._warn.warn("conns", "refusing server RPC connection from %s: connection limit reached "
                         "(limits.rpc_max_conns_per_client or the total)", ip)
            return False
        return True

    async def _open(self, conn: socket.socket, ip: str) -> None:
        loop = asyncio.get_running_loop()
        t, tls = self.t, self.tls
        handed = False
        try:
            first = await self._first_byte(conn)
            if first is None:
                t.stats.hello_timeouts += 1
                t._warn.warn("hello", "dropping server RPC connection from %s: nothing within %g s", ip,
                             t.limits.hello_timeout)
                return
            if first == b"":
                return
            if first[0] == RPC_TLS:
                if tls.server_ctx is None:
                    t.stats.tls_refused += 1
                    t._warn.warn("tls", "refusing TLS server RPC from %s: this server has no certificate", ip)
                    return
                conn.recv(1)  # the RPC_TLS byte; the handshake follows
                try:
                    await loop.connect_accepted_socket(self.factory, conn, ssl=tls.server_ctx,
                                                       ssl_handshake_timeout=tls.handshake_timeout)
                except (OSError, TimeoutError, ConnectionError) as exc:  # ssl.SSLError is an OSError
                    t.stats.tls_refused += 1
                    t._warn.warn("tls", "refusing TLS server RPC from %s: handshake failed: %s", ip, exc)
                    return
                handed = True
                return
            if tls.require_tls:
                t.stats.tls_refused += 1
                t._warn.warn("plain", "refusing plaintext server RPC from %s: verify_incoming requires TLS", ip)
                return
            await loop.connect_accepted_socket(self.factory, conn)
            handed = True
        except OSError:
            return
        except Exception:  # a bug: never silent; this connection is dropped
            log.exception("server RPC: setting up a connection from %s failed", ip)
        finally:
            n = self.pending.get(ip, 1) - 1
            if n:
                self.pending[ip] = n
            else:
                self.pending.pop(ip, None)
            if not handed:
                conn.close()

    async def _first_byte(self, conn: socket.socket) -> bytes | None:
        """The connection's first byte, peeked (left in the socket), or b"" at EOF; None when nothing came
        within hello_timeout."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = conn.fileno()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            async with asyncio.timeout(self.t.limits.hello_timeout):
                await ready
        except TimeoutError:
            return None
        finally:
            loop.remove_reader(fd)
        return conn.recv(1, socket.MSG_PEEK)
