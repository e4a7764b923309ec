"""Consul's lock and semaphore recipes (its api/lock.go and api/semaphore.go) over sessions and the KV store.

Lock (`-n 1`): one key, `<prefix>/.lock`, acquired with `?acquire=<session>` and the flag value
LOCK_FLAG; the holder is whoever's session the key carries. Semaphore (`-n N > 1`): every contender
acquires its own key `<prefix>/<session>`; the coordination key `<prefix>/.lock` holds
`{"Limit": N, "Holders": {session: true, ...}}` and is changed only by check-and-set, so two
contenders can never both take the last slot. Holders whose contender key lost its session are
pruned by whoever reads next. Both recipes use `.lock`, so a lock and a semaphore on one prefix
conflict (the flags differ) instead of silently ignoring each other.

The decisions (`lock_step`, `semaphore_step`, `semaphore_holds`) are pure functions over the KV
entries read; `Lock` and `Semaphore` drive them through the small `KV` protocol (`HttpKV` speaks to an
agent; the unit tests use an in-memory fake). Blocking calls take a `threading.Event` to stop waiting.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError

LOCK_KEY = ".lock"  # Consul's DefaultSemaphoreKey, also used by `consul lock` for -n 1
LOCK_FLAG = 0x2DDCCBC058A50C18  # api.LockFlagValue: marks a key used as a lock
SEMAPHORE_FLAG = 0xE0F69A2BAA414DE0  # api.SemaphoreFlagValue: marks the keys of a semaphore
SESSION_TTL = 15.0  # seconds (Consul's DefaultLockSessionTTL / DefaultSemaphoreSessionTTL)
WAIT_TIME = 15.0  # one blocking read while waiting to acquire (Consul's DefaultLockWaitTime)
RETRY_TIME = 5.0  # after an acquire refused while the key is free (a lock-delay): Consul's DefaultLockRetryTime
MONITOR_WAIT = 300.0  # one blocking read while holding (Consul uses the server's default, 5 minutes)

Pair = Mapping[str, Any]  # one KV entry as the API shows it (Key, Flags, Value base64, Session, ModifyIndex)


class LockError(Exception):
    """The recipe cannot go on; str() is Consul's wording where it has one."""


class InUse(LockError):
    """Cleanup refused: the lock or semaphore is still held (Consul's ErrLockInUse / ErrSemaphoreInUse)."""


class KV(Protocol):
    """The agent operations the recipes need. Reads return the entries and the X-Consul-Index."""

    def get(self, key: str, index: int, wait: float, consistent: bool) -> tuple[Pair | None, int]: ...
    def list(self, prefix: str, index: int, wait: float, consistent: bool) -> tuple[list[Pair], int]: ...
    def acquire(self, key: str, value: bytes, flags: int, session: str) -> bool: ...
    def release(self, key: str, flags: int, session: str) -> bool: ...
    def cas(self, key: str, value: bytes, flags: int, index: int) -> bool: ...
    def delete(self, key: str, cas: int | None) -> bool: ...
    def session_create(self, name: str, ttl: float, behavior: str) -> str: ...
    def session_renew(self, session: str) -> bool: ...
    def session_destroy(self, session: str) -> None: ...


def join(prefix: str, name: str) -> str:
    """Go's path.Join for a KV prefix and a child name (no doubled or trailing slash)."""
    parts = [p for p in f"{prefix}/{name}".split("/") if p and p != "."]
    return "/".join(parts)


def value_of(pair: Pair) -> bytes:
    v = pair.get("Value")
    return base64.b64decode(v) if isinstance(v, str) and v else b""


# ---------------------------------------------------------------- the lock (pure decision)


def lock_step(pair: Pair | None, session: str) -> str:
    """What a contender for a lock does after reading its key: "held" (the key carries our session),
    "wait" (another session holds it), "acquire" (free). A key with other flags is a LockError."""
    if pair is not None and int(pair.get("Flags") or 0) != LOCK_FLAG:
        raise LockError("Existing key does not match lock use")
    holder = str(pair.get("Session") or "") if pair is not None else ""
    if holder == session:
        return "held"
    return "wait" if holder else "acquire"


