"""Text the lab writes or runs: sshd_config, the host start script, /etc/netns files, known_hosts. Pure.

Every function returns the full text for the given inputs, so callers can compare with what is on disk and
write only on change (this is what makes a second `pyconsul-lab up` a no-op).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from pyconsul.lab.plan import AUTHORIZED_KEYS, PRIVATE_DIRS, HostSpec, private_dir_source

SSHD = "/usr/sbin/sshd"


def sshd_config(spec: HostSpec, host_key: Path, pid_file: Path) -> str:
    """One host's sshd: listens only on the host's address, root by the lab key only, no PAM, no DNS.

    MaxSessions/MaxStartups are raised because Ansible multiplexes many sessions over one ControlMaster.
    """
    return "\n".join([
        "# Written by pyconsul-lab; rewritten on every `up`.",
        f"ListenAddress {spec.address}",
        f"Port {spec.port}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {AUTHORIZED_KEYS}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "UseDNS no",
        "PrintMotd no",
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
        "",
    ])


def host_script(spec: HostSpec, sshd_config_path: Path, log_file: Path) -> str:
    """The shell script run as ``ip netns exec <netns> unshare --mount --uts --propagation private sh -c ...``.

    Inside the host's fresh mount namespace it:
    1. detaches /run/netns — the copies of the other hosts' namespace mounts would otherwise keep those
       namespaces (and their veths) alive after `ip netns del`;
    2. sets the hostname;
    3. bind-mounts the host's private directories over PRIVATE_DIRS (mount points must exist on the machine);
    4. execs sshd, which daemonizes and writes its PidFile. Everything started over ssh inherits the host's
       network, UTS and mount namespaces.
    """
    host_dir = spec.state_dir
    lines = ["set -eu", "umount -l /run/netns 2>/dev/null || true", f"hostname {shlex.quote(spec.name)}"]
    for target in PRIVATE_DIRS:
        source = private_dir_source(host_dir, target)
        lines.append(f"mount --bind {shlex.quote(str(source))} {shlex.quote(target)}")
    lines.append(f"exec {SSHD} -f {shlex.quote(str(sshd_config_path))} -E {shlex.quote(str(log_file))}")
    return "\n".join(lines) + "\n"


def etc_hosts(spec: HostSpec, peers: Sequence[HostSpec]) -> str:
    """/etc/hosts inside a host (via /etc/netns/<netns>/hosts): localhost, itself and its inventory peers."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for peer in sorted(peers, key=lambda p: p.address):
        lines.append(f"{peer.address}\t{peer.name}")
    if spec not in peers:
        lines.append(f"{spec.address}\t{spec.name}")
    return "\n".join(lines) + "\n"


# No nameserver: the lab has no route out, and lookups must fail at once instead of stalling for seconds.
RESOLV_CONF = "# pyconsul-lab host: no DNS\noptions timeout:1 attempts:1\n"


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def _matches(pattern: str, name: str) -> bool:
    """Does one known_hosts host pattern (plain or hashed ``|1|salt|hash``) name exactly `name`?"""
    if pattern.startswith("|1|"):
        parts = pattern.split("|")
        if len(parts) != 4:
            return False
        try:
            salt, digest = base64.b64decode(parts[2]), base64.b64decode(parts[3])
        except ValueError:
            return False
        return hmac.compare_digest(hmac.new(salt, name.encode(), hashlib.sha1).digest(), digest)
    return name in pattern.split(",")


def rewrite_known_hosts(text: str, entries: Mapping[str, str]) -> str:
    """known_hosts with exactly one line per name in `entries` (name → "keytype base64key").

    Lines naming one of those hosts (plain or hashed, as ssh's accept-new writes them on Debian) are
    dropped, other lines are kept in order, then the wanted lines are appended in sorted order. Idempotent:
    rewrite_known_hosts(rewrite_known_hosts(t, e), e) == rewrite_known_hosts(t, e).
    """
    kept: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if fields and not line.startswith("#"):
            hosts_field = fields[1] if fields[0].startswith("@") and len(fields) > 1 else fields[0]
            if any(_matches(p, name) for p in hosts_field.split(",") for name in entries):
                continue
        kept.append(line)
    kept += [f"{name} {entries[name]}" for name in sorted(entries)]
    return "\n".join(kept) + "\n" if kept else ""


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])
