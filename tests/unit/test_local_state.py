"""agent/local: LocalState (tables, maintenance, sync decisions), anti-entropy timing and the sync loop with a
fake backend, persistence round trips, and LocalAgent's reload diff."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent.checks.parse import parse_check
from pyconsul.agent.errors import BadRequest, NotFound
from pyconsul.agent.local import ae, persist
from pyconsul.agent.local.definitions import LocalService, parse_service, service_json
from pyconsul.agent.local.manager import LocalAgent, truncate_output
from pyconsul.agent.local.state import (
    NODE_MAINT,
    NODE_MAINT_DEFAULT,
    SERVICE_MAINT_DEFAULT,
    LocalState,
    aggregate_status,
    service_maint_id,
)
from pyconsul.agent.local.sync import AntiEntropy, NodeInfo, command
from pyconsul.agent.state import commands as c
from tests.harness import until


def _web(state: LocalState, check: dict[str, Any] | None = None, **kw: Any) -> LocalService:
    d = parse_service({"Name": "web", "Port": 80, **({"Check": check} if check else {}), **kw}, allow_script=False)
    state.add_service(d.service, d.checks)
    return d.service


def _remote_service(s: LocalService) -> dict[str, Any]:
    return service_json(s)


def _remote_check(state: LocalState, cid: str) -> dict[str, Any]:
    ch = state.checks()[cid]
    return {"CheckID": ch.check_id, "Name": ch.name, "Status": ch.status, "Notes": ch.notes, "Output": ch.output,
            "ServiceID": ch.service_id}


def test_register_then_sync_then_in_sync() -> None:
    st = LocalState()
    _web(st, {"TTL": "10s"})
    ops = st.pending(0.0)
    assert [(o.kind, o.id) for o in ops] == [("register_service", "web")]
    assert [ch.check_id for ch in ops[0].checks] == ["service:web"]
    st.mark_done(ops[0])
    assert st.pending(0.0) == [] and st.all_in_sync()


def test_a_change_during_a_write_is_not_marked_synced() -> None:
    st = LocalState()
    _web(st, {"TTL": "10s"})
    op = st.pending(0.0)[0]
    assert st.update_check("service:web", "passing", "", now=1.0)  # changed while op was in flight
    st.mark_done(op)
    assert [(o.kind, o.id) for o in st.pending(1.0)] == [("register_check", "service:web")]


def test_catalog_edits_are_repaired_local_state_wins() -> None:
    st = LocalState()
    web = _web(st, {"TTL": "10s"})
    for op in st.pending(0.0):
        st.mark_done(op)
    # the catalog lost our check, changed our service's port, and has a service and a check we do not
    changed = {**_remote_service(web), "Port": 9999}
    st.update_sync_state({"web": changed, "stray": {"ID": "stray", "Service": "stray"}, "consul": {"ID": "consul"}},
                         {"serfHealth": {"CheckID": "serfHealth"}, "junk": {"CheckID": "junk"}})
    kinds = sorted((o.kind, o.id) for o in st.pending(0.0))
    assert kinds == [("deregister_check", "junk"), ("deregister_service", "stray"), ("register_service", "web")]
    for op in st.pending(0.0):
        st.mark_done(op)
    assert st.all_in_sync() and set(st.services()) == {"web"}


def test_identical_catalog_means_nothing_to_write() -> None:
    st = LocalState()
    web = _web(st, {"TTL": "10s"})
    st.update_sync_state({"web": _remote_service(web)}, {"service:web": _remote_check(st, "service:web")})
    assert st.pending(0.0) == []


def test_enable_tag_override_adopts_the_catalog_tags() -> None:
    st = LocalState()
    web = _web(st, EnableTagOverride=True, Tags=["a"])
    st.update_sync_state({"web": {**_remote_service(web), "Tags": ["b"]}}, {})
    assert st.services()["web"].tags == ("b",) and st.pending(0.0) == []


def test_output_only_changes_are_deferred_status_changes_are_not() -> None:
    st = LocalState(check_update_interval=300.0)
    _web(st, {"TTL": "10s"})
    for op in st.pending(0.0):
        st.mark_done(op)
    assert st.update_check("service:web", "passing", "one", now=0.0)
    for op in st.pending(0.0):
        st.mark_done(op)
    assert not st.update_check("service:web", "passing", "two", now=10.0, stagger=0.0)
    assert st.checks()["service:web"].output == "two"  # shown locally at once
    assert st.pending(10.0) == []
    due = st.next_deadline()
    assert due == pytest.approx(10.0 + 150.0)
    assert [o.kind for o in st.pending(due)] == ["register_check"]


def test_remove_service_removes_its_checks_and_deregisters_once() -> None:
    st = LocalState()
    _web(st, {"TTL": "10s"})
    for op in st.pending(0.0):
        st.mark_done(op)
    removed = st.remove_service("web")
    assert removed == ["service:web"] and st.checks() == {}
    ops = st.pending(0.0)
    assert [(o.kind, o.id) for o in ops] == [("deregister_service", "web")]
    st.mark_done(ops[0])
    assert st.pending(0.0) == []
    with pytest.raises(NotFound, match='Unknown service ID "web"'):
        st.remove_service("web")


def test_replace_existing_checks() -> None:
    st = LocalState()
    _web(st, Checks=[{"TTL": "10s", "CheckID": "a"}, {"TTL": "10s", "CheckID": "b"}])
    st.update_check("a", "passing", "fine", now=0.0)
    d = parse_service({"Name": "web", "Checks": [{"TTL": "10s", "CheckID": "a"}]}, allow_script=False)
    _, removed = st.add_service(d.service, d.checks)
    assert removed == [] and set(st.checks()) == {"a", "b"}
    assert st.checks()["a"].status == "passing"  # a re-registered check keeps its state
    _, removed = st.add_service(d.service, d.checks, replace_existing_checks=True)
    assert removed == ["b"] and set(st.checks()) == {"a"}


def test_check_register_needs_its_service() -> None:
    st = LocalState()
    with pytest.raises(BadRequest, match='ServiceID "nope" does not exist'):
        st.add_check(parse_check({"Name": "c", "TTL": "1s", "ServiceID": "nope"}, allow_script=False))


def test_maintenance_checks() -> None:
    st = LocalState()
    _web(st)
    assert st.set_node_maintenance(True, "")
    assert not st.set_node_maintenance(True, "other")  # already on: unchanged
    node = st.checks()[NODE_MAINT]
    assert (node.status, node.notes, node.name) == ("critical", NODE_MAINT_DEFAULT, "Node Maintenance Mode")
    assert st.set_service_maintenance("web", True, "upgrading")
    svc = st.checks()[service_maint_id("web")]
    assert (svc.status, svc.notes, svc.service_id) == ("critical", "upgrading", "web")
    assert aggregate_status(st.service_checks("web")) == "maintenance"
    assert not st.update_check(NODE_MAINT, "passing", "", now=0.0)  # runners cannot clear maintenance
    st.set_node_maintenance(False, "")
    st.set_service_maintenance("web", False, "")
    assert st.checks() == {} and aggregate_status([]) == "passing"
    with pytest.raises(NotFound, match='No service registered with ID "nope"'):
        st.set_service_maintenance("nope", True, "")
    assert SERVICE_MAINT_DEFAULT.startswith("Maintenance mode is enabled for this service")


def test_reap_after_deregister_critical_service_after() -> None:
    st = LocalState()
    _web(st, {"TTL": "10s", "DeregisterCriticalServiceAfter": "1m"})
    st.update_check("service:web", "critical", "TTL expired", now=100.0)
    assert st.reap(159.0) == []
    assert st.reap(161.0) == ["web"]
    st.update_check("service:web", "passing", "", now=161.0)
    assert st.reap(1000.0) == []
    st2 = LocalState()
    _web(st2, {"TTL": "1s", "DeregisterCriticalServiceAfter": "10s"})  # raised to Consul's 1 min minimum
    st2.update_check("service:web", "critical", "", now=0.0)
    assert st2.reap(30.0) == [] and st2.reap(61.0) == ["web"]


@pytest.mark.parametrize(("nodes", "factor"), [(1, 1), (128, 1), (129, 2), (256, 2), (257, 3), (1024, 4), (8192, 7)])
def test_ae_scale(nodes: int, factor: int) -> None:
    assert ae.scale_factor(nodes) == factor
    assert ae.full_sync_delay(nodes, 0.0) == 60.0 * factor
    assert ae.full_sync_delay(nodes, 0.5) == 90.0 * factor


def test_retry_delay_grows_to_the_cap() -> None:
    delays = [ae.retry_delay(n, 0.0) for n in range(1, 8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert ae.retry_delay(1, 0.99) < 1.5


def test_truncate_output() -> None:
    assert truncate_output("x" * 10) == "x" * 10
    out = truncate_output("y" * 5000)
    assert out.startswith("y" * 4096) and out.endswith("(captured 4096 of 5000 bytes)")


# ---------------------------------------------------------------- the sync loop, with a fake backend


class FakeCatalog:
    """The catalog's view of one node, updated by the Register/Deregister commands it receives."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, dict[str, Any]] = {"serfHealth": {"CheckID": "serfHealth", "Status": "passing"}}
        self.writes: list[Any] = []
        self.fail = False

    async def write(self, data: bytes) -> Any:
        if self.fail:
            raise ConnectionError("no server")
        cmd = c.decode(data)
        self.writes.append(cmd)
        if isinstance(cmd, c.Register):
            if cmd.service is not None:
                s = cmd.service
                self.services[s.id] = {"ID": s.id, "Service": s.service, "Tags": list(s.tags), "Address": s.address,
                                       "Port": s.port, "Meta": s.meta}
            for ch in cmd.checks:
                self.checks[ch.check_id] = {"CheckID": ch.check_id, "Name": ch.name, "Status": ch.status,
                                            "Notes": ch.notes, "Output": ch.output, "ServiceID": ch.service_id}
        elif isinstance(cmd, c.Deregister):
            if cmd.service_id:
                self.services.pop(cmd.service_id, None)
                self.checks = {k: v for k, v in self.checks.items() if v.get("ServiceID") != cmd.service_id}
            else:
                self.checks.pop(cmd.check_id, None)
        return True

    async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                   wait: float = 0.0) -> tuple[Any, Any]:
        if self.fail:
            raise ConnectionError("no server")
        if name == "catalog.node":
            return {"Node": {}, "Services": dict(self.services)}, None
        return list(self.checks.values()), None


