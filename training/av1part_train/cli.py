"""av1part training path.

  python -m av1part_train train-all --data DATASET [--config default] [--out-root runs/default] [--bundle onnx/default]
  python -m av1part_train train-stage1 --data DATASET --out runs/x/stage1 [--config default] [--set key=value ...]
  python -m av1part_train train-stage2 --data DATASET --out runs/x/stage2 --stage1-ckpt runs/x/stage1/checkpoints/best.pt
  python -m av1part_train train-stage3 --specialist rect|ab --data ... --out ... --stage1-ckpt ...
  python -m av1part_train export --run-root runs/x --out onnx/x [--data DATASET]   (or --stage1/--stage2/--stage3-rect/--stage3-ab)
  python -m av1part_train evaluate --bundle onnx/x --data DATASET [--split test] [--skip-below 0.0 0.05 0.1]
  python -m av1part_train experiments --data DATASET --out runs/experiments [--budget tiny|small|full]
  python -m av1part_train make-test-bundle [--out onnx/test-tiny]
  python -m av1part_train make-synthetic-dataset --out /tmp/synth
  python -m av1part_train bench-step [--arch resnet18 --stem imagenet --batch 64 --threads 1]

Distributed: torchrun --nproc_per_node=N -m av1part_train train-stage1 ...
(nccl on GPUs, gloo on CPU; rank 0 writes checkpoints and metrics).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys


def _common_train(p):
    p.add_argument("--config", default=None, help="JSON config file or a packaged name (default, smoke)")
    p.add_argument("--data", help="dataset directory (docs/CONTRACTS.md format)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (JSON value), repeatable")


def _cfg(a, stage, extra=None):
    from .config import load_config
    ov = list(a.overrides)
    if a.data:
        ov.append(f"data={json.dumps(a.data)}")
    if a.out:
        ov.append(f"out={json.dumps(a.out)}")
    ov.append(f"stage={json.dumps(stage)}")
    for k, v in (extra or {}).items():
        if v is not None:
            ov.append(f"{k}={json.dumps(v)}")
    cfg = load_config(a.config, ov, section=stage)
    if not cfg.data:
        raise SystemExit("error: --data (or data in the config) is required")
    return cfg


def _train(stage_fn):
    def run(a):
        from .train import train_stage
        stage = stage_fn(a)
        cfg = _cfg(a, stage, {"stage1_ckpt": getattr(a, "stage1_ckpt", None)})
        r = train_stage(cfg)
        print(json.dumps({k: v for k, v in r.items() if k not in ("history", "members")}, indent=1, default=str))
        return 0
    return run


def _cmd_train_all(a):
    from .pipeline import train_all
    ov = list(a.overrides)
    if a.data:
        ov.append(f"data={json.dumps(a.data)}")
    train_all(a.config or "default", ov, a.out_root, a.bundle, a.name, skip_stages=a.reuse,
              calibrate=not a.no_calibrate)
    return 0


def _cmd_export(a):
    from .pipeline import export_from_checkpoints
    from pathlib import Path
    ck = {"stage1": a.stage1, "stage2": a.stage2, "stage3_rect": a.stage3_rect, "stage3_ab": a.stage3_ab}
    if a.run_root:
        for s in ck:
            ck[s] = ck[s] or str(Path(a.run_root) / s / "checkpoints" / "best.pt")
    m = export_from_checkpoints(ck, a.out, a.name or Path(a.out).name, a.data, description=a.description,
                                skip_below=a.skip_below, test_max_blocks=a.test_max_blocks,
                                prior_correction=a.prior_correction, calibrate=a.calibrate)
    print(json.dumps(m["training"]["metrics"], indent=1))
    return 0


def _cmd_evaluate(a):
    from .pipeline import evaluate_bundle
    res = []
    for sb in a.skip_below:
        r = evaluate_bundle(a.bundle, a.data, a.split, sb, a.max_blocks)
        c = r["cascade"]
        print(f"skip_below {sb}: 10-way accuracy {c['accuracy']:.4f} macro F1 {c['macro_f1']:.4f} "
              f"ECE {c['ece']:.4f}; stage runs {json.dumps({k: round(v, 3) for k, v in r['stage_run_fraction'].items()})}; "
              f"errors enter at {json.dumps({k: v['count'] for k, v in c['errors_enter_at'].items()})}")
        res.append(r)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


def _cmd_eval_report(a):
    from .evalreport import main
    text = main(a.results, a.title)
    if a.out:
        Path(a.out).write_text(text)
    print(text)
    return 0


def _cmd_eval_seeds(a):
    from .evalreport import seed_table
    print(seed_table(a.a, a.b, a.preset, (a.name_a, a.name_b)))
    return 0


def _cmd_sizes(a):
    from .plots import plot_sizes
    rows = []
    for spec in a.point:
        parts = spec.split("=")
        flags = set(parts[3:])
        if len(parts) < 3 or len(flags) != len(parts) - 3 or not flags <= {"baseline", "balanced"}:
            raise SystemExit(f"error: --point {spec!r}: want NAME=US_PER_BLOCK=EVAL_JSON[=baseline][=balanced]")
        rows.append({"name": parts[0], "us_per_block": float(parts[1]),
                     "eval": json.loads(open(parts[2]).read())[0], "baseline": "baseline" in flags,
                     # a calibrated bundle's class-averaged decisions are the balanced rule's
                     "f1_key": "macro_f1_balanced" if "balanced" in flags else "macro_f1"})
    plot_sizes(rows, a.out, a.title)
    summary = [{"name": r["name"], "us_per_block": r["us_per_block"],
                "stage_macro_f1": {k: v[r["f1_key"]] for k, v in r["eval"]["stages"].items()},
                "decision_rule": "balanced" if r["f1_key"] == "macro_f1_balanced" else "stage argmax",
                "topk_recall": r["eval"]["topk_recall"], "prior_topk_recall": r["eval"]["prior_topk_recall"]}
               for r in rows]
    with open(str(a.out).rsplit(".", 1)[0] + ".json", "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {a.out}")
    return 0


def _cmd_bench_graph(a):
    from .bench import bench_graph
    print(json.dumps(bench_graph(a.bundle, a.batch, a.threads)))
    return 0


def _cmd_quantize(a):
    from .quantize import quantize_bundle
    m = quantize_bundle(a.bundle, a.out, a.name)
    print(f"wrote {a.out}: {m['graph']['file']} (int8), golden.json")
    return 0


def _cmd_baseline(a):
    from .baseline import run_baseline
    r = run_baseline(a.data, a.stage, a.model, steps=a.steps, seed=a.seed, with_bundle=a.with_bundle)
    for split, v in r["splits"].items():
        clips = ", ".join(f"{k} {c['macro_f1']:.3f}" for k, c in v["clips"].items())
        print(f"{a.stage} {a.model} {split}: macro F1 {v['macro_f1']:.3f} on {v['blocks']} blocks ({clips})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


def _cmd_compact(a):
    from .compact import compact_bundle
    m = compact_bundle(a.bundle, a.out, a.name, layout=a.layout, group=not a.no_stack, collapse=not a.no_collapse)
    c = m["training"]["recipe"]["compaction"]
    print(f"wrote {a.out}: {m['graph']['file']} ({c['nodes'][0]} -> {c['nodes'][1]} nodes, "
          f"max |diff| {max(c['max_abs_diff_random_inputs'].values()):.1e} on random inputs), golden.json")
    return 0


def _refuse_no_trunk(arch, what: str) -> None:
    from .models import model_cfg
    if arch and model_cfg(arch).get("family") == "notrunk":
        raise SystemExit(f"error: {what}: arch {arch!r} has no trunk")


def _cmd_experiments(a):
    from .experiments import rerender, run_experiments
    if a.render:
        print(rerender(a.out))
        return 0
    if not a.data:
        raise SystemExit("error: experiments needs --data (or --render)")
    _refuse_no_trunk(a.arch, "experiments (the notes' rows adapt or fine-tune a trunk)")
    run_experiments(a.data, a.out, budget=a.budget, seeds=a.seeds, epochs=a.epochs, max_steps=a.max_steps,
                    only=a.only, threads=a.threads, arch=a.arch)
    return 0


def _cmd_make_test_bundle(a):
    from .testbundle import make_test_bundle
    m = make_test_bundle(a.out, seed=a.seed, n_golden=a.n_golden, kind=a.kind)
    files = [m["graph"]["file"]] if "graph" in m else ["trunk.onnx"] + [s["file"] for s in m["stages"]]
    print(f"wrote {a.out}: {files}, golden.json")
    return 0


def _cmd_make_synth(a):
    from .synth import make_synthetic_dataset
    seqs = {f"syn{i:02d}": ("train" if i < a.sequences - 2 else ("val" if i == a.sequences - 2 else "test"))
            for i in range(a.sequences)}
    make_synthetic_dataset(a.out, seqs, blocks_per_shard=a.blocks_per_shard, seed=a.seed, bit_depths=(8, 10))
    print(f"wrote {a.out}")
    return 0


def _cmd_bench(a):
    from .bench import bench_step
    _refuse_no_trunk(a.arch, "bench-step (it times a backbone's step on the block tensor)")
    r = bench_step(a.arch, a.stem, a.batch, a.threads, a.steps, a.mode, a.channels_last)
    print(json.dumps(r))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m av1part_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train-stage1", help="train Stage 1 (NONE vs PARTITION), backbone from scratch")
    _common_train(t)
    t.set_defaults(fn=_train(lambda a: "stage1"))
    t = sub.add_parser("train-stage2", help="train Stage 2 (SPLIT/RECT/AB) on the frozen Stage 1 backbone")
    _common_train(t)
    t.add_argument("--stage1-ckpt")
    t.set_defaults(fn=_train(lambda a: "stage2"))
    t = sub.add_parser("train-stage3", help="train a Stage 3 specialist (rect or ab)")
    _common_train(t)
    t.add_argument("--specialist", choices=["rect", "ab"], required=True)
    t.add_argument("--stage1-ckpt")
    t.set_defaults(fn=_train(lambda a: f"stage3_{a.specialist}"))

    t = sub.add_parser("train-all", help="train all stages, export the bundle and score it on the test split")
    _common_train(t)
    t.add_argument("--out-root", default="runs/default")
    t.add_argument("--bundle", default="onnx/default")
    t.add_argument("--name", default="default")
    t.add_argument("--reuse", nargs="*", default=[], help="stages whose existing best.pt is reused")
    t.add_argument("--no-calibrate", action="store_true",
                   help="export the raw stage probabilities (no prior correction, no temperature)")
    t.set_defaults(fn=_cmd_train_all)

    t = sub.add_parser("export", help="write a bundle from stage checkpoints (checked against onnxruntime)")
    t.add_argument("--run-root", help="directory holding stage1/ stage2/ stage3_rect/ stage3_ab/ runs")
    for s in ("stage1", "stage2", "stage3-rect", "stage3-ab"):
        t.add_argument(f"--{s}", help=f"{s} checkpoint (default: <run-root>/{s.replace('-', '_')}/checkpoints/best.pt)")
    t.add_argument("--out", required=True)
    t.add_argument("--name")
    t.add_argument("--description", default="")
    t.add_argument("--data", help="dataset: priors come from the checkpoints; test metrics and real golden blocks from here")
    t.add_argument("--skip-below", type=float, default=0.0)
    t.add_argument("--test-max-blocks", type=int)
    t.add_argument("--prior-correction", action="store_true",
                   help="stages trained on class-balanced batches get log(prior) added to their logits, so "
                        "their probabilities follow the training distribution (see training/README.md)")
    t.add_argument("--calibrate", action="store_true",
                   help="prior correction plus a temperature per stage fitted on the validation split of --data "
                        "(both folded into the graph; the fit is recorded in the manifest)")
    t.set_defaults(fn=_cmd_export)

    t = sub.add_parser("evaluate", help="end-to-end cascade metrics of a bundle on a dataset split")
    t.add_argument("--bundle", required=True)
    t.add_argument("--data", required=True)
    t.add_argument("--split", default="test")
    t.add_argument("--skip-below", type=float, nargs="+", default=[0.0])
    t.add_argument("--max-blocks", type=int)
    t.add_argument("--json")
    t.set_defaults(fn=_cmd_evaluate)

    t = sub.add_parser("eval-report", help="markdown tables of evaluate --json results (per preset, key/inter, clip)")
    t.add_argument("results", nargs="+")
    t.add_argument("--title", action="append", help="one per result file")
    t.add_argument("--out")
    t.set_defaults(fn=_cmd_eval_report)

    t = sub.add_parser("eval-seeds", help="mean ± sd over seeds of two recipes and their paired difference")
    t.add_argument("--a", nargs="+", required=True, help="evaluate --json files of recipe A, in seed order")
    t.add_argument("--b", nargs="+", required=True, help="the same seeds of recipe B")
    t.add_argument("--preset", help="use each file's breakdown for this cpu_used")
    t.add_argument("--name-a", default="A")
    t.add_argument("--name-b", default="B")
    t.set_defaults(fn=_cmd_eval_seeds)

    t = sub.add_parser("experiments", help="the research notes' experiments, seeds paired -> markdown table")
    t.add_argument("--data")
    t.add_argument("--out", default="runs/experiments")
    t.add_argument("--budget", choices=["tiny", "small", "full"], default="small")
    t.add_argument("--epochs", type=int)
    t.add_argument("--max-steps", type=int, help="steps per epoch")
    t.add_argument("--only", nargs="*", help="run only these experiment ids")
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                   help="seeds to run (each its own Stage 1); processes may split the seeds of one --out")
    t.add_argument("--render", action="store_true", help="only write results.md from the finished runs")
    t.add_argument("--arch", help="backbone, instead of the budget's (e.g. blocknet24)")
    t.set_defaults(fn=_cmd_experiments)

    t = sub.add_parser("sizes", help="plot macro F1 per stage and top-k recall against us per block")
    t.add_argument("--point", action="append", required=True,
                   help="NAME=US_PER_BLOCK=EVAL_JSON (from evaluate --json); '=baseline' draws it as a cross, "
                        "'=balanced' takes the stages' macro F1 of the balanced rule (calibrated bundles)")
    t.add_argument("--out", default="docs/sizes.png")
    t.add_argument("--title", default="")
    t.set_defaults(fn=_cmd_sizes)

    t = sub.add_parser("quantize", help="int8 (dynamic quantisation) copy of a fused bundle")
    t.add_argument("--bundle", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--name")
    t.set_defaults(fn=_cmd_quantize)

    t = sub.add_parser("baseline", help="hand-made block features + a small classifier: what a CNN must beat")
    t.add_argument("--data", required=True)
    t.add_argument("--stage", default="stage1", choices=["stage1", "stage2", "stage3_rect", "stage3_ab"])
    t.add_argument("--model", default="mlp", choices=["mlp", "linear"])
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", help="write the result here too")
    t.add_argument("--with-bundle", help="add this bundle's stage log probabilities to the features")
    t.set_defaults(fn=_cmd_baseline)

    t = sub.add_parser("compact", help="copy of a fused bundle with its graph compacted (same function, fewer nodes)")
    t.add_argument("--bundle", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--name", help="bundle name in the manifest (default: the --out folder's name)")
    t.add_argument("--layout", choices=["cells", "planar"], default="cells",
                   help="block input layout of the result (cells: no stem Transpose; docs/CONTRACTS.md)")
    t.add_argument("--no-collapse", action="store_true",
                   help="keep the exported nodes (only the input layout changes)")
    t.add_argument("--no-stack", action="store_true", help="emit every stage branch on its own")
    t.set_defaults(fn=_cmd_compact)

    t = sub.add_parser("make-test-bundle", help="write the fixed-seed tiny test bundle (onnx/test-tiny)")
    t.add_argument("--out", default="onnx/test-tiny")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-golden", type=int, default=48)
    t.add_argument("--kind", default="test-tiny", choices=["test-tiny", "test-fused", "test-stats", "test-sidestats", "test-preset"],
                   help="test-tiny: schema 1 (trunk + stage files); test-fused: schema 2 (one BlockNet graph); "
                        "test-preset: test-tiny taking the encoder preset (cpu_used) as a side input")
    t.set_defaults(fn=_cmd_make_test_bundle)

    t = sub.add_parser("make-synthetic-dataset", help="write a synthetic dataset (CONTRACTS.md format) for smoke runs")
    t.add_argument("--out", required=True)
    t.add_argument("--sequences", type=int, default=6)
    t.add_argument("--blocks-per-shard", type=int, default=2048)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(fn=_cmd_make_synth)

    t = sub.add_parser("bench-graph", help="ONNX Runtime alone on a fused bundle's graph (us per block)")
    t.add_argument("--bundle", required=True)
    t.add_argument("--batch", type=int, default=256)
    t.add_argument("--threads", type=int, default=1)
    t.set_defaults(fn=_cmd_bench_graph)

    t = sub.add_parser("bench-step", help="measure one CPU training step")
    t.add_argument("--arch", default="resnet18")
    t.add_argument("--stem", default="imagenet")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--mode", default="full", choices=["full", "adapter"])
    t.add_argument("--channels-last", action="store_true")
    t.set_defaults(fn=_cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoint import CheckpointError
    from .engine import NonFiniteLossError
    from .export import ExportError
    from .loader import DatasetError
    from .reference import BundleError
    try:
        return args.fn(args)
    except (DatasetError, CheckpointError, ExportError, BundleError, NonFiniteLossError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
