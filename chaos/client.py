"""Jepsen's Client for pyconsul's KV store over the Consul HTTP API (one `http.client` connection per call).

Outcome rules (history.py: `fail` only when the operation certainly did not take effect):

- read (`GET /v1/kv/<prefix><key>?consistent`): 200 -> ok with the value (decimal text -> int), 404 -> ok
  with None (the register's initial state); anything else -> fail (a read changes nothing, so an
  unanswered read can be dropped, as Jepsen does).
- write / add (`PUT`): body `true` -> ok; a refused connection -> fail (nothing was sent); any other
  error, 5xx or timeout -> info (the leader may have committed it anyway, e.g. "leadership lost").
- cas (expected, new): a `?consistent` read first; a different value -> fail; then
  `PUT ?cas=<ModifyIndex>`: `true` -> ok, `false` -> fail (the index moved: nothing was written),
  errors -> info. Atomic: the write applies only if nothing changed since the read that saw `expected`.
- the set's final read (`GET ?keys&consistent` on the set's prefix) -> ok with the sorted elements.
- lock operations (`invoke_lock`, chaos/checker/lock.py): `acquire` / `release` are
  `PUT ?acquire=<session>` / `?release=<session>` (`true` ok, `false` fail, other errors info);
  `destroy` is `PUT /v1/session/destroy/<session>`; a lock `read` is `GET ?consistent` -> ok with the
  owner (the value written by the acquire) while a session holds the key, None when none does.
  `session()` creates a lock session: no health checks and no TTL (only an operation in the
  history frees the lock), lock-delay 0 s, behavior release.
"""

from __future__ import annotations

import base64
import errno
import http.client
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from pyconsul.chaos.generator import ADD, CAS, READ, WRITE, Invocation
from pyconsul.chaos.history import FAIL, INFO, OK, OpType, Value


@dataclass(frozen=True, slots=True)
class Outcome:
    type: OpType
    value: Value = None
    error: str | None = None


class _Refused(Exception):
    """The connection was refused: the request never left."""


