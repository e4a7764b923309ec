# Run on each host as `python3 -c <this file> <json args>` by the pyconsul role: one round trip that
# tells the role what is already there. Read-only. Prints one JSON object:
#   systemd       systemd is PID 1 (sd_booted(): /run/systemd/system exists)
#   running       the agent's service (systemd unit, or supervisord) runs now
#   installed     hash of the wheelhouse installed in the venv ("" = none or incomplete)
#   encrypt       the gossip key in the deployed config.json ("" = none)
#   missing_dirs  directories the role manages that do not exist
#   files         {path: {"sha1": hex, "mode": "0640"}} of the files the role writes (absent: {})
import hashlib
import json
import os
import subprocess
import sys

a = json.loads(sys.argv[1])
systemd = a["manager"] == "systemd" or (a["manager"] == "auto" and os.path.isdir("/run/systemd/system"))
running = False
if systemd:
    running = subprocess.run(["systemctl", "is-active", "--quiet", a["unit"]], check=False).returncode == 0
else:
    try:
        with open(os.path.join(a["run_dir"], "supervisord.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            running = b"supervisord" in f.read()
    except (OSError, ValueError):
        running = False
installed = ""
try:
    with open(a["marker"]) as f:
        installed = f.read().strip()
except OSError:
    pass
encrypt = ""
try:
    with open(os.path.join(a["config_dir"], "config.json")) as f:
        encrypt = json.load(f).get("encrypt") or ""
except (OSError, ValueError, AttributeError):
    pass
files = {}
for path in a["files"]:
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()
        files[path] = {"sha1": digest, "mode": "%04o" % (os.stat(path).st_mode & 0o7777)}
    except OSError:
        files[path] = {}
print(json.dumps({
    "systemd": systemd,
    "running": running,
    "installed": installed,
    "encrypt": encrypt,
    "missing_dirs": [d for d in a["dirs"] if not os.path.isdir(d)],
    "files": files,
}))
