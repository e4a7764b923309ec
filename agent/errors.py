"""The errors every layer shares: one class per failure a caller may act on, each with a stable code.

Contract:
- A caller decides what to do (retry elsewhere, wait for a leader, answer 4xx/5xx) by the CLASS of an
  error, never by words in its message. Messages are for people; where Consul has a text for the
  situation, the message is Consul's text (clients and scripts print it).
- `code` is a stable string: it crosses server RPC (`to_wire` / `from_wire`) so the receiver rebuilds
  the same class with the same fields. Codes are append-only, like wire enums: never rename one.
- The HTTP layer maps classes to status codes in one place (agent/http/server.py).
- This module imports nothing but the standard library's typing helpers: the pure protocol cores
  (raft/core.py) import it, and client agents load it without Raft or the state store.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest", "CommandRejected", "DatacenterUnavailable", "Internal", "LeadershipLost", "NoLeader",
    "NoPathToDatacenter", "NotFound", "NotLeader", "PermissionDenied", "PyconsulError", "ReplyTooLarge",
    "RequestTimeout", "Unavailable", "from_wire", "to_wire",
]


class PyconsulError(Exception):
    """Base of every typed error. `message` is what a user sees; `fields()` is what travels with the code."""

    code: ClassVar[str] = "internal"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.default_message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.default_message

    def __str__(self) -> str:
        return self.message

    def fields(self) -> dict[str, str]:
        """Constructor arguments besides the message, for the wire (all str)."""
        return {}

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, str]) -> PyconsulError:
        return cls(message)


class Internal(PyconsulError):
    """A failure with no type of its own (a bug, or an unexpected exception on a remote server)."""

    code = "internal"


class NoLeader(PyconsulError):
    """Consul's "No cluster leader": no leader is known right now (elections, lost quorum)."""

    code = "no_leader"
    default_message = "No cluster leader"


class NotLeader(PyconsulError):
    """This server is not the leader; `leader` is the leader's ID when one is known, else "".
    Raft's own text (hashicorp/raft ErrNotLeader). Retry on the leader."""

    code = "not_leader"
    default_message = "node is not the leader"

    def __init__(self, leader: str = "", message: str = "") -> None:
        super().__init__(message)
        self.leader = leader

    def fields(self) -> dict[str, str]:
        return {"leader": self.leader}

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, str]) -> PyconsulError:
        return cls(fields.get("leader", ""), message)


class LeadershipLost(PyconsulError):
    """The entry this leader proposed was overwritten by another leader: the write did NOT happen.
    Safe to retry (hashicorp/raft ErrLeadershipLost)."""

    code = "leadership_lost"
    default_message = "leadership lost while committing log"


class NoPathToDatacenter(PyconsulError):
    """Consul's "No path to datacenter": `?dc=` names a datacenter the WAN pool has never seen (bad input:
    HTTP 400). DatacenterUnavailable is the server-side case of a known datacenter with no alive server."""

    code = "no_path_to_dc"
    default_message = "No path to datacenter"

    def __init__(self, dc: str = "", message: str = "") -> None:
        super().__init__(message)
        self.dc = dc

    def fields(self) -> dict[str, str]:
        return {"dc": self.dc}

    @classmethod
    def rebuild(cls, message: str, fields: dict[str, str]) -> PyconsulError:
        return cls(fields.get("dc", ""), message)


class DatacenterUnavailable(NoPathToDatacenter):
    """A datacenter the WAN pool knows has no alive server right now (later Consul's text for it); a
    server-side failure (HTTP 500), retryable later. A NoPathToDatacenter, so failover code treats both alike."""

    code = "dc_unavailable"
    default_message = "Remote DC has no server currently reachable"


class Unavailable(PyconsulError):
    """The server could not be reached, or the connection broke before it answered. Retryable on
    another server: a dial failure sent nothing; a broken connection is retried as Consul's client
    retries an EOF."""

    code = "unavailable"
    default_message = "server unavailable"


class DialFailed(Unavailable):
    """The connection to the server could not be opened, so nothing was sent: safe to retry on another
    server, writes included. Any other Unavailable (a connection lost mid-request) may have reached
    the server, so a non-idempotent write must not be resent elsewhere."""

    code = "dial_failed"
    default_message = "server unreachable"


class RequestTimeout(PyconsulError):
    """No answer within the deadline. The outcome is unknown (a write may have been applied), so a
    caller must not blindly resend it elsewhere; it is reported, not retried."""

    code = "timeout"
    default_message = "request timed out"


class BadRequest(PyconsulError):
    """The request itself is wrong (HTTP 400 with the message)."""

    code = "bad_request"
    default_message = "Bad request"


class NotFound(PyconsulError):
    """The named object does not exist (HTTP 404 with the message)."""

    code = "not_found"
    default_message = "Not found"


class PermissionDenied(PyconsulError):
    """Consul's ACL denial (HTTP 403). Reserved for the ACL work."""

    code = "permission_denied"
    default_message = "Permission denied"


class CommandRejected(PyconsulError):
    """The state machine rejected a committed command and changed nothing (StateError), e.g.
    "Missing node registration" or an invalid session: the request names what does not exist or conflicts
    with the state, so HTTP answers 400 with the text (Consul 1.7 answers 500; a client's error is not a
    server error, and Consul's clients raise on both)."""

    code = "rejected"
    default_message = "command rejected"


class ReplyTooLarge(PyconsulError):
    """A forwarded request's answer does not fit in one server RPC frame (64 MiB, agent/raft/wire.py): e.g.
    GET /v1/snapshot of a larger state through a client agent or a follower. Forwarded replies are not
    streamed; ask the leader itself (or any server with ?stale), whose answer does not cross server RPC."""

    code = "reply_too_large"
    default_message = "the reply exceeds the server RPC frame limit"


_BY_CODE: dict[str, type[PyconsulError]] = {
    cls.code: cls for cls in (Internal, NoLeader, NotLeader, LeadershipLost, NoPathToDatacenter, Unavailable,
                              RequestTimeout, BadRequest, NotFound, PermissionDenied, CommandRejected, DialFailed,
                              ReplyTooLarge, DatacenterUnavailable)
}


def to_wire(exc: BaseException) -> dict[str, Any]:
    """An exception as a server-RPC error reply body: {"code": str, "message": str, "fields": {str: str}}.
    A non-typed exception travels as code "internal" with its text (or its class name)."""
    if isinstance(exc, PyconsulError):
        return {"code": exc.code, "message": exc.message, "fields": exc.fields()}
    return {"code": Internal.code, "message": str(exc) or type(exc).__name__, "fields": {}}


def from_wire(body: Any) -> PyconsulError:
    """The typed exception an error reply body stands for; an unknown code (or a malformed body)
    becomes Internal with whatever text there is, never a crash."""
    if not isinstance(body, dict):
        return Internal(str(body))
    code, message, fields = body.get("code"), body.get("message"), body.get("fields")
    cls = _BY_CODE.get(code, Internal) if isinstance(code, str) else Internal
    text = message if isinstance(message, str) else ""
    clean = {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {}
    return cls.rebuild(text, clean)
