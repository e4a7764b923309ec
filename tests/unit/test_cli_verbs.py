"""The issue-12 verbs of `pyconsul` without an agent: services, maint, reload, watch's plan and
parameters, and the lock/semaphore recipes driven against an in-memory KV with sessions."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyconsul.agent import cli
from pyconsul.agent.cli import common, lock, maint, recipes, services, watch
from pyconsul.agent.cli.common import CLIError
from pyconsul.agent.cli.recipes import LOCK_FLAG, SEMAPHORE_FLAG, InUse, Lock, LockError, Semaphore

Call = tuple[str, str, Any, Any]


def fake_api(monkeypatch: pytest.MonkeyPatch, respond: Callable[[str, str], Any]) -> list[Call]:
    calls: list[Call] = []

    def api_request(method: str, base_url: str, path: str, *, query: Any = None, body: object = None,
                    raw: bytes | None = None, timeout: float = 30.0, decode: bool = True) -> Any:
        calls.append((method, path, query, body))
        return respond(method, path)

    monkeypatch.setattr(common, "api_request", api_request)
    return calls


# ---------------------------------------------------------------- services


def test_register_from_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    argv = ["services", "register", "-name=web", "-id=web1", "-port=8080", "-address=10.0.0.5", "-tag=a",
            "-tag=b", "-meta=rack=r1", "-meta", "team=x", "-tagged-address=lan=10.0.0.5:80"]
    assert cli.main(argv) == 0
    assert calls == [("PUT", "/v1/agent/service/register", None, {
        "Name": "web", "ID": "web1", "Address": "10.0.0.5", "Port": 8080, "Tags": ["a", "b"],
        "Meta": {"rack": "r1", "team": "x"}, "TaggedAddresses": {"lan": {"Address": "10.0.0.5", "Port": 80}}})]
    assert capsys.readouterr().out == "Registered service: web\n"


def test_register_from_file_translates_config_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    f = tmp_path / "web.json"
    f.write_text(json.dumps({"services": [
        {"name": "web", "port": 80, "enable_tag_override": True, "meta": {"some_key": "v"},
         "tagged_addresses": {"wan": {"address": "1.2.3.4", "port": 81}}, "weights": {"passing": 3, "warning": 1},
         "check": {"ttl": "10s", "check_id": "web-ttl"}},
        {"Name": "db", "ID": "db1"}]}))
    assert cli.main(["services", "register", str(f)]) == 0
    bodies = [c[3] for c in calls]
    assert bodies[0] == {"Name": "web", "Port": 80, "EnableTagOverride": True, "Meta": {"some_key": "v"},
                         "TaggedAddresses": {"wan": {"Address": "1.2.3.4", "Port": 81}},
                         "Weights": {"Passing": 3, "Warning": 1}, "Check": {"ttl": "10s", "check_id": "web-ttl"}}
    assert bodies[1] == {"Name": "db", "ID": "db1"}


@pytest.mark.parametrize(("argv", "message"), [
    (["services", "register"], "Service registration requires at least one argument or flags."),
    (["services", "register", "-name=x", "f.json"], "Service registration requires arguments or -id, not both."),
    (["services", "register", "-name=x", "-meta=novalue"], 'Missing "=" value in argument: novalue'),
    (["services", "register", "-name=x", "-tagged-address=lan=h:99999"], "Invalid Tagged Address"),
    (["services", "deregister"], "Service deregistration requires at least one argument or -id."),
    (["services", "deregister", "-id=x", "f.json"], "Service deregistration requires arguments or -id, not both."),
])
def test_services_bad_input(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
                            message: str) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    assert cli.main(argv) == 1
    assert message in capsys.readouterr().err
    assert calls == []


def test_register_file_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "none.json").write_text('{"datacenter": "x"}')
    with pytest.raises(CLIError, match="invalid JSON"):
        services.services_from_file(str(tmp_path / "bad.json"))
    with pytest.raises(CLIError, match="no service definition"):
        services.services_from_file(str(tmp_path / "none.json"))
    with pytest.raises(CLIError, match="no such file"):
        services.services_from_file(str(tmp_path / "missing.json"))


def test_deregister_by_file_uses_id_else_name(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"services": [{"name": "web", "id": "web 1"}, {"name": "db"}]}))
    assert cli.main(["services", "deregister", str(f)]) == 0
    assert [c[1] for c in calls] == ["/v1/agent/service/deregister/web%201", "/v1/agent/service/deregister/db"]
    assert capsys.readouterr().out == "Deregistered service: web 1\nDeregistered service: db\n"


@pytest.mark.parametrize(("value", "want"), [
    ("10.0.0.1:80", {"Address": "10.0.0.1", "Port": 80}),
    ("[::1]:8080", {"Address": "::1", "Port": 8080}),
    ("host", {"Address": "host", "Port": 0}),
])
def test_parse_service_addr(value: str, want: dict[str, Any]) -> None:
    assert services.parse_service_addr(value) == want


# ---------------------------------------------------------------- maint, reload


@pytest.mark.parametrize(("argv", "message"), [
    (["-enable", "-disable"], "Only one of -enable or -disable may be provided"),
    (["-reason=x"], "Reason may only be provided with -enable"),
    (["-service=web"], "Service requires either -enable or -disable"),
])
def test_maint_flag_rules(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str],
                          message: str) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    assert cli.main(["maint", *argv]) == 1
    assert capsys.readouterr().err.strip() == message
    assert calls == []


def test_maint_enable_service_and_node(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = fake_api(monkeypatch, lambda m, p: {"Config": {"NodeName": "n1"}} if p == "/v1/agent/self" else None)
    assert cli.main(["maint", "-enable", "-service=web", "-reason=upgrade"]) == 0
    assert cli.main(["maint", "-disable"]) == 0
    puts = [c for c in calls if c[0] == "PUT"]
    assert puts == [("PUT", "/v1/agent/service/maintenance/web", {"enable": "true", "reason": "upgrade"}, None),
                    ("PUT", "/v1/agent/maintenance", {"enable": "false"}, None)]
    assert capsys.readouterr().out == "Service entered maintenance mode: web\nNode left maintenance mode\n"


def test_maint_lists_maintenance_checks() -> None:
    checks = {"_service_maintenance:web": {"ServiceID": "web", "Notes": "deploy"},
              "_node_maintenance": {"Notes": "kernel"}, "web-ttl": {"ServiceID": "web"}}
    assert maint.maint_lines("n1", checks) == ["Node:", "  Name:   n1", "  Reason: kernel", "", "Service:",
                                               "  ID:     web", "  Reason: deploy", ""]


def test_reload(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    assert cli.main(["reload"]) == 0
    assert calls == [("PUT", "/v1/agent/reload", None, None)]
    assert capsys.readouterr().out == "Configuration reload triggered\n"


# ---------------------------------------------------------------- watch


@pytest.mark.parametrize(("wtype", "params", "message"), [
    ("", {}, "Watch type must be specified"),
    ("bogus", {}, "Unsupported watch type: bogus"),
    ("key", {}, "Must specify a single key to watch"),
    ("keyprefix", {}, "Must specify a single prefix to watch"),
    ("service", {}, "Must specify a single service to watch"),
    ("nodes", {"key": "x"}, "Invalid parameters: [key]"),
    ("services", {"tag": "x", "name": "y"}, "Invalid parameters: [name tag]"),
    ("checks", {"service": "web", "state": "passing"}, "Cannot specify service and state"),
    ("checks", {"state": "sad"}, "Invalid state: sad"),
    ("service", {"service": "web", "passingonly": "yes"}, 'parsing "yes": invalid syntax'),
])
def test_watch_parameters(wtype: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(CLIError, match=message.replace("[", r"\[").replace("]", r"\]")):
        watch.build_query(wtype, params)


def test_watch_queries() -> None:
    q = watch.build_query("service", {"service": "web", "tag": "v1", "passingonly": "true"}, dc="sh")
    assert (q.path, q.params) == ("/v1/health/service/web", (("dc", "sh"), ("tag", "v1"), ("passing", "1")))
    q = watch.build_query("key", {"key": "/a/b"})
    assert (q.path, q.missing_ok) == ("/v1/kv/a/b", True)
    assert q.shape([{"Key": "a/b"}]) == {"Key": "a/b"} and q.shape(None) is None
    assert watch.build_query("checks", {}).path == "/v1/health/state/any"
    assert watch.build_query("keyprefix", {"prefix": "app/"}).params == (("recurse", ""),)
    assert watch.build_query("event", {"name": "deploy"}).params == (("name", "deploy"),)


def test_watch_plan_runs_handler_on_first_result_and_on_changes_only() -> None:
    plan = watch.Plan()
    assert plan.on_result(5, {"a": 1})  # first result: always
    assert plan.index == 5
    assert not plan.on_result(5, {"a": 1})  # the blocking read timed out
    assert not plan.on_result(7, {"a": 1})  # index moved, data the same
    assert plan.index == 7
    assert plan.on_result(9, {"a": 2})
    assert plan.on_result(3, {"a": 3}) and plan.index == 0  # index went backwards: restart from 0
    assert watch.Plan().on_result(1, None)  # a missing key is a result too


def test_watch_backoff() -> None:
    plan = watch.Plan()
    assert [plan.on_error() for _ in range(8)] == [5, 20, 45, 80, 125, 180, 180, 180]
    plan.on_result(1, None)
    assert plan.failures == 0


def test_event_index_and_pruning() -> None:
    a = "6a8cbb6f-8f2f-4a7b-8b4e-3a4a1b2c3d4e"
    b = "00000000-0000-0000-0000-000000000001"
    assert watch.event_id_to_index(b) == 1
    assert watch.event_id_to_index("bogus") == 0
    events = [{"ID": a}, {"ID": b}]
    assert watch.new_events(events, watch.event_id_to_index(a)) == [{"ID": b}]
    assert watch.new_events(events, 0) == events


def test_go_json_escapes_like_go() -> None:
    assert watch.go_json({"k": "<&>"}) == '{"k":"\\u003c\\u0026\\u003e"}'


def test_shell_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHELL", "/bin/bash")
    assert lock.shell_argv(["echo", "$X"], True) == ["/bin/bash", "-c", "echo $X"]
    assert lock.shell_argv(["echo", "x"], False) == ["echo", "x"]


@pytest.mark.parametrize(("argv", "message"), [
    (["-n=0", "p", "true"], "Lock holder limit must be positive"),
    (["p"], "Key prefix and child command must be specified"),
    (["-monitor-retry=-1", "p", "true"], "Number for 'monitor-retry' must be >= 0"),
    (["-timeout=-1s", "p", "true"], "Timeout must be positive"),
])
def test_lock_flag_rules(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert cli.main(["lock", *argv]) == 1
    assert capsys.readouterr().err.strip() == message


# ---------------------------------------------------------------- lock and semaphore recipes


class FakeKV:
    """Consul's KV and session semantics in memory. A blocking read that would wait calls `on_block`
    (a test sets a stop event there) and returns at once, unchanged."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, str] = {}  # id -> behavior
        self.index = 1
        self.n = 0
        self.on_block: Callable[[], None] = lambda: None

    def _bump(self) -> int:
        self.index += 1
        return self.index

    def _block(self, index: int) -> None:
        if index and index >= self.index:
            self.on_block()

    def get(self, key: str, index: int, wait: float, consistent: bool) -> tuple[Any, int]:
        self._block(index)
        return (dict(self.data[key]) if key in self.data else None), self.index

    def list(self, prefix: str, index: int, wait: float, consistent: bool) -> tuple[list[Any], int]:
        self._block(index)
        return [dict(v) for k, v in sorted(self.data.items()) if k.startswith(prefix)], self.index

    def _write(self, key: str, value: bytes, flags: int, session: str | None) -> None:
        old = self.data.get(key)
        idx = self._bump()
        self.data[key] = {"Key": key, "Value": base64.b64encode(value).decode() if value else None,
                          "Flags": flags, "ModifyIndex": idx, "CreateIndex": old["CreateIndex"] if old else idx,
                          "Session": session if session is not None else (old or {}).get("Session")}

    def acquire(self, key: str, value: bytes, flags: int, session: str) -> bool:
        if session not in self.sessions:
            raise common.ApiError("Unexpected response code: 500 (invalid session)", 500)
        holder = (self.data.get(key) or {}).get("Session")
        if holder and holder != session:
            return False
        self._write(key, value, flags, session)
        return True

    def release(self, key: str, flags: int, session: str) -> bool:
        if (self.data.get(key) or {}).get("Session") != session:
            return False
        self._write(key, b"", flags, "")
        return True

    def cas(self, key: str, value: bytes, flags: int, index: int) -> bool:
        current = self.data.get(key)
        if (current["ModifyIndex"] if current else 0) != index:
            return False
        self._write(key, value, flags, None)
        return True

    def delete(self, key: str, cas: int | None) -> bool:
        if cas is not None and (self.data.get(key) or {}).get("ModifyIndex", 0) != cas:
            return False
        self.data.pop(key, None)
        self._bump()
        return True

    def session_create(self, name: str, ttl: float, behavior: str) -> str:
        self.n += 1
        sid = f"{self.n:08d}-0000-0000-0000-000000000000"
        self.sessions[sid] = behavior
        return sid

    def session_renew(self, session: str) -> bool:
        return session in self.sessions

    def session_destroy(self, session: str) -> None:
        behavior = self.sessions.pop(session, None)
        for key, entry in list(self.data.items()):
            if entry.get("Session") == session:
                if behavior == "delete":
                    del self.data[key]
                else:
                    entry["Session"] = ""
        self._bump()


