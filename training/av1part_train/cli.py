"""Command line: ``python -m av1part_train <command> ...``."""
from __future__ import annotations

import argparse
import sys


def _cmd_make_test_bundle(a):
    from .testbundle import make_test_bundle
    m = make_test_bundle(a.out, seed=a.seed, n_golden=a.n_golden)
    print(f"wrote {a.out}: {[s['file'] for s in m['stages']]} + trunk.onnx, golden.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m av1part_train", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("make-test-bundle", help="write the fixed-seed tiny test bundle (onnx/test-tiny)")
    t.add_argument("--out", default="onnx/test-tiny")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-golden", type=int, default=48)
    t.set_defaults(fn=_cmd_make_test_bundle)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
