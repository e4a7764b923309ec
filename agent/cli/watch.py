"""`pyconsul watch -type=... [options] [child...]`: Consul 1.7's watches (its watch/ package) as a verb.

A watch is a loop of blocking queries on one view (`key`, `keyprefix`, `services`, `nodes`,
`service`, `checks`, `event`). Without a child command the first result is printed as indented JSON
and the command exits. With one, the child runs (through `$SHELL -c`, else /bin/sh; `-shell=false`
runs it directly) for the first result and for every change after it, with the result as JSON on its
stdin and CONSUL_INDEX=<index> in its environment; a child that fails ends the watch (exit 1), as in
Consul. SIGINT/SIGTERM end the watch with exit code 0 (a running child gets the signal first).

The plan (`Plan`) is pure: it decides from (index, result) whether the handler runs and which index
the next blocking read waits on, and how long to back off after errors (5 s x failures^2, at most
180 s, as Consul's watch.Plan).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pyconsul.agent.cli import common
from pyconsul.agent.cli.common import ApiError, CLIError
from pyconsul.agent.cli.lock import kill_child, shell_argv
from pyconsul.agent.flags import FlagSet

TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")
RETRY_INTERVAL = 5.0  # Consul's watch retryInterval
MAX_BACKOFF = 180.0  # Consul's maxBackoffTime
BLOCK_WAIT = 300.0  # seconds of one blocking read (the server's default wait, as Consul's client sends none)
CHECK_STATES = ("any", "passing", "warning", "critical")

_PARAMS = {  # which optional parameters each type takes (Consul: anything else is "Invalid parameters")
    "key": {"key"}, "keyprefix": {"prefix"}, "services": set(), "nodes": set(),
    "service": {"service", "tag", "passingonly"}, "checks": {"service", "state"}, "event": {"name"},
}


@dataclass(frozen=True)
class Query:
    """One watch as an HTTP read: path, parameters, and how to turn the body into the handler's data."""

    type: str
    path: str
    params: tuple[tuple[str, str], ...]
    missing_ok: bool = False
    shape: Callable[[Any], Any] = field(default=lambda body: body, compare=False)


def build_query(watch_type: str, params: Mapping[str, str], *, dc: str = "", stale: bool = False) -> Query:
    """Validate a watch's parameters (Consul's wording) and build its read. Raises CLIError."""
    if not watch_type:
        raise CLIError("Watch type must be specified")
    if watch_type not in _PARAMS:
        raise CLIError(f"Unsupported watch type: {watch_type}")
    extra = sorted(k for k, v in params.items() if v and k not in _PARAMS[watch_type])
    if extra:
        raise CLIError(f"Invalid parameters: [{' '.join(extra)}]")
    base: list[tuple[str, str]] = []
    if dc:
        base.append(("dc", dc))
    if stale:
        base.append(("stale", ""))
    quote = urllib.parse.quote
    if watch_type == "key":
        if not params.get("key"):
            raise CLIError("Must specify a single key to watch")
        return Query("key", "/v1/kv/" + quote(params["key"].lstrip("/"), safe="/$&+,:;=@"), tuple(base), True,
                     lambda body: body[0] if isinstance(body, list) and body else None)
    if watch_type == "keyprefix":
        if not params.get("prefix"):
            raise CLIError("Must specify a single prefix to watch")
        return Query("keyprefix", "/v1/kv/" + quote(params["prefix"].lstrip("/"), safe="/$&+,:;=@"),
                     (*base, ("recurse", "")), True)
    if watch_type == "services":
        return Query("services", "/v1/catalog/services", tuple(base))
    if watch_type == "nodes":
        return Query("nodes", "/v1/catalog/nodes", tuple(base))
    if watch_type == "service":
        if not params.get("service"):
            raise CLIError("Must specify a single service to watch")
        extra_q = [("tag", params["tag"])] if params.get("tag") else []
        if params.get("passingonly") and _parse_bool(params["passingonly"]):
            extra_q.append(("passing", "1"))
        return Query("service", "/v1/health/service/" + quote(params["service"], safe=""), (*base, *extra_q))
    if watch_type == "checks":
        service, state = params.get("service", ""), params.get("state", "")
        if service and state:
            raise CLIError("Cannot specify service and state")
        if service:
            return Query("checks", "/v1/health/checks/" + quote(service, safe=""), tuple(base))
        state = state or "any"
        if state not in CHECK_STATES:
            raise CLIError(f"Invalid state: {state} (one of {', '.join(CHECK_STATES)})")
        return Query("checks", "/v1/health/state/" + state, tuple(base))
    name = params.get("name", "")
    return Query("event", "/v1/event/list", (*base, *([("name", name)] if name else [])))