def _opts(**kw: Any) -> dict[str, Any]:
    return {"session_name": "t", "try_once": None, "monitor_retries": 0, **kw}


def _held(kv: FakeKV, recipe: Lock | Semaphore) -> bool:
    """Acquire; a read that would block means "not now" (the attempt stops)."""
    stop = threading.Event()
    kv.on_block = stop.set
    return recipe.acquire(stop)


def test_lock_mutual_exclusion_and_release() -> None:
    kv = FakeKV()
    a, b = Lock(kv, "p/.lock", **_opts()), Lock(kv, "p/.lock", **_opts())
    assert _held(kv, a)
    assert kv.data["p/.lock"]["Flags"] == LOCK_FLAG and kv.data["p/.lock"]["Session"] == a.session
    assert not _held(kv, b)
    assert b.session not in kv.sessions  # a failed attempt destroys its session
    with pytest.raises(InUse):
        b.destroy()
    a.release()
    assert a.session not in kv.sessions
    assert _held(kv, b)
    b.release()
    b.destroy()
    assert "p/.lock" not in kv.data


def test_lock_conflicts_with_a_key_used_otherwise() -> None:
    kv = FakeKV()
    kv._write("p/.lock", b"{}", SEMAPHORE_FLAG, "")
    with pytest.raises(LockError, match="Existing key does not match lock use"):
        _held(kv, Lock(kv, "p/.lock", **_opts()))


