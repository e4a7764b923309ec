"""Autopilot's settings in the replicated state (Consul 1.7's "autopilot-config" table): a singleton. Pure.

Written by AutopilotSet (22): PUT /v1/operator/autopilot/configuration[?cas=] on the leader, and the leader's
seed from its config file when the state has none (server/leader.py; Consul's getOrCreateAutopilotConfig).
CreateIndex is the index of the first write, ModifyIndex of the last one; ?cas= compares with ModifyIndex and
fails when there are no settings. The settings are in snapshots (snapshot.py "autopilot"), so a restore brings
the snapshot's settings (or none, from a snapshot taken before they were kept: the leader seeds them again).
Index name: "autopilot-config".
"""

from __future__ import annotations

from dataclasses import replace

from pyconsul.agent.state.commands import AutopilotConf, AutopilotSet
from pyconsul.agent.state.tables import Tables

__all__ = ["INDEX", "KEY", "apply", "get"]

INDEX = "autopilot-config"
KEY = "config"  # the one record's key in Tables.autopilot


def get(t: Tables) -> AutopilotConf | None:
    return t.autopilot.get(KEY)


def apply(t: Tables, idx: int, cmd: AutopilotSet) -> bool:
    old = t.autopilot.get(KEY)
    if cmd.seed and old is not None:
        return False
    if cmd.cas and (old is None or old.modify_index != cmd.index):
        return False
    create = old.create_index if old is not None else idx
    t.put("autopilot", KEY, replace(cmd.config, create_index=create, modify_index=idx))
    t.bump(INDEX, idx)
    return True
