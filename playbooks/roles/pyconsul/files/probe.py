# Run on each host as `python3 -c <this file> <json args>` by the pyconsul role: one round trip that
# tells the role what is already there. Read-only. Prints one JSON object:
#   systemd       systemd is PID 1 (sd_booted(): /run/systemd/system exists)
#   running       the agent's service (systemd unit, or supervisord) runs now
#   installed     hash of the wheelhouse installed in the venv ("" = none or incomplete)
#   encrypt       the gossip key in the deployed config.json ("" = none)
#   user_exists   the agent's system user exists
#   fix_dirs      directories the role manages that are missing or have another mode, owner or group
#   chown_dirs    of the directories the agent writes (recurse), those holding an entry that its
#                 user and group do not own (e.g. left by an agent that ran as root)
#   group_exists  the agent's system group exists
#   account       the agent's user as the role sets it: {group, shell, home, comment} (null: no such user)
#   files         of the files the role templates (args "files"), each regular one that exists:
#                 {path: {sha1, mode, owner, group}}; the role skips a template whose rendering has that
#                 sha1 and whose mode and owner match (tasks/configure.yml)
import grp
import hashlib
import json
import os
import pwd
import stat
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


def ids(owner, group):
    """(uid, gid) of the names, None for a name that does not exist (yet)."""
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        uid = None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        gid = None
    return uid, gid


def foreign(top, uid, gid):
    """Whether anything below `top` is not owned by uid:gid (symlinks themselves, not their targets)."""
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_uid, st.st_gid) != (uid, gid):
                return True
    return False


user_exists = ids(a["user"], a["user"])[0] is not None
group_exists = ids(a["group"], a["group"])[1] is not None
account = None
try:
    pw = pwd.getpwnam(a["user"])
    try:
        primary = grp.getgrgid(pw.pw_gid).gr_name
    except KeyError:
        primary = str(pw.pw_gid)
    account = {"group": primary, "shell": pw.pw_shell, "home": pw.pw_dir, "comment": pw.pw_gecos}
except KeyError:
    pass


def id_name(lookup, num):
    """The user or group name of a numeric id (its number when it has none)."""
    try:
        return lookup(num)[0]
    except KeyError:
        return str(num)


files = {}
for path in a.get("files", []):
    try:
        st = os.lstat(path)  # a symlink is not reported: the template task then runs as it always did
        if not stat.S_ISREG(st.st_mode):
            continue
        with open(path, "rb") as f:
            digest = hashlib.sha1(f.read()).hexdigest()  # the checksum Ansible's template module compares
    except OSError:
        continue
    files[path] = {"sha1": digest, "mode": "%04o" % (st.st_mode & 0o7777),
                   "owner": id_name(pwd.getpwuid, st.st_uid), "group": id_name(grp.getgrgid, st.st_gid)}
fix_dirs, chown_dirs = [], []
for d in a["dirs"]:
    uid, gid = ids(d["owner"], d["group"])
    try:
        st = os.stat(d["path"])
    except OSError:
        fix_dirs.append(d["path"])
        continue
    if "%04o" % (st.st_mode & 0o7777) != d["mode"] or (st.st_uid, st.st_gid) != (uid, gid):
        fix_dirs.append(d["path"])
    if d.get("recurse") and foreign(d["path"], uid, gid):
        chown_dirs.append(d["path"])
print(json.dumps({
    "systemd": systemd,
    "running": running,
    "installed": installed,
    "encrypt": encrypt,
    "user_exists": user_exists,
    "group_exists": group_exists,
    "account": account,
    "files": files,
    "fix_dirs": fix_dirs,
    "chown_dirs": chown_dirs,
}))