def test_lock_monitor_returns_when_the_session_is_lost() -> None:
    kv = FakeKV()
    a = Lock(kv, "p/.lock", **_opts())
    assert _held(kv, a)
    stop = threading.Event()
    kv.on_block = stop.set  # still held: the monitor would block; the test stops it
    a.monitor(stop)
    assert stop.is_set()
    kv.on_block = lambda: None
    kv.session_destroy(a.session)
    a.monitor(threading.Event())  # returns: the key no longer carries our session
    a.end_session()


def test_semaphore_admits_n_then_waits_then_admits_after_release() -> None:
    kv = FakeKV()
    s1, s2, s3 = (Semaphore(kv, "sem", 2, **_opts()) for _ in range(3))
    assert _held(kv, s1) and _held(kv, s2)
    assert not _held(kv, s3)
    doc = json.loads(base64.b64decode(kv.data["sem/.lock"]["Value"]))
    assert doc == {"Limit": 2, "Holders": {s1.session: True, s2.session: True}}
    assert kv.data["sem/.lock"]["Flags"] == SEMAPHORE_FLAG
    with pytest.raises(InUse):
        Semaphore(kv, "sem", 2, **_opts()).destroy()
    s1.release()
    assert f"sem/{s1.session}" not in kv.data
    s4 = Semaphore(kv, "sem", 2, **_opts())
    assert _held(kv, s4)
    for s in (s2, s4):
        s.release()
    s4.destroy()
    assert not any(k.startswith("sem/") for k in kv.data)


