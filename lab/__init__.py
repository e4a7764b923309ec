"""Local lab: several "hosts" on one machine (network namespaces on a bridge, one sshd per host).

``pyconsul-lab up|down|status|ssh HOST -i INVENTORY`` (lab.cli). Layout:

- lab.plan    — pure: inventory JSON → validated HostSpecs; names (netns, veth, MAC), paths, conflicts
- lab.render  — pure: sshd_config, the host start script, /etc/netns files, known_hosts rewriting
- lab.inventory — runs ``ansible-inventory --list``
- lab.network — ``ip``: bridge pcl-br0 (10.77.0.1/16), netns pcl-<host>, veth pcl-<c>-<d> ↔ eth0
- lab.sshd    — client key, host keys, known_hosts, per-host sshd, ssh probes, ControlMaster shutdown
- lab.hostfs  — host records, private directories, mount points, the up/down lock
- lab.system  — subprocess, /proc, signalling by PID, polling with deadlines
- lab.ops     — the verbs up / down / status
"""
