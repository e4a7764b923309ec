# Run on each host as `python3 -c <this file> <json args>` by the pyconsul role (tasks/dns.yml) where systemd is
# not PID 1: make sure this host's dnsmasq for DNS forwarding runs with its current configuration file.
#   args: {"bin": "/usr/sbin/dnsmasq", "conf": "/etc/pyconsul/dnsmasq.conf"}
# "This host's dnsmasq" is a dnsmasq process started with --conf-file=<conf> in this process's network and
# mount namespaces (lab hosts share one PID namespace and the same paths, so the namespaces tell them apart).
# <conf>.state records the PID this script started and the SHA-256 of the configuration it started it with:
# dnsmasq is (re)started unless exactly that process runs and the file still has that hash; otherwise nothing
# is done. dnsmasq forks into the background itself once it has bound its port (its exit code says whether it
# could). Prints one JSON object:
#   {"changed": bool, "pid": int, "action": "running" | "started" | "restarted"}
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

a = json.loads(sys.argv[1])
arg = "--conf-file=" + a["conf"]
mine = {ns: os.readlink("/proc/self/ns/" + ns) for ns in ("net", "mnt")}


def ours():
    """PIDs of this host's dnsmasq processes for this configuration."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            if not argv[0].endswith(b"dnsmasq") or arg.encode() not in argv:
                continue
            if any(os.readlink(f"/proc/{d}/ns/{ns}") != v for ns, v in mine.items()):
                continue
        except OSError:
            continue
        found.append(int(d))
    return found


def stop(pid):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{pid}"):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


state_file = a["conf"] + ".state"
with open(a["conf"], "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
try:
    with open(state_file) as f:
        state = json.load(f)
except (OSError, ValueError):
    state = {}
running = ours()
if running == [state.get("pid")] and state.get("sha256") == digest:
    print(json.dumps({"changed": False, "pid": running[0], "action": "running"}))
    sys.exit(0)
for pid in running:
    stop(pid)
p = subprocess.run([a["bin"], arg], capture_output=True, text=True, check=False)
if p.returncode != 0:
    sys.exit(f"dnsmasq did not start (exit {p.returncode}): {(p.stderr or p.stdout).strip()}")
deadline = time.monotonic() + 3  # dnsmasq's intermediate fork may still be exiting
after = ours()
while len(after) != 1 and time.monotonic() < deadline:
    time.sleep(0.05)
    after = ours()
if len(after) != 1:
    sys.exit(f"dnsmasq started, but {len(after)} processes run with {arg} here: {after}")
with open(state_file + ".tmp", "w") as f:
    json.dump({"pid": after[0], "sha256": digest}, f)
os.chmod(state_file + ".tmp", 0o644)
os.replace(state_file + ".tmp", state_file)
print(json.dumps({"changed": True, "pid": after[0], "action": "restarted" if running else "started"}))
