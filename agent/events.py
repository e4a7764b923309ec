"""Consul's user events (agent/user_event.go semantics) on top of serf user events.

Wire format, kept compatible with Consul 1.7 so a Consul agent in the same LAN pool sees our events
and we see its: the serf user event is named "consul:event:<name>" and its payload is Consul's
UserEvent struct as go-msgpack writes it -- a map {"ID": uuid, "n": name, "p": payload (omitted when
empty), "nf"/"sf"/"tf": node/service/tag filter regexps (omitted when empty), "v": version (1)};
strings and bytes as msgpack raw, keys in go-msgpack's (sorted) order. The serf event's Lamport time
becomes the event's LTime. Serf refuses an encoded serf message above 512 bytes
(serf UserEventSizeLimit; the whole thing: prefix, name, ID, filters and payload).

Receipt (Consul's shouldProcessUserEvent): a node filter must match the node name; a service filter must
match the name of one of the agent's local services, and a tag filter (only with a service filter) one
of that service's tags. Filters are Go RE2 regexps matched anywhere in the string (regexp.MatchString).
Events that pass go into a ring of the last RING_SIZE events (`EventBuffer`); /v1/event/list reads it.
Events named "_rexec" (Consul's remote exec) are not listed (remote exec is not supported).

Bounds: a payload we decode is at most MAX_DECODE bytes (serf's sane limit), each field of bounded type.
"""

from __future__ import annotations

import asyncio
import base64
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from pyconsul.agent.errors import BadRequest
from pyconsul.agent.ids import uuid4

__all__ = [
    "EVENT_PREFIX", "RING_SIZE", "AgentEvents", "EventBuffer", "UserEvent", "decode", "encode", "event_index",
    "new_event", "serf_name", "should_process", "user_event_name",
]

EVENT_PREFIX = "consul:event:"
USER_EVENT_MAX_VERSION = 1
RING_SIZE = 256  # Consul's userEventBuf
MAX_DECODE = 9 * 1024  # serf's sane limit on a user event: no payload we decode can be larger
REMOTE_EXEC = "_rexec"


@dataclass(frozen=True, slots=True)
class UserEvent:
    id: str
    name: str
    payload: bytes = b""
    node_filter: str = ""
    service_filter: str = ""
    tag_filter: str = ""
    version: int = USER_EVENT_MAX_VERSION
    ltime: int = 0

    def to_json(self) -> dict[str, Any]:
        """/v1/event/fire's and /v1/event/list's JSON (Payload base64, null when empty)."""
        return {
            "ID": self.id,
            "Name": self.name,
            "Payload": base64.b64encode(self.payload).decode() if self.payload else None,
            "NodeFilter": self.node_filter,
            "ServiceFilter": self.service_filter,
            "TagFilter": self.tag_filter,
            "Version": self.version,
            "LTime": self.ltime,
        }


def serf_name(name: str) -> str:
    """The serf user event name Consul uses for a user event."""
    return EVENT_PREFIX + name


def user_event_name(serf_event: str) -> str | None:
    """The user event's name if `serf_event` is a Consul user event, else None."""
    return serf_event[len(EVENT_PREFIX):] if serf_event.startswith(EVENT_PREFIX) else None


def _compile(pattern: str, what: str) -> Any:
    from pyconsul.agent.filter.regex import RegexError, compile_go_regex  # only events with filters need it

    try:
        return compile_go_regex(pattern)
    except RegexError as exc:
        raise BadRequest(f"Invalid {what} filter: {exc}") from None


def new_event(name: str, payload: bytes = b"", node_filter: str = "", service_filter: str = "",
              tag_filter: str = "") -> UserEvent:
    """A validated event with a fresh ID (Consul's validateUserEventParams messages, as BadRequest)."""
    if not name:
        raise BadRequest("User event missing name")
    if tag_filter and not service_filter:
        raise BadRequest("Cannot provide tag filter without service filter")
    for pattern, what in ((node_filter, "node"), (service_filter, "service"), (tag_filter, "tag")):
        if pattern:
            _compile(pattern, what)
    return UserEvent(uuid4(), name, payload, node_filter, service_filter, tag_filter)


def encode(ev: UserEvent) -> bytes:
    """The serf payload: Consul's UserEvent in go-msgpack form (LTime is not sent; serf carries it)."""
    body: dict[str, Any] = {"ID": ev.id, "n": ev.name}
    if ev.node_filter:
        body["nf"] = ev.node_filter
    if ev.payload:
        body["p"] = ev.payload
    if ev.service_filter:
        body["sf"] = ev.service_filter
    if ev.tag_filter:
        body["tf"] = ev.tag_filter
    body["v"] = ev.version
    out: bytes = msgpack.packb(body, use_bin_type=False, unicode_errors="surrogateescape")
    return out


def _text(m: dict[str, Any], key: str) -> str:
    v = m.get(key, "")
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if not isinstance(v, str):
        raise ValueError(f"field {key!r} is not a string")
    return v


