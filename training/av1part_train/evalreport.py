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


SEED_KEYS = ("S1", "S2", "RECT", "AB", "greedy", "top2", "top3", "ECE", "NLL")


def _seed_metrics(path: str, preset: str | None) -> dict:
    r = json.loads(Path(path).read_text())
    r = r[0] if isinstance(r, list) else r
    m = r["breakdown"]["cpu_used"][preset] if preset is not None else r
    s = m["stages"]
    return {"S1": s["stage1"]["macro_f1"], "S2": s["stage2"]["macro_f1"], "RECT": s["stage3_rect"]["macro_f1"],
            "AB": s["stage3_ab"]["macro_f1"], "greedy": m["policies"]["greedy"]["macro_f1"],
            "top2": m["topk_recall"]["2"], "top3": m["topk_recall"]["3"], "ECE": m["cascade"]["ece"],
            "NLL": m["cascade"]["nll"]}


def seed_table(a: list[str], b: list[str], preset: str | None, names=("A", "B")) -> str:
    """Mean ± sd over seeds of two recipes (files in seed order, paired), and
    the paired difference B − A with how many seeds it is positive in. With
    ``preset``, each file's breakdown for that cpu_used is used."""
    import statistics as st
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("give the same number (>= 2) of result files for both recipes, in seed order")
    ra, rb = [_seed_metrics(p, preset) for p in a], [_seed_metrics(p, preset) for p in b]
    out = ["| recipe | " + " | ".join(SEED_KEYS) + " |", "|---|" + "---:|" * len(SEED_KEYS)]
    for name, r in zip(names, (ra, rb)):
        out.append(f"| {name} | " + " | ".join(f"{st.mean(x[k] for x in r):.3f} ± {st.stdev(x[k] for x in r):.3f}"
                                             for k in SEED_KEYS) + " |")
    diffs = [[y[k] - x[k] for x, y in zip(ra, rb)] for k in SEED_KEYS]
    out.append(f"| {names[1]} − {names[0]} (paired) | " + " | ".join(
        f"{st.mean(d):+.3f} ({sum(v > 0 for v in d)}/{len(d)} >0)" for d in diffs) + " |")
    return "\n".join(out) + "\n"
