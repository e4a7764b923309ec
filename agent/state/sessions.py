"""Sessions: create, destroy (invalidate), renew, TTL deadlines, lock-delay, reads and Consul JSON.

Time contract: `now` always comes from the command (stamped by the leader), never from a clock here.
- A TTL session's deadline is `now + SESSION_TTL_MULTIPLIER × TTL`, set at create and at every renew
  (Consul's leader also waits twice the TTL before invalidating). Deadlines are replicated state but
  touch no table index: a renew wakes no blocking query. `expired(t, now)` lists sessions whose
  deadline is <= now; the leader turns each into a SessionDestroy command.
- Invalidation (destroy, the session's node deregistered, one of its checks deregistered or turned
  critical) releases (behavior "release") or deletes (behavior "delete") every key it holds, and
  refuses acquires of those keys until `now + min(LockDelay, 60 s)`.
"""

from __future__ import annotations

from typing import Any

from pyconsul.agent.state import kv, prepared_queries
from pyconsul.agent.state.commands import SessionCreate
from pyconsul.agent.state.results import StateFailure
from pyconsul.agent.state.tables import Session, Tables, nk

SESSION_TTL_MULTIPLIER = 2
SESSION_TTL_MIN = 10.0
SESSION_TTL_MAX = 86400.0
MAX_LOCK_DELAY = 60.0
BEHAVIORS = ("release", "delete")


def create(t: Tables, idx: int, cmd: SessionCreate) -> str:
    if not cmd.id:
        raise StateFailure("Missing session ID")
    if cmd.id in t.sessions:
        raise StateFailure(f"Session ID {kv.quote(cmd.id)} already exists")
    behavior = cmd.behavior or "release"
    if behavior not in BEHAVIORS:
        raise StateFailure(f"Invalid session behavior: {behavior}")
    if cmd.ttl_seconds != 0 and not SESSION_TTL_MIN <= cmd.ttl_seconds <= SESSION_TTL_MAX:
        raise StateFailure(f"Invalid Session TTL '{format_duration(cmd.ttl_seconds)}', must be between "
                           f"[{format_duration(SESSION_TTL_MIN)}={format_duration(SESSION_TTL_MAX)}]")
    if cmd.lock_delay_seconds < 0:
        raise StateFailure("LockDelay must not be negative")
    node = t.nodes.get(nk(cmd.node))
    if node is None:
        raise StateFailure("Missing node registration")
    for check_id in cmd.checks:
        check = t.checks.get((nk(cmd.node), nk(check_id)))
        if check is None:
            raise StateFailure(f"Missing check '{check_id}' registration")
        if check.status == "critical":
            raise StateFailure(f"Check '{check_id}' is in critical state")
    session = Session(id=cmd.id, node=node.node, name=cmd.name, checks=tuple(cmd.checks),
                      lock_delay=float(cmd.lock_delay_seconds), behavior=behavior, ttl=float(cmd.ttl_seconds),
                      create_index=idx, modify_index=idx)
    t.put("sessions", cmd.id, session)
    t.bump("sessions", idx)
    if session.ttl:
        t.put("session_deadlines", cmd.id, cmd.now + SESSION_TTL_MULTIPLIER * session.ttl)
    return cmd.id


def renew(t: Tables, session_id: str, now: float) -> Session | None:
    session = t.sessions.get(session_id)
    if session is not None and session.ttl:
        t.put("session_deadlines", session_id, now + SESSION_TTL_MULTIPLIER * session.ttl)
    return session


def destroy(t: Tables, idx: int, session_id: str, now: float) -> bool:
    """Invalidate a session; False if it did not exist (nothing changes)."""
    session = t.sessions.get(session_id)
    if session is None:
        return False
    for key in sorted(k for k, until in t.lock_delays.items() if until <= now):  # forget stale delays
        t.delete("lock_delays", key)
    delay = min(session.lock_delay, MAX_LOCK_DELAY)
    for key in t.kv_by_session.get(session_id):
        entry = t.kvs[key]
        if session.behavior == "delete":
            kv.kv_delete(t, idx, key)
        else:
            kv.set_entry(t, idx, key, entry.value, entry.flags, session="")
        if delay > 0:
            t.put("lock_delays", key, now + delay)
    t.delete("sessions", session_id)
    t.delete("session_deadlines", session_id)
    t.bump("sessions", idx)
    prepared_queries.drop_session(t, idx, session_id)  # queries bound to the session go with it
    return True


def invalidate_for_check(t: Tables, idx: int, node: str, check_id: str, now: float) -> None:
    """Destroy every session of `node` that lists check_id (the check went critical or away)."""
    key = nk(check_id)
    for sid in t.sessions_by_node.get(nk(node)):
        if any(nk(c) == key for c in t.sessions[sid].checks):
            destroy(t, idx, sid, now)


def invalidate_for_node(t: Tables, idx: int, node: str, now: float) -> None:
    for sid in t.sessions_by_node.get(nk(node)):
        destroy(t, idx, sid, now)


def expired(t: Tables, now: float) -> list[str]:
    return sorted(sid for sid, deadline in t.session_deadlines.items() if deadline <= now)


# ---------------------------------------------------------------- reads and JSON


def format_duration(seconds: float) -> str:
    """A Go-style duration string for whole and fractional seconds: 10s, 1m30s, 24h0m0s, 1.5s."""
    if seconds == 0:
        return "0s"
    whole = int(seconds)
    frac = seconds - whole
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    sec = f"{s + frac:g}s" if frac else f"{s}s"
    if h:
        return f"{h}h{m}m{sec}"
    if m:
        return f"{m}m{sec}"
    return sec


def session_json(session: Session) -> dict[str, Any]:
    """Consul 1.7 Session JSON. LockDelay in nanoseconds; TTL in seconds as "<n>s" ("" = none);
    Checks (deprecated) and NodeChecks both list the node checks; no service checks are supported."""
    return {
        "ID": session.id,
        "Name": session.name,
        "Node": session.node,
        "Checks": list(session.checks),
        "NodeChecks": list(session.checks),
        "ServiceChecks": None,
        "LockDelay": round(session.lock_delay * 1e9),
        "Behavior": session.behavior,
        "TTL": f"{session.ttl:g}s" if session.ttl else "",
        "CreateIndex": session.create_index,
        "ModifyIndex": session.modify_index,
    }


def session_list(t: Tables) -> list[Session]:
    return [t.sessions[sid] for sid in sorted(t.sessions)]


def node_sessions(t: Tables, node: str) -> list[Session]:
    return [t.sessions[sid] for sid in t.sessions_by_node.get(nk(node))]