def test_semaphore_prunes_dead_holders() -> None:
    kv = FakeKV()
    s1, s2 = Semaphore(kv, "sem", 1, **_opts()), Semaphore(kv, "sem", 1, **_opts())
    assert _held(kv, s1)
    assert not _held(kv, s2)
    kv.session_destroy(s1.session)  # behavior delete: its contender key goes; it stays listed as holder
    assert _held(kv, s2)
    doc = json.loads(base64.b64decode(kv.data["sem/.lock"]["Value"]))
    assert doc["Holders"] == {s2.session: True}
    s1.end_session()
    s2.release()


def test_semaphore_limit_must_agree() -> None:
    kv = FakeKV()
    s1 = Semaphore(kv, "sem", 2, **_opts())
    assert _held(kv, s1)
    with pytest.raises(LockError, match=r"semaphore limit conflict \(lock: 2, local: 3\)"):
        _held(kv, Semaphore(kv, "sem", 3, **_opts()))
    s1.release()


@pytest.mark.parametrize(("holders", "limit", "session", "want"), [
    ({}, 2, "s", "cas"),
    ({"a": True}, 2, "s", "cas"),
    ({"a": True, "b": True}, 2, "s", "wait"),
    ({"a": True, "s": True}, 2, "s", "held"),
    ({"a": True, "dead": True}, 2, "s", "cas"),  # "dead" has no contender key with a session
])
def test_semaphore_step(holders: dict[str, bool], limit: int, session: str, want: str) -> None:
    value = base64.b64encode(json.dumps({"Limit": limit, "Holders": holders}).encode()).decode()
    pairs = [{"Key": "p/.lock", "Flags": SEMAPHORE_FLAG, "Value": value, "ModifyIndex": 9}]
    pairs += [{"Key": f"p/{s}", "Session": s} for s in ("a", "b", "s") if s in holders or s == session]
    step, state = recipes.semaphore_step(pairs, "p", limit, session)
    assert step == want
    if want == "cas":
        assert session in state.holders and "dead" not in state.holders and state.modify_index == 9