NODE = NodeInfo("n1", "10.0.0.1", "id-1", "dc1", {"lan": "10.0.0.1"}, {})


def test_command_shapes() -> None:
    st = LocalState()
    _web(st, {"TTL": "10s"})
    reg = command(st.pending(0.0)[0], NODE, 1.0)
    assert isinstance(reg, c.Register) and reg.node == "n1" and reg.address == "10.0.0.1" and reg.id == "id-1"
    assert reg.service is not None and reg.service.service == "web" and reg.checks[0].type == "ttl"
    st.remove_service("web")
    dereg = command(st.pending(0.0)[0], NODE, 1.0)
    assert isinstance(dereg, c.Deregister) and dereg.service_id == "web"


def test_anti_entropy_full_sync_repairs_and_changes_push_at_once() -> None:
    async def main() -> None:
        st = LocalState()
        cat = FakeCatalog()
        cat.services["stray"] = {"ID": "stray", "Service": "stray"}
        now = [0.0]
        sync = AntiEntropy(st, cat, NODE, lambda: 3, clock=lambda: now[0])
        _web(st, {"TTL": "10s"})
        await sync.sync_full()
        assert set(cat.services) == {"web"} and "service:web" in cat.checks and "serfHealth" in cat.checks
        n = len(cat.writes)
        await sync.sync_full()
        assert len(cat.writes) == n, "nothing differs: no writes"
        cat.services["web"]["Port"] = 1  # an edit in the catalog
        del cat.checks["service:web"]
        await sync.sync_full()
        assert cat.services["web"]["Port"] == 80 and "service:web" in cat.checks
        st.update_check("service:web", "passing", "ok", now=1.0)
        await sync.sync_changes()
        assert cat.checks["service:web"]["Status"] == "passing"

    asyncio.run(main())