# ---------------------------------------------------------------- the semaphore (pure decisions)


@dataclass
class SemaphoreState:
    """The document at `<prefix>/.lock`: the agreed limit and the sessions holding a slot."""

    limit: int
    holders: dict[str, bool] = field(default_factory=dict)
    modify_index: int = 0  # of the `.lock` entry read (0: absent), for the check-and-set

    def encode(self) -> bytes:
        """Go's json.Marshal of Consul's semaphoreLock (map keys sorted)."""
        return json.dumps({"Limit": self.limit, "Holders": dict(sorted(self.holders.items()))},
                          separators=(",", ":")).encode()


def find_lock(pairs: Sequence[Pair], prefix: str) -> Pair | None:
    key = join(prefix, LOCK_KEY)
    return next((p for p in pairs if p.get("Key") == key), None)


def decode_semaphore(pairs: Sequence[Pair], prefix: str, limit: int) -> SemaphoreState:
    """The semaphore document among `pairs`, with the holders whose contender entry lost its session pruned.

    No `.lock` yet: an empty semaphore with our limit. Raises LockError for a key used otherwise
    (another flag value), an undecodable document, or a different limit.
    """
    pair = find_lock(pairs, prefix)
    if pair is None:
        return SemaphoreState(limit)
    if int(pair.get("Flags") or 0) != SEMAPHORE_FLAG:
        raise LockError("Existing key does not match semaphore use")
    raw = value_of(pair)
    state = SemaphoreState(limit, {}, int(pair.get("ModifyIndex") or 0))
    if raw:
        try:
            doc = json.loads(raw)
            state.limit = int(doc["Limit"])
            state.holders = {str(k): True for k, v in (doc.get("Holders") or {}).items() if v}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LockError(f"lock decoding failed: {exc}") from None
    if state.limit != limit:
        raise LockError(f"semaphore limit conflict (lock: {state.limit}, local: {limit})")
    alive = {str(p.get("Session")) for p in pairs if p.get("Session")}
    state.holders = {s: True for s in state.holders if s in alive}
    return state


def semaphore_step(pairs: Sequence[Pair], prefix: str, limit: int, session: str) -> tuple[str, SemaphoreState]:
    """What a contender does after listing the prefix: ("held", state) when its session is a holder,
    ("wait", state) when every slot is taken by live holders, ("cas", new_state) to take a slot by
    check-and-set of `.lock` at state.modify_index."""
    state = decode_semaphore(pairs, prefix, limit)
    if session in state.holders:
        return "held", state
    if len(state.holders) >= state.limit:
        return "wait", state
    return "cas", SemaphoreState(state.limit, {**state.holders, session: True}, state.modify_index)


def semaphore_holds(pairs: Sequence[Pair], prefix: str, limit: int, session: str) -> bool:
    """Whether `session` still holds a slot (the monitor's question); an unreadable document means no."""
    try:
        return session in decode_semaphore(pairs, prefix, limit).holders
    except LockError:
        return False


# ---------------------------------------------------------------- drivers


