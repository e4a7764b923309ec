"""Services and checks registered over the API, kept in the data dir so they survive a restart (Consul's
data_dir/services and data_dir/checks). Config-file ones are not persisted: the files are their source.

One JSON file per service or check, named by the SHA-256 of its ID (any ID is a safe file name), written
with fsutil.atomic_write (a crash leaves the old file or the new one). Files:

    services/<sha256(id)>  {"Service": <api.AgentService JSON>}
    checks/<sha256(id)>    {"Check": <check JSON>, "Spec": <CheckSpec fields> | null}

The check file also holds the check's last status and output, so a TTL check's state and a maintenance
check survive the restart (a TTL expiry is written too: `queue_check`, from the runner's report, without
waiting). `Persister` runs every write on one worker thread, in order (fsync stays off the event loop);
`load` reads at start-up (before the loop serves requests) and skips, with a warning, files that do not
parse (a definition refused by this version, a truncated file from another tool).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from pyconsul.agent.checks.spec import CheckSpec
from pyconsul.agent.errors import BadRequest
from pyconsul.agent.fsutil import atomic_write
from pyconsul.agent.local.definitions import LocalService, service_from_json, service_json
from pyconsul.agent.local.state import LocalCheck
from pyconsul.agent.state.commands import CheckDefinition

log = logging.getLogger("agent.local")

__all__ = ["MAX_FILE", "Persister", "check_from_json", "check_to_json", "load", "spec_from_json", "spec_to_json"]

MAX_FILE = 1024 * 1024  # a persisted definition larger than this is not read


def _name(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def spec_to_json(spec: CheckSpec) -> dict[str, Any]:
    d = dataclasses.asdict(spec)
    d["header"] = {k: list(v) for k, v in spec.header.items()}
    d["args"] = list(spec.args)
    return d


def spec_from_json(d: Any) -> CheckSpec:
    if not isinstance(d, dict):
        raise ValueError("Spec must be an object")
    known = {f.name for f in dataclasses.fields(CheckSpec)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["header"] = {str(k): tuple(str(x) for x in v) for k, v in (kw.get("header") or {}).items()}
    kw["args"] = tuple(str(x) for x in kw.get("args") or ())
    return CheckSpec(**kw)


def check_to_json(c: LocalCheck) -> dict[str, Any]:
    d = dataclasses.asdict(c)
    d["service_tags"] = list(c.service_tags)
    d["definition"] = {**dataclasses.asdict(c.definition),
                       "header": {k: list(v) for k, v in c.definition.header.items()}}
    return d


def check_from_json(d: Any) -> LocalCheck:
    if not isinstance(d, dict):
        raise ValueError("Check must be an object")
    defn = dict(d.get("definition") or {})
    defn["header"] = {str(k): tuple(str(x) for x in v) for k, v in (defn.get("header") or {}).items()}
    kw = {k: v for k, v in d.items() if k not in ("definition", "service_tags")}
    return LocalCheck(**kw, service_tags=tuple(d.get("service_tags") or ()), definition=CheckDefinition(**defn))


class Persister:
    """Ordered writes and removals under data_dir/services and data_dir/checks, on one worker thread."""

    def __init__(self, data_dir: Path) -> None:
        self.services_dir = data_dir / "services"
        self.checks_dir = data_dir / "checks"
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="local-persist")

    async def _run(self, fn: Any, *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def save_service(self, s: LocalService) -> None:
        await self._run(self._write, self.services_dir, s.id, {"Service": service_json(s)})

    async def remove_service(self, service_id: str) -> None:
        await self._run(self._remove, self.services_dir, service_id)

    async def save_check(self, c: LocalCheck, spec: CheckSpec | None) -> None:
        doc = {"Check": check_to_json(c), "Spec": spec_to_json(spec) if spec is not None else None}
        await self._run(self._write, self.checks_dir, c.check_id, doc)

    async def remove_check(self, check_id: str) -> None:
        await self._run(self._remove, self.checks_dir, check_id)

    def queue_check(self, c: LocalCheck, spec: CheckSpec | None) -> None:
        """save_check without waiting (for callers on the loop that cannot await, e.g. a TTL expiry reported
        by the check runner): queued behind the writes before it, in order; a failure is logged. `flush()`
        waits for it."""
        doc = {"Check": check_to_json(c), "Spec": spec_to_json(spec) if spec is not None else None}
        try:
            fut = self._pool.submit(self._write, self.checks_dir, c.check_id, doc)
        except RuntimeError:  # closed: the agent is stopping
            log.warning("not persisting check %s: the agent is stopping", c.check_id)
            return
        fut.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait until every write queued so far is done."""
        await self._run(lambda: None)

    @staticmethod
    def _write(directory: Path, key: str, doc: dict[str, Any]) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(directory / _name(key), json.dumps(doc), mode=0o600)

    @staticmethod
    def _remove(directory: Path, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / _name(key))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _log_failure(fut: concurrent.futures.Future[None]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("persisting a check failed", exc_info=fut.exception())


def _read(path: Path) -> Any:
    if path.stat().st_size > MAX_FILE:
        raise ValueError(f"larger than {MAX_FILE} bytes")
    return json.loads(path.read_text(encoding="utf-8"))


def load(data_dir: Path) -> tuple[list[LocalService], list[tuple[LocalCheck, CheckSpec | None]]]:
    """Persisted services and checks (blocking: call before serving, or on a thread)."""
    services: list[LocalService] = []
    checks: list[tuple[LocalCheck, CheckSpec | None]] = []
    for path in sorted((data_dir / "services").glob("*")):
        if path.name.endswith(".tmp"):
            continue
        try:
            doc = _read(path)
            services.append(service_from_json(doc["Service"]))
        except (OSError, ValueError, KeyError, TypeError, BadRequest) as exc:
            log.warning("skipping persisted service %s: %s", path, exc)
    for path in sorted((data_dir / "checks").glob("*")):
        if path.name.endswith(".tmp"):
            continue
        try:
            doc = _read(path)
            spec = spec_from_json(doc["Spec"]) if doc.get("Spec") is not None else None
            checks.append((check_from_json(doc["Check"]), spec))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping persisted check %s: %s", path, exc)
    return services, checks