def test_anti_entropy_loop_retries_after_failure() -> None:
    async def main() -> None:
        st = LocalState()
        cat = FakeCatalog()
        cat.fail = True
        sync = AntiEntropy(st, cat, NODE, lambda: 1, interval=3600.0)
        _web(st)
        task = asyncio.create_task(sync.run())
        try:
            await until(lambda: sync._failures >= 1, 5, "the first full sync to fail")
            assert sync.full_syncs == 0 and cat.services == {}
            cat.fail = False  # the retry comes after ~1 s (retry_delay(1))
            async with asyncio.timeout(5):
                while "web" not in cat.services:
                    await asyncio.sleep(0.02)
            d = parse_service({"Name": "db"}, allow_script=False)
            st.add_service(d.service, ())
            sync.trigger()
            async with asyncio.timeout(2):
                while "db" not in cat.services:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()

    asyncio.run(main())


# ---------------------------------------------------------------- persistence and the LocalAgent shell


def test_persisted_services_and_checks_survive_a_restart(tmp_path: Path) -> None:
    async def first() -> None:
        la = LocalAgent("n1", data_dir=tmp_path)
        await la.register_service({"Name": "web", "Port": 80, "Check": {"TTL": "10s"}})
        await la.register_check({"Name": "disk", "TTL": "30s"})
        await la.ttl_update("disk", "warning", "80% full")
        await la.service_maintenance("web", True, "upgrade")
        await la.register_service({"Name": "gone"})
        await la.deregister_service("gone")
        la.close()

    asyncio.run(first())
    services, checks = persist.load(tmp_path)
    assert [s.id for s in services] == ["web"]
    assert {ch.check_id for ch, _ in checks} == {"service:web", "disk", "_service_maintenance:web"}

    la = LocalAgent("n1", data_dir=tmp_path)
    la.load([], [])
    assert set(la.services()) == {"web"}
    disk = la.checks()["disk"]
    assert (disk.status, disk.output) == ("warning", "80% full")
    assert la.checks()["_service_maintenance:web"].notes == "upgrade"
    la.close()


