"""Wire compatibility with HashiCorp serf (Debian's `serf` agent is the oracle).

pyconsul agents and real serf agents share one gossip pool on loopback: they join each
other in both directions, see each other's tags, detect each other's crashes, see
graceful leaves as `left`, and interoperate with -encrypt (a wrong key is rejected).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess

import pytest

from tests.harness import STATUS, Cluster, new_block, wait_for

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True)
def _need_serf() -> None:
    assert shutil.which("serf"), "the serf binary is required (apt-get install serf; scripts/bootstrap.sh does it)"


def _serf_status(serf_members: dict[str, dict[str, object]], name: str) -> str | None:
    m = serf_members.get(name)
    return str(m["status"]) if m else None


def _py_status(members: dict[str, dict[str, object]], name: str) -> str | None:
    m = members.get(name)
    return STATUS.get(int(m["Status"])) if m else None  # type: ignore[call-overload]


def test_join_both_directions_with_tags(cluster: Cluster) -> None:
    ip = new_block()
    n1 = cluster.agent("py1", f"{ip}.1", "-datacenter=BJ")
    s1 = cluster.serf("serf1", f"{ip}.2", "-tag", "role=web", f"-join={ip}.1:8301")
    n2 = cluster.agent("py2", f"{ip}.3", "-datacenter=BJ", f"-join={ip}.2:7946")

    def all_alive() -> bool:
        sm = s1.members()
        return (
            all(_serf_status(sm, n) == "alive" for n in ("py1", "py2", "serf1"))
            and all(_py_status(p.members(), n) == "alive" for p in (n1, n2) for n in ("py1", "py2", "serf1"))
        )

    wait_for(all_alive, 30, "py1, py2 and serf1 to see each other alive")
    sm = s1.members()
    assert sm["py1"]["tags"]["role"] == "node"
    assert sm["py1"]["tags"]["dc"] == "bj"
    assert sm["py2"]["addr"] == f"{ip}.3:8301"
    pm = n1.members()
    assert pm["serf1"]["Tags"] == {"role": "web"}
    assert pm["serf1"]["Addr"] == f"{ip}.2"
    assert pm["serf1"]["Port"] == 7946
    out = n1.cli("members").stdout
    assert "serf1" in out and f"{ip}.2:7946" in out


def test_crash_detection_both_ways(cluster: Cluster) -> None:
    ip = new_block()
    n1 = cluster.agent("py1", f"{ip}.1")
    n2 = cluster.agent("py2", f"{ip}.2", f"-join={ip}.1")
    s1 = cluster.serf("serf1", f"{ip}.3", f"-join={ip}.1:8301")
    s2 = cluster.serf("serf2", f"{ip}.4", f"-join={ip}.1:8301", port=7946)
    wait_for(lambda: all(_serf_status(s1.members(), n) == "alive" for n in ("py1", "py2", "serf2"))
             and all(_py_status(n1.members(), n) == "alive" for n in ("py2", "serf1", "serf2")),
             30, "full mesh alive")

    n2.kill9()
    wait_for(lambda: _serf_status(s1.members(), "py2") == "failed", 30, "serf to mark killed pyconsul failed")
    wait_for(lambda: _py_status(n1.members(), "py2") == "failed", 30, "pyconsul to mark killed pyconsul failed")

    s2.kill9()
    wait_for(lambda: _py_status(n1.members(), "serf2") == "failed", 30, "pyconsul to mark killed serf failed")
    wait_for(lambda: _serf_status(s1.members(), "serf2") == "failed", 30, "serf to mark killed serf failed")


def test_graceful_leave_shows_left(cluster: Cluster) -> None:
    ip = new_block()
    n1 = cluster.agent("py1", f"{ip}.1")
    n2 = cluster.agent("py2", f"{ip}.2", f"-join={ip}.1")
    s1 = cluster.serf("serf1", f"{ip}.3", f"-join={ip}.1:8301")
    s2 = cluster.serf("serf2", f"{ip}.4", f"-join={ip}.1:8301")
    wait_for(lambda: all(_py_status(n1.members(), n) == "alive" for n in ("py2", "serf1", "serf2"))
             and all(_serf_status(s1.members(), n) == "alive" for n in ("py1", "py2", "serf2")),
             30, "full mesh alive")

    out = n2.cli("leave").stdout
    assert "Graceful leave complete" in out
    wait_for(lambda: _serf_status(s1.members(), "py2") == "left", 20, "serf to see pyconsul leave as left")
    wait_for(lambda: _py_status(n1.members(), "py2") == "left", 20, "pyconsul to see pyconsul leave as left")
    wait_for(lambda: not n2.running(), 15, "left agent to exit")

    cp = s2.run("leave")
    assert cp.returncode == 0, cp.stderr
    wait_for(lambda: _py_status(n1.members(), "serf2") == "left", 20, "pyconsul to see serf leave as left")


def test_encryption_interop_and_wrong_key(cluster: Cluster) -> None:
    ip = new_block()
    key = base64.b64encode(os.urandom(32)).decode()
    wrong = base64.b64encode(os.urandom(32)).decode()
    n1 = cluster.agent("py1", f"{ip}.1", f"-encrypt={key}")
    s1 = cluster.serf("serf1", f"{ip}.2", f"-encrypt={key}", f"-join={ip}.1:8301")
    n2 = cluster.agent("py2", f"{ip}.3", f"-encrypt={key}", f"-join={ip}.2:7946")
    wait_for(lambda: all(_serf_status(s1.members(), n) == "alive" for n in ("py1", "py2"))
             and all(_py_status(n1.members(), n) == "alive" for n in ("py2", "serf1")),
             30, "encrypted pool alive")
    assert n1.api("/v1/agent/self")["Stats"]["serf_lan"]["encrypted"] == "true"

    # a serf agent with the wrong key cannot join, and pyconsul counts what it dropped
    bad = cluster.serf("serfbad", f"{ip}.4", f"-encrypt={wrong}")
    cp = bad.run("join", f"{ip}.1:8301")
    assert cp.returncode != 0
    assert "serfbad" not in n1.members()
    stats = n1.api("/v1/agent/self")["Stats"]["serf_lan"]
    assert int(stats["dropped_decrypt_failed"]) >= 1, stats
    assert "Decrypt" in n1.log() or "decrypt" in n1.log()

    # a pyconsul agent joining with the wrong key fails start-up with a clear error
    cp2 = n2.cli("join", f"{ip}.4:7946", check=False)
    assert cp2.returncode != 0
    assert "serfbad" not in n2.members()


def test_keyring_rotation_across_pyconsul_and_serf(cluster: Cluster) -> None:
    """`pyconsul keyring` speaks serf's key queries: serf members rotate along, and back."""
    ip = new_block()
    k1, k2, k3 = (base64.b64encode(os.urandom(32)).decode() for _ in range(3))
    n1 = cluster.agent("py1", f"{ip}.1", f"-encrypt={k1}")
    s1 = cluster.serf("serf1", f"{ip}.2", f"-encrypt={k1}", f"-join={ip}.1:8301")
    n2 = cluster.agent("py2", f"{ip}.3", f"-encrypt={k1}", f"-join={ip}.1")
    wait_for(lambda: all(_py_status(n1.members(), n) == "alive" for n in ("py2", "serf1"))
             and _serf_status(s1.members(), "py2") == "alive", 30, "encrypted pool alive")

    out = n1.cli("keyring", "-list").stdout
    assert f"{k1} [3/3]" in out, out

    n1.cli("keyring", f"-install={k2}")
    cp = s1.run("keys", "-list")
    assert k2 in cp.stdout, cp.stdout + cp.stderr
    n1.cli("keyring", f"-use={k2}")
    n1.cli("keyring", f"-remove={k1}")
    out = n2.cli("keyring", "-list").stdout
    assert f"{k2} [3/3]" in out and k1 not in out, out
    cp = s1.run("keys", "-list")
    assert k1 not in cp.stdout and k2 in cp.stdout, cp.stdout

    # the pool still works on the new key: a newcomer with only k2 joins
    n3 = cluster.agent("py3", f"{ip}.4", f"-encrypt={k2}", f"-join={ip}.2:7946")
    wait_for(lambda: _serf_status(s1.members(), "py3") == "alive" and _py_status(n3.members(), "py1") == "alive",
             30, "newcomer with the rotated key")
    # the rotation survives a restart: the keyring file in the data dir wins over -encrypt
    ring = (cluster.tmp / "py1" / "serf" / "local.keyring").read_text()
    assert k2 in ring and k1 not in ring

    # and serf can drive it too
    cp = s1.run("keys", f"-install={k3}")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    out = n1.cli("keyring", "-list").stdout
    assert f"{k3} [4/4]" in out, out