def test_lock_step() -> None:
    assert recipes.lock_step(None, "s") == "acquire"
    assert recipes.lock_step({"Flags": LOCK_FLAG, "Session": ""}, "s") == "acquire"
    assert recipes.lock_step({"Flags": LOCK_FLAG, "Session": "o"}, "s") == "wait"
    assert recipes.lock_step({"Flags": LOCK_FLAG, "Session": "s"}, "s") == "held"
    with pytest.raises(LockError):
        recipes.lock_step({"Flags": 0, "Session": ""}, "s")


def test_join_is_go_path_join() -> None:
    assert recipes.join("a/", ".lock") == "a/.lock"
    assert recipes.join("a//b", "c") == "a/b/c"


def test_register_from_hcl_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = fake_api(monkeypatch, lambda m, p: None)
    f = tmp_path / "svc.hcl"
    f.write_text('service {\n  name = "web"\n  port = 80\n  tags = ["a"]\n}\nservice {\n  name = "api"\n}\n')
    assert cli.main(["services", "register", str(f)]) == 0
    assert [c[3] for c in calls] == [{"Name": "web", "Port": 80, "Tags": ["a"]}, {"Name": "api"}]
    f.write_text("service {")
    with pytest.raises(CLIError, match="invalid HCL"):
        services.services_from_file(str(f))


def test_event_plan_keeps_an_unordered_index() -> None:
    plan = watch.Plan(ordered=False)
    assert plan.on_result(10, [{"ID": "a"}])
    assert plan.on_result(3, [{"ID": "b"}]) and plan.index == 3  # a smaller hash is no reset
    assert not plan.on_result(3, [])