def test_config_file_definitions_are_not_persisted_and_reload_applies_the_diff(tmp_path: Path) -> None:
    async def main() -> None:
        la = LocalAgent("n1", data_dir=tmp_path)
        la.load([{"name": "a", "port": 1}, {"name": "b"}], [{"name": "node-check", "ttl": "10s"}])
        await la.register_service({"Name": "api-one"})
        assert set(la.services()) == {"a", "b", "api-one"}
        assert await la.reload([{"name": "a", "port": 1}], [], enable_script_checks=False,
                         enable_local_script_checks=False) == (1, 1)
        assert set(la.services()) == {"a", "api-one"} and la.checks() == {}
        assert await la.reload([{"name": "a", "port": 2}, {"name": "c", "check": {"ttl": "5s"}}], [],
                         enable_script_checks=False, enable_local_script_checks=False) == (2, 0)
        assert la.services()["a"].port == 2 and "service:c" in la.checks()
        with pytest.raises(BadRequest):  # a bad definition changes nothing
            await la.reload([{"port": 3}], [], enable_script_checks=False, enable_local_script_checks=False)
        assert la.services()["a"].port == 2
        la.close()

    asyncio.run(main())
    services, _ = persist.load(tmp_path)
    assert [s.id for s in services] == ["api-one"]


def test_script_checks_from_config_files_need_local_scripts_and_over_http_need_script_checks() -> None:
    script = {"name": "s", "args": ["/bin/true"], "interval": "10s"}
    la = LocalAgent("n1", enable_local_script_checks=True)
    la.load([], [script])
    assert "s" in la.checks()
    with pytest.raises(BadRequest, match="Scripts are disabled"):
        asyncio.run(la.register_check({"Name": "t", "Args": ["/bin/true"], "Interval": "10s"}))
    with pytest.raises(BadRequest, match="Scripts are disabled"):
        LocalAgent("n1").load([], [script])


