"""T5 reply decoding: our default serving path vs transformers' eager ``generate`` vs CTranslate2 alone.

One T5 model directory with a LoRA adapter (e.g. ``models/t5-star-bank``, see ``bench/README.md``) is
decoded greedily, one thread, on the same inputs (the contexts before the first ``--n`` agent turns of
the ``--dialogs`` file, optionally of one ``--domain``, encoded once by our generator: the last turns,
cut from the left to ``max_source_len`` tokens), by:

* **ours**: ``load_generator(model_dir)``, the default serving path (``backend="ct2"``, float32:
  the adapter merged, converted to CTranslate2), through ``T5Generator.generate`` (tokenizing,
  decoding the text, confidence); and ``ours int8`` (``compute_type="int8"``);
* **transformers eager** (the peer): the same model with the adapter merged (peft ``merge_and_unload``),
  ``model.generate(input_ids, max_new_tokens, num_beams=1, do_sample=False)`` in eager mode, then
  ``tokenizer.decode``;
* **ctranslate2 float32 / int8** (peers): ``ctranslate2.Translator.translate_batch`` on the converted
  folder our path made, tokens in and out, no wrapper.

Per path: replies/s and per-reply latency p50/p95 at batch 1 (one request per call), replies/s at
``--batch`` (the paths take turns on each request or batch, so load changes hit all alike; after
``--warmup`` untimed calls each), and the share of replies equal (text) to the transformers peer's. The goal [ours at batch 1
>= 1.5x eager generate, every greedy float32 reply equal] is printed with whether it was met. The
conversion (done on the first load, cached in ``MODEL_DIR/ct2``) is timed separately.

    python bench/t5_decode_speed.py --model-dir models/t5-star-bank --dialogs ../shared/data/dialogs/star/valid.jsonl \\
        --domain bank --n 100 --batch 16 --json runs/t5-decode-speed.json

It measures; it asserts nothing and writes only ``--json`` (and the conversion cache of the model).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from assistant.data import read_dialogs
from assistant.generators.base import GenerationRequest
from assistant.generators.loader import load_generator

GOAL_SPEEDUP = 1.5


def contexts(dialogs: Path, domain: str | None, n: int) -> list[GenerationRequest]:
    """The context before each agent turn, in file order, of dialogs of ``domain`` (all if None)."""
    requests = []
    for dialog in read_dialogs(dialogs):
        if domain and domain not in (dialog.meta or {}).get("domains", []):
            continue
        for i, turn in enumerate(dialog.turns):
            if turn.role == "agent" and i > 0:
                requests.append(GenerationRequest(context=tuple(dialog.turns[:i])))
                if len(requests) == n:
                    return requests
    return requests


def interleaved(
    paths: dict[str, Callable[[list[int]], list[str]]], n: int, batch: int
) -> dict[str, tuple[list[str], list[float]]]:
    """Run every path on each chunk of ``batch`` indices in turn (the order rotating per chunk), so that
    a change of machine load hits every path alike: per path (texts, per-call seconds)."""
    out: dict[str, tuple[list[str], list[float]]] = {name: ([], []) for name in paths}
    names = list(paths)
    for k, s in enumerate(range(0, n, batch)):
        rows = list(range(s, min(s + batch, n)))
        for name in names[k % len(names) :] + names[: k % len(names)]:
            t0 = time.perf_counter()
            texts = paths[name](rows)
            out[name][1].append(time.perf_counter() - t0)
            out[name][0].extend(texts)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a T5 model directory with an adapter")
    parser.add_argument(
        "--dialogs", type=Path, required=True, help="dialogs JSONL whose contexts are decoded"
    )
    parser.add_argument("--domain", default=None, help="only dialogs whose meta.domains has this domain")
    parser.add_argument("--n", type=int, default=100, help="replies per path (default 100)")
    parser.add_argument("--batch", type=int, default=16, help="requests per call in the batched run")
    parser.add_argument("--max-target-len", type=int, default=None, help="override the model's setting")
    parser.add_argument("--threads", type=int, default=1, help="torch and CTranslate2 threads")
    parser.add_argument(
        "--beam-size",
        type=int,
        default=1,
        help="1 = greedy (the goal's setting); >1 = beam search in every path",
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed batch-1 calls per path first")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    extra: dict = {"max_target_len": args.max_target_len} if args.max_target_len else {}
    extra["beam_size"] = args.beam_size

    cache = args.model_dir / "ct2"
    cached_before = {p.name for p in cache.iterdir()} if cache.is_dir() else set()
    t0 = time.perf_counter()
    ours = load_generator(args.model_dir, ct2_threads=args.threads, **extra)  # converts on a cache miss
    first_load_s = time.perf_counter() - t0
    converted = ours.fast.folder.name not in cached_before
    t0 = time.perf_counter()
    ours = load_generator(args.model_dir, ct2_threads=args.threads, **extra)
    cached_load_s = time.perf_counter() - t0
    ours_int8 = load_generator(args.model_dir, ct2_threads=args.threads, compute_type="int8", **extra)
    merged = load_generator(args.model_dir, backend="transformers", merge=True, **extra)
    settings = ours.settings
    tokenizer, model = merged.tokenizer, merged.model.eval()
    requests = contexts(args.dialogs, args.domain, args.n)
    n = len(requests)
    ids = ours._input_ids(requests)  # the same token ids for every path

    import ctranslate2

    folder = str(ours.fast.folder)
    raw = {
        ct: ctranslate2.Translator(
            folder, device="cpu", compute_type=ct, inter_threads=1, intra_threads=args.threads
        )
        for ct in ("float32", "int8")
    }
    vocab = ours.fast.vocab

    def eager(rows: list[int]) -> list[str]:
        batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
        with torch.no_grad():
            beam = (
                {"length_penalty": settings.length_penalty, "early_stopping": True}
                if args.beam_size > 1
                else {}
            )
            out = model.generate(
                **batch,
                max_new_tokens=settings.max_target_len,
                num_beams=args.beam_size,
                do_sample=False,
                **beam,
            )
        return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]

    def ct2_raw(compute_type: str) -> Callable[[list[int]], list[str]]:
        def run(rows: list[int]) -> list[str]:
            results = raw[compute_type].translate_batch(
                [[vocab[t] for t in ids[i]] for i in rows],
                beam_size=args.beam_size,
                length_penalty=settings.length_penalty if args.beam_size > 1 else 1.0,
                max_decoding_length=settings.max_target_len,
                min_decoding_length=0,
                max_input_length=0,
            )
            return [
                tokenizer.decode(
                    tokenizer.convert_tokens_to_ids(r.hypotheses[0]), skip_special_tokens=True
                ).strip()
                for r in results
            ]

        return run

    paths: dict[str, Callable[[list[int]], list[str]]] = {
        "ours (default: ct2 float32)": lambda rows: [
            g.text for g in ours.generate([requests[i] for i in rows])
        ],
        "ours, compute_type=int8": lambda rows: [
            g.text for g in ours_int8.generate([requests[i] for i in rows])
        ],
        "transformers eager generate": eager,
        "ctranslate2 float32 (alone)": ct2_raw("float32"),
        "ctranslate2 int8 (alone)": ct2_raw("int8"),
    }
    warm = min(args.warmup, n)
    for run in paths.values():  # warm-up: the first calls of each size allocate
        for i in range(warm):
            run([i])
        run(list(range(min(args.batch, n))))

    batch1 = interleaved(paths, n, 1)
    batched = interleaved(paths, n, args.batch)
    figures: dict[str, dict] = {}
    for name in paths:
        (texts1, lat1), (textsb, latb) = batch1[name], batched[name]
        total1, totalb = sum(lat1), sum(latb)
        figures[name] = {
            "replies_per_s_batch1": n / total1,
            "latency_ms_p50": 1000 * statistics.median(lat1),
            "latency_ms_p95": 1000 * percentile(lat1, 0.95),
            "replies_per_s_batched": n / totalb,
            "texts_batch1": texts1,
            "texts_batched": textsb,
        }
    reference = figures["transformers eager generate"]["texts_batch1"]
    peer = figures["transformers eager generate"]
    for f in figures.values():
        f["equal_share_batch1"] = sum(a == b for a, b in zip(f["texts_batch1"], reference)) / n
        f["equal_share_batched"] = sum(a == b for a, b in zip(f["texts_batched"], reference)) / n
        f["speedup_batch1"] = f["replies_per_s_batch1"] / peer["replies_per_s_batch1"]
        f["speedup_batched"] = f["replies_per_s_batched"] / peer["replies_per_s_batched"]
    ours_f = figures["ours (default: ct2 float32)"]
    met = (
        ours_f["speedup_batch1"] >= GOAL_SPEEDUP
        and ours_f["equal_share_batch1"] == 1.0
        and args.beam_size == 1
    )
    load_end = os.getloadavg()

    lengths = [len(t.split()) for t in reference]
    print(
        f"{n} replies, {args.model_dir} ({ours.name}), "
        f"{'greedy' if args.beam_size == 1 else f'beam {args.beam_size}'}, max_target_len {settings.max_target_len}, "
        f"threads {args.threads}, batch {args.batch}; reference replies: {len(set(reference))} distinct, "
        f"{statistics.mean(lengths):.1f} words on average"
    )
    print(
        f"first load {first_load_s:.1f} s ({'converted then' if converted else 'cache already current,'} "
        f"loaded), load from the cache {cached_load_s:.1f} s"
    )
    print(
        "| path | replies/s batch 1 | p50 ms | p95 ms | x eager (b1) | replies/s batch "
        f"{args.batch} | x eager (b{args.batch}) | equal to eager (b1 / b{args.batch}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, f in figures.items():
        print(
            f"| {name} | {f['replies_per_s_batch1']:.2f} | {f['latency_ms_p50']:.1f} | {f['latency_ms_p95']:.1f} | "
            f"{f['speedup_batch1']:.2f}x | {f['replies_per_s_batched']:.2f} | {f['speedup_batched']:.2f}x | "
            f"{f['equal_share_batch1']:.1%} / {f['equal_share_batched']:.1%} |"
        )
    print(
        f"goal: ours >= {GOAL_SPEEDUP}x eager generate at batch 1 and every greedy reply equal: "
        f"{ours_f['speedup_batch1']:.2f}x, {ours_f['equal_share_batch1']:.1%} equal -> "
        f"{'MET' if met else 'NOT MET'}"
        + ("" if args.beam_size == 1 else " (the goal is for greedy: --beam-size 1)")
    )
    print(f"load average at start {load_start[0]:.2f}, at end {load_end[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "model_dir": str(args.model_dir),
                    "generator": ours.name,
                    "n": n,
                    "batch": args.batch,
                    "threads": args.threads,
                    "beam_size": args.beam_size,
                    "max_target_len": settings.max_target_len,
                    "first_load_s": first_load_s,
                    "first_load_converted": converted,
                    "cached_load_s": cached_load_s,
                    "goal_speedup": GOAL_SPEEDUP,
                    "goal_met": met,
                    "paths": figures,
                    "loadavg_start": load_start,
                    "loadavg_end": load_end,
                    "machine": platform.platform(),
                    "versions": {
                        "torch": torch.__version__,
                        "ctranslate2": ctranslate2.__version__,
                        "transformers": __import__("transformers").__version__,
                    },
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
