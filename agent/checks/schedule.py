"""The pure core of the check scheduler: when each check runs, when a TTL expires, which results are
reported, and how outputs are capped. No I/O, no clock, no randomness: the shell passes `now` (its
loop's monotonic clock) and the stagger draw `rnd` in [0, 1).

Consul 1.7 semantics, and where we differ:
- Interval checks (script, HTTP, TCP) first run at a random point within one interval after they are
  added (Consul's lib.RandomStagger), then every interval. Consul waits a full interval after each run
  ends, so a check drifts later by its own run time on every round; we keep the phase instead: the next
  run is the first slot `due + k*interval` (k >= 1) that is not before the run ended. A run that overruns
  skips the slots it missed (never two runs of one check at once, never a burst to catch up).
- TTL checks turn critical ("TTL expired", or "TTL expired (last output before timeout follows): <out>")
  when no update arrives within the TTL of the registration or of the last update; an update re-arms it.
  An expiry fires once; the next update re-arms.
- SuccessBeforePassing / FailuresBeforeCritical (Consul 1.7's StatusHandler, for script, HTTP and TCP
  checks): passing and warning results count as successes, critical as failures; each resets the other
  counter; a result is reported only once its counter reaches the threshold (0 and 1 both mean "at once").
  A result that is not reported changes nothing, not even the output.
- Outputs are capped at BUF_SIZE (Consul's 4 KiB): script output keeps the last BUF_SIZE bytes, prefixed
  "Captured N of M bytes\\n...\\n"; a TTL update's output keeps the first BUF_SIZE bytes, suffixed
  " ... (captured N of M bytes)".
- Alias checks mirror the checks of a service (or of a node): critical if any is critical, else warning
  if any is warning, else passing ("No checks found." when there are none). An alias never counts itself
  (Consul 1.7 does when it aliases its own node, and then stays critical once it was).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from pyconsul.agent.checks.spec import CheckSpec

BUF_SIZE = 4096  # Consul's checks.DefaultBufSize
DEFAULT_TIMEOUT = 10.0  # HTTP and TCP (Consul's default client/dialer timeout)
DEFAULT_SCRIPT_TIMEOUT = 30.0  # script checks (Consul's CheckMonitor default)
INTERVAL_KINDS = frozenset({"script", "http", "tcp", "grpc"})


def timeout_of(spec: CheckSpec) -> float:
    """The run timeout of an interval check: its own, else Consul's default for its kind."""
    if spec.timeout > 0:
        return spec.timeout
    return DEFAULT_SCRIPT_TIMEOUT if spec.kind == "script" else DEFAULT_TIMEOUT


def first_run(now: float, interval: float, rnd: float) -> float:
    """The staggered first run: a uniform point in [now, now + interval)."""
    rnd = min(max(rnd, 0.0), 1.0)
    return now + rnd * interval


def next_run(due: float, finished: float, interval: float) -> float:
    """The next slot after a run that was due at `due` and ended at `finished`: `due + k*interval` for the
    smallest k >= 1 with a slot not before `finished`."""
    if interval <= 0:
        raise ValueError("interval must be > 0")
    k = max(1, math.ceil((finished - due) / interval))
    slot = due + k * interval
    if slot < finished:  # float rounding
        slot += interval
    return slot


def cap_tail(tail: bytes, total: int) -> str:
    """A script's output: `tail` is the last bytes it wrote (at most BUF_SIZE), `total` all it wrote."""
    text = tail[-BUF_SIZE:].decode("utf-8", "replace")
    if total > len(tail[-BUF_SIZE:]):
        return f"Captured {len(tail[-BUF_SIZE:])} of {total} bytes\n...\n{text}"
    return text


def cap_head(output: str) -> str:
    """A TTL update's output: the first BUF_SIZE bytes, marked when cut."""
    raw = output.encode("utf-8", "surrogatepass")
    if len(raw) <= BUF_SIZE:
        return output
    head = raw[:BUF_SIZE].decode("utf-8", "ignore")
    return f"{head} ... (captured {BUF_SIZE} of {len(raw)} bytes)"


def ttl_expired_output(last_output: str) -> str:
    if not last_output:
        return "TTL expired"
    return f"TTL expired (last output before timeout follows): {last_output}"


@dataclass(slots=True)
class Threshold:
    """Consul 1.7's StatusHandler: report a result only once enough of its kind came in a row."""

    success_before_passing: int = 0
    failures_before_critical: int = 0
    successes: int = 0
    failures: int = 0

    def observe(self, status: str) -> bool:
        """Count one result; True when it is to be reported."""
        if status in ("passing", "warning"):
            self.successes += 1
            self.failures = 0
            return self.successes >= self.success_before_passing
        self.failures += 1
        self.successes = 0
        return self.failures >= self.failures_before_critical


class AliasCheckState(NamedTuple):
    """One health check as an alias check sees it (from the local table or a catalog query)."""

    node: str
    service_id: str
    name: str
    status: str
    output: str
    check_id: str = ""


