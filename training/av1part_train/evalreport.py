"""Markdown tables of ``evaluate --json`` results: the figures issue targets are
stated in (stage macro F1, 10-way greedy macro F1, top-k recall against the
training-prior list, ECE and NLL of the ten probabilities), for the whole split
and broken down per preset, key/inter frames and test clip."""
from __future__ import annotations

import json
from pathlib import Path

STAGES = ("stage1", "stage2", "stage3_rect", "stage3_ab")
COLUMNS = ("blocks", "S1 F1", "S2 F1", "RECT F1", "AB F1", "10-way F1 greedy / flat", "top-1/2/3/5 recall",
           "prior list top-1/2/3/5", "ECE 10", "NLL 10", "NLL S1/S2")


def _row(name: str, m: dict) -> str:
    st = m["stages"]
    f = lambda s: f"{st[s]['macro_f1']:.3f}" if s in st else "–"
    k = lambda d: "/".join(f"{d[str(i)]:.3f}" for i in (1, 2, 3, 5))
    nll = lambda s: f"{st[s]['nll']:.3f}" if s in st else "–"
    c = m["cascade"]
    return (f"| {name} | {m['n']} | {f('stage1')} | {f('stage2')} | {f('stage3_rect')} | {f('stage3_ab')} | "
            f"{m['policies']['greedy']['macro_f1']:.3f} / {m['policies']['flat']['macro_f1']:.3f} | "
            f"{k(m['topk_recall'])} | {k(m['prior_topk_recall'])} | {c['ece']:.3f} | {c['nll']:.3f} | "
            f"{nll('stage1')}/{nll('stage2')} |")


def tables(result: dict, title: str = "") -> str:
    head = "| " + " | ".join(("set",) + COLUMNS) + " |\n|" + "---|" * (len(COLUMNS) + 1)
    out = [f"### {title}" if title else "", "", head, _row("all", result)]
    for key, label in (("cpu_used", "cpu-used"), ("frame", "frames"), ("sequence", "clip")):
        for v, m in (result.get("breakdown") or {}).get(key, {}).items():
            out.append(_row(f"{label} {v}", m))
    return "\n".join(out) + "\n"


def main(paths: list[str], titles: list[str] | None = None) -> str:
    parts = []
    for i, p in enumerate(paths):
        r = json.loads(Path(p).read_text())
        r = r[0] if isinstance(r, list) else r
        parts.append(tables(r, (titles or [None] * len(paths))[i] or Path(p).stem))
    return "\n".join(parts)
