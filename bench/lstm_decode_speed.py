"""Benchmark: LSTM reply decoding, our generator vs OpenNMT-py 3.5's translator, side by side.

Both models come from ``bench/lstm_train_speed.py --keep-models`` (same sizes, same STAR pieces, the
same number of training steps). Inputs: the first ``--contexts`` STAR valid sources, as our ids and as
the same pieces for OpenNMT-py. Settings on both sides: beam 4 (or greedy), GNMT length penalty
alpha 1.0, at most 48 tokens, no n-gram blocking, one thread.

* Latency at batch 1: each source decoded alone. Ours: ``LSTMGenerator``'s decode of the source ids
  and detokenization. Peer: ``bench/onmt_translate_worker.py`` in OpenNMT-py's venv, the engine behind
  ``onmt_translate`` (``InferenceEnginePY``) built once, each source timed through ``infer_list([line])``
  (its numericalization, search and output pieces; model loading excluded), and all sources in one
  ``infer_list`` call at batch size 1 (no per-call set-up); the ratio uses the faster peer figure.
* Batched replies/s: all sources in batches of ``--batch-sizes`` (ours: the generator's length-sorted
  batches; peer: ``infer_list`` over all sources with ``-batch_size``), greedy and beam 4.
* Ours before/after: the same model and sources through the reference path (per-step fused
  ``nn.LSTM`` call and every state tensor copied per beam: the code before the fast path) — its
  latency, and how many replies are identical to the fast path's (they must all be).

    python bench/lstm_decode_speed.py [--workdir runs/bench-lstm --contexts 300 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lstm_peer

from assistant.generators.decoding import decode
from assistant.generators.lstm.batching import pad_batch
from assistant.generators.lstm.generator import LSTMGenerator, load_lstm_generator
from assistant.generators.lstm.model import DecoderState

GOAL = 0.8  # our beam-4 batch-1 latency / the peer's


def full_copy_reorder(state: DecoderState, indices: torch.Tensor) -> DecoderState:
    """The reference (pre-fast-path) beam reorder: every state tensor copied per row."""
    return DecoderState(*(t.index_select(1 if i < 2 else 0, indices) for i, t in enumerate(state)))


def ours_latency(
    generator: LSTMGenerator, sources: list[list[int]], reference: bool
) -> tuple[list[float], list[str]]:
    """Seconds per reply and replies, each source alone (``reference``: the pre-fast-path code)."""
    model, tokenizer = generator.model, generator.tokenizer
    seconds, replies = [], []
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    if reference:  # train mode with dropout 0 takes the per-step fused nn.LSTM path
        for m in dropouts:
            m.p = 0.0
        model.train()
    try:
        with torch.inference_mode():
            for source in sources:
                started = time.perf_counter()
                src, lengths = pad_batch([source], tokenizer.pad_id, "cpu")
                out = decode(
                    model.step,
                    full_copy_reorder if reference else _reorder(),
                    model.encode(src, lengths),
                    1,
                    tokenizer.bos_id,
                    tokenizer.eos_id,
                    generator.decoding,
                )
                replies.append(tokenizer.decode(out.tokens)[0])
                seconds.append(time.perf_counter() - started)
    finally:
        model.eval()
    return seconds, replies


def _reorder():
    from assistant.generators.lstm.model import reorder_state

    return reorder_state


def ours_batched(generator: LSTMGenerator, sources: list[list[int]], batch_size: int) -> float:
    """Replies/s decoding all sources in the generator's length-sorted batches of ``batch_size``."""
    generator.batch_size = batch_size
    started = time.perf_counter()
    with torch.inference_mode():
        for index in generator._batches(len(sources), [len(s) for s in sources]):
            out = generator._decode([sources[i] for i in index])
            generator.tokenizer.decode(out.tokens)
    return len(sources) / (time.perf_counter() - started)


