"""The local state of one agent: its services and checks, with what the catalog is known to hold (Consul's
agent/local.State). Pure: no I/O, no clock (callers pass `now`, monotonic seconds), no randomness (callers
pass a stagger fraction).

Every service and check entry carries
- `in_sync`: the catalog is known to hold exactly this entry (anti-entropy pushes the others);
- `deleted`: removed locally (or found in the catalog but not here) and not yet deregistered there;
- `version`: bumped on every change, so a sync that raced a change does not mark the new content synced
  (SyncOp.versions; `mark_done` only marks entries whose version is unchanged).

Invariants: a deleted entry is never shown by `services()`/`checks()`; a check's service, if any, is a
live local service (a service's removal removes its checks); maintenance checks ("_node_maintenance",
"_service_maintenance:<id>") have no spec and ignore runner updates.

Anti-entropy rules (Consul's updateSyncState/syncChanges): the local state wins. `update_sync_state`
compares with the catalog's view of this node: a remote service or check that is not local is marked
deleted (except the "consul" service and "serfHealth", which the servers manage); a local one that differs
is marked out of sync; with EnableTagOverride the catalog's tags are adopted. `pending(now)` lists the
writes to make: deregistrations first, then each out-of-sync service with all its checks, then the
out-of-sync checks of services that are in sync (and node checks).

Output-only check updates are deferred (Consul's check_update_interval): the output is kept locally and
written back once, at the deferral deadline, so a chatty check does not write to Raft on every run; a
status change is synced at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pyconsul.agent.checks.spec import CheckSpec
from pyconsul.agent.errors import BadRequest, NotFound
from pyconsul.agent.local.definitions import LocalService, check_definition, quote
from pyconsul.agent.state.commands import CheckDefinition, ServiceAddress

__all__ = [
    "NODE_MAINT", "NODE_MAINT_DEFAULT", "SERVICE_MAINT_DEFAULT", "SERVICE_MAINT_PREFIX", "CheckEntry", "LocalCheck",
    "LocalState", "ServiceEntry", "SyncOp", "aggregate_status", "service_maint_id",
]

NODE_MAINT = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
NODE_MAINT_DEFAULT = ("Maintenance mode is enabled for this node, but no reason was provided. "
                      "This is a default message.")
SERVICE_MAINT_DEFAULT = ("Maintenance mode is enabled for this service, but no reason was provided. "
                         "This is a default message.")
DEREGISTER_MIN = 60.0  # Consul's check_deregister_interval_min: a shorter deregister_critical_service_after is raised
MAX_SERVICES = 16384  # services of one agent (README "Limits"); a new one beyond is refused
MAX_CHECKS = 65536  # checks of one agent, maintenance checks included
CONSUL_SERVICE = "consul"
SERF_CHECK = "serfHealth"
Source = Literal["api", "file"]


def service_maint_id(service_id: str) -> str:
    return SERVICE_MAINT_PREFIX + service_id


def is_maintenance(check_id: str) -> bool:
    return check_id == NODE_MAINT or check_id.startswith(SERVICE_MAINT_PREFIX)


@dataclass(frozen=True, slots=True)
class LocalCheck:
    """A check as the agent shows it (Consul's HealthCheck of this node)."""

    check_id: str
    name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    definition: CheckDefinition = field(default_factory=CheckDefinition)


@dataclass(slots=True)
class ServiceEntry:
    service: LocalService
    source: Source = "api"
    in_sync: bool = False
    deleted: bool = False
    version: int = 0


@dataclass(slots=True)
class CheckEntry:
    check: LocalCheck
    spec: CheckSpec | None  # None: a maintenance check (nothing runs it)
    source: Source = "api"
    in_sync: bool = False
    deleted: bool = False
    version: int = 0
    critical_since: float | None = None  # monotonic seconds; None unless critical
    defer_until: float | None = None  # an output-only change waits until then


@dataclass(frozen=True, slots=True)
class SyncOp:
    """One catalog write. `versions`: (table, id, version) of the entries it makes in sync."""

    kind: Literal["register_service", "deregister_service", "register_check", "deregister_check"]
    id: str
    service: LocalService | None = None
    checks: tuple[LocalCheck, ...] = ()
    versions: tuple[tuple[str, str, int], ...] = ()


def check_from_spec(spec: CheckSpec, service: LocalService | None) -> LocalCheck:
    return LocalCheck(spec.check_id, spec.name, spec.status or "critical", spec.notes, spec.output, spec.service_id,
                      service.name if service else "", service.tags if service else (), spec.kind,
                      check_definition(spec))


_RANK = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 3}


