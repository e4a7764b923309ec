# Run on one server of each datacenter as `python3 -c <this file> <json args>` by the pyconsul role
# (tasks/acl.yml) once a leader is known: makes sure the agent policy and the agent token exist in this
# datacenter's state (ACLs are not replicated across datacenters). Standard library only. The management
# token (acl.tokens.master) and the agent token's secret (acl.tokens.agent) are read from the agent's
# config.json, never from the command line. Prints {"changed": bool, "did": [...]}; exit 1 with the reason.
#
# args: url       the agent's HTTP address, http://host:port
#       config    path of the agent's config.json
#       policy    the agent policy's name; rules: its rules (HCL)
#       accessor  the agent token's AccessorID
#       timeout   seconds to wait for the master token to work (the leader creates it when it takes office)
import json
import sys
import time
import urllib.error
import urllib.request

a = json.loads(sys.argv[1])
with open(a["config"]) as f:
    tokens = (json.load(f).get("acl") or {}).get("tokens") or {}
master, secret = tokens.get("master") or "", tokens.get("agent") or ""
if not master or not secret:
    print(json.dumps({"failed": True, "msg": f"{a['config']}: acl.tokens.master and acl.tokens.agent are needed"}))
    sys.exit(1)


def call(method, path, body=None):
    """(status, decoded JSON or text) of one request with the management token."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(a["url"] + path, data=data, method=method,
                                 headers={"X-Consul-Token": master, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, raw = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode(errors="replace")
    try:
        return status, json.loads(raw) if raw.strip() else None
    except ValueError:
        return status, raw


def must(status, body, what):
    if status != 200:
        print(json.dumps({"failed": True, "msg": f"{what}: {status} {body}"}))
        sys.exit(1)
    return body


deadline = time.monotonic() + float(a.get("timeout", 60))
while True:
    status, body = call("GET", "/v1/acl/token/self")
    if status == 200 or time.monotonic() >= deadline:
        break
    time.sleep(0.5)
must(status, body, "the management token (acl.tokens.master) does not work here yet")

did = []
status, policy = call("GET", "/v1/acl/policy/name/" + a["policy"])
wanted = {"Name": a["policy"], "Description": "pyconsul agents: node registration and coordinates (role)",
          "Rules": a["rules"]}
if status == 200:
    if policy.get("Rules") != a["rules"]:
        must(*call("PUT", "/v1/acl/policy/" + policy["ID"], wanted), "update the agent policy")
        did.append("policy updated")
else:
    must(*call("PUT", "/v1/acl/policy", wanted), "create the agent policy")
    did.append("policy created")

token_body = {"AccessorID": a["accessor"], "SecretID": secret, "Description": "pyconsul agent token (role)",
              "Policies": [{"Name": a["policy"]}]}
status, token = call("GET", "/v1/acl/token/" + a["accessor"])
if status == 200 and token.get("SecretID") != secret:
    # A rotated secret: the SecretID of a token cannot change, so the token is replaced.
    must(*call("DELETE", "/v1/acl/token/" + a["accessor"]), "delete the agent token with the old secret")
    did.append("token with the old secret deleted")
    status = 404
if status == 200:
    if [p.get("Name") for p in token.get("Policies") or []] != [a["policy"]]:
        upd = {k: v for k, v in token_body.items() if k != "SecretID"}
        must(*call("PUT", "/v1/acl/token/" + a["accessor"], upd), "update the agent token")
        did.append("token updated")
else:
    must(*call("PUT", "/v1/acl/token", token_body), "create the agent token")
    did.append("token created")
print(json.dumps({"changed": bool(did), "did": did}))
