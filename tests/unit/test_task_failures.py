"""Background tasks never die silently (agent/supervise.py): short-lived ones started with start_tracked are held
until they end and their exception is logged at once; the server RPC transport's serving tasks, connection tasks,
peer senders and DNS view fills each log (or restart after) a failure that asyncio used to keep until the task
was garbage collected ("Task exception was never retrieved"), or lost with the peer or the waiting questions."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from pyconsul.agent import errors, supervise
from pyconsul.agent.dns import resolver as r
from pyconsul.agent.raft import rpctls
from pyconsul.agent.raft.messages import Message, TimeoutNow
from pyconsul.agent.raft.transport import Transport
from pyconsul.agent.supervise import start_tracked
from tests.harness import new_block, until
from tests.unit.test_dns_views import KEY, ROW, FakeBackend, make, settle


class Bug(Exception):
    pass


async def _echo(method: str, args: Any) -> Any:
    return args


def test_start_tracked_holds_the_task_and_logs_its_failure(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        tasks: set[asyncio.Task[Any]] = set()

        async def fails() -> None:
            await asyncio.sleep(0)
            raise Bug("lost exception")

        gate = asyncio.Event()
        failing = start_tracked(fails(), tasks, "fails")
        waiting = start_tracked(gate.wait(), tasks, "waits")
        assert tasks == {failing, waiting}
        await until(lambda: failing not in tasks, 5, "the failing task to end")
        waiting.cancel()  # what an owner does at shutdown: a cancellation is not a failure
        await until(lambda: not tasks, 5, "the cancelled task to end")

    caplog.set_level(logging.ERROR)
    asyncio.run(main())
    assert "task 'fails' failed" in caplog.text and "Bug: lost exception" in caplog.text
    assert "waits" not in caplog.text and "never retrieved" not in caplog.text


def test_a_failing_rpc_serve_task_is_logged_and_tracked(caplog: pytest.LogCaptureFixture) -> None:
    """An exception escaping _serve (here: sending the reply) used to end an untracked task nobody awaited."""
    async def main(ip: str) -> None:
        a = Transport("a", "dc1", (f"{ip}.1", 8300), None, _echo)
        b = Transport("b", "dc1", (f"{ip}.2", 8300))
        await a.start()
        try:
            assert await b.request(f"{ip}.1:8300", "echo", 1) == 1

            async def broken_reply(*args: Any) -> None:
                raise Bug("the reply could not be sent")

            a._reply = broken_reply  # type: ignore[method-assign]
            with pytest.raises(errors.RequestTimeout):
                await b.request(f"{ip}.1:8300", "echo", 2, timeout=0.5)
            await until(lambda: "could not be sent" in caplog.text, 5, "the failure logged")
            assert not a._serving and a._inflight == 0
        finally:
            await a.stop()
            await b.stop()

    caplog.set_level(logging.ERROR)
    asyncio.run(main(new_block()))
    assert "task 'rpc-serve' failed" in caplog.text and "Traceback" in caplog.text


def test_a_failing_connection_task_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A bug while handling an inbound connection (here: the Raft message handler raising) is logged at once."""
    async def main(ip: str) -> None:
        seen: list[Message] = []

        def on_message(msg: Message) -> None:
            seen.append(msg)
            raise Bug("the message handler broke")

        a = Transport("a", "dc1", (f"{ip}.1", 8300), on_message)  # type: ignore[arg-type]
        b = Transport("b", "dc1", (f"{ip}.2", 8300))
        await a.start()
        try:
            b.send(f"{ip}.1:8300", TimeoutNow(1, "b", "a"))
            await until(lambda: "the message handler broke" in caplog.text, 5, "the failure logged")
            assert seen == [TimeoutNow(1, "b", "a")]
            await until(lambda: not a._conns, 5, "the connection dropped")
        finally:
            await a.stop()
            await b.stop()

    caplog.set_level(logging.ERROR)
    asyncio.run(main(new_block()))
    assert "server RPC: the connection from" in caplog.text