def aggregate_status(checks: Iterable[LocalCheck]) -> str:
    """Consul's AggregatedStatus of a service: maintenance > critical > warning > passing (no checks: passing)."""
    worst = "passing"
    for c in checks:
        status = "maintenance" if is_maintenance(c.check_id) else c.status
        if _RANK.get(status, 2) > _RANK[worst]:
            worst = status if status in _RANK else "critical"
    return worst


class LocalState:
    def __init__(self, check_update_interval: float = 300.0, deregister_min: float = DEREGISTER_MIN) -> None:
        self.check_update_interval = check_update_interval
        self.deregister_min = deregister_min  # DEREGISTER_MIN, but for tests (PYCONSUL_TEST_REAP_INTERVAL)
        self._services: dict[str, ServiceEntry] = {}
        self._checks: dict[str, CheckEntry] = {}
        self._version = 0

    def _next(self) -> int:
        self._version += 1
        return self._version

    # ------------------------------------------------------------ reads

    def services(self) -> dict[str, LocalService]:
        return {k: e.service for k, e in self._services.items() if not e.deleted}

    def service(self, service_id: str) -> LocalService | None:
        e = self._services.get(service_id)
        return None if e is None or e.deleted else e.service

    def service_entry(self, service_id: str) -> ServiceEntry | None:
        e = self._services.get(service_id)
        return None if e is None or e.deleted else e

    def checks(self) -> dict[str, LocalCheck]:
        return {k: e.check for k, e in self._checks.items() if not e.deleted}

    def check(self, check_id: str) -> LocalCheck | None:
        e = self._checks.get(check_id)
        return None if e is None or e.deleted else e.check

    def check_entry(self, check_id: str) -> CheckEntry | None:
        e = self._checks.get(check_id)
        return None if e is None or e.deleted else e

    def service_checks(self, service_id: str) -> list[LocalCheck]:
        """The service's own checks and the node's checks (which count for every service, as in Consul)."""
        return [e.check for e in self._checks.values()
                if not e.deleted and e.check.service_id in (service_id, "")]

    def entries(self) -> tuple[dict[str, ServiceEntry], dict[str, CheckEntry]]:
        """Live entries (for persistence and tests)."""
        return ({k: e for k, e in self._services.items() if not e.deleted},
                {k: e for k, e in self._checks.items() if not e.deleted})

    # ------------------------------------------------------------ changes

    def add_service(self, svc: LocalService, checks: Iterable[CheckSpec], *, source: Source = "api",
                    replace_existing_checks: bool = False) -> tuple[list[CheckSpec], list[str]]:
        """Add or replace a service with its checks. A re-registered check keeps its status and output.
        Returns (checks to (re)start, check IDs removed)."""
        specs = list(checks)
        prev = self._services.get(svc.id)
        if (prev is None or prev.deleted) and len(self.services()) >= MAX_SERVICES:
            raise BadRequest(f"Too many services on this agent (limit {MAX_SERVICES})")
        new_checks = sum(1 for sp in specs if self.check_entry(sp.check_id) is None)
        if new_checks and len(self.checks()) + new_checks > MAX_CHECKS:
            raise BadRequest(f"Too many checks on this agent (limit {MAX_CHECKS})")
        self._services[svc.id] = ServiceEntry(svc, source, version=self._next())
        removed: list[str] = []
        if replace_existing_checks and prev is not None and not prev.deleted:
            wanted = {s.check_id for s in specs}
            for cid, e in list(self._checks.items()):
                if not e.deleted and e.check.service_id == svc.id and cid not in wanted and e.spec is not None:
                    self._remove_check(cid)
                    removed.append(cid)
        for spec in specs:
            self._put_check(spec, svc, source)
        for e in self._checks.values():  # existing checks show the service's new name and tags
            if (not e.deleted and e.check.service_id == svc.id
                    and (e.check.service_name, e.check.service_tags) != (svc.name, svc.tags)):
                e.check = replace(e.check, service_name=svc.name, service_tags=svc.tags)
                self._touch_check(e)
        return specs, removed

    def remove_service(self, service_id: str) -> list[str]:
        """Remove a service and its checks (NotFound if unknown); the removed check IDs."""
        e = self._services.get(service_id)
        if e is None or e.deleted:
            raise NotFound(f"Unknown service ID {quote(service_id)}. Ensure that the service ID is passed, "
                           "not the service name.")
        removed = [cid for cid, c in self._checks.items() if not c.deleted and c.check.service_id == service_id]
        for cid in removed:
            self._remove_check(cid)
        e.deleted, e.in_sync, e.version = True, False, self._next()
        return removed

    def add_check(self, spec: CheckSpec, *, source: Source = "api") -> None:
        svc = None
        if spec.service_id:
            svc = self.service(spec.service_id)
            if svc is None:
                raise BadRequest(f"ServiceID {quote(spec.service_id)} does not exist")
        if is_maintenance(spec.check_id):
            raise BadRequest(f"Check ID {quote(spec.check_id)} is reserved for maintenance mode")
        if self.check_entry(spec.check_id) is None and len(self.checks()) >= MAX_CHECKS:
            raise BadRequest(f"Too many checks on this agent (limit {MAX_CHECKS})")
        self._put_check(spec, svc, source)

    def _put_check(self, spec: CheckSpec, svc: LocalService | None, source: Source) -> None:
        """Add or replace a check; one replacing a running check keeps its status and output (Consul
        snapshots and restores check state around a re-registration, so re-registering does not flap)."""
        old = self.check_entry(spec.check_id)
        e = CheckEntry(check_from_spec(spec, svc), spec, source, version=self._next())
        if old is not None and old.spec is not None:
            e.check = replace(e.check, status=old.check.status, output=old.check.output)
            e.critical_since = old.critical_since
        self._checks[spec.check_id] = e

    def remove_check(self, check_id: str) -> None:
        if self.check_entry(check_id) is None:
            raise NotFound(f"Unknown check ID {quote(check_id)}. Ensure that the check ID is passed, "
                           "not the check name.")
        self._remove_check(check_id)

    def _remove_check(self, check_id: str) -> None:
        e = self._checks[check_id]
        e.deleted, e.in_sync, e.version, e.defer_until = True, False, self._next(), None

    def _touch_check(self, e: CheckEntry) -> None:
        e.in_sync, e.version, e.defer_until = False, self._next(), None

    def update_check(self, check_id: str, status: str, output: str, now: float, stagger: float = 0.5) -> bool:
        """A runner's (or a TTL call's) result. True if the catalog must be told now (a status change).
        Unknown checks and maintenance checks are ignored."""
        e = self.check_entry(check_id)
        if e is None or e.spec is None:
            return False
        if status == "critical":
            if e.critical_since is None:
                e.critical_since = now
        else:
            e.critical_since = None
        c = e.check
        if c.status == status and c.output == output:
            return False
        if self.check_update_interval > 0 and c.status == status:
            e.check = replace(c, output=output)
            if e.defer_until is None and e.in_sync:
                e.defer_until = now + self.check_update_interval / 2 + stagger * self.check_update_interval
            elif not e.in_sync:
                e.version = self._next()
            return False
        e.check = replace(c, status=status, output=output)
        self._touch_check(e)
        return True

    def set_node_maintenance(self, enable: bool, reason: str) -> bool:
        """True if anything changed (enabling twice keeps the first reason, as Consul does)."""
        present = self.check_entry(NODE_MAINT) is not None
        if enable and not present:
            self._put_maint(LocalCheck(NODE_MAINT, "Node Maintenance Mode", "critical", reason or NODE_MAINT_DEFAULT,
                                       type="maintenance"))
            return True
        if not enable and present:
            self._remove_check(NODE_MAINT)
            return True
        return False

    def set_service_maintenance(self, service_id: str, enable: bool, reason: str) -> bool:
        svc = self.service(service_id)
        if svc is None:
            raise NotFound(f"No service registered with ID {quote(service_id)}")
        cid = service_maint_id(service_id)
        present = self.check_entry(cid) is not None
        if enable and not present:
            self._put_maint(LocalCheck(cid, "Service Maintenance Mode", "critical", reason or SERVICE_MAINT_DEFAULT,
                                       "", svc.id, svc.name, svc.tags, "maintenance"))
            return True
        if not enable and present:
            self._remove_check(cid)
            return True
        return False

    def _put_maint(self, check: LocalCheck) -> None:
        self._checks[check.check_id] = CheckEntry(check, None, "api", version=self._next())

    def restore_check(self, check: LocalCheck, spec: CheckSpec | None) -> None:
        """A check loaded from the data dir (a maintenance check, or a check whose status was saved)."""
        self._checks[check.check_id] = CheckEntry(check, spec, "api", version=self._next())

    def reap(self, now: float) -> list[str]:
        """Services with a check critical for longer than its deregister_critical_service_after (at least
        `deregister_min`, DEREGISTER_MIN unless a test shortened it, as in Consul)."""
        out: list[str] = []
        for e in self._checks.values():
            s = e.spec
            if (e.deleted or s is None or not s.service_id or not s.deregister_critical_service_after
                    or e.critical_since is None):
                continue
            after = max(s.deregister_critical_service_after, self.deregister_min)
            if (now - e.critical_since > after and s.service_id not in out
                    and self.service(s.service_id) is not None):
                out.append(s.service_id)
        return out

    # ------------------------------------------------------------ anti-entropy

    def update_sync_state(self, remote_services: Mapping[str, Mapping[str, Any]],
                          remote_checks: Mapping[str, Mapping[str, Any]]) -> None:
        """Compare with the catalog's view of this node (Consul JSON keyed by ID) and mark what to write."""
        for sid, e in self._services.items():
            if not e.deleted and sid not in remote_services:
                e.in_sync = False
        for sid, rs in remote_services.items():
            se = self._services.get(sid)
            if se is None:
                if sid != CONSUL_SERVICE:
                    self._services[sid] = ServiceEntry(LocalService(sid, str(rs.get("Service", ""))),
                                                       deleted=True, version=self._next())
                continue
            if se.deleted:
                continue
            if se.service.enable_tag_override:
                tags = tuple(str(t) for t in (rs.get("Tags") or []))
                if tags != se.service.tags:
                    se.service = replace(se.service, tags=tags)
            se.in_sync = _same_service(se.service, rs)
        for cid, c in self._checks.items():
            if not c.deleted and cid not in remote_checks:
                c.in_sync = False
        for cid, rc in remote_checks.items():
            ce = self._checks.get(cid)
            if ce is None:
                if cid != SERF_CHECK:
                    self._checks[cid] = CheckEntry(LocalCheck(cid, ""), None, deleted=True, version=self._next())
                continue
            if ce.deleted:
                continue
            ce.in_sync = _same_check(ce.check, rc, ignore_output=ce.defer_until is not None)

    def pending(self, now: float) -> list[SyncOp]:
        """The writes that bring the catalog in line, in order. Deferred outputs that are due become pending."""
        for c in self._checks.values():
            if c.defer_until is not None and c.defer_until <= now:
                c.defer_until = None
                c.in_sync = False
        ops: list[SyncOp] = []
        for sid, e in self._services.items():
            if e.deleted:
                ops.append(SyncOp("deregister_service", sid, versions=(("services", sid, e.version),)))
        for cid, c in self._checks.items():
            if c.deleted and not (c.check.service_id and self._service_deleted(c.check.service_id)):
                ops.append(SyncOp("deregister_check", cid, versions=(("checks", cid, c.version),)))
        for sid, e in self._services.items():
            if e.deleted or e.in_sync:
                continue
            own = [(cid, c) for cid, c in self._checks.items() if not c.deleted and c.check.service_id == sid]
            ops.append(SyncOp("register_service", sid, e.service, tuple(c.check for _, c in own),
                              (("services", sid, e.version), *(("checks", cid, c.version) for cid, c in own))))
        for cid, c in self._checks.items():
            if c.deleted or c.in_sync:
                continue
            svc = None
            if c.check.service_id:
                se = self._services.get(c.check.service_id)
                if se is None or se.deleted or not se.in_sync:
                    continue  # written with its service
                svc = se.service
            ops.append(SyncOp("register_check", cid, svc, (c.check,), (("checks", cid, c.version),)))
        return ops

    def _service_deleted(self, service_id: str) -> bool:
        e = self._services.get(service_id)
        return e is not None and e.deleted

    def mark_done(self, op: SyncOp) -> None:
        """A write succeeded: its entries are in sync (deleted ones are forgotten), unless changed since."""
        for table, key, version in op.versions:
            entries: dict[str, Any] = self._services if table == "services" else self._checks
            e = entries.get(key)
            if e is None or e.version != version:
                continue
            if e.deleted:
                del entries[key]
            else:
                e.in_sync = True
        if op.kind == "deregister_service":  # the catalog dropped the service's checks with it
            for cid in [k for k, c in self._checks.items() if c.deleted and c.check.service_id == op.id]:
                del self._checks[cid]

    def next_deadline(self) -> float | None:
        """The earliest deferred-output deadline, if any."""
        due = [c.defer_until for c in self._checks.values() if c.defer_until is not None]
        return min(due) if due else None

    def all_in_sync(self) -> bool:
        return all(e.in_sync and not e.deleted for e in self._services.values()) and all(
            c.in_sync and not c.deleted for c in self._checks.values())