def decode(payload: bytes, ltime: int) -> UserEvent:
    """A Consul UserEvent from a serf user event's payload; ValueError if it is not one."""
    if len(payload) > MAX_DECODE:
        raise ValueError(f"event payload of {len(payload)} bytes (limit {MAX_DECODE})")
    try:
        m = msgpack.unpackb(payload, raw=True, strict_map_key=False, max_array_len=16, max_map_len=32)
    except Exception as exc:  # msgpack raises several types on garbage
        raise ValueError(f"undecodable event: {type(exc).__name__}") from None
    if not isinstance(m, dict):
        raise ValueError("an event is a map")
    m = {k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k): v for k, v in m.items()}
    p = m.get("p", b"")
    if p is None:
        p = b""
    if not isinstance(p, bytes):
        raise ValueError("field 'p' is not bytes")
    version = m.get("v", 0)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 1 << 31:
        raise ValueError("field 'v' is not a version number")
    return UserEvent(_text(m, "ID"), _text(m, "n"), p, _text(m, "nf"), _text(m, "sf"), _text(m, "tf"), version,
                     ltime)


def should_process(ev: UserEvent, node_name: str,
                   services: Callable[[], Iterable[tuple[str, Iterable[str]]]] | None = None) -> bool:
    """Whether this agent takes the event (Consul's shouldProcessUserEvent). `services` lists the agent's
    local services as (name, tags); without it (no local service table) a service filter matches nothing,
    as on a Consul agent with no services. A filter that does not compile drops the event."""
    if not ev.node_filter and not ev.service_filter:
        return True
    from pyconsul.agent.filter.regex import RegexError, compile_go_regex  # only events with filters need it

    try:
        if ev.node_filter and not compile_go_regex(ev.node_filter).search(node_name):
            return False
        if ev.service_filter:
            svc_re = compile_go_regex(ev.service_filter)
            tag_re = compile_go_regex(ev.tag_filter) if ev.tag_filter else None
            for name, tags in services() if services is not None else ():
                if not svc_re.search(name):
                    continue
                if tag_re is None or any(tag_re.search(t) for t in tags):
                    return True
            return False
    except RegexError:
        return False
    return True


def event_index(event_id: str) -> int:
    """Consul's uuidToUint64: the two 64-bit halves of the UUID XORed (a non-monotonic blocking index)."""
    hexdigits = event_id.replace("-", "")
    try:
        if len(hexdigits) != 32:
            raise ValueError(event_id)
        return int(hexdigits[:16], 16) ^ int(hexdigits[16:], 16)
    except ValueError:
        return 1  # an ID that is not a UUID (a foreign sender): still a usable, non-zero index


class EventBuffer:
    """The last RING_SIZE events this agent took, oldest first, and a wake-up for blocking lists."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.events: deque[UserEvent] = deque(maxlen=size)
        self._changed = asyncio.Event()

    def add(self, ev: UserEvent) -> None:
        self.events.append(ev)
        ev_set, self._changed = self._changed, asyncio.Event()
        ev_set.set()

    def select(self, name: str = "") -> list[UserEvent]:
        """The buffered events (oldest first), only those called `name` when it is given."""
        return [e for e in self.events if not name or e.name == name]

    @staticmethod
    def index(events: list[UserEvent]) -> int:
        """X-Consul-Index of a listing: the last event's index, 1 when empty (no hot loop for watchers)."""
        return event_index(events[-1].id) if events else 1

    async def wait(self, timeout: float) -> None:
        """Return at the next added event, or after `timeout` seconds."""
        changed = self._changed
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await changed.wait()
        except TimeoutError:
            pass


LocalServices = Callable[[], Iterable[tuple[str, Iterable[str]]]]


class AgentEvents:
    """One agent's event layer: fires events into its LAN pool and takes the ones serf delivers.

    `fire_serf(name, payload)` is the LAN pool's user_event (ValueError when serf refuses the size).
    `local_services` is the hook for service/tag filters: a function listing the agent's local services as
    (name, tags); None until the agent has a local service table (then a service filter matches nothing).
    """

    def __init__(self, node_name: str, fire_serf: Callable[[str, bytes], None],
                 local_services: LocalServices | None = None) -> None:
        self.node_name = node_name
        self.fire_serf = fire_serf
        self.local_services = local_services
        self.buffer = EventBuffer()
        self.received = 0
        self.filtered = 0
        self.malformed = 0

    def fire(self, ev: UserEvent) -> None:
        """Gossip `ev` to the LAN (we take it too, through serf's local delivery). ValueError if too large."""
        self.fire_serf(serf_name(ev.name), encode(ev))

    def receive(self, serf_event: str, payload: bytes, ltime: int) -> UserEvent | None:
        """A serf user event arrived: the Consul event it carries if we take it, else None."""
        name = user_event_name(serf_event)
        if name is None:
            return None
        try:
            ev = decode(payload, ltime)
        except ValueError:
            self.malformed += 1
            return None
        if not ev.name:
            ev = UserEvent(ev.id, name, ev.payload, ev.node_filter, ev.service_filter, ev.tag_filter, ev.version,
                           ltime)
        self.received += 1
        if not should_process(ev, self.node_name, self.local_services) or ev.name == REMOTE_EXEC:
            self.filtered += 1
            return None
        self.buffer.add(ev)
        return ev
