"""Autopilot's settings in the replicated state (state/autopilot.py): AutopilotSet, its CAS and seed rules, the
index, snapshots and restores."""

from __future__ import annotations

from pyconsul.agent.state import snapshot
from pyconsul.agent.state.commands import AutopilotConf, AutopilotSet, KVSet, Restore, decode, encode
from pyconsul.agent.state.store import StateStore

OFF = AutopilotConf(cleanup_dead_servers=False, last_contact_threshold=1.0, max_trailing_logs=10,
                    server_stabilization_time=0.0)


def test_seed_only_when_absent_and_cas_on_modify_index() -> None:
    s = StateStore()
    assert s.autopilot_config() is None
    assert s.apply(3, encode(AutopilotSet(OFF, cas=True, index=0))) is False  # none stored: a CAS fails (Consul)
    assert s.autopilot_config() is None and s.last_changed == frozenset()
    assert s.apply(4, encode(AutopilotSet(AutopilotConf(), seed=True))) is True
    seeded = s.autopilot_config()
    assert seeded == AutopilotConf(create_index=4, modify_index=4)
    assert s.last_changed == {"autopilot-config"} and s.table_index("autopilot-config") == 4
    assert s.apply(5, encode(AutopilotSet(OFF, seed=True))) is False  # a seed never overwrites
    assert s.autopilot_config() == seeded
    assert s.apply(6, encode(AutopilotSet(OFF, cas=True, index=5))) is False  # ModifyIndex is 4
    assert s.autopilot_config() == seeded
    assert s.apply(7, encode(AutopilotSet(OFF, cas=True, index=4))) is True
    assert s.autopilot_config() == AutopilotConf(False, 1.0, 10, 0.0, create_index=4, modify_index=7)
    assert s.apply(8, encode(AutopilotSet(AutopilotConf(create_index=99, modify_index=99)))) is True  # no CAS
    assert s.autopilot_config() == AutopilotConf(create_index=4, modify_index=8)  # the command's indexes ignored


def test_command_round_trip_and_type_number() -> None:
    cmd = AutopilotSet(OFF, cas=True, index=12)
    data = encode(cmd)
    assert data[1] == 22 and decode(data) == cmd


def test_snapshot_round_trip_and_restore() -> None:
    s = StateStore()
    s.apply(1, encode(KVSet("k", b"v")))
    s.apply(2, encode(AutopilotSet(OFF)))
    data = s.snapshot()
    copy = StateStore.restore(data)
    assert copy.autopilot_config() == AutopilotConf(False, 1.0, 10, 0.0, create_index=2, modify_index=2)
    assert copy.snapshot() == data
    # a restore through the log brings the snapshot's settings ...
    other = StateStore()
    other.apply(1, encode(AutopilotSet(AutopilotConf())))
    assert other.apply(9, encode(Restore(data))) is True
    assert other.autopilot_config() == copy.autopilot_config()
    assert other.table_index("autopilot-config") == 9 and "autopilot-config" in other.last_changed
    # ... and one of a snapshot taken before the settings were kept brings none (the leader seeds them again)
    old = snapshot.unpack(data)
    del old["autopilot"]
    assert other.apply(10, encode(Restore(snapshot.pack(old)))) is True
    assert other.autopilot_config() is None