def test_ttl_update_errors() -> None:
    async def main() -> None:
        la = LocalAgent("n1")
        await la.register_check({"Name": "h", "HTTP": "http://127.0.0.1:1/", "Interval": "10s"})
        with pytest.raises(NotFound, match='Unknown check ID "nope"'):
            await la.ttl_update("nope", "passing", "")
        with pytest.raises(BadRequest, match='CheckID "h" does not have associated TTL'):
            await la.ttl_update("h", "passing", "")
        with pytest.raises(BadRequest, match="Invalid check status: 'bogus'"):
            await la.ttl_update("h", "bogus", "")

    asyncio.run(main())


def test_one_refused_write_does_not_hold_back_the_others() -> None:
    class Refusing(FakeCatalog):
        async def write(self, data: bytes) -> Any:
            cmd = c.decode(data)
            if isinstance(cmd, c.Register) and cmd.service is not None and cmd.service.id == "bad":
                return False  # a StateError is falsy
            return await super().write(data)

    async def main() -> None:
        st = LocalState()
        cat = Refusing()
        for name in ("a", "bad", "b"):
            st.add_service(parse_service({"Name": name}, allow_script=False).service, ())
        sync = AntiEntropy(st, cat, NODE, lambda: 1)
        with pytest.raises(Exception, match="register_service 'bad' refused"):
            await sync.sync_changes()
        assert set(cat.services) == {"a", "b"}
        assert [(o.kind, o.id) for o in st.pending(0.0)] == [("register_service", "bad")]

    asyncio.run(main())


def test_agent_wide_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from pyconsul.agent.local import state as state_mod

    monkeypatch.setattr(state_mod, "MAX_SERVICES", 2)
    monkeypatch.setattr(state_mod, "MAX_CHECKS", 2)
    st = LocalState()
    _web(st, {"TTL": "10s"})
    _web(st, {"TTL": "10s"})  # replacing is not adding
    st.add_service(parse_service({"Name": "db"}, allow_script=False).service, ())
    with pytest.raises(BadRequest, match="Too many services on this agent"):
        st.add_service(parse_service({"Name": "third"}, allow_script=False).service, ())
    st.add_check(parse_check({"Name": "c1", "TTL": "1s"}, allow_script=False))
    with pytest.raises(BadRequest, match="Too many checks on this agent"):
        st.add_check(parse_check({"Name": "c2", "TTL": "1s"}, allow_script=False))


def test_check_update_interval_config_and_zero_means_no_deferral(tmp_path: Path) -> None:
    import json

    from pyconsul.agent.config import ConfigError, build_config

    conf = tmp_path / "c.json"
    conf.write_text(json.dumps({"check_update_interval": "0s", "data_dir": str(tmp_path)}))
    cfg, _ = build_config({"config-file": [str(conf)]})
    assert cfg.check_update_interval == 0.0
    conf.write_text(json.dumps({"check_update_interval": "-1s", "data_dir": str(tmp_path)}))
    with pytest.raises(ConfigError, match="check_update_interval"):
        build_config({"config-file": [str(conf)]})
    st = LocalState(check_update_interval=0.0)
    _web(st, {"TTL": "10s"})
    for op in st.pending(0.0):
        st.mark_done(op)
    st.update_check("service:web", "passing", "a", now=0.0)
    for op in st.pending(0.0):
        st.mark_done(op)
    assert st.update_check("service:web", "passing", "b", now=1.0)
    assert [o.kind for o in st.pending(1.0)] == ["register_check"]


