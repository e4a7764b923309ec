"""supervise.py: a background task that fails is logged with its traceback and either stops the agent
(critical), is restarted with a backoff (restartable) or is just reported (one-shot); the Raft loop and
the gossip pools report through the same path."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pyconsul.agent import supervise
from pyconsul.agent.config import AgentConfig
from pyconsul.agent.supervise import InjectedFailure, Supervisor


class Boom(Exception):
    pass


async def _fail() -> None:
    raise Boom("disk on fire")


def test_a_critical_task_that_fails_stops_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    reasons: list[str] = []

    async def go() -> None:
        sup = Supervisor(reasons.append, fail_task="")
        await sup.spawn("leader-duties", _fail(), critical=True)

    caplog.set_level(logging.ERROR)
    asyncio.run(go())
    assert reasons == ["leader-duties failed: Boom: disk on fire"]
    assert "Traceback (most recent call last)" in caplog.text and "in _fail" in caplog.text


def test_a_restartable_task_runs_again_after_a_backoff(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(supervise, "RESTART_BACKOFF", 0.01)
    runs: list[int] = []
    reasons: list[str] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise Boom(f"run {len(runs)}")

    async def go() -> Supervisor:
        sup = Supervisor(reasons.append, fail_task="")
        async with asyncio.timeout(5):
            await sup.spawn("member-snapshots", flaky, restart=True)
        return sup

    sup = asyncio.run(go())
    assert runs == [0, 1, 2] and sup.restarts == {"member-snapshots": 2} and sup.failures["member-snapshots"] == 2
    assert reasons == [], "a restartable task never stops the agent"
    assert caplog.text.count("Traceback") == 2 and "restarting background task 'member-snapshots'" in caplog.text


def test_a_one_shot_task_is_reported_only_and_cancellation_is_no_failure() -> None:
    reasons: list[str] = []

    async def forever() -> None:
        await asyncio.sleep(3600)

    async def go() -> Supervisor:
        sup = Supervisor(reasons.append, fail_task="")
        await sup.spawn("wan-flood-join", _fail())
        t = sup.spawn("no-leader-logger", forever, restart=True)
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return sup

    sup = asyncio.run(go())
    assert reasons == [] and sup.failures == {"wan-flood-join": 1} and sup.restarts == {}
    with pytest.raises(TypeError):
        asyncio.run(_spawn_coroutine_with_restart())


async def _spawn_coroutine_with_restart() -> None:
    coro = _fail()
    try:
        Supervisor(fail_task="").spawn("x", coro, restart=True)
    finally:
        coro.close()


def test_the_test_hook_fails_the_named_task_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(supervise.FAIL_TASK_ENV, "tombstone-reaper")
    monkeypatch.setattr(supervise, "RESTART_BACKOFF", 0.01)
    ran: list[str] = []

    async def work() -> None:
        ran.append("ran")

    async def go() -> Supervisor:
        sup = Supervisor()
        await sup.spawn("tombstone-reaper", work, restart=True)
        await sup.spawn("other", work())
        return sup

    sup = asyncio.run(go())
    assert ran == ["ran", "ran"], "the original coroutine ran after the injected failure, and the other task once"
    assert sup.restarts == {"tombstone-reaper": 1} and sup.failures == {"tombstone-reaper": 1}
    assert isinstance(InjectedFailure("x"), RuntimeError)


@pytest.mark.parametrize(("report", "reason"), [
    (lambda a: a._raft_failed(OSError(5, "Input/output error")), "raft failed: OSError: [Errno 5] Input/output error"),
    (lambda a: a._pool_failed("lan", Boom("timer")), "gossip-lan failed: Boom: timer"),
])
def test_raft_and_gossip_failures_stop_the_agent_through_the_supervisor(report: object, reason: str,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    from pyconsul.agent.agent import Agent

    async def go() -> Agent:
        a = Agent(AgentConfig())
        report(a)  # type: ignore[operator]
        return a

    a = asyncio.run(go())
    assert a.stopped.is_set() and a.fatal == reason
    assert a.supervisor.failures == {reason.split(" failed")[0]: 1}