def _parse_bool(value: str) -> bool:
    """Go's strconv.ParseBool, worded as Consul's watch reports it."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise CLIError(f'Failed to parse passingonly flag: strconv.ParseBool: parsing "{value}": invalid syntax')


def event_id_to_index(event_id: str) -> int:
    """Consul's IDToIndex: an event UUID folded to the uint64 used as its list's index (halves XORed)."""
    hexes = event_id.replace("-", "")
    if len(hexes) != 32:
        return 0
    try:
        return int(hexes[:16], 16) ^ int(hexes[16:], 16)
    except ValueError:
        return 0


def new_events(events: Any, last_index: int) -> Any:
    """The events after the one the previous result ended with (Consul's event watch prunes them)."""
    if not isinstance(events, list) or not last_index:
        return events
    for i, ev in enumerate(events):
        if isinstance(ev, dict) and event_id_to_index(str(ev.get("ID", ""))) == last_index:
            return events[i + 1:]
    return events


def backoff(failures: int) -> float:
    """Seconds to wait after the n-th consecutive failed read."""
    return min(RETRY_INTERVAL * failures * failures, MAX_BACKOFF)


@dataclass
class Plan:
    """Consul's watch.Plan decisions, without I/O.

    Invariant: `index` is what the next read blocks on (0: return at once); the handler sees a result
    only when the index moved AND (first result, or the data differs from the last one handled).
    """

    index: int = 0
    started: bool = False
    last: Any = None
    failures: int = 0
    ordered: bool = True  # False for event lists, whose index is a hash of the last event's ID

    def on_result(self, index: int, result: Any) -> bool:
        """Record one read's answer; True when the handler should run with it."""
        self.failures = 0
        if self.started and index == self.index:
            return False  # the blocking read timed out with nothing new
        first = not self.started
        self.started = True
        # An index going backwards restarts from 0 (Consul's WaitIndexVal.Next). Not for events: their index is
        # not ordered, and Consul's reset there hands the handler every buffered event again.
        self.index = 0 if self.ordered and index < self.index else index
        if not first and result == self.last:
            return False
        self.last = result
        return True

    def on_error(self) -> float:
        """Record a failed read; the seconds to wait before the next one."""
        self.failures += 1
        return backoff(self.failures)


class _Stop(BaseException):
    """SIGINT/SIGTERM: leave the watch loop (from wherever the main thread is blocked)."""


def go_json(data: Any, indent: int | None = None) -> str:
    """JSON as Go's encoder writes it: <, > and & escaped as \\u003c, \\u003e, \\u0026."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, separators=(",", ": ") if indent else (",", ":"))
    for ch in "<>&\u2028\u2029":
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def cmd_watch(args: Sequence[str]) -> int:
    fs = FlagSet("watch")
    common.http_flags(fs)
    common.server_flags(fs)
    fs.string("type", "", "Specifies the watch type. One of key, keyprefix, services, nodes, service, checks, "
              "or event.")
    fs.string("key", "", "Specifies the key to watch. Only for 'key' type.")
    fs.string("prefix", "", "Specifies the key prefix to watch. Only for 'keyprefix' type.")
    fs.string("service", "", "Specifies the service to watch. Required for 'service' type, optional for 'checks' "
              "type.")
    fs.string("tag", "", "Specifies the service tag to filter on. Optional for 'service' type.")
    fs.string("passingonly", "", "Specifies if only hosts passing all checks are displayed. Optional for "
              "'service' type, must be one of `[true|false]`. Defaults false.")
    fs.string("state", "", "Specifies the states to watch. Optional for 'checks' type.")
    fs.string("name", "", "Specifies an event name to watch. Only for 'event' type.")
    fs.bool("shell", True, "Use a shell to run the command (can set a custom shell via the SHELL environment "
            "variable).")
    res = common.parse(
        fs, args, "watch [options] [child...]",
        "Watches for changes in a given data view. If a child process is specified, it will be invoked with\n"
        "  the latest results (JSON on its stdin, CONSUL_INDEX in its environment) on the first result and\n"
        "  on every change. Otherwise, the latest values are dumped to stdout and the watch terminates.\n\n"
        "  Providing the watch type is required, and other parameters may be required or supported\n"
        "  depending on the watch type.")
    params = {k: res.str(k) for k in ("key", "prefix", "service", "tag", "passingonly", "state", "name")}
    query = build_query(res.str("type"), params, dc=res.str("datacenter"), stale=res.bool("stale"))
    base = common.http_addr(res)
    try:
        common.api_request("GET", base, "/v1/agent/self")
    except ApiError as exc:
        raise CLIError(f"Error querying Consul agent: {exc}") from None
    return run_watch(base, query, res.positional, res.bool("shell"))


def run_watch(base: str, query: Query, child: Sequence[str], use_shell: bool) -> int:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _loop(base, query, child, use_shell)
    except _Stop:
        return 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _loop(base: str, query: Query, child: Sequence[str], use_shell: bool) -> int:
    plan = Plan(ordered=query.type != "event")
    while True:
        params = list(query.params)
        if plan.index:
            params += [("index", str(plan.index)), ("wait", f"{int(BLOCK_WAIT)}s")]
        try:
            body, index = common.api_read(base, query.path, query=params, missing_ok=query.missing_ok,
                                          timeout=BLOCK_WAIT * 1.0625 + 15.0 if plan.index else 30.0)
        except ApiError as exc:
            pause = plan.on_error()
            print(f"Watch (type: {query.type}) errored: {exc}, retry in {pause:g}s", file=sys.stderr)
            time.sleep(pause)  # a signal interrupts this sleep (the handler raises _Stop)
            continue
        data = query.shape(body)
        if query.type == "event":
            data = new_events(data, plan.index)
        if not plan.on_result(index, data):
            continue
        if not child:
            print(go_json(data, indent=4))
            return 0
        if not _run_handler(child, use_shell, index, data):
            return 1


def _run_handler(child: Sequence[str], use_shell: bool, index: int, data: Any) -> bool:
    """Run the child with `data` on stdin; False (after Consul's message) when it fails."""
    try:
        proc = subprocess.Popen(shell_argv(child, use_shell), stdin=subprocess.PIPE,
                                env={**os.environ, "CONSUL_INDEX": str(index)})
    except OSError as exc:
        print(f"Error starting handler: {exc}", file=sys.stderr)
        return False
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write((go_json(data) + "\n").encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the handler does not read its input: fine
        code = proc.wait()
    except _Stop:
        proc.send_signal(signal.SIGTERM)  # forwarded, as Consul does; then the watch ends
        kill_child(proc)
        raise
    if code != 0:
        print(f"Error executing handler: exit status {code}", file=sys.stderr)
        return False
    return True


COMMANDS: common.Table = {
    "watch": (cmd_watch, "Watch for changes"),
}
