"""LocalAgent: the agent's own services and checks, as the HTTP layer and the agent use them (the shell
around the pure LocalState).

It ties together
- LocalState (state.py): the tables, maintenance checks, sync flags;
- the check runner (agent/checks, `Runner` below): started or replaced for every check added, stopped for
  every check removed; it reports results back through `update_check` (LocalAgent is its CheckSink);
- persistence (persist.py): API-registered services and checks, maintenance checks and TTL status, in the
  data dir, written before the request that changed them is answered;
- anti-entropy (sync.py): every change triggers a push to the catalog;
- reaping: services with a check critical for longer than its deregister_critical_service_after are
  deregistered (checked every REAP_INTERVAL, Consul's check_reap_interval);
- config-file definitions (source "file", never persisted), replaced by `reload` with the diff.

Script checks: allowed over the API only with enable_script_checks; from config files also with
enable_local_script_checks (CVE-2018-19653: a remote caller must not be able to run a command by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pyconsul.agent.checks.schedule import AliasCheckState
from pyconsul.agent.checks.spec import STATUSES, CheckSpec
from pyconsul.agent.errors import BadRequest, NotFound
from pyconsul.agent.local import persist
from pyconsul.agent.local.definitions import LocalService, parse_check_definition, parse_service, quote
from pyconsul.agent.local.state import DEREGISTER_MIN, LocalCheck, LocalState
from pyconsul.agent.local.sync import AntiEntropy

log = logging.getLogger("agent.local")

__all__ = ["ALIAS_WAIT", "DEREGISTER_MIN", "MAX_OUTPUT", "REAP_INTERVAL", "LocalAgent", "Runner", "catalog_alias_query",
           "truncate_output"]

REAP_INTERVAL = 30.0  # Consul's check_reap_interval
MAX_OUTPUT = 4096  # Consul's default check output_max_size
ALIAS_WAIT = 300.0  # an alias check's blocking query waits at most this long (Consul's default wait)


class HealthReader(Protocol):
    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]: ...


def catalog_alias_query(backend: HealthReader) -> Callable[[str, str, int], Any]:
    """The alias checks' `remote_health`: a blocking /v1/health/node read of another node's checks."""

    async def query(node: str, service_id: str, min_index: int) -> tuple[int, list[AliasCheckState]]:
        value, meta = await backend.read("health.node", {"node": node}, "default", min_index,
                                         ALIAS_WAIT if min_index else 0.0)
        checks = [AliasCheckState(str(c.get("Node", node)), str(c.get("ServiceID") or ""), str(c.get("Name", "")),
                                  str(c.get("Status", "critical")), str(c.get("Output") or ""),
                                  str(c.get("CheckID") or ""))
                  for c in (value or []) if isinstance(c, dict)]
        return int(getattr(meta, "index", 0)), checks

    return query


def truncate_output(output: str, limit: int = MAX_OUTPUT) -> str:
    """Consul's way of capping a TTL update's output (the first `limit` bytes, marked with the true size).
    Used only where no runner capped it: a runner's results come already capped (a script's tail, an HTTP
    body of at most 4 KiB, a TTL update cut by the runner), and cutting them again would lose their end and
    add a second marker with a wrong size."""
    raw = output.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return output
    head = raw[:limit].decode("utf-8", "ignore")
    return f"{head} ... (captured {limit} of {len(raw)} bytes)"


class Runner(Protocol):
    """The part of agent.checks' CheckRunner the local state drives."""

    def add(self, spec: CheckSpec) -> None: ...
    def remove(self, check_id: str) -> None: ...
    def ttl_update(self, check_id: str, status: str, output: str) -> bool: ...


