"""An experiment's report directory: history.jsonl (written by the runner), verdict.json, timeline.png and
index.html. The timeline shows each client operation's latency at its completion time (ok / fail / info)
and ok/fail/info counts per second, with the nemesis' fault windows shaded; an invalid linearizability
verdict lists the offending operations."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyconsul.chaos.experiment import Experiment
from pyconsul.chaos.history import FAIL, INFO, NEMESIS, OK, Op, pairs

COLORS: dict[str, str] = {OK: "#2e7d32", FAIL: "#c62828", INFO: "#f9a825"}


def _points(ops: Sequence[Op]) -> dict[str, list[tuple[float, float]]]:
    """Completion time (s) and latency (ms) per outcome, for client operations."""
    out: dict[str, list[tuple[float, float]]] = {OK: [], FAIL: [], INFO: []}
    for pr in pairs([op for op in ops if op.process != NEMESIS]):
        if pr.completion is None:
            continue
        t_end = pr.completion.time / 1e9
        out[pr.completion.type].append((t_end, (pr.completion.time - pr.invoke.time) / 1e6))
    return out


def plot_timeline(path: Path, exp: Experiment, ops: Sequence[Op]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = _points(ops)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    end = max([exp.duration] + [t for series in pts.values() for t, _ in series])
    for lo, hi, label in exp.windows():
        for ax in (ax1, ax2):
            ax.axvspan(lo, hi, color="#90a4ae", alpha=0.25, lw=0)
        ax1.text(lo, 1.0, f" {label}", transform=ax1.get_xaxis_transform(), va="top", fontsize=8, color="#37474f")
    for kind, series in pts.items():
        if series:
            ax1.scatter([t for t, _ in series], [max(lat, 0.1) for _, lat in series], s=6, c=COLORS[kind],
                        label=f"{kind} ({len(series)})", alpha=0.7, lw=0)
    ax1.set_yscale("log")
    ax1.set_ylabel("latency (ms)")
    ax1.legend(loc="upper right", fontsize=8)
    ax1.set_title(f"{exp.name}: client operations; shaded = fault windows")
    buckets = int(end) + 1
    bottoms = [0] * buckets
    for kind in (OK, FAIL, INFO):
        counts = [0] * buckets
        for t, _ in pts[kind]:
            counts[min(int(t), buckets - 1)] += 1
        ax2.bar(range(buckets), counts, bottom=bottoms, width=1.0, align="edge", color=COLORS[kind], label=kind)
        bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
    ax2.set_ylabel("ops / s")
    ax2.set_xlabel("seconds since the start of the load")
    ax2.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _offending(ops: Sequence[Op], verdict: dict[str, Any]) -> list[tuple[str, str, list[Op]]]:
    """For each invalid key of the linearizability (or lock) check: why, and the history events it names
    (the last operations linearized, the one that could not be, and the candidates refused)."""
    results = verdict.get("checks", {}).get("results", {})
    failures = [kr for name in ("linearizable", "lock") for kr in (results.get(name, {}).get("failures") or [])]
    out: list[tuple[str, str, list[Op]]] = []
    for kr in failures:
        wanted: set[int] = set()
        items = [kr.get("blocking"), *(r.get("op") for r in kr.get("refused") or []),
                 *(kr.get("linearized_tail") or [])]
        for item in items:
            if isinstance(item, dict):
                wanted.update(v for f in ("invoke", "complete") if isinstance(v := item.get(f), int))
        reasons = "; ".join(str(r.get("reason")) for r in kr.get("refused") or [])
        out.append((str(kr.get("key")), reasons, [op for op in ops if op.index in wanted]))
    return out


def write_report(out_dir: Path, exp: Experiment, ops: Sequence[Op], verdict: dict[str, Any]) -> Path:
    png = out_dir / "timeline.png"
    plot_timeline(png, exp, ops)
    e = html.escape
    valid = verdict.get("valid")
    color = "#2e7d32" if valid is True else "#c62828" if valid is False else "#f9a825"
    rows = "".join(f"<tr><td>{e(str(s.get('at')))}</td><td>{e(str(s.get('f')))}</td><td>{e(str(s.get('value')))}"
                   f"</td><td>{e(str(s.get('error') or ''))}</td></tr>" for s in verdict.get("nemesis", []))
    offending = ""
    for key, why, evs in _offending(ops, verdict):
        lines = "\n".join(e(json.dumps(op.to_json())) for op in evs)
        offending += f"<h3>Not linearizable: key {e(key)}</h3><p>{e(why)}</p><pre>{lines}</pre>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(exp.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} td,th{{padding:2px 8px}}
pre{{background:#f5f5f5;padding:8px;overflow-x:auto}}</style></head><body>
<h1>{e(exp.name)}</h1><p>{e(exp.description)}</p>
<p style="font-size:1.4em;color:{color}">valid: <b>{e(str(valid))}</b> &nbsp;
healed: <b>{e(str(verdict.get('healed')))}</b></p>
<p>workload {e(exp.workload)} on datacenter {e(exp.datacenter)}, {exp.concurrency} processes, {exp.duration:g} s,
seed {e(str(verdict.get('seed')))}; outcomes {e(json.dumps(verdict.get('counts', {})))}</p>
<img src="timeline.png" width="100%" alt="timeline">
{offending}
<h2>Nemesis</h2><table><tr><th>at (s)</th><th>f</th><th>value</th><th>error</th></tr>{rows}</table>
<h2>Checkers</h2><pre>{e(json.dumps(verdict.get('checks'), indent=1, default=str)[:20000])}</pre>
<h2>Healed?</h2><pre>{e(str(verdict.get('healed_detail', '')))}</pre>
<p>Files: <a href="history.jsonl">history.jsonl</a>, <a href="verdict.json">verdict.json</a></p>
</body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page)
    return index
