"""Proxies: a listener that dials the upstream for every client and joins them with two links.

Contracts (Toxiproxy 2.x `proxy.go`, `proxy_collection.go`, `toxic_collection.go`):

* `listen` is reported as the address actually bound (`127.0.0.1:0` becomes `127.0.0.1:40123`).
  An empty listen binds 127.0.0.1 on a free port (Toxiproxy binds every interface there).
* Disabling a proxy closes its listener and every open connection; enabling it listens again.
* Changing listen or upstream restarts the proxy (open connections are closed).
* A client whose upstream cannot be reached is closed at once.
* Each proxy holds its toxics per stream, in the order they were added; names are unique per proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import Sequence

from pyconsul.chaos.toxiproxy.link import Link, abort_with_rst
from pyconsul.chaos.toxiproxy.toxics import (
    PROXY_EXISTS,
    PROXY_NOT_FOUND,
    TOXIC_EXISTS,
    TOXIC_NOT_FOUND,
    ApiError,
    ProxySpec,
    Toxic,
    parse_toxic,
    update_toxic,
)

log = logging.getLogger("chaos.toxiproxy")

DIAL_TIMEOUT = 10.0


def split_hostport(addr: str) -> tuple[str, int]:
    """'host:port', '[v6]:port', ':port' or '' -> (host, port); raises ApiError(400) when malformed."""
    if addr == "":
        return "127.0.0.1", 0
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ApiError(f"listen tcp {addr}: address {addr}: missing or bad port", 400)
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "localhost":
        host = "127.0.0.1"
    return host or "127.0.0.1", int(port)


def join_hostport(host: str, port: int) -> str:
    try:
        return f"[{host}]:{port}" if ipaddress.ip_address(host).version == 6 else f"{host}:{port}"
    except ValueError:
        return f"{host}:{port}"


class Connection:
    """One client and its upstream: the upstream link (client -> server) and the downstream one."""

    def __init__(self, proxy: Proxy, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client_w = client[1]
        self.upstream_w = upstream[1]
        peer = client[1].get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.links = {
            "upstream": Link(name + " upstream", lambda: proxy.chain("upstream"), client[0], upstream[1],
                             proxy.rng, self._link_done, self.reset),
            "downstream": Link(name + " downstream", lambda: proxy.chain("downstream"), upstream[0], client[1],
                               proxy.rng, self._link_done, self.reset),
        }

    def start(self) -> None:
        for link in self.links.values():
            link.start()

    def _link_done(self, _link: Link) -> None:
        if all(link.closed for link in self.links.values()):
            self.proxy.connections.discard(self)

    def reset(self) -> None:
        abort_with_rst(self.client_w, self.upstream_w)
        self.close()

    def close(self) -> None:
        for link in self.links.values():
            link.close()
        for w in (self.client_w, self.upstream_w):
            with contextlib.suppress(Exception):
                w.close()


class Proxy:
    def __init__(self, spec: ProxySpec, rng: random.Random) -> None:
        self.name = spec.name
        self.listen = spec.listen
        self.upstream = spec.upstream
        self.enabled = False
        self.rng = rng
        self.connections: set[Connection] = set()
        self._toxics: dict[str, list[Toxic]] = {"upstream": [], "downstream": []}
        self._server: asyncio.Server | None = None
        self._serial = 0

    def spec(self) -> ProxySpec:
        return ProxySpec(self.name, self.listen, self.upstream, self.enabled)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.to_json() for t in self.toxics()]}

    # ------------------------------------------------------------ listening

    async def start(self) -> None:
        if self.enabled:
            return
        host, port = split_hostport(self.listen)
        try:
            self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        except OSError as exc:
            raise ApiError(f"listen tcp {self.listen}: {exc.strerror or exc}", 500) from None
        bound = self._server.sockets[0].getsockname()
        self.listen = join_hostport(bound[0], bound[1])
        self.enabled = True
        log.info("proxy %s listening on %s, upstream %s", self.name, self.listen, self.upstream)

    async def stop(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)
        log.info("proxy %s stopped", self.name)

    def differs(self, spec: ProxySpec) -> bool:
        host, port = split_hostport(spec.listen)
        return join_hostport(host, port) != self.listen or spec.upstream != self.upstream

    async def update(self, spec: ProxySpec) -> None:
        if self.differs(spec):
            await self.stop()
            self.listen, self.upstream = spec.listen, spec.upstream
        if spec.enabled and not self.enabled:
            await self.start()
        elif not spec.enabled:
            await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = split_hostport(self.upstream)
        try:
            up = await asyncio.wait_for(asyncio.open_connection(host, port), DIAL_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.warning("proxy %s: upstream %s unreachable: %s", self.name, self.upstream, exc)
            writer.close()
            return
        if not self.enabled:  # stopped while we dialled
            up[1].close()
            writer.close()
            return
        conn = Connection(self, (reader, writer), up)
        self.connections.add(conn)
        conn.start()

    # ------------------------------------------------------------ toxics

    def chain(self, stream: str) -> Sequence[Toxic]:
        return self._toxics[stream]

    def toxics(self) -> list[Toxic]:
        return self._toxics["upstream"] + self._toxics["downstream"]

    def find(self, name: str) -> Toxic | None:
        return next((t for t in self.toxics() if t.name == name), None)

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _changed(self, stream: str) -> None:
        for conn in list(self.connections):
            conn.links[stream].chain_changed()

    def add_toxic(self, body: bytes) -> Toxic:
        toxic = parse_toxic(body, self._next_serial())
        if self.find(toxic.name) is not None:
            raise TOXIC_EXISTS
        self._toxics[toxic.stream] = [*self._toxics[toxic.stream], toxic]
        self._changed(toxic.stream)
        return toxic

    def update_toxic(self, name: str, body: bytes) -> Toxic:
        old = self.find(name)
        if old is None:
            raise TOXIC_NOT_FOUND
        new = update_toxic(old, body, self._next_serial())
        self._toxics[old.stream] = [new if t.name == name else t for t in self._toxics[old.stream]]
        self._changed(old.stream)
        return new

    def remove_toxic(self, name: str) -> None:
        old = self.find(name)
        if old is None:
            raise TOXIC_NOT_FOUND
        self._toxics[old.stream] = [t for t in self._toxics[old.stream] if t.name != name]
        self._changed(old.stream)

    def reset_toxics(self) -> None:
        self._toxics = {"upstream": [], "downstream": []}
        self._changed("upstream")
        self._changed("downstream")


class ProxyCollection:
    def __init__(self, rng: random.Random | None = None) -> None:
        self.proxies: dict[str, Proxy] = {}
        self.rng = rng or random.Random()
        self.lock = asyncio.Lock()  # API changes are applied one at a time

    def get(self, name: str) -> Proxy:
        proxy = self.proxies.get(name)
        if proxy is None:
            raise PROXY_NOT_FOUND
        return proxy

    async def add(self, spec: ProxySpec) -> Proxy:
        if spec.name in self.proxies:
            raise PROXY_EXISTS
        proxy = Proxy(spec, self.rng)
        if spec.enabled:
            await proxy.start()
        self.proxies[spec.name] = proxy
        return proxy

    async def add_or_replace(self, spec: ProxySpec) -> Proxy:
        existing = self.proxies.get(spec.name)
        if existing is not None:
            if not existing.differs(spec):
                return existing
            await existing.stop()
            del self.proxies[spec.name]
        return await self.add(spec)

    async def remove(self, name: str) -> None:
        proxy = self.get(name)
        await proxy.stop()
        del self.proxies[name]

    async def reset(self) -> None:
        """Toxiproxy's POST /reset: every proxy enabled again, every toxic removed."""
        for proxy in self.proxies.values():
            await proxy.start()
            proxy.reset_toxics()

    async def close(self) -> None:
        for proxy in list(self.proxies.values()):
            await proxy.stop()
