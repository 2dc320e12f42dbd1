"""Benchmark: the in-domain check's cost per message, next to the FAQ search every message already pays.

Not two implementations of one computation: the peer is the hybrid FAQ search (MiniLM encoding + BM25
+ fusion + confidence) that the pipeline runs before the check, so the ratio reads "the check adds
this much per message". Both run on the same customer messages, one message at a time, as the
pipeline does. Also prints how much of the check is the MiniLM encoding (the rest is the similarity
to every training turn).

    python bench/scope_check.py --model-dir models/lstm-star --index-dir models/index-stackfaq-clinc \\
        --dialogs ../shared/data/dialogs/star/test.jsonl [--n 200 --threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from assistant.data import read_dialogs
from assistant.retrieval.embeddings import encode
from assistant.retrieval.index import FaqIndex
from assistant.routing.scope import ScopeCheck


def per_call_ms(fn: Callable[[str], object], messages: list[str]) -> float:
    """Median milliseconds of ``fn(message)`` over the messages (after one warm-up call)."""
    fn(messages[0])
    times = []
    for m in messages:
        start = time.perf_counter()
        fn(m)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, help="a model directory with scope/")
    parser.add_argument("--index-dir", required=True, help="a saved hybrid FAQ index")
    parser.add_argument("--dialogs", required=True, help="dialogs JSONL; its customer turns are the messages")
    parser.add_argument("--n", type=int, default=200, help="messages timed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scope = ScopeCheck.load(args.model_dir)
    index = FaqIndex.load(args.index_dir)
    messages = [t.text for d in read_dialogs(args.dialogs) for t in d.turns if t.role == "customer"][: args.n]
    faq = per_call_ms(lambda m: index.confidence(index.search(m, k=5)), messages)
    check = per_call_ms(scope.score, messages)
    encoding = per_call_ms(lambda m: encode([m], scope.config.dense_model, 64), messages)
    print(
        f"{len(messages)} messages, {len(scope.texts)} training turns: FAQ search {faq:.1f} ms, in-domain "
        f"check {check:.1f} ms (MiniLM encoding {encoding:.1f} ms of it) per message; check / FAQ search "
        f"= {check / faq:.2f}x"
    )


if __name__ == "__main__":
    main()