def test_a_failing_scheduled_full_sync_backs_off_instead_of_spinning() -> None:
    class Counting(FakeCatalog):
        reads = 0

        async def read(self, name: str, args: dict[str, Any], mode: str = "default", index: int = 0,
                       wait: float = 0.0) -> tuple[Any, Any]:
            self.reads += 1
            return await super().read(name, args, mode, index, wait)

    async def main() -> None:
        st = LocalState()
        cat = Counting()
        sync = AntiEntropy(st, cat, NODE, lambda: 1, interval=0.01)  # full syncs due every 10-20 ms
        task = asyncio.create_task(sync.run())
        try:
            async with asyncio.timeout(5):
                while sync.full_syncs < 2:
                    await asyncio.sleep(0.01)
            cat.fail = True  # from now on every scheduled full sync fails
            before = cat.reads
            await asyncio.sleep(0.5)  # a negative check over a window: no retry loop within half a second
            assert cat.reads - before <= 2, "retried after retry_delay (1 s), not in a loop"
        finally:
            task.cancel()

    asyncio.run(main())


def test_re_registering_a_check_keeps_its_state() -> None:
    st = LocalState()
    st.add_check(parse_check({"Name": "disk", "TTL": "1m"}, allow_script=False))
    st.update_check("disk", "warning", "80%", now=0.0)
    st.add_check(parse_check({"Name": "disk", "TTL": "2m", "Notes": "new"}, allow_script=False))
    disk = st.checks()["disk"]
    assert (disk.status, disk.output, disk.notes) == ("warning", "80%", "new")


def test_an_api_check_on_a_config_file_service_survives_a_restart(tmp_path: Path) -> None:
    async def first() -> None:
        la = LocalAgent("n1", data_dir=tmp_path)
        la.load([{"name": "web"}], [])
        await la.register_check({"Name": "extra", "TTL": "1m", "ServiceID": "web"})
        await la.service_maintenance("web", True, "")
        la.close()

    asyncio.run(first())
    la = LocalAgent("n1", data_dir=tmp_path)
    la.load([{"name": "web"}], [])
    assert {"extra", "_service_maintenance:web"} <= set(la.checks())
    assert la.checks()["extra"].service_name == "web"
    la.close()


def test_reload_keeps_api_checks_on_a_changed_config_file_service() -> None:
    async def main() -> None:
        la = LocalAgent("n1")
        la.load([{"name": "web", "port": 1, "checks": [{"ttl": "1m", "id": "f1"}, {"ttl": "1m", "id": "f2"}]}], [])
        await la.register_check({"Name": "extra", "TTL": "1m", "ServiceID": "web"})
        same = await la.reload([{"name": "web", "port": 1, "checks": [{"ttl": "1m", "id": "f1"},
                                                                     {"ttl": "1m", "id": "f2"}]}], [],
                               enable_script_checks=False, enable_local_script_checks=False)
        assert same == (0, 0), "an unchanged definition is not re-applied"
        await la.reload([{"name": "web", "port": 2, "checks": [{"ttl": "1m", "id": "f1"}]}], [],
                        enable_script_checks=False, enable_local_script_checks=False)
        assert set(la.checks()) == {"f1", "extra"} and la.services()["web"].port == 2

    asyncio.run(main())


# ---------------------------------------------------------------- outputs are capped once, with the true size


def test_runner_outputs_are_not_capped_a_second_time() -> None:
    """The runner already capped these (a script's tail, an HTTP body): the sink stores them as they are."""
    la = LocalAgent("n1")
    la.load([], [{"name": "s", "ttl": "1m"}])
    script_out = "Captured 4096 of 10000 bytes\n...\n" + "z" * 4096
    la.update_check("s", "passing", script_out)
    assert la.checks()["s"].output == script_out
    http_out = "HTTP GET http://127.0.0.1:8080/health: 200 OK Output: " + "b" * 4096
    la.update_check("s", "critical", http_out)
    assert la.checks()["s"].output == http_out


def test_ttl_update_output_is_capped_once_with_its_true_size() -> None:
    async def main() -> None:
        from pyconsul.agent.checks.runner import CheckRunner

        la = LocalAgent("n1")
        la.load([], [{"name": "t", "ttl": "1m"}])
        await la.ttl_update("t", "passing", "q" * 5000)  # no runner: the agent caps it
        out = la.checks()["t"].output
        assert out == "q" * 4096 + " ... (captured 4096 of 5000 bytes)"
        runner = CheckRunner(la)
        la.runner = runner
        runner.add(parse_check({"Name": "t", "TTL": "1m"}, allow_script=False))
        runner.start()
        try:
            await la.ttl_update("t", "warning", "r" * 6000)  # the runner caps it
            out = la.checks()["t"].output
            assert out == "r" * 4096 + " ... (captured 4096 of 6000 bytes)"
            assert out.count("captured") == 1
        finally:
            await runner.close()

    asyncio.run(main())