class _Base:
    what = ""  # "Lock" or "Semaphore", for messages

    def __init__(self, kv: KV, *, session_name: str, behavior: str, try_once: float | None,
                 monitor_retries: int, monitor_retry_time: float = 1.0) -> None:
        self.kv = kv
        self.session_name = session_name
        self.behavior = behavior
        self.try_once = try_once  # seconds to keep trying (Consul's -timeout / LockTryOnce); None: forever
        self.monitor_retries = monitor_retries
        self.monitor_retry_time = monitor_retry_time
        self.session = ""
        self.held = False
        self._renewer: threading.Thread | None = None
        self._renew_stop = threading.Event()

    def _start_session(self) -> None:
        try:
            self.session = self.kv.session_create(self.session_name, SESSION_TTL, self.behavior)
        except ApiError as exc:
            raise LockError(f"failed to create session: {exc}") from None
        self._renew_stop.clear()
        self._renewer = threading.Thread(target=self._renew, args=(self.session,), daemon=True,
                                         name="lock-session-renew")
        self._renewer.start()

    def _renew(self, session: str) -> None:
        """Renew every TTL/2 until stopped (then destroy the session) or the session is gone."""
        while not self._renew_stop.wait(SESSION_TTL / 2):
            try:
                if not self.kv.session_renew(session):
                    return
            except ApiError:
                return  # as Consul: renewal stops; the monitor notices the loss
        try:
            self.kv.session_destroy(session)
        except ApiError:
            pass

    def end_session(self) -> None:
        """Stop renewing and destroy the session (waits for the renewer to do it, at most 10 s)."""
        if self._renewer is not None:
            self._renew_stop.set()
            self._renewer.join(10.0)
            self._renewer = None

    def _wait_budget(self, start: float) -> float | None:
        """The wait of the next blocking read; None when a -timeout is used up."""
        if self.try_once is None:
            return WAIT_TIME
        left = self.try_once - (time.monotonic() - start)
        return left if left > 0 else None

    def acquire(self, stop: threading.Event) -> bool:
        """Block until held (True), or `stop`/the -timeout ends the attempt (False)."""
        if self.held:
            raise LockError(f"{self.what} already held")
        self._start_session()
        try:
            ok = self._acquire(stop)
        except BaseException:
            self.end_session()
            raise
        if not ok:
            self.end_session()
        self.held = ok
        return ok

    def _acquire(self, stop: threading.Event) -> bool:
        raise NotImplementedError

    def _contend(self, stop: threading.Event, attempt: Callable[[int, float], int | None]) -> bool:
        """Call `attempt(index, wait)` (one blocking read at `index` for at most `wait` seconds, then a try to
        take the lock) until it returns None (held: True) or `stop`/the -timeout ends the attempt (False);
        otherwise it returns the index of the next read."""
        start, index, attempts = time.monotonic(), 0, 0
        while not stop.is_set():
            wait = self._wait_budget(start) or 0.0
            if wait <= 0.0 and attempts:  # -timeout used up (the first read is always made)
                return False
            attempts += 1
            next_index = attempt(index, wait)
            if next_index is None:
                return True
            index = next_index
        return False

    def _monitor(self, read: Any, still_held: Any, stop: threading.Event) -> None:
        """Block on reads until `still_held(result)` is false, a read keeps failing, or `stop` is set."""
        index = 0
        retries = self.monitor_retries
        while not stop.is_set():
            try:
                result, new_index = read(index)
            except ApiError as exc:
                retryable = exc.code is None or exc.code >= 500
                if retries > 0 and retryable:
                    retries -= 1
                    index = 0
                    if stop.wait(self.monitor_retry_time):
                        return
                    continue
                return
            retries = self.monitor_retries
            if not still_held(result):
                return
            index = new_index if new_index >= index else 0