def alias_status(checks: Iterable[AliasCheckState], node: str, service_id: str,
                 exclude: str = "") -> tuple[str, str]:
    """The status and output of an alias of `service_id` on `node` ("" = any node): node checks of that node
    count too (a service is unhealthy when its node is); a critical check wins over a warning. `exclude` is
    the alias check's own ID when the checks are its own node's: an alias of its own node does not count
    itself (Consul 1.7 does, so once critical such an alias stays critical)."""
    status, output = "passing", "No checks found."
    for chk in checks:
        if node and chk.node != node:
            continue
        if chk.service_id and chk.service_id != service_id:
            continue
        if exclude and chk.check_id == exclude:
            continue
        if chk.status in ("critical", "warning"):
            if status != "critical":
                status, output = chk.status, f'Aliased check "{chk.name}" failing: {chk.output}'
            if chk.status == "critical":
                break
        elif status == "passing":
            output = "All checks passing."
    return status, output


class Action(NamedTuple):
    check_id: str
    kind: str  # "run": start a run of an interval check; "expire": a TTL check's TTL ran out
    gen: int  # pass back to finished(); a run of a replaced or removed check is ignored


@dataclass(slots=True)
class _Entry:
    spec: CheckSpec
    gen: int
    at: float = math.inf  # the next run (interval) or expiry (ttl); inf = none pending
    running: bool = False
    last_output: str = ""
    threshold: Threshold = field(default_factory=Threshold)


class Scheduler:
    """The checks of one agent and their timers. The shell asks `next_deadline()`, sleeps until then, calls
    `due(now)` and carries out the actions; it reports results with `finished` and TTL updates with
    `ttl_update`, each of which answers what (if anything) to send to the sink."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []  # (at, gen, check_id); stale items are skipped
        self._gen = 0

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def spec(self, check_id: str) -> CheckSpec | None:
        e = self._entries.get(check_id)
        return e.spec if e else None

    def specs(self) -> list[CheckSpec]:
        return [e.spec for e in self._entries.values()]

    def _push(self, e: _Entry, at: float) -> None:
        e.at = at
        if at != math.inf:
            heapq.heappush(self._heap, (at, e.gen, e.spec.check_id))

    def add(self, spec: CheckSpec, now: float, rnd: float) -> int:
        """Start (or restart, with fresh counters and timers) a check. Returns its generation."""
        self._gen += 1
        e = _Entry(spec, self._gen, threshold=Threshold(spec.success_before_passing, spec.failures_before_critical))
        self._entries[spec.check_id] = e
        if spec.kind in INTERVAL_KINDS:
            self._push(e, first_run(now, spec.interval, rnd))
        elif spec.kind == "ttl":
            self._push(e, now + spec.ttl)
        return e.gen

    def remove(self, check_id: str) -> bool:
        return self._entries.pop(check_id, None) is not None

    def _live(self, at: float, gen: int, check_id: str) -> _Entry | None:
        e = self._entries.get(check_id)
        if e is None or e.gen != gen or e.at != at or e.running:
            return None
        return e

    def next_deadline(self) -> float | None:
        """The earliest pending run or expiry, or None."""
        while self._heap:
            at, gen, cid = self._heap[0]
            if self._live(at, gen, cid) is not None:
                return at
            heapq.heappop(self._heap)
        return None

    def due(self, now: float) -> list[Action]:
        """Everything due at `now`: interval checks to run (now marked running) and TTLs that expired."""
        out: list[Action] = []
        while self._heap and self._heap[0][0] <= now:
            at, gen, cid = heapq.heappop(self._heap)
            e = self._live(at, gen, cid)
            if e is None:
                continue
            if e.spec.kind == "ttl":
                e.at = math.inf
                out.append(Action(cid, "expire", gen))
            else:
                e.running = True
                out.append(Action(cid, "run", gen))
        return out

    def expired(self, check_id: str, gen: int) -> tuple[str, str] | None:
        """The result to report for an "expire" action (None if the check changed meanwhile)."""
        e = self._entries.get(check_id)
        if e is None or e.gen != gen:
            return None
        return "critical", ttl_expired_output(e.last_output)

    def finished(self, check_id: str, gen: int, now: float, status: str, output: str) -> tuple[str, str] | None:
        """A run ended: schedule the next one; answer the result to report, or None (a stale run, or one
        the thresholds hold back)."""
        e = self._entries.get(check_id)
        if e is None or e.gen != gen or not e.running:
            return None
        e.running = False
        self._push(e, next_run(e.at, now, e.spec.interval))
        if not e.threshold.observe(status):
            return None
        return status, output

    def ttl_update(self, check_id: str, now: float, status: str, output: str) -> tuple[str, str] | None:
        """A TTL check was updated (pass/warn/fail/update): re-arm its TTL; answer the (capped) result to
        report, or None when there is no TTL check of that ID."""
        e = self._entries.get(check_id)
        if e is None or e.spec.kind != "ttl":
            return None
        output = cap_head(output)
        e.last_output = output
        self._push(e, now + e.spec.ttl)
        return status, output
