"""What the leader does for ACLs (Consul 1.7's initializeACLs): the builtin global-management policy, the
anonymous token, and the acl.tokens.master token exist.

`missing(tables, master, now)` (pure) lists the commands that create what is missing. `establish` proposes them
while the new leader establishes its leadership (server/leader.py's establish hooks), before it takes writes,
as Consul's initializeACLs: a client that sees a leader finds the master token. `run` (the leader's loop,
supervised by the agent) checks again every POLL seconds while this server leads, so a lost proposal of the
builtin policy or the anonymous token is repaired on the next pass.

The master token is looked for only when leadership is established and after each restore of the state
(a snapshot restore swaps the whole state; Consul re-establishes leadership then): never on every pass, so a
master token deleted by an operator while this leader still has it in its configuration (a rotation: the new
one created first, then the configuration changed, then the old one deleted) stays deleted. `master` is
read at each of those moments (a reload changes it). The master token is created by ACLBootstrap when no
bootstrap was done yet (so PUT /v1/acl/bootstrap is then refused, as in Consul), else by a plain token
create.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from pyconsul.agent.acl.rules import GLOBAL_MANAGEMENT_RULES
from pyconsul.agent.state import acl as acl_state
from pyconsul.agent.state import commands as c
from pyconsul.agent.state.acl_defs import (
    ANONYMOUS_ACCESSOR,
    ANONYMOUS_SECRET,
    GLOBAL_MANAGEMENT_ID,
    GLOBAL_MANAGEMENT_NAME,
    ACLPolicy,
    ACLPolicyLink,
    ACLToken,
)
from pyconsul.agent.state.tables import Tables

log = logging.getLogger("agent.server.acl")

POLL = 1.0  # seconds between two checks while leading


def _hashed_token(tok: ACLToken) -> ACLToken:
    h = acl_state.token_hash(tok, tuple(link.id for link in tok.policies))
    return ACLToken(accessor_id=tok.accessor_id, secret_id=tok.secret_id, description=tok.description,
                    policies=tok.policies, local=tok.local, create_time=tok.create_time, hash=h)


def missing(t: Tables, master: str, now: float) -> list[c.Command]:
    out: list[c.Command] = []
    if GLOBAL_MANAGEMENT_ID not in t.acl_policies:
        p = ACLPolicy(id=GLOBAL_MANAGEMENT_ID, name=GLOBAL_MANAGEMENT_NAME,
                      description="Builtin Policy that grants unlimited access", rules=GLOBAL_MANAGEMENT_RULES)
        out.append(c.ACLPolicyApply("create", ACLPolicy(id=p.id, name=p.name, description=p.description,
                                                        rules=p.rules, hash=acl_state.policy_hash(p))))
    if ANONYMOUS_ACCESSOR not in t.acl_tokens:
        anon = ACLToken(accessor_id=ANONYMOUS_ACCESSOR, secret_id=ANONYMOUS_SECRET, description="Anonymous Token",
                        create_time=now)
        out.append(c.ACLTokenApply("create", _hashed_token(anon)))
    if master and acl_state.token_by_secret(t, master) is None:
        tok = _hashed_token(ACLToken(accessor_id=str(uuid.uuid4()), secret_id=master, description="Master Token",
                                     policies=(ACLPolicyLink(id=GLOBAL_MANAGEMENT_ID),), create_time=now))
        if t.index.get(acl_state.BOOTSTRAP_INDEX, 0):
            out.append(c.ACLTokenApply("create", tok))
        else:
            out.append(c.ACLBootstrap(tok))
    return out


async def establish(tables: Callable[[], Tables], propose: Callable[[bytes], Awaitable[object]],
                    master: Callable[[], str], clock: Callable[[], float]) -> None:
    """Propose what `missing` lists, in order, through `propose` (the establishing leader's own writes)."""
    for cmd in missing(tables(), master(), clock()):
        await propose(c.encode(cmd))
        log.info("ACLs: created %s", _what(cmd))


async def run(is_leader: Callable[[], bool], tables: Callable[[], Tables], write: Callable[[bytes], Awaitable[object]],
              master: Callable[[], str], clock: Callable[[], float], restores: Callable[[], int]) -> None:
    """Forever: while leading, propose what `missing` lists (one at a time, in order); the master token only
    when `restores()` (how many times the state was restored) has changed since it was last looked for."""
    seen = restores()  # establish() looked for the master token of the state as it is now
    while True:
        if is_leader():
            generation = restores()
            done = True
            for cmd in missing(tables(), master() if generation != seen else "", clock()):
                try:
                    await write(c.encode(cmd))
                    log.info("ACLs: created %s", _what(cmd))
                except Exception as exc:  # lost leadership, no quorum: the next pass tries again
                    log.debug("ACLs: could not create %s: %s", _what(cmd), exc)
                    done = False
                    break
            if done:
                seen = generation
        await asyncio.sleep(POLL)


def _what(cmd: c.Command) -> str:
    if isinstance(cmd, c.ACLPolicyApply):
        return f"the builtin {cmd.policy.name} policy"
    if isinstance(cmd, c.ACLTokenApply) and cmd.token.accessor_id == ANONYMOUS_ACCESSOR:
        return "the anonymous token"
    return "the master token (acl.tokens.master)"