class Lock(_Base):
    """Consul's lock at one key (session behavior release)."""

    what = "Lock"

    def __init__(self, kv: KV, key: str, **kw: Any) -> None:
        super().__init__(kv, behavior="release", **kw)
        self.key = key

    def _read(self, index: int, wait: float) -> tuple[Pair | None, int]:
        try:
            return self.kv.get(self.key, index, wait, False)
        except ApiError as exc:
            raise LockError(f"failed to read lock: {exc}") from None

    def _acquire(self, stop: threading.Event) -> bool:
        def attempt(index: int, wait: float) -> int | None:
            pair, meta_index = self._read(index, wait)
            step = lock_step(pair, self.session)
            if step != "acquire":
                return None if step == "held" else meta_index
            try:
                if self.kv.acquire(self.key, b"", LOCK_FLAG, self.session):
                    return None
            except ApiError as exc:
                raise LockError(f"failed to acquire lock: {exc}") from None
            pair, meta_index = self._read(0, 0.0)  # refused: held again already (wait on it), or a lock-delay
            if pair is not None and pair.get("Session"):
                return meta_index
            stop.wait(RETRY_TIME)  # (retry after a pause; a set `stop` ends the loop)
            return index

        return self._contend(stop, attempt)

    def monitor(self, stop: threading.Event) -> None:
        """Return when the lock is no longer ours (or `stop` is set)."""
        self._monitor(lambda index: self.kv.get(self.key, index, MONITOR_WAIT, True),
                      lambda pair: pair is not None and pair.get("Session") == self.session, stop)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            self.kv.release(self.key, LOCK_FLAG, self.session)
        finally:
            self.end_session()

    def destroy(self) -> None:
        """Delete the lock key if nobody holds it (InUse otherwise), as Consul's Lock.Destroy."""
        pair, _ = self.kv.get(self.key, 0, 0.0, False)
        if pair is None:
            return
        if int(pair.get("Flags") or 0) != LOCK_FLAG:
            raise LockError("Existing key does not match lock use")
        if pair.get("Session"):
            raise InUse("Lock in use")
        if not self.kv.delete(self.key, int(pair.get("ModifyIndex") or 0)):
            raise InUse("Lock in use")


class Semaphore(_Base):
    """Consul's semaphore under a prefix (session behavior delete: a dead contender's key goes away)."""

    what = "Semaphore"

    def __init__(self, kv: KV, prefix: str, limit: int, **kw: Any) -> None:
        super().__init__(kv, behavior="delete", **kw)
        if limit <= 0:
            raise LockError("semaphore limit must be positive")
        self.prefix, self.limit = prefix, limit

    def _acquire(self, stop: threading.Event) -> bool:
        contender = join(self.prefix, self.session)
        try:
            made = self.kv.acquire(contender, b"", SEMAPHORE_FLAG, self.session)
        except ApiError as exc:
            raise LockError(f"failed to make contender entry: {exc}") from None
        if not made:
            raise LockError("failed to make contender entry")

        def attempt(index: int, wait: float) -> int | None:
            try:
                pairs, meta_index = self.kv.list(self.prefix, index, wait, False)
            except ApiError as exc:
                raise LockError(f"failed to read prefix: {exc}") from None
            step, state = semaphore_step(pairs, self.prefix, self.limit, self.session)
            if step != "cas":
                return None if step == "held" else meta_index
            try:
                if self.kv.cas(join(self.prefix, LOCK_KEY), state.encode(), SEMAPHORE_FLAG, state.modify_index):
                    return None
            except ApiError as exc:
                raise LockError(f"failed to update lock: {exc}") from None
            return 0  # lost a race with another contender: read again at once

        return self._contend(stop, attempt)

    def monitor(self, stop: threading.Event) -> None:
        self._monitor(lambda index: self.kv.list(self.prefix, index, MONITOR_WAIT, True),
                      lambda pairs: semaphore_holds(pairs, self.prefix, self.limit, self.session), stop)

    def release(self) -> None:
        """Leave the holders (check-and-set until it sticks), then delete our contender key."""
        if not self.held:
            return
        self.held = False
        session = self.session
        try:
            key = join(self.prefix, LOCK_KEY)
            for _ in range(100):  # each failed CAS means someone else changed `.lock` meanwhile
                pair, _ = self.kv.get(key, 0, 0.0, False)
                state = _raw_state(pair, self.limit)
                if session not in state.holders:
                    break
                del state.holders[session]
                if self.kv.cas(key, state.encode(), SEMAPHORE_FLAG, state.modify_index):
                    break
            self.kv.delete(join(self.prefix, session), None)
        finally:
            self.end_session()

    def destroy(self) -> None:
        """Delete `.lock` if no live holder remains (InUse otherwise), as Consul's Semaphore.Destroy."""
        pairs, _ = self.kv.list(self.prefix, 0, 0.0, False)
        pair = find_lock(pairs, self.prefix)
        if pair is None:
            return
        state = decode_semaphore(pairs, self.prefix, self.limit)
        if state.holders:
            raise InUse("Semaphore in use")
        if not self.kv.delete(join(self.prefix, LOCK_KEY), state.modify_index):
            raise InUse("Semaphore in use")


