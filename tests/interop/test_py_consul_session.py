"""py-consul's session API and KV locks against pyconsul servers (unchanged client)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import consul
import pytest

from tests.harness import Cluster, new_block, wait_for

pytestmark = pytest.mark.interop


def test_sessions_and_locks(cluster: Cluster) -> None:
    ip = new_block()
    cfg = cluster.tmp / "fast.json"
    cfg.write_text(json.dumps({"performance": {"raft_multiplier": 1}}))
    cluster.agent("s1", f"{ip}.1", "-server", "-bootstrap", f"-config-file={cfg}")
    c = consul.Consul(host=f"{ip}.1", port=8500)
    wait_for(lambda: c.status.leader(), 20, "a leader")
    # the leader registers the node with serfHealth, which a default session checks
    wait_for(lambda: c.catalog.node("s1")[1], 20, "s1 in the catalog")
    sid = c.session.create(name="lock-holder", ttl=30, lock_delay=0)
    sid2 = c.session.create(name="other", lock_delay=0, behavior="delete")
    _, info = c.session.info(sid)
    assert info["Name"] == "lock-holder" and info["TTL"] == "30s" and info["Node"] == "s1"
    assert {s["ID"] for s in c.session.list()[1]} == {sid, sid2}
    assert {s["ID"] for s in c.session.node("s1")[1]} == {sid, sid2}

    assert c.kv.put("locks/a", "held", acquire=sid) is True
    assert c.kv.put("locks/a", "stolen", acquire=sid2) is False
    _, entry = c.kv.get("locks/a")
    assert entry["Session"] == sid and entry["LockIndex"] == 1
    assert c.kv.put("locks/a", "bye", release=sid2) is False
    assert c.kv.put("locks/a", "bye", release=sid) is True
    _, entry = c.kv.get("locks/a")
    assert "Session" not in entry or not entry["Session"]

    renewed = c.session.renew(sid)
    assert renewed["ID"] == sid
    assert c.kv.put("locks/b", "x", acquire=sid2) is True
    assert c.session.destroy(sid2) is True
    assert c.kv.get("locks/b")[1] is None, "behavior=delete removes the held key"
    # below Consul's 10 s minimum (py-consul refuses client-side, so ask over plain HTTP)
    req = urllib.request.Request(f"http://{ip}.1:8500/v1/session/create", data=b'{"TTL": "5s"}', method="PUT")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and b"Invalid Session TTL" in err.value.read()
