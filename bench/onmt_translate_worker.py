"""Peer side of ``bench/lstm_decode_speed.py``: OpenNMT-py's translator, model loaded once, timed per call.

Runs inside OpenNMT-py's own virtual environment (``.venv-onmt``), never in ours:

    .venv-onmt/bin/python bench/onmt_translate_worker.py REQUEST.json RESULT.json

``REQUEST.json``: ``{"model", "src" (a file of space-separated pieces, one source per line),
"max_length", "alpha", "runs": [{"beam": 4, "batch": 1}, ...], "warmup"}``. It builds OpenNMT-py's
``InferenceEnginePY`` (the engine behind ``onmt_translate``) once, then for batch size 1 times each
source alone (``infer_list([line])``: the per-reply latency a server calling OpenNMT-py would see,
model loading excluded) and then all sources in one ``infer_list`` call at batch size 1 (what
``onmt_translate -batch_size 1`` does over a file: no per-call set-up); for larger batch sizes it times
one ``infer_list`` over all sources.
It writes per-call seconds and the predictions (pieces) to ``RESULT.json``.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as fh:
        request = json.load(fh)
    import torch

    torch.set_num_threads(1)
    from onmt.inference_engine import InferenceEnginePY
    from onmt.opts import translate_opts
    from onmt.utils.parse import ArgumentParser

    parser = ArgumentParser(description="bench")
    translate_opts(parser)
    with open(request["src"], encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    result = {"runs": []}
    for run in request["runs"]:
        batch_size, beam = run["batch"], run["beam"]
        opt = parser.parse_args(
            [
                "-model", request["model"],
                "-src", request["src"],
                "-output", request["output"],
                "-beam_size", str(beam),
                "-batch_size", str(batch_size),
                "-batch_type", "sents",
                "-max_length", str(request["max_length"]),
                "-length_penalty", "wu" if request["alpha"] else "none",
                "-alpha", str(request["alpha"]),
                "-seed", "0",
            ]
        )  # fmt: skip
        ArgumentParser.validate_translate_opts(opt)
        ArgumentParser._get_all_transform_translate(opt)
        ArgumentParser._validate_transforms_opts(opt)
        ArgumentParser.validate_translate_opts_dynamic(opt)
        engine = InferenceEnginePY(opt)
        for line in lines[: request["warmup"]]:
            engine.infer_list([line])
        if batch_size == 1:
            seconds, predictions = [], []
            for line in lines:
                started = time.perf_counter()
                _, preds = engine.infer_list([line])
                seconds.append(time.perf_counter() - started)
                predictions.append(preds[0][0])
            started = time.perf_counter()
            engine.infer_list(lines)  # the same sources in one call, batch size 1: no per-call set-up
            one_call = time.perf_counter() - started
            result["runs"].append(
                {**run, "seconds": seconds, "one_call_total_seconds": one_call, "predictions": predictions}
            )
        else:
            started = time.perf_counter()
            _, preds = engine.infer_list(lines)
            result["runs"].append(
                {**run, "total_seconds": time.perf_counter() - started, "predictions": [p[0] for p in preds]}
            )
        engine.terminate()
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