class LocalAgent:
    def __init__(self, node_name: str, *, data_dir: Path | None = None, enable_script_checks: bool = False,
                 enable_local_script_checks: bool = False, check_update_interval: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 reap_interval: float = REAP_INTERVAL, deregister_min: float = DEREGISTER_MIN) -> None:
        self.node_name = node_name
        self.state = LocalState(check_update_interval, deregister_min)
        self.reap_interval = reap_interval  # Consul's 30 s; shorter only in tests (PYCONSUL_TEST_REAP_INTERVAL)
        self.persister = persist.Persister(data_dir) if data_dir is not None else None
        self.data_dir = data_dir
        self.enable_script_checks = enable_script_checks
        self.enable_local_script_checks = enable_local_script_checks
        self.clock = clock
        self.rng = rng or random.Random()
        self.runner: Runner | None = None
        self.sync: AntiEntropy | None = None
        self.changed = asyncio.Event()  # set (and replaced) on every change: waiters of alias checks
        self.index = 1  # bumped on every change (the alias checks' blocking index)

    # ------------------------------------------------------------ wiring

    def _changed(self) -> None:
        self.index += 1
        if self.sync is not None:
            self.sync.trigger()
        self.changed.set()
        self.changed = asyncio.Event()

    def _start_checks(self, specs: Iterable[CheckSpec]) -> None:
        if self.runner is not None:
            for spec in specs:
                self.runner.add(spec)

    def _stop_checks(self, ids: Iterable[str]) -> None:
        if self.runner is not None:
            for cid in ids:
                self.runner.remove(cid)

    def load(self, services: Sequence[Any], checks: Sequence[Any]) -> None:
        """At start-up (blocking, before serving): persisted definitions, then the config files' (which win
        over a persisted one with the same ID). Config definitions were validated with the config."""
        file_defs = [parse_service(d, allow_script=self._file_scripts()) for d in services]
        file_checks = [parse_check_definition(d, allow_script=self._file_scripts()) for d in checks]
        file_service_ids = {d.service.id for d in file_defs}
        file_check_ids = {s.check_id for s in file_checks} | {s.check_id for d in file_defs for s in d.checks}
        p_services, p_checks = persist.load(self.data_dir) if self.data_dir is not None else ([], [])
        for svc in p_services:
            if svc.id not in file_service_ids:
                self.state.add_service(svc, ())
        for d in file_defs:  # before the persisted checks: an API check may belong to a config-file service
            specs, _ = self.state.add_service(d.service, d.checks, source="file")
            self._start_checks(specs)
        for check, spec in p_checks:
            if check.check_id in file_check_ids:
                continue
            if check.service_id and self.state.service(check.service_id) is None:
                log.warning("skipping persisted check %s: its service %s is gone", check.check_id,
                            check.service_id)
                continue
            if spec is not None and spec.kind == "script" and not self.enable_script_checks:
                log.warning("skipping persisted script check %s: enable_script_checks is off", check.check_id)
                continue
            self.state.restore_check(check, spec)
            if spec is not None:
                self._start_checks([spec])
        for spec in file_checks:
            self.state.add_check(spec, source="file")
            self._start_checks([spec])
        n_services, n_checks = self.state.entries()
        log.info("local state loaded: services=%d checks=%d", len(n_services), len(n_checks))

    def _file_scripts(self) -> bool:
        return self.enable_script_checks or self.enable_local_script_checks

    # ------------------------------------------------------------ services

    async def register_service(self, body: Any, *, replace_existing_checks: bool = False) -> LocalService:
        d = parse_service(body, allow_script=self.enable_script_checks)
        specs, removed = self.state.add_service(d.service, d.checks, replace_existing_checks=replace_existing_checks)
        self._stop_checks(removed)
        self._start_checks(specs)
        self._changed()
        if self.persister is not None:
            await self.persister.save_service(d.service)
            for spec in specs:
                await self._persist_check(spec.check_id)
            for cid in removed:
                await self.persister.remove_check(cid)
        log.info("Registered service: service=%s", d.service.id)
        return d.service

    async def deregister_service(self, service_id: str) -> None:
        removed = self.state.remove_service(service_id)
        maint = f"_service_maintenance:{service_id}"
        self._stop_checks(c for c in removed if c != maint)
        self._changed()
        if self.persister is not None:
            await self.persister.remove_service(service_id)
            for cid in removed:
                await self.persister.remove_check(cid)
        log.info("Deregistered service: service=%s", service_id)

    # ------------------------------------------------------------ checks

    async def register_check(self, body: Any) -> CheckSpec:
        spec = parse_check_definition(body, allow_script=self.enable_script_checks)
        self.state.add_check(spec)
        self._start_checks([spec])
        self._changed()
        await self._persist_check(spec.check_id)
        return spec

    async def deregister_check(self, check_id: str) -> None:
        self.state.remove_check(check_id)
        self._stop_checks([check_id])
        self._changed()
        if self.persister is not None:
            await self.persister.remove_check(check_id)

    async def ttl_update(self, check_id: str, status: str, output: str) -> None:
        """/v1/agent/check/pass|warn|fail|update: NotFound for an unknown check, BadRequest for one that
        is not a TTL check or a status that is not passing/warning/critical."""
        if status not in STATUSES:
            raise BadRequest(f"Invalid check status: '{status}'")
        e = self.state.check_entry(check_id)
        if e is None:
            raise NotFound(f"Unknown check ID {quote(check_id)}. Ensure that the check ID is passed, "
                           "not the check name.")
        if e.spec is None or e.spec.kind != "ttl":
            raise BadRequest(f"CheckID {quote(check_id)} does not have associated TTL")
        # The runner caps the output itself (once, with its true size); without a runner we do.
        if self.runner is None or not self.runner.ttl_update(check_id, status, output):
            self.update_check(check_id, status, truncate_output(output))
        if self.persister is not None:  # update_check queued the write: done before the answer
            await self.persister.flush()

    def update_check(self, check_id: str, status: str, output: str) -> None:
        """CheckSink: a runner's result (on the event loop), already capped by the runner. A TTL check's
        result is persisted (queued on the persister's thread): an update through the API, and an expiry,
        so a restarted agent does not show the last API-set status of a check whose TTL ran out."""
        if self.state.update_check(check_id, status, output, self.clock(), self.rng.random()):
            self._changed()
        if self.persister is None:
            return
        e = self.state.check_entry(check_id)
        if e is not None and e.source == "api" and e.spec is not None and e.spec.kind == "ttl":
            self.persister.queue_check(e.check, e.spec)

    async def _persist_check(self, check_id: str) -> None:
        if self.persister is None:
            return
        e = self.state.check_entry(check_id)
        if e is not None and e.source == "api":
            await self.persister.save_check(e.check, e.spec)

    # ------------------------------------------------------------ maintenance

    async def node_maintenance(self, enable: bool, reason: str) -> None:
        if self.state.set_node_maintenance(enable, reason):
            self._changed()
            await self._persist_maint("_node_maintenance", enable)
            log.info("Node %s maintenance mode", "entered" if enable else "left")

    async def service_maintenance(self, service_id: str, enable: bool, reason: str) -> None:
        if self.state.set_service_maintenance(service_id, enable, reason):
            self._changed()
            await self._persist_maint(f"_service_maintenance:{service_id}", enable)
            log.info("Service %s %s maintenance mode", service_id, "entered" if enable else "left")

    async def _persist_maint(self, check_id: str, enable: bool) -> None:
        if self.persister is None:
            return
        if enable:
            await self._persist_check(check_id)
        else:
            await self.persister.remove_check(check_id)

    # ------------------------------------------------------------ reads

    def services(self) -> dict[str, LocalService]:
        return self.state.services()

    def service(self, service_id: str) -> LocalService | None:
        return self.state.service(service_id)

    def checks(self) -> dict[str, LocalCheck]:
        return self.state.checks()

    def service_checks(self, service_id: str) -> list[LocalCheck]:
        return self.state.service_checks(service_id)

    async def alias_health(self, node: str, service_id: str, min_index: int) -> tuple[int, list[AliasCheckState]]:
        """The alias checks' `local_health`: this agent's checks, once the local index passes min_index
        (or after ALIAS_WAIT)."""
        if self.index <= min_index:
            waiter = self.changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ALIAS_WAIT):
                    await waiter.wait()
        return self.index, [AliasCheckState(self.node_name, c.service_id, c.name, c.status, c.output, c.check_id)
                            for c in self.state.checks().values()]

    # ------------------------------------------------------------ reload, reaping

    async def reload(self, services: Sequence[Any], checks: Sequence[Any], *, enable_script_checks: bool,
                     enable_local_script_checks: bool) -> tuple[int, int]:
        """Apply the config files' new service and check definitions: file-defined entries that are gone
        are removed (with whatever API checks hung on a removed service), new or changed ones (re)added;
        API-registered entries are untouched. Definitions are parsed first, so a bad one changes nothing
        (BadRequest). Returns (services, checks) changed."""
        allow = enable_script_checks or enable_local_script_checks
        defs = [parse_service(d, allow_script=allow) for d in services]
        node_checks = [parse_check_definition(d, allow_script=allow) for d in checks]
        self.enable_script_checks = enable_script_checks
        self.enable_local_script_checks = enable_local_script_checks
        live_services, live_checks = self.state.entries()
        new_ids = {d.service.id for d in defs}
        new_check_ids = {s.check_id for s in node_checks}
        dropped: list[str] = []  # check IDs removed (their persisted files, if any, go too)
        n_services = n_checks = 0
        for sid, e in live_services.items():
            if e.source == "file" and sid not in new_ids:
                removed = self.state.remove_service(sid)
                self._stop_checks(removed)
                dropped += removed
                n_services += 1
        for cid, ce in live_checks.items():
            if ce.source == "file" and not ce.check.service_id and cid not in new_check_ids \
                    and self.state.check_entry(cid) is not None:
                self.state.remove_check(cid)
                self._stop_checks([cid])
                n_checks += 1
        for d in defs:
            old = self.state.service_entry(d.service.id)
            old_file_specs = {cid: ce.spec for cid, ce in self.state.entries()[1].items()
                              if ce.source == "file" and ce.check.service_id == d.service.id}
            if old is not None and old.source == "file" and old.service == d.service and \
                    old_file_specs == {s.check_id: s for s in d.checks}:
                continue
            wanted = {s.check_id for s in d.checks}
            for cid in old_file_specs:
                if cid not in wanted:
                    self.state.remove_check(cid)
                    self._stop_checks([cid])
            specs, _ = self.state.add_service(d.service, d.checks, source="file")
            self._start_checks(specs)
            n_services += 1
        for spec in node_checks:
            ce2 = self.state.check_entry(spec.check_id)
            if ce2 is not None and ce2.source == "file" and ce2.spec == spec:
                continue
            self.state.add_check(spec, source="file")
            self._start_checks([spec])
            n_checks += 1
        if n_services or n_checks:
            self._changed()
        if self.persister is not None:
            for cid in dropped:
                await self.persister.remove_check(cid)
        return n_services, n_checks

    async def reap_loop(self) -> None:
        """Deregister services whose check stayed critical past deregister_critical_service_after."""
        while True:
            await asyncio.sleep(self.reap_interval)
            await self.reap()

    async def reap(self) -> list[str]:
        reaped = self.state.reap(self.clock())
        for sid in reaped:
            log.info("Check for service has been critical for too long; deregistered service: service=%s", sid)
            await self.deregister_service(sid)
        return reaped

    def close(self) -> None:
        if self.persister is not None:
            self.persister.close()
