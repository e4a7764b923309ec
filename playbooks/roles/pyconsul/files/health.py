# Run on a host as `python3 -c <this file> <json args>` by the pyconsul role: one round trip that
# waits (up to `timeout` seconds, polling) until the local agent is healthy, then prints what it
# saw as JSON. Read-only; standard library only. Exit 0 when healthy, 1 otherwise (the problems
# are on stderr, one line each).
#
# args: url       the agent's HTTP address, http://host:port
#       timeout   seconds to keep polling (0: look once)
#       leader    the agent must know its datacenter's leader
#       peers     servers: /v1/status/peers and the Raft configuration must hold exactly this
#                 many voters, one of them the leader (0: not checked); a server that joined an
#                 existing cluster counts once autopilot has promoted it from non-voter
#       lan       LAN member names that must be alive (e.g. the datacenter's servers)
#       wan       WAN member names (node.dc) that must be alive
#       views     also print `members`, `members -wan` and `operator raft list-peers` (cli path)
#       config    the agent's config.json: with ACLs on, requests (and the views) carry its
#                 acl.tokens.master (servers) or acl.tokens.agent (clients); never on the command line
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

a = json.loads(sys.argv[1])
token = ""
if a.get("config"):
    try:
        with open(a["config"]) as f:
            tokens = (json.load(f).get("acl") or {}).get("tokens") or {}
        token = tokens.get("master") or tokens.get("agent") or ""
    except (OSError, ValueError, AttributeError):
        token = ""


def get(path):
    # /v1/status/* needs no token; the agent token may not exist yet while the first leader is awaited.
    headers = {"X-Consul-Token": token} if token and not path.startswith("/v1/status/") else {}
    with urllib.request.urlopen(urllib.request.Request(a["url"] + path, headers=headers), timeout=5) as r:
        body = r.read().decode()
    return json.loads(body) if body.strip() else None


def look():
    seen, problems = {}, []
    try:
        seen["leader"] = get("/v1/status/leader") or ""
        if a.get("leader") and not seen["leader"]:
            problems.append("no leader known")
        if int(a.get("peers") or 0):
            a["peers"] = int(a["peers"])
            seen["peers"] = get("/v1/status/peers") or []
            servers = (get("/v1/operator/raft/configuration") or {}).get("Servers") or []
            seen["raft"] = [{k: s.get(k) for k in ("Node", "Address", "Leader", "Voter")} for s in servers]
            voters = [s for s in servers if s.get("Voter")]
            leaders = [s for s in servers if s.get("Leader")]
            # a server that joined an existing cluster is a non-voter until autopilot promotes it (healthy for
            # server_stabilization_time, 10 s by default): keep polling until it is a voter
            waiting = [s.get("Node") for s in servers if not s.get("Voter")]
            if len(seen["peers"]) != a["peers"] or len(voters) != a["peers"] or len(leaders) != 1:
                problems.append(f"expected {a['peers']} Raft voters and 1 leader, have {len(voters)} voters "
                                f"and {len(leaders)} leader(s): {[s.get('Node') for s in servers]}"
                                + (f"; non-voters (awaiting promotion): {waiting}" if waiting else ""))
        for pool, names in (("lan", a.get("lan") or []), ("wan", a.get("wan") or [])):
            if not names:
                continue
            members = get("/v1/agent/members" + ("?wan=1" if pool == "wan" else "")) or []
            seen[pool] = {m["Name"]: m.get("Status") for m in members}
            missing = [n for n in names if seen[pool].get(n) != 1]
            if missing:
                problems.append(f"{pool.upper()} members not alive: {', '.join(missing)}")
    except (OSError, ValueError, urllib.error.URLError) as exc:
        problems.append(f"{a['url']}: {getattr(exc, 'reason', exc)}")
    return seen, problems


deadline = time.monotonic() + float(a.get("timeout", 0))
start = time.monotonic()
while True:
    seen, problems = look()
    if not problems or time.monotonic() >= deadline:
        break
    time.sleep(0.5)
seen["waited"] = round(time.monotonic() - start, 1)
if a.get("views") and not problems:
    env = {"CONSUL_HTTP_ADDR": a["url"], "PATH": "/usr/bin:/bin", **({"CONSUL_HTTP_TOKEN": token} if token else {})}
    out = []
    # the three CLI runs at once (each is mostly the CLI's start-up); read in order, so the output is too
    running = [(title, subprocess.Popen([a["views"], *argv], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True))
               for title, argv in (("members", ["members"]), ("members -wan", ["members", "-wan"]),
                                   ("operator raft list-peers", ["operator", "raft", "list-peers"]))]
    for title, p in running:
        stdout, stderr = p.communicate()
        out += [f"== {a.get('dc', '')}: pyconsul {title}", *(stdout + stderr).rstrip().splitlines()]
    seen["views"] = out
seen["problems"] = problems
print(json.dumps(seen))
for p in problems:
    print(p, file=sys.stderr)
sys.exit(1 if problems else 0)
