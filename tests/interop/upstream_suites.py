"""Run real Consul clients' OWN test suites against pyconsul agents and compare with the known failures.

The suites are vendored under tests/interop/upstream/ (see its README.md: versions, sources, licences, and the
one file changed in each, the fixture that starts the agent). Each client library is pip-installed at its pinned
version into its own directory (.venv/interop/<name>-<version>, --no-deps; both import as `consul`, so they
cannot share site-packages), and each suite runs in its own pytest process with that directory first on
PYTHONPATH, writing a junit xml report.

The result of every test is compared with tests/interop/upstream/<suite>-known-failures.txt (one
`test id  # reason` per line):
- a REGRESSION is a test that failed and is not in the list (after one re-run of those tests, so a flaky one is
  reported as flaky instead): the CI test (test_upstream_suites.py) fails;
- a test in the list that now passes is reported as FIXED: take it out of the list (`--update` does).

    .venv/bin/python -m tests.interop.upstream_suites                  # both suites, summary + comparison
    .venv/bin/python -m tests.interop.upstream_suites py-consul -k kv  # one suite, extra pytest arguments
    .venv/bin/python -m tests.interop.upstream_suites --update         # rewrite the lists (keeps reasons)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = Path(__file__).resolve().parent / "upstream"
CLIENTS = ROOT / ".venv" / "interop"
SUITE_TIMEOUT = 900.0  # seconds for one suite run (py-consul takes a few minutes: one agent per test)


@dataclass(frozen=True)
class Suite:
    name: str
    directory: str  # under tests/interop/upstream/
    requirement: str  # the client library, pinned
    net: int  # the second octet of the loopback /16 its agents bind to (py-consul's fixture)

    @property
    def path(self) -> Path:
        return UPSTREAM / self.directory

    @property
    def known_failures_file(self) -> Path:
        return UPSTREAM / f"{self.name}-known-failures.txt"

    @property
    def client_dir(self) -> Path:
        return CLIENTS / self.requirement.replace("==", "-")


SUITES = {s.name: s for s in (
    Suite("py-consul", "py_consul", "py-consul==1.8.0", 251),
    Suite("python-consul2", "python_consul2", "python-consul2==0.1.5", 252),
)}


@dataclass
class Result:
    outcomes: dict[str, str]  # test id -> passed | failed | skipped
    messages: dict[str, str] = field(default_factory=dict)  # test id -> first line of the failure

    def counts(self) -> Counter[str]:
        return Counter(self.outcomes.values())


@dataclass
class Comparison:
    regressions: list[str]  # failed, not in the list (also after a re-run)
    flaky: list[str]  # failed, not in the list, passed when re-run
    fixed: list[str]  # in the list, passed
    missing: list[str]  # in the list, not run at all


def ensure_client(suite: Suite) -> Path:
    """pip-install the suite's pinned client library into its own directory, once."""
    if (suite.client_dir / "consul" / "__init__.py").exists():
        return suite.client_dir
    suite.client_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=suite.client_dir.name + ".", dir=suite.client_dir.parent))
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--target", str(tmp), suite.requirement], check=True, stdin=subprocess.DEVNULL)
        tmp.rename(suite.client_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return suite.client_dir


def run_suite(suite: Suite, junit: Path, pytest_args: Sequence[str] = (),
              targets: Sequence[str] = ("tests",)) -> Result:
    """Run the suite's tests against pyconsul agents; the per-test outcomes from its junit xml."""
    client = ensure_client(suite)
    agents = junit.parent / f"{junit.stem}-agents"  # the py-consul fixture's agent logs
    tmp = junit.parent / f"{junit.stem}-tmp"  # TMPDIR: python-consul2's fixture makes its agents' dirs with mkdtemp
    for d in (agents, tmp):
        d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(client), str(suite.path)]),
           "PYCONSUL_ROOT": str(_shim(junit.parent)), "PYCONSUL_INTEROP_NET": str(suite.net),
           "PYCONSUL_INTEROP_WORKDIR": str(agents), "TMPDIR": str(tmp)}
    env.pop("CONSUL_HTTP_ADDR", None)
    argv = [sys.executable, "-m", "pytest", "-c", str(suite.path / "pytest.ini"), "--rootdir", str(suite.path),
            "-p", "no:cacheprovider", "-o", "junit_family=xunit1", f"--junitxml={junit}", "-q", "--tb=line",
            *pytest_args, *targets]
    # Its own session (process group), so a run past SUITE_TIMEOUT is ended with every agent it started.
    proc = subprocess.Popen(argv, cwd=suite.path, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                            stdout=subprocess.DEVNULL if os.environ.get("PYCONSUL_INTEROP_QUIET") else None)
    try:
        proc.wait(SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"{suite.name}: the suite ran longer than {SUITE_TIMEOUT:.0f} s") from None
    if not junit.exists():
        raise AssertionError(f"{suite.name}: pytest exited {proc.returncode} without a report (collection error?)")
    return parse_junit(junit)