class KVClient:
    def __init__(self, prefix: str = "chaos/", timeout: float = 5.0, set_key: str = "set") -> None:
        self.prefix = prefix
        self.timeout = timeout
        self.set_key = set_key  # reads of this key are the set workload's final read

    # --- HTTP ------------------------------------------------------------------------------------

    def _call(self, addr: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        host, _, port = addr.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        try:
            try:
                conn.connect()
            except ConnectionRefusedError as exc:
                raise _Refused(str(exc)) from None
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    raise _Refused(str(exc)) from None
                raise
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def _path(self, key: Any, query: str = "") -> str:
        return "/v1/kv/" + urllib.parse.quote(f"{self.prefix}{key}") + (f"?{query}" if query else "")

    # --- operations ------------------------------------------------------------------------------

    def invoke(self, addr: str, inv: Invocation) -> Outcome:
        """Run one invocation against the agent at `addr` ("ip:port"); never raises."""
        try:
            if inv.f == READ:
                return self._read(addr, inv)
            if inv.f in (WRITE, ADD):
                key = inv.key if inv.f == WRITE else f"{inv.key}/{inv.value}"
                return self._write(addr, key, str(inv.value).encode())
            if inv.f == CAS:
                return self._cas(addr, inv)
            return Outcome(FAIL, error=f"unknown operation {inv.f!r}")
        except _Refused as exc:
            return Outcome(FAIL, error=f"connection refused: {exc}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # a read changed nothing; anything else may have happened
            return Outcome(FAIL if inv.f == READ else INFO, error=f"{type(exc).__name__}: {exc}")

    def _read(self, addr: str, inv: Invocation) -> Outcome:
        if inv.key == self.set_key:  # the set's final read
            status, body = self._call(addr, "GET", self._path(f"{inv.key}/", "keys&consistent"))
            if status == 404:
                return Outcome(OK, ())
            if status != 200:
                return Outcome(FAIL, error=f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
            keys = json.loads(body)
            return Outcome(OK, tuple(sorted(int(k.rsplit("/", 1)[1]) for k in keys)))
        entry, err = self._get(addr, inv.key)
        if err is not None:
            return Outcome(FAIL, error=err)
        return Outcome(OK, None if entry is None else entry[0])

    def _get(self, addr: str, key: Any) -> tuple[tuple[Value, int] | None, str | None]:
        """((value, ModifyIndex) or None when absent, error)"""
        status, body = self._call(addr, "GET", self._path(key, "consistent"))
        if status == 404:
            return None, None
        if status != 200:
            return None, f"HTTP {status}: {body[:200].decode(errors='replace').strip()}"
        (entry,) = json.loads(body)
        raw = base64.b64decode(entry["Value"]) if entry.get("Value") else b""
        return (int(raw) if raw else None, int(entry["ModifyIndex"])), None

    def _write(self, addr: str, key: Any, data: bytes, query: str = "") -> Outcome:
        status, body = self._call(addr, "PUT", self._path(key, query), data)
        text = body.decode(errors="replace").strip()
        if status == 200 and text == "true":
            return Outcome(OK)
        if status == 200 and text == "false":
            what = "cas index mismatch" if query.startswith("cas=") else f"{query.split('=')[0]} refused"
            return Outcome(FAIL, error=what)
        return Outcome(INFO, error=f"HTTP {status}: {text[:200]}")

    def _cas(self, addr: str, inv: Invocation) -> Outcome:
        if not (isinstance(inv.value, tuple) and len(inv.value) == 2):
            return Outcome(FAIL, error=f"cas needs (expected, new), got {inv.value!r}")
        expected, new = inv.value
        entry, err = self._get(addr, inv.key)
        if err is not None:
            return Outcome(FAIL, error=f"cas read: {err}")
        if entry is None or entry[0] != expected:
            return Outcome(FAIL, error=f"value is {None if entry is None else entry[0]!r}, not {expected!r}")
        out = self._write(addr, inv.key, str(new).encode(), f"cas={entry[1]}")
        return out if out.type != OK else Outcome(OK, inv.value)

    # --- locks -----------------------------------------------------------------------------------

    def session(self, addr: str, name: str) -> str:
        """A new lock session's ID; raises OSError or ValueError when the agent does not make one."""
        body = json.dumps({"Name": name, "Checks": [], "LockDelay": "0s", "Behavior": "release"}).encode()
        try:
            status, raw = self._call(addr, "PUT", "/v1/session/create", body)
        except (_Refused, http.client.HTTPException) as exc:
            raise OSError(f"session create: {exc}") from None
        if status != 200:
            raise ValueError(f"session create: HTTP {status}: {raw[:200].decode(errors='replace').strip()}")
        return str(json.loads(raw)["ID"])

    def invoke_lock(self, addr: str, f: str, key: Any, owner: Value, session: str) -> Outcome:
        """One lock operation (acquire, release, destroy, read) with `session`; never raises."""
        try:
            if f == READ:
                status, body = self._call(addr, "GET", self._path(key, "consistent"))
                if status == 404:
                    return Outcome(OK, None)
                if status != 200:
                    return Outcome(FAIL, error=f"HTTP {status}: {body[:200].decode(errors='replace').strip()}")
                (entry,) = json.loads(body)
                raw = base64.b64decode(entry["Value"]) if entry.get("Value") else b""
                return Outcome(OK, int(raw) if entry.get("Session") and raw else None)
            if f in ("acquire", "release"):
                return self._write(addr, key, str(owner).encode(), f"{f}={urllib.parse.quote(session)}")
            if f == "destroy":
                status, body = self._call(addr, "PUT", f"/v1/session/destroy/{urllib.parse.quote(session)}")
                text = body.decode(errors="replace").strip()
                if status == 200 and text == "true":
                    return Outcome(OK)
                return Outcome(INFO, error=f"HTTP {status}: {text}")
            return Outcome(FAIL, error=f"unknown lock operation {f!r}")
        except _Refused as exc:
            return Outcome(FAIL, error=f"connection refused: {exc}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return Outcome(FAIL if f == READ else INFO, error=f"{type(exc).__name__}: {exc}")