def test_coordinates_are_exchanged_with_serf(cluster: Cluster) -> None:
    """Our acks carry our coordinate in serf's ping format: a real serf accepts it (serf rtt can estimate the
    round trip to us from it), and serf's acks update ours without a single refusal."""
    ip = new_block()
    n1 = cluster.agent("py1", f"{ip}.1", "-datacenter=BJ")
    s1 = cluster.serf("serf1", f"{ip}.2", f"-join={ip}.1:8301")
    wait_for(lambda: _serf_status(s1.members(), "py1") == "alive", 30, "serf1 to see py1")

    def rtt() -> str | None:
        cp = s1.run("rtt", "py1")
        return cp.stdout if cp.returncode == 0 else None

    out = wait_for(rtt, 30, "serf to hold a coordinate for py1 (learned from py1's acks)")
    assert "Estimated py1 <-> serf1 rtt" in out
    def moved() -> dict[str, object] | None:
        me = n1.api("/v1/agent/self")
        return me if any(x != 0.0 for x in me["Coord"]["Vec"]) else None

    me = wait_for(moved, 30, "py1's coordinate to move (from serf1's acks)")
    assert me["Stats"]["serf_lan"]["coordinate_rejected"] == "0"


def test_user_events_cross_with_serf(cluster: Cluster) -> None:
    """A pyconsul event is a serf user event named consul:event:<name> (serf receives it), and a serf user event
    carrying Consul's msgpack UserEvent is listed by pyconsul's /v1/event/list."""
    from pyconsul.agent.events import UserEvent, encode

    ip = new_block()
    n1 = cluster.agent("py1", f"{ip}.1", "-datacenter=BJ")
    s1 = cluster.serf("serf1", f"{ip}.2", f"-join={ip}.1:8301")
    wait_for(lambda: _serf_status(s1.members(), "py1") == "alive", 30, "serf1 to see py1")

    n1.api("/v1/event/fire/deploy", "PUT")
    wait_for(lambda: "Received event: user-event: consul:event:deploy" in s1.log(), 30, "serf1 to get the event")

    eid = "serf-event-0b5ca3c6"  # short: a 36-byte UUID is a raw16 string, whose length has a NUL (argv cannot)
    payload = encode(UserEvent(eid, "from-serf", b"hi"))
    assert b"\x00" not in payload
    cp = subprocess.run(["serf", "event", f"-rpc-addr={s1.rpc}", "-coalesce=false", "consul:event:from-serf",
                         payload], capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    got = wait_for(lambda: [e for e in n1.api("/v1/event/list") if e["ID"] == eid], 30, "py1 to list serf's event")
    assert got[0]["Name"] == "from-serf" and base64.b64decode(got[0]["Payload"]) == b"hi" and got[0]["LTime"] >= 1