def test_a_ttl_expiry_is_persisted(tmp_path: Path) -> None:
    """After a restart a check whose TTL ran out shows critical, not the last status set over the API."""
    async def first() -> None:
        from pyconsul.agent.checks.runner import CheckRunner

        la = LocalAgent("n1", data_dir=tmp_path)
        runner = CheckRunner(la)
        la.runner = runner
        runner.start()
        try:
            await la.register_check({"Name": "t", "TTL": "300ms"})
            await la.ttl_update("t", "passing", "fine")
            deadline = asyncio.get_running_loop().time() + 10
            while la.checks()["t"].status != "critical":
                assert asyncio.get_running_loop().time() < deadline, "the TTL never expired"
                await asyncio.sleep(0.05)
        finally:
            await runner.close()
            la.close()  # waits for the queued writes

    asyncio.run(first())
    la = LocalAgent("n1", data_dir=tmp_path)
    la.load([], [])
    t = la.checks()["t"]
    assert (t.status, t.output) == ("critical", "TTL expired (last output before timeout follows): fine")
    la.close()


def test_a_service_tag_change_reaches_its_catalog_checks() -> None:
    """Consul 1.7's catalog copies a service's tags into a check only when the check is (re)registered
    (ensureCheckTxn; ensureServiceTxn leaves checks alone), and the agent re-sends a changed service with its
    checks, so the catalog checks' ServiceTags follow the agent's service."""
    from tests.unit.test_state_support import Harness

    h = Harness()
    st = LocalState()
    node = NodeInfo("n1", "10.0.0.1")

    def sync() -> None:
        for op in st.pending(0.0):
            h.do(command(op, node, 0.0))
            st.mark_done(op)

    _web(st, {"TTL": "10s"}, Tags=["v1"])
    sync()
    assert [ch["ServiceTags"] for ch in h.store.health_checks(service="web")] == [["v1"]]
    _web(st, {"TTL": "10s"}, Tags=["v2", "blue"])
    sync()
    assert [ch["ServiceTags"] for ch in h.store.health_checks(service="web")] == [["v2", "blue"]]
    assert st.checks()["service:web"].service_tags == ("v2", "blue")
    # As in Consul: a catalog write of the service alone leaves its checks' ServiceTags as they were.
    h.do(c.Register("n1", "10.0.0.1", service=c.ServiceDef(id="web", service="web", tags=("v3",), port=80), now=0.0))
    assert [ch["ServiceTags"] for ch in h.store.health_checks(service="web")] == [["v2", "blue"]]


def test_a_node_alias_check_does_not_count_itself() -> None:
    """An alias of this node mirrors the node's checks but not itself: once the aliased check recovers, so does
    the alias (Consul 1.7 counts the alias check too, so it would stay critical for ever)."""
    async def main() -> None:
        from pyconsul.agent.checks.runner import CheckRunner

        la = LocalAgent("n1")
        runner = CheckRunner(la, node_name="n1", local_health=la.alias_health)
        la.runner = runner
        runner.start()
        loop = asyncio.get_running_loop()

        async def alias_becomes(status: str) -> None:
            deadline = loop.time() + 10
            while la.checks()["node-alias"].status != status:
                assert loop.time() < deadline, f"the alias never became {status}: {la.checks()['node-alias']}"
                await asyncio.sleep(0.02)

        try:
            await la.register_check({"Name": "disk", "TTL": "1m"})
            await la.register_check({"Name": "node-alias", "AliasNode": "n1", "Status": "passing"})
            await alias_becomes("critical")  # disk starts critical
            await la.ttl_update("disk", "passing", "")
            await alias_becomes("passing")
            assert la.checks()["node-alias"].output == "All checks passing."
        finally:
            await runner.close()

    asyncio.run(main())