def test_a_peer_sender_that_fails_is_restarted(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """A bug in a peer's sender loop used to leave that peer without Raft traffic for good, unlogged."""
    monkeypatch.setattr(supervise, "RESTART_BACKOFF", 0.01)
    real = rpctls.dial
    calls = [0]

    async def dial_once_broken(*args: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise Bug("the dialler broke")
        return await real(*args)

    monkeypatch.setattr(rpctls, "dial", dial_once_broken)

    async def main(ip: str) -> None:
        got: list[Message] = []
        a = Transport("a", "dc1", (f"{ip}.1", 8300), got.append)
        b = Transport("b", "dc1", (f"{ip}.2", 8300))
        await a.start()
        try:
            b.send(f"{ip}.1:8300", TimeoutNow(1, "b", "a"))
            await until(lambda: got == [TimeoutNow(1, "b", "a")], 5, "the message sent after the restart")
            assert b.supervisor.restarts == {f"raft-send:{ip}.1:8300": 1}
        finally:
            await a.stop()
            await b.stop()

    caplog.set_level(logging.WARNING)
    asyncio.run(main(new_block()))
    assert "background task 'raft-send:" in caplog.text and "Bug: the dialler broke" in caplog.text


def test_a_dns_fill_whose_change_callback_fails_still_answers(caplog: pytest.LogCaptureFixture) -> None:
    """The questions waiting for a fill used to wait for ever when on_change raised (the fill's future was never
    set), and the fill task's exception was never retrieved."""
    async def main() -> None:
        backend, changed = FakeBackend(), list[r.ViewKey]()
        views = make(backend, changed)
        broken = [False]

        def on_change(key: r.ViewKey) -> None:
            if broken[0]:
                raise Bug("the answer cache broke")
            changed.append(key)

        views.on_change = on_change
        for _ in range(3):  # the detectors' first reads drop what was filled before them
            if views.get(KEY) is r.MISSING:
                await views.fill(KEY)
            await settle()
        assert views.get(KEY) is not r.MISSING
        broken[0] = True
        backend.rows = [ROW, {**ROW, "Node": {**ROW["Node"], "Node": "n2"}}]  # a refill that changes the entry
        got = await asyncio.wait_for(views.fill(KEY), 5)
        assert got == r.instances_from_health(backend.rows)
        await until(lambda: "the answer cache broke" in caplog.text, 5, "the failure logged")
        await views.close()

    caplog.set_level(logging.ERROR)
    asyncio.run(main())
    assert "task 'dns-fill:service:web' failed" in caplog.text


def test_a_supervised_coroutine_cancelled_before_it_starts_is_closed(recwarn: pytest.WarningsRecorder) -> None:
    """Agent.start spawns `snapshots.rejoin(...)` as a coroutine: an agent stopped at once cancelled the task before
    its first step and Python warned "coroutine 'MemberSnapshots.rejoin' was never awaited"."""
    import gc

    async def rejoin() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        task = supervise.Supervisor(fail_task="").spawn("rejoin", rejoin())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_the_http_sweep_survives_a_failing_timeout(caplog: pytest.LogCaptureFixture) -> None:
    """The once-a-second HTTP deadline sweep (h1) used to die at the first exception, silently, and with it every
    connection's timeouts (slowloris protection)."""
    from pyconsul.agent.httpd import h1, web

    async def main() -> None:
        server = await h1.serve(web.Application(), "127.0.0.1", 0)
        calls = [0]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            await until(lambda: server._srv.conns, 5, "the connection accepted")
            (conn,) = server._srv.conns

            def broken() -> None:
                calls[0] += 1
                raise Bug("on_timeout broke")

            conn.on_timeout = broken  # type: ignore[method-assign]
            conn.deadline = asyncio.get_running_loop().time() - 1
            await until(lambda: calls[0] >= 2, 5, "a second sweep after the failure")
            assert not server._sweeper.done()
            writer.close()
        finally:
            await server.close()

    caplog.set_level(logging.ERROR)
    asyncio.run(main())
    assert "timing out an HTTP connection failed" in caplog.text and "on_timeout broke" in caplog.text