def run_peer(model: Path, src: Path, runs: list[dict], workdir: Path, timeout: float) -> list[dict]:
    request = workdir / "onmt-request.json"
    result = workdir / "onmt-result.json"
    request.write_text(
        json.dumps(
            {
                "model": str(model),
                "src": str(src),
                "output": str(workdir / "onmt-pred.txt"),  # OpenNMT-py writes its replies here
                "max_length": 48,
                "alpha": 1.0,
                "runs": runs,
                "warmup": 5,
            }
        )
    )
    worker = Path(__file__).resolve().parent / "onmt_translate_worker.py"
    python = lstm_peer.onmt_bin("python")
    completed = subprocess.run(
        [str(python), str(worker), str(request), str(result)],
        env=lstm_peer.peer_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"the OpenNMT-py worker failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-3000:]}"
        )
    return json.loads(result.read_text())["runs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench-lstm"))
    parser.add_argument("--contexts", type=int, default=300)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed to the peer's worker")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()  # subprocesses run in other directories
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ours_dir, onmt_dir = args.workdir / "ours", args.workdir / "onmt"
    onmt_models = sorted(onmt_dir.glob("model_step_*.pt"))
    if not (ours_dir / "assistant.json").is_file() or not onmt_models:
        raise SystemExit(
            f"no trained models in {args.workdir}: run `python bench/lstm_train_speed.py --keep-models "
            f"--workdir {args.workdir}` first"
        )
    load_before = os.getloadavg()
    data = lstm_peer.prepare(args.workdir / "data")
    sources = [src for src, _ in data.valid_pairs[: args.contexts]]
    src_file = args.workdir / "decode.src"
    src_file.write_text(
        "".join(
            line + "\n"
            for line in data.onmt_file("valid", "src")
            .read_text(encoding="utf-8")
            .splitlines()[: args.contexts]
        ),
        encoding="utf-8",
    )
    beam = load_lstm_generator(
        ours_dir, beam_size=4, length_penalty=1.0, max_len=48, no_repeat_ngram_size=0, min_len=1
    )
    greedy = load_lstm_generator(ours_dir, beam_size=1, max_len=48, no_repeat_ngram_size=0, min_len=1)
    ours_latency(beam, sources[:5], reference=False)  # warm-up
    fast_s, fast_replies = ours_latency(beam, sources, reference=False)
    ref_s, ref_replies = ours_latency(beam, sources, reference=True)
    identical = sum(a == b for a, b in zip(fast_replies, ref_replies, strict=True))
    ours_rates = {
        f"{name} batch {size}": ours_batched(generator, sources, size)
        for name, generator in (("greedy", greedy), ("beam 4", beam))
        for size in args.batch_sizes
    }
    ours_rates["beam 4 batch 1"] = len(fast_s) / sum(fast_s)
    runs = [{"beam": 4, "batch": 1}] + [{"beam": b, "batch": s} for b in (1, 4) for s in args.batch_sizes]
    peer_runs = run_peer(onmt_models[-1], src_file, runs, args.workdir, args.timeout)
    peer_s = peer_runs[0]["seconds"]
    # The peer's per-reply time without its per-call set-up (one infer_list over all sources, batch 1):
    # the headline ratio uses the faster of the two peer figures.
    peer_one_call_ms = 1000 * peer_runs[0]["one_call_total_seconds"] / len(sources)
    peer_rates = {
        f"{'greedy' if r['beam'] == 1 else 'beam 4'} batch {r['batch']}": len(sources) / r["total_seconds"]
        for r in peer_runs[1:]
    }
    peer_rates["beam 4 batch 1"] = len(peer_s) / sum(peer_s)
    load_after = os.getloadavg()

    mean = lambda xs: 1000 * statistics.fmean(xs)
    p50 = lambda xs: 1000 * statistics.median(xs)
    peer_best_ms = min(mean(peer_s), peer_one_call_ms)
    ratio = mean(fast_s) / peer_best_ms
    ours_pieces = statistics.fmean(len(ids) for ids in data.tokenizer.encode(fast_replies))
    peer_pieces = statistics.fmean(len(p.split()) for p in peer_runs[0]["predictions"])
    print(
        f"LSTM decoding, {len(sources)} STAR valid contexts, 1 thread, max 48 tokens, GNMT alpha 1.0, no n-gram blocking"
    )
    print(f"{'beam 4, batch 1':32s} {'mean ms':>8s} {'p50 ms':>8s}")
    print(f"{'ours (fast path)':32s} {mean(fast_s):8.1f} {p50(fast_s):8.1f}")
    print(f"{'ours (reference path, before)':32s} {mean(ref_s):8.1f} {p50(ref_s):8.1f}")
    print(f"{'OpenNMT-py 3.5, call per reply':32s} {mean(peer_s):8.1f} {p50(peer_s):8.1f}")
    print(f"{'OpenNMT-py 3.5, one call, batch 1':32s} {peer_one_call_ms:8.1f} {'':>8s}")
    print(f"latency ratio ours/peer {ratio:.2f}, goal <= {GOAL}: {'met' if ratio <= GOAL else 'NOT met'}")
    print(f"fast path replies identical to the reference path: {identical}/{len(sources)}")
    print(f"{'replies/s':32s} {'ours':>8s} {'peer':>8s} {'ratio':>6s}")
    for key, rate in ours_rates.items():
        print(f"{key:32s} {rate:8.1f} {peer_rates[key]:8.1f} {rate / peer_rates[key]:6.2f}")
    print(f"mean reply length at beam 4, batch 1: ours {ours_pieces:.1f}, peer {peer_pieces:.1f} pieces")
    # replies of different lengths cost different numbers of steps: also per piece (eos counted as one)
    per_piece = (mean(fast_s) / (ours_pieces + 1), peer_best_ms / (peer_pieces + 1))
    print(
        f"ms per reply piece (+eos): ours {per_piece[0]:.2f}, peer {per_piece[1]:.2f}, "
        f"ratio {per_piece[0] / per_piece[1]:.2f}"
    )
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1-minute)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "benchmark": "lstm_decode_speed",
                    "contexts": len(sources),
                    "beam4_batch1_ms": {
                        "ours": {"mean": mean(fast_s), "p50": p50(fast_s)},
                        "ours_reference_path": {"mean": mean(ref_s), "p50": p50(ref_s)},
                        "peer": {"mean": mean(peer_s), "p50": p50(peer_s)},
                        "peer_one_call_per_reply": peer_one_call_ms,
                    },
                    "latency_ratio": ratio,
                    "goal": GOAL,
                    "met": ratio <= GOAL,
                    "identical_to_reference": identical,
                    "mean_reply_pieces": {"ours": ours_pieces, "peer": peer_pieces},
                    "ms_per_reply_piece": {"ours": per_piece[0], "peer": per_piece[1]},
                    "replies_per_s": {"ours": ours_rates, "peer": peer_rates},
                    "peer": "OpenNMT-py 3.5.1 InferenceEnginePY (onmt_translate's engine), model loaded once",
                    "load_average_before": load_before,
                    "load_average_after": load_after,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
