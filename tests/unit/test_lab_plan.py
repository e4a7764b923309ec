"""lab.plan / lab.render / CLI argument splitting: pure parts of the local lab, table-driven. No root needed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from pathlib import Path
from typing import Any

import pytest

from pyconsul.lab.cli import split_ssh_args
from pyconsul.lab.plan import (
    CLIENT_KEY,
    PRIVATE_DIRS,
    HostSpec,
    PlanError,
    check_conflicts,
    inventory_hosts,
    plan_hosts,
    veth_name,
)
from pyconsul.lab.render import etc_hosts, host_script, known_hosts_name, rewrite_known_hosts, sshd_config, table

SSH_VARS: dict[str, Any] = {
    "ansible_user": "root",
    "ansible_ssh_private_key_file": str(CLIENT_KEY),
    "ansible_ssh_common_args": "-o UserKnownHostsFile=/var/lib/pyconsul-lab/ssh/known_hosts "
                               "-o ControlPath=/var/lib/pyconsul-lab/ssh/cm-%C",
}


def inventory(hosts: dict[str, dict[str, Any]], groups: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """`ansible-inventory --list` shaped JSON; every host gets SSH_VARS under its own vars."""
    groups = groups if groups is not None else {"ungrouped": list(hosts)}
    out: dict[str, Any] = {"_meta": {"hostvars": {h: {**SSH_VARS, **v} for h, v in hosts.items()}},
                           "all": {"children": list(groups)}}
    for g, members in groups.items():
        out[g] = {"hosts": members}
    return out


def spec(name: str, addr: str, port: int = 22) -> HostSpec:
    return HostSpec(name, ipaddress.IPv4Address(addr), port, ())


@pytest.mark.parametrize(
    ("address", "veth"),
    [("10.77.0.11", "pcl-0-11"), ("10.77.9.13", "pcl-9-13"), ("10.77.255.254", "pcl-255-254"),
     ("10.77.1.0", "pcl-1-0"), ("10.77.0.2", "pcl-0-2")],
)
def test_veth_names_are_derived_from_the_address(address: str, veth: str) -> None:
    name = veth_name(ipaddress.IPv4Address(address))
    assert name == veth
    assert len(name) <= 15


def test_veth_names_are_unique_over_the_whole_lab_network() -> None:
    names = {veth_name(a) for a in ipaddress.IPv4Network("10.77.0.0/16")}
    assert len(names) == 2**16
    assert max(len(n) for n in names) <= 15


def test_veth_name_outside_the_lab_network_is_refused() -> None:
    with pytest.raises(PlanError):
        veth_name(ipaddress.IPv4Address("10.78.0.1"))


def test_plan_reads_hosts_from_groups_and_sorts_them() -> None:
    inv = inventory({"node2": {"ansible_host": "10.77.0.12"}, "node1": {"ansible_host": "10.77.0.11"}},
                    {"bj": ["node1"], "sh": ["node2"]})
    specs = plan_hosts(inv)
    assert [(s.name, str(s.address), s.netns, s.veth, s.port) for s in specs] == [
        ("node1", "10.77.0.11", "pcl-node1", "pcl-0-11", 22), ("node2", "10.77.0.12", "pcl-node2", "pcl-0-12", 22)]


def test_lab_init_picks_sshd_or_a_systemd_container() -> None:
    inv = inventory({"a": {"ansible_host": "10.77.0.11"}, "b": {"ansible_host": "10.77.0.12", "lab_init": "systemd"}})
    assert [(s.name, s.init) for s in plan_hosts(inv)] == [("a", "sshd"), ("b", "systemd")]
    bad = inventory({"a": {"ansible_host": "10.77.0.11", "lab_init": "upstart"}})
    with pytest.raises(PlanError, match="host a: lab_init must be one of sshd, systemd, got 'upstart'"):
        plan_hosts(bad)


def test_ssh_options_follow_the_inventory_in_ansible_order() -> None:
    inv = inventory({"n1": {"ansible_host": "10.77.0.11", "ansible_port": 2222,
                            "ansible_ssh_extra_args": "-o ServerAliveInterval=5"}})
    (s,) = plan_hosts(inv)
    assert s.port == 2222
    assert s.ssh_options == (
        "-o", "Port=2222", "-o", "User=root", "-o", f"IdentityFile={CLIENT_KEY}", "-o", "IdentitiesOnly=yes",
        "-o", "UserKnownHostsFile=/var/lib/pyconsul-lab/ssh/known_hosts",
        "-o", "ControlPath=/var/lib/pyconsul-lab/ssh/cm-%C", "-o", "ServerAliveInterval=5")


def test_local_connection_hosts_are_not_lab_hosts() -> None:
    inv = inventory({"localhost": {"ansible_connection": "local"}, "n1": {"ansible_host": "10.77.0.11"}})
    assert [s.name for s in plan_hosts(inv)] == ["n1"]


def test_hosts_without_vars_still_count() -> None:
    inv = {"_meta": {"hostvars": {}}, "all": {"children": ["g"]}, "g": {"hosts": ["bare"]}}
    assert inventory_hosts(inv) == ["bare"]
    with pytest.raises(PlanError, match="bare: no ansible_host"):
        plan_hosts(inv)


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        ({}, "no hosts"),
        ({"a": {}}, "a: no ansible_host"),
        ({"a": {"ansible_host": ""}}, "a: no ansible_host"),
        ({"a": {"ansible_host": "node1.example"}}, "not an IPv4 address"),
        ({"a": {"ansible_host": "10.78.0.11"}}, "outside the lab network"),
        ({"a": {"ansible_host": "192.168.0.1"}}, "outside the lab network"),
        ({"a": {"ansible_host": "10.77.0.1"}}, "reserved"),
        ({"a": {"ansible_host": "10.77.0.0"}}, "reserved"),
        ({"a": {"ansible_host": "10.77.255.255"}}, "reserved"),
        ({"a": {"ansible_host": "10.77.0.11"}, "b": {"ansible_host": "10.77.0.11"}}, "a and b share the address"),
        ({"bad/name": {"ansible_host": "10.77.0.11"}}, "host name must match"),
        ({"-x": {"ansible_host": "10.77.0.11"}}, "host name must match"),
        ({"x" * 64: {"ansible_host": "10.77.0.11"}}, "host name must match"),
        ({"a": {"ansible_host": "10.77.0.11", "ansible_user": "admin"}}, "admit only root"),
        ({"a": {"ansible_host": "10.77.0.11", "ansible_port": "ssh"}}, "not a number"),
        ({"a": {"ansible_host": "10.77.0.11", "ansible_port": 70000}}, "out of range"),
        ({"a": {"ansible_host": "10.77.0.11", "ansible_ssh_private_key_file": "/root/.ssh/id_rsa"}},
         "must be the lab's key"),
        ({"a": {"ansible_host": "10.77.0.11", "ansible_ssh_common_args": "-o 'unclosed"}}, "cannot be parsed"),
    ],
)
def test_bad_inventories_are_refused_with_one_line(hosts: dict[str, dict[str, Any]], message: str) -> None:
    with pytest.raises(PlanError, match=message) as info:
        plan_hosts(inventory(hosts))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("running", "error"),
    [
        ({}, None),
        ({"a": ipaddress.IPv4Address("10.77.0.11")}, None),  # the same host again: up reuses it
        ({"a": None}, None),  # a namespace without a record: up repairs it
        ({"other": ipaddress.IPv4Address("10.77.0.99")}, None),
        ({"a": ipaddress.IPv4Address("10.77.0.12")}, "already up at 10.77.0.12"),
        ({"other": ipaddress.IPv4Address("10.77.0.11")}, "already used by lab host other"),
    ],
)
def test_conflicts_with_running_hosts(running: dict[str, ipaddress.IPv4Address | None], error: str | None) -> None:
    specs = [spec("a", "10.77.0.11")]
    if error is None:
        check_conflicts(specs, running)
    else:
        with pytest.raises(PlanError, match=error):
            check_conflicts(specs, running)


def _hashed(name: str, salt: bytes = b"0123456789abcdef0123") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("", "10.77.0.11 ssh-ed25519 NEW\n"),
        ("10.77.0.11 ssh-ed25519 OLD\n", "10.77.0.11 ssh-ed25519 NEW\n"),
        ("10.77.0.12 ssh-ed25519 KEEP\n10.77.0.11 ssh-rsa OLD\n", "10.77.0.12 ssh-ed25519 KEEP\n"
                                                                  "10.77.0.11 ssh-ed25519 NEW\n"),
        (f"{_hashed('10.77.0.11')} ssh-ed25519 OLD\n", "10.77.0.11 ssh-ed25519 NEW\n"),
        (f"{_hashed('10.77.0.111')} ssh-ed25519 KEEP\n", f"{_hashed('10.77.0.111')} ssh-ed25519 KEEP\n"
                                                         "10.77.0.11 ssh-ed25519 NEW\n"),
        ("10.77.0.111 ssh-ed25519 KEEP\n", "10.77.0.111 ssh-ed25519 KEEP\n10.77.0.11 ssh-ed25519 NEW\n"),
        ("node1,10.77.0.11 ssh-ed25519 OLD\n", "10.77.0.11 ssh-ed25519 NEW\n"),
        ("@revoked 10.77.0.11 ssh-ed25519 OLD\n# comment\n", "# comment\n10.77.0.11 ssh-ed25519 NEW\n"),
        ("[10.77.0.11]:2222 ssh-ed25519 OTHERPORT\n", "[10.77.0.11]:2222 ssh-ed25519 OTHERPORT\n"
                                                      "10.77.0.11 ssh-ed25519 NEW\n"),
    ],
)
def test_known_hosts_keeps_exactly_one_line_per_lab_host(before: str, after: str) -> None:
    entries = {"10.77.0.11": "ssh-ed25519 NEW"}
    assert rewrite_known_hosts(before, entries) == after
    assert rewrite_known_hosts(after, entries) == after  # idempotent: a second `up` writes nothing


def test_known_hosts_name_brackets_other_ports() -> None:
    assert known_hosts_name("10.77.0.11", 22) == "10.77.0.11"
    assert known_hosts_name("10.77.0.11", 2222) == "[10.77.0.11]:2222"


def test_host_script_detaches_netns_sets_hostname_mounts_private_dirs_then_execs_sshd() -> None:
    s = spec("node1", "10.77.0.11")
    text = host_script(s, Path("/cfg"), Path("/log")).splitlines()
    assert text[1].startswith("umount -l /run/netns")
    assert text[2] == "hostname node1"
    mounts = [line.split()[-1] for line in text if line.startswith("mount --bind")]
    assert mounts == list(PRIVATE_DIRS)
    assert all("/var/lib/pyconsul-lab/hosts/node1/fs/" in line for line in text if line.startswith("mount"))
    assert text[-1] == "exec /usr/sbin/sshd -f /cfg -E /log"


def test_sshd_config_listens_only_on_the_host_address_and_admits_keys_only() -> None:
    cfg = sshd_config(spec("node1", "10.77.0.11", 2222), Path("/k"), Path("/p")).splitlines()
    for line in ("ListenAddress 10.77.0.11", "Port 2222", "HostKey /k", "PidFile /p", "UsePAM no",
                 "PasswordAuthentication no", "PermitRootLogin prohibit-password",
                 "AuthorizedKeysFile /var/lib/pyconsul-lab/ssh/authorized_keys"):
        assert line in cfg


def test_etc_hosts_names_every_peer() -> None:
    peers = [spec("b", "10.77.0.12"), spec("a", "10.77.0.11")]
    text = etc_hosts(peers[1], peers)
    assert text.splitlines()[2:] == ["10.77.0.11\ta", "10.77.0.12\tb"]


@pytest.mark.parametrize(
    ("argv", "head", "cmd"),
    [
        (["lab-a", "-i", "inv"], ["lab-a", "-i", "inv"], []),
        (["lab-a", "-i", "inv", "hostname"], ["lab-a", "-i", "inv"], ["hostname"]),
        (["-i", "inv", "lab-a", "ls", "-l", "-i"], ["-i", "inv", "lab-a"], ["ls", "-l", "-i"]),
        (["lab-a", "-i", "inv", "--", "sh", "-c", "x"], ["lab-a", "-i", "inv"], ["sh", "-c", "x"]),
        (["--inventory=inv", "lab-a", "uptime"], ["--inventory=inv", "lab-a"], ["uptime"]),
        (["lab-a", "--", "-i"], ["lab-a"], ["-i"]),
    ],
)
def test_ssh_verb_splits_our_options_from_the_command(argv: list[str], head: list[str], cmd: list[str]) -> None:
    assert split_ssh_args(argv) == (head, cmd)


def test_table_aligns_columns() -> None:
    assert table(["A", "BB"], [["xxx", "y"]]) == "A    BB\nxxx  y"