def _raw_state(pair: Pair | None, limit: int) -> SemaphoreState:
    """The `.lock` document as stored (no pruning); an unreadable one counts as empty."""
    if pair is None:
        return SemaphoreState(limit)
    state = SemaphoreState(limit, {}, int(pair.get("ModifyIndex") or 0))
    try:
        doc = json.loads(value_of(pair) or b"{}")
        state.limit = int(doc.get("Limit", limit))
        state.holders = {str(k): True for k, v in (doc.get("Holders") or {}).items() if v}
    except (ValueError, AttributeError, TypeError):
        pass
    return state


# ---------------------------------------------------------------- the agent's HTTP API


class HttpKV:
    """`KV` over the agent's HTTP API (`/v1/kv`, `/v1/session`); `dc` is added to every call if set."""

    def __init__(self, base_url: str, dc: str = "") -> None:
        self.base = base_url
        self.dc = {"dc": dc} if dc else {}

    def _read(self, path: str, index: int, wait: float, consistent: bool, extra: Mapping[str, str]) -> Any:
        query = {**self.dc, **extra}
        if index:
            query["index"] = str(index)
            query["wait"] = f"{max(wait, 0.001):.3f}s"
        if consistent:
            query["consistent"] = ""
        timeout = (wait * 1.0625 + 15.0) if index else 30.0
        return common.api_read(self.base, path, query=query, timeout=timeout, missing_ok=True)

    def get(self, key: str, index: int, wait: float, consistent: bool) -> tuple[Pair | None, int]:
        found, idx = self._read(_kv(key), index, wait, consistent, {})
        return (found[0] if isinstance(found, list) and found else None), idx

    def list(self, prefix: str, index: int, wait: float, consistent: bool) -> tuple[list[Pair], int]:
        found, idx = self._read(_kv(prefix), index, wait, consistent, {"recurse": ""})
        return (list(found) if isinstance(found, list) else []), idx

    def _put(self, key: str, value: bytes, query: Mapping[str, str]) -> bool:
        return bool(common.api_request("PUT", self.base, _kv(key), query={**self.dc, **query}, raw=value))

    def acquire(self, key: str, value: bytes, flags: int, session: str) -> bool:
        return self._put(key, value, {"acquire": session, "flags": str(flags)})

    def release(self, key: str, flags: int, session: str) -> bool:
        return self._put(key, b"", {"release": session, "flags": str(flags)})

    def cas(self, key: str, value: bytes, flags: int, index: int) -> bool:
        return self._put(key, value, {"cas": str(index), "flags": str(flags)})

    def delete(self, key: str, cas: int | None) -> bool:
        query = {**self.dc, **({"cas": str(cas)} if cas is not None else {})}
        return bool(common.api_request("DELETE", self.base, _kv(key), query=query))

    def session_create(self, name: str, ttl: float, behavior: str) -> str:
        body = {"Name": name, "TTL": f"{int(ttl)}s", "Behavior": behavior}
        out = common.api_request("PUT", self.base, "/v1/session/create", query=self.dc, body=body)
        if not isinstance(out, dict) or not out.get("ID"):
            raise ApiError("session create answered no ID")
        return str(out["ID"])

    def session_renew(self, session: str) -> bool:
        try:
            common.api_request("PUT", self.base, "/v1/session/renew/" + session, query=self.dc)
        except ApiError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def session_destroy(self, session: str) -> None:
        common.api_request("PUT", self.base, "/v1/session/destroy/" + session, query=self.dc)


def _kv(key: str) -> str:
    return "/v1/kv/" + urllib.parse.quote(key, safe="/$&+,:;=@")
