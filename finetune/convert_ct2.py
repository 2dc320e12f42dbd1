"""Command line: convert a T5 model directory to CTranslate2 ahead of serving (fills the load-time cache).

    python -m finetune.convert_ct2 models/t5-star-bank [--adapter bank] [--cache-dir DIR]

Loading a T5 model directory with the default ``backend="ct2"`` converts it anyway when its cache
folder is missing or stale (:mod:`assistant.generators.t5.ct2_convert`); this command does the same
conversion beforehand, e.g. while building an image whose model directory is read-only at serving time
(then serve with ``ct2_cache_dir`` pointing at ``--cache-dir``). It prints the cache folder and whether
it was converted or already current. It does not change the model directory's other files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.errors import report_errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.convert_ct2",
        description="Convert a T5 model directory (its default adapter merged) to CTranslate2, into the "
        "cache folder the server loads it from.",
    )
    parser.add_argument("model_dir", type=Path, help="a T5 model directory (assistant.json kind t5)")
    parser.add_argument(
        "--adapter",
        default="default",
        help="adapter to merge: a name of the manifest's adapters, 'default' (the first), or 'none' (base)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache folder (default: MODEL_DIR/ct2, what serving reads)",
    )
    return parser


@report_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from assistant.generators.t5.model import load_t5_generator

    adapter = None if args.adapter == "none" else args.adapter
    before = _folders(args.cache_dir or args.model_dir / "ct2")
    generator = load_t5_generator(args.model_dir, adapter=adapter, ct2_cache_dir=args.cache_dir)
    folder = generator.fast.folder
    state = "already current" if folder in before else "converted"
    print(f"{generator.name}: {folder} ({state})")
    return 0


def _folders(cache_root: Path) -> set[Path]:
    return {p for p in cache_root.iterdir() if p.is_dir()} if cache_root.is_dir() else set()


if __name__ == "__main__":
    sys.exit(main())