def _same_service(s: LocalService, rs: Mapping[str, Any]) -> bool:
    if (rs.get("ID"), rs.get("Service"), list(rs.get("Tags") or []), rs.get("Address") or "", rs.get("Port") or 0,
            dict(rs.get("Meta") or {})) != (s.id, s.name, list(s.tags), s.address, s.port, s.meta):
        return False
    w = rs.get("Weights")
    if isinstance(w, dict) and (w.get("Passing"), w.get("Warning")) != (s.weights_passing, s.weights_warning):
        return False
    if "EnableTagOverride" in rs and bool(rs["EnableTagOverride"]) != s.enable_tag_override:
        return False
    ta = rs.get("TaggedAddresses")
    if isinstance(ta, dict) or s.tagged_addresses:
        remote = {k: ServiceAddress(str(v.get("Address", "")), int(v.get("Port") or 0))
                  for k, v in (ta or {}).items() if isinstance(v, dict)}
        if remote != s.tagged_addresses:
            return False
    return True


def _same_check(c: LocalCheck, rc: Mapping[str, Any], *, ignore_output: bool) -> bool:
    local = (c.check_id, c.name, c.status, c.notes, c.service_id, "" if ignore_output else c.output)
    remote = (rc.get("CheckID"), rc.get("Name"), rc.get("Status"), rc.get("Notes") or "", rc.get("ServiceID") or "",
              "" if ignore_output else rc.get("Output") or "")
    return local == remote