def _shim(workdir: Path) -> Path:
    """A directory whose `pyconsul` is a symlink to this tree: on the agents' PYTHONPATH (the fixtures read it as
    PYCONSUL_ROOT), it makes them run THIS tree's code even when the installed pyconsul is another checkout."""
    shim = workdir / "shim"
    shim.mkdir(exist_ok=True)
    link = shim / "pyconsul"
    if not link.is_symlink():
        link.symlink_to(ROOT, target_is_directory=True)
    return shim


def parse_junit(path: Path) -> Result:
    """Test ids in pytest's node-id form (`tests/api/test_kv.py::TestKV::test_x[pyconsul]`)."""
    result = Result({})
    for case in ET.parse(path).getroot().iter("testcase"):
        file = case.get("file") or ""
        module = file.removesuffix(".py").replace("/", ".")
        classname = case.get("classname") or ""
        inner = classname[len(module) + 1:] if classname.startswith(module + ".") else ""
        test_id = "::".join(p for p in (file, inner.replace(".", "::"), case.get("name") or "") if p)
        problems = [c for c in case if c.tag in ("failure", "error")]
        if problems:
            result.outcomes[test_id] = "failed"  # a setup or teardown error counts as a failure
            text = problems[0].get("message") or (problems[0].text or "")
            result.messages[test_id] = (text.strip().splitlines() or [""])[0][:300]
        elif any(c.tag == "skipped" for c in case):
            result.outcomes.setdefault(test_id, "skipped")
        else:
            result.outcomes.setdefault(test_id, "passed")
    return result


def read_known(path: Path) -> dict[str, str]:
    """`test id  # reason` lines (blank lines and lines starting with # are comments) -> {id: reason}."""
    known: dict[str, str] = {}
    if not path.exists():
        return known
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        test_id, _, reason = line.partition("#")
        known[test_id.strip()] = reason.strip()
    return known


def compare(result: Result, known: dict[str, str], rerun: Result | None = None) -> Comparison:
    failed = [t for t, o in result.outcomes.items() if o == "failed" and t not in known]
    again = rerun.outcomes if rerun is not None else {}
    return Comparison(
        regressions=[t for t in failed if again.get(t, "failed") == "failed"],
        flaky=[t for t in failed if again.get(t, "failed") != "failed"],
        fixed=[t for t in known if result.outcomes.get(t) == "passed"],
        missing=[t for t in known if t not in result.outcomes],
    )


def check_suite(suite: Suite, workdir: Path, pytest_args: Sequence[str] = ()) -> tuple[Result, Comparison]:
    """Run, re-run the unexpected failures once, compare with the known-failure list."""
    result = run_suite(suite, workdir / f"{suite.name}.xml", pytest_args)
    known = read_known(suite.known_failures_file)
    first = compare(result, known)
    rerun = None
    if first.regressions and len(first.regressions) <= 20:
        rerun = run_suite(suite, workdir / f"{suite.name}-rerun.xml", targets=first.regressions)
    return result, compare(result, known, rerun)


def write_known(suite: Suite, result: Result) -> None:
    """Rewrite the list from a run: every failed test, keeping the reasons already written."""
    known = read_known(suite.known_failures_file)
    header = [line for line in (suite.known_failures_file.read_text(encoding="utf-8").splitlines()
                                if suite.known_failures_file.exists() else []) if line.startswith("#")]
    lines = [f"{t}  # {known.get(t) or 'TODO: ' + result.messages.get(t, '')}"
             for t in sorted(t for t, o in result.outcomes.items() if o == "failed")]
    suite.known_failures_file.write_text("\n".join([*header, *lines]) + "\n", encoding="utf-8")


def report(suite: Suite, result: Result, cmp: Comparison) -> str:
    c = result.counts()
    out = [f"{suite.name} ({suite.requirement}): {c['passed']} passed, {c['failed']} failed, "
           f"{c['skipped']} skipped"]
    for title, ids in (("REGRESSIONS (failed, not in the known-failure list)", cmp.regressions),
                       ("flaky (failed, then passed when re-run)", cmp.flaky),
                       ("FIXED (in the known-failure list, now passing: remove them)", cmp.fixed),
                       ("in the known-failure list but not run", cmp.missing)):
        if ids:
            out.append(f"  {title}:")
            out += [f"    {t}  {result.messages.get(t, '')}".rstrip() for t in ids]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", nargs="?", choices=sorted(SUITES), help="one suite (default: all)")
    ap.add_argument("--update", action="store_true", help="rewrite the known-failure lists from this run")
    ap.add_argument("--junit-dir", type=Path, help="keep the junit xml files here")
    args, pytest_args = ap.parse_known_args(argv)
    workdir = args.junit_dir or Path(tempfile.mkdtemp(prefix="pyconsul-upstream-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bad = 0
    for name in [args.suite] if args.suite else sorted(SUITES):
        suite = SUITES[name]
        result, cmp = check_suite(suite, workdir, pytest_args)
        if pytest_args:  # a selection: the listed tests it left out are not news
            cmp.missing.clear()
        print(report(suite, result, cmp))
        if args.update:
            write_known(suite, result)
        bad += len(cmp.regressions)
    return 1 if bad and not args.update else 0


if __name__ == "__main__":
    sys.exit(main())
