"""checks/schedule.py, the pure scheduler core: staggered first runs, phase-keeping next runs, TTL expiry,
Consul 1.7's success/failure thresholds, 4 KiB output caps and alias status."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pyconsul.agent.checks.schedule import (
    BUF_SIZE,
    AliasCheckState,
    Scheduler,
    Threshold,
    alias_status,
    cap_head,
    cap_tail,
    first_run,
    next_run,
    timeout_of,
    ttl_expired_output,
)
from pyconsul.agent.checks.spec import CheckSpec

HTTP = CheckSpec(check_id="h", name="h", kind="http", http="http://127.0.0.1/", interval=10.0)
TTL = CheckSpec(check_id="t", name="t", kind="ttl", ttl=5.0)


@given(st.floats(0, 1e6), st.floats(0.001, 1e4), st.floats(0, 1, exclude_max=True))
def test_first_run_is_within_one_interval(now: float, interval: float, rnd: float) -> None:
    at = first_run(now, interval, rnd)
    assert now <= at <= now + interval


@given(st.floats(0, 1e6), st.floats(0, 1e4), st.floats(0.01, 1e3))
def test_next_run_keeps_phase_and_never_overlaps(due: float, took: float, interval: float) -> None:
    finished = due + took
    nxt = next_run(due, finished, interval)
    assert nxt >= finished
    assert nxt > due
    k = round((nxt - due) / interval)
    assert k >= 1
    assert abs(due + k * interval - nxt) <= 1e-6 * max(1.0, abs(nxt))
    # no slot was skipped that could have been used
    assert k == 1 or due + (k - 1) * interval < finished + 1e-6 * max(1.0, abs(nxt))


def test_next_run_examples() -> None:
    assert next_run(100.0, 100.2, 10.0) == 110.0
    assert next_run(100.0, 125.0, 10.0) == 130.0  # skipped 110 and 120
    assert next_run(100.0, 110.0, 10.0) == 110.0


def test_timeouts_default_as_consul() -> None:
    assert timeout_of(HTTP) == 10.0
    assert timeout_of(replace(HTTP, kind="tcp")) == 10.0
    assert timeout_of(replace(HTTP, kind="script")) == 30.0
    assert timeout_of(replace(HTTP, timeout=2.5)) == 2.5


def test_threshold_semantics() -> None:
    t = Threshold(success_before_passing=2, failures_before_critical=3)
    assert [t.observe(s) for s in ["passing", "passing", "passing"]] == [False, True, True]
    assert [t.observe(s) for s in ["critical", "critical", "passing", "critical", "critical", "critical"]] == \
        [False, False, False, False, False, True]
    assert t.observe("warning") is False  # a warning counts as a success
    z = Threshold()
    assert all(z.observe(s) for s in ["critical", "passing", "warning", "critical"])


@given(st.integers(0, 5), st.integers(0, 5), st.lists(st.sampled_from(["passing", "warning", "critical"])))
def test_threshold_reports_only_after_enough_in_a_row(sbp: int, fbc: int, results: list[str]) -> None:
    t = Threshold(sbp, fbc)
    for i, status in enumerate(results):
        good = status != "critical"
        run = 0
        for s in reversed(results[: i + 1]):
            if (s != "critical") != good:
                break
            run += 1
        assert t.observe(status) == (run >= (sbp if good else fbc))


def test_output_caps() -> None:
    assert cap_tail(b"ok\n", 3) == "ok\n"
    big = b"a" * 10 + b"b" * BUF_SIZE
    out = cap_tail(big[-BUF_SIZE:], len(big))
    assert out == f"Captured {BUF_SIZE} of {len(big)} bytes\n...\n" + "b" * BUF_SIZE
    assert cap_head("x" * BUF_SIZE) == "x" * BUF_SIZE
    assert cap_head("x" * (BUF_SIZE + 5)) == "x" * BUF_SIZE + f" ... (captured {BUF_SIZE} of {BUF_SIZE + 5} bytes)"
    assert ttl_expired_output("") == "TTL expired"
    assert ttl_expired_output("ok") == "TTL expired (last output before timeout follows): ok"


@given(st.binary(max_size=3 * BUF_SIZE))
def test_cap_tail_is_bounded(data: bytes) -> None:
    out = cap_tail(data[-BUF_SIZE:], len(data))
    assert len(out.encode()) <= 3 * BUF_SIZE + 64  # replacement chars may widen undecodable bytes
    assert out.startswith("Captured ") == (len(data) > BUF_SIZE)


def test_interval_check_runs_staggered_then_every_interval() -> None:
    s = Scheduler()
    gen = s.add(HTTP, now=0.0, rnd=0.25)
    assert s.next_deadline() == 2.5
    assert s.due(2.4) == []
    acts = s.due(2.5)
    assert [(a.check_id, a.kind) for a in acts] == [("h", "run")]
    assert s.next_deadline() is None  # running: nothing pending for it
    assert s.finished("h", gen, 2.7, "passing", "HTTP GET ...: 200 OK") == ("passing", "HTTP GET ...: 200 OK")
    assert s.next_deadline() == 12.5


def test_ttl_expires_and_updates_rearm() -> None:
    s = Scheduler()
    gen = s.add(TTL, now=0.0, rnd=0.9)
    assert s.next_deadline() == 5.0
    assert s.ttl_update("t", 3.0, "passing", "fine") == ("passing", "fine")
    assert s.next_deadline() == 8.0
    assert s.due(7.9) == []
    acts = s.due(8.0)
    assert [(a.kind) for a in acts] == ["expire"]
    assert s.expired("t", gen) == ("critical", "TTL expired (last output before timeout follows): fine")
    assert s.next_deadline() is None  # fires once
    assert s.ttl_update("t", 20.0, "warning", "x" * (BUF_SIZE + 1))[1].endswith(f"(captured {BUF_SIZE} of 4097 bytes)")
    assert s.next_deadline() == 25.0
    assert s.ttl_update("nope", 0.0, "passing", "") is None
    assert s.ttl_update("h", 0.0, "passing", "") is None


def test_replaced_or_removed_check_ignores_stale_results() -> None:
    s = Scheduler()
    g1 = s.add(HTTP, now=0.0, rnd=0.0)
    assert [a.gen for a in s.due(0.0)] == [g1]
    g2 = s.add(replace(HTTP, interval=20.0), now=1.0, rnd=0.5)
    assert s.finished("h", g1, 1.5, "critical", "old") is None
    assert s.next_deadline() == 11.0
    assert s.remove("h")
    assert s.finished("h", g2, 12.0, "passing", "") is None
    assert s.next_deadline() is None
    assert len(s) == 0


def test_thresholds_apply_to_runs() -> None:
    s = Scheduler()
    gen = s.add(replace(HTTP, failures_before_critical=2), now=0.0, rnd=0.0)
    s.due(0.0)
    assert s.finished("h", gen, 0.1, "critical", "boom") is None
    s.due(10.0)
    assert s.finished("h", gen, 10.1, "critical", "boom") == ("critical", "boom")


@given(st.lists(st.tuples(st.floats(0.5, 100), st.floats(0, 1, exclude_max=True)), min_size=1, max_size=30),
       st.floats(0, 50))
def test_many_checks_each_run_once_per_interval(checks: list[tuple[float, float]], took: float) -> None:
    s = Scheduler()
    gens = {}
    for i, (interval, rnd) in enumerate(checks):
        gens[str(i)] = s.add(replace(HTTP, check_id=str(i), interval=interval), now=0.0, rnd=rnd)
    runs: dict[str, list[float]] = {cid: [] for cid in gens}
    now, horizon = 0.0, 3 * max(interval for interval, _ in checks)
    while now <= horizon:
        nd = s.next_deadline()
        assert nd is not None and nd >= now - 1e-9
        now = nd
        for a in s.due(now):
            assert a.kind == "run"
            runs[a.check_id].append(now)
            s.finished(a.check_id, a.gen, now + min(took, 0.2), "passing", "")
    for i, (interval, _) in enumerate(checks):
        times = runs[str(i)]
        assert times and times[0] <= interval
        for a, b in itertools.pairwise(times):
            assert abs((b - a) - interval) <= 1e-6 * max(1.0, b)


def test_alias_status() -> None:
    def c(node: str, sid: str, status: str, name: str = "c") -> AliasCheckState:
        return AliasCheckState(node, sid, name, status, "out")

    assert alias_status([], "", "web") == ("passing", "No checks found.")
    assert alias_status([c("n1", "web", "passing")], "", "web") == ("passing", "All checks passing.")
    assert alias_status([c("n1", "web", "warning", "w"), c("n1", "web", "passing")], "", "web") == \
        ("warning", 'Aliased check "w" failing: out')
    assert alias_status([c("n1", "web", "warning"), c("n1", "", "critical", "serfHealth")], "n1", "web") == \
        ("critical", 'Aliased check "serfHealth" failing: out')
    assert alias_status([c("n1", "db", "critical"), c("n2", "web", "critical")], "n1", "web") == \
        ("passing", "No checks found.")


def test_an_alias_of_its_own_node_does_not_count_itself() -> None:
    me = AliasCheckState("n1", "", "node-alias", "critical", "stale", "node-alias")
    disk = AliasCheckState("n1", "", "disk", "passing", "", "disk")
    assert alias_status([me, disk], "", "", exclude="node-alias") == ("passing", "All checks passing.")
    assert alias_status([me, disk], "", "")[0] == "critical"  # Consul 1.7's way: it counts itself
