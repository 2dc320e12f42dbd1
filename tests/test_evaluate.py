"""Tests for finetune/evaluate.py and finetune/build_baseline.py: real baselines on a tiny dialogs file."""

from __future__ import annotations

import json
import math

import pytest

from assistant.data import Turn
from assistant.generators.base import Generation, Generator
from assistant.model_input import Example
from finetune import build_baseline, evaluate

# Five dialogs with distinct vocabularies, so that each context's nearest training context is itself.
DIALOGS = [
    {
        "id": "b1",
        "meta": {"domains": ["bank"]},
        "turns": [
            {"role": "customer", "text": "I lost my credit card yesterday"},
            {"role": "agent", "text": "I have blocked your card and ordered a new one."},
            {"role": "customer", "text": "When will the replacement arrive?"},
            {"role": "agent", "text": "The replacement arrives within five working days."},
        ],
    },
    {
        "id": "b2",
        "meta": {"domains": ["bank"]},
        "turns": [
            {"role": "customer", "text": "How do I reset my online banking password?"},
            {"role": "agent", "text": "Use the forgot password link on the login page."},
        ],
    },
    {
        "id": "w1",
        "meta": {"domains": ["weather"]},
        "turns": [
            {"role": "customer", "text": "Will it rain in Paris tomorrow?"},
            {"role": "agent", "text": "Tomorrow in Paris it will be sunny and warm."},
        ],
    },
    {
        "id": "r1",
        "meta": {"domains": ["restaurant", None]},
        "turns": [
            {"role": "customer", "text": "Book a table for two at eight"},
            {"role": "agent", "text": "Your table for two at 8 pm is booked."},
            {"role": "customer", "text": "Thanks, goodbye"},
            {"role": "agent", "text": "Enjoy your dinner, goodbye!"},
        ],
    },
    {
        "id": "t1",
        "meta": {"domains": ["ride"]},
        "turns": [
            {"role": "customer", "text": "Send a taxi to the central station"},
            {"role": "agent", "text": "A taxi will pick you up at the central station in ten minutes."},
        ],
    },
]
N_AGENT_TURNS = 7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    dialogs = root / "dialogs.jsonl"
    dialogs.write_text("".join(json.dumps(d) + "\n" for d in DIALOGS), encoding="utf-8")
    exact = root / "exact"
    assert build_baseline.main(["--train", str(dialogs), "--out", str(exact), "--top-k", "1"]) == 0
    voted = root / "voted"
    assert (
        build_baseline.main(["--train", str(dialogs), "--out", str(voted), "--max-context-turns", "1"]) == 0
    )
    return root, dialogs, exact, voted


def test_training_dialogs_are_answered_exactly(setup):
    root, dialogs, exact, _ = setup
    out = root / "report-exact"
    assert (
        evaluate.main([str(exact), "--dialogs", str(dialogs), "--out-dir", str(out), "--samples", "3"]) == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["n_examples"] == N_AGENT_TURNS
    (model,) = report["models"]
    assert model["kind"] == "retrieval-baseline" and model["name"] == "exact"
    m = model["metrics"]
    assert m["token_f1"] == 1.0 and m["rouge_l"] == pytest.approx(1.0) and m["bleu"] == pytest.approx(100.0)
    assert m["perplexity"] is None and m["replies_per_second"] > 0
    assert "tok:13a" in m["bleu_signature"]
    assert report["machine"]["cpu_count"] >= 1 and report["date"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 and samples[0]["replies"]["exact"]["text"] == samples[0]["reference"]
    table = (out / "report.md").read_text()
    assert "| exact | retrieval-baseline | 100.00 | 1.000 | 1.000 | n/a |" in table


def test_two_models_side_by_side_with_filters_and_options(setup, capsys):
    root, dialogs, exact, voted = setup
    out = root / "report-two"
    code = evaluate.main(
        [
            str(exact),
            str(voted),
            "--dialogs",
            str(dialogs),
            "--names",
            "nn",
            "vote",
            "--domain",
            "bank",
            "--limit",
            "2",
            "--generator-option",
            "vote:top_k=1",
            "--out-dir",
            str(out),
            "--batch-size",
            "1",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_examples"] == 2 and report["filters"] == {"domain": "bank", "limit": 2}
    assert [m["name"] for m in report["models"]] == ["nn", "vote"]
    assert report["models"][1]["options"] == {"top_k": 1} and report["models"][0]["options"] == {}
    table = (out / "report.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and rows[1].startswith("| nn |") and rows[2].startswith("| vote |")
    assert table.count("| model |") == 1
    assert "domain `bank`, first 2" in table
    assert table in capsys.readouterr().out


def test_perplexity_is_reported_for_a_generator_with_a_likelihood():
    class Uniform(Generator):
        """Says 'ok'; a uniform distribution over 8 words, so every target token costs ln 8 nats."""

        name = "uniform"

        def generate(self, requests):
            return [Generation("ok", 0.5) for _ in requests]

        @property
        def supports_perplexity(self):
            return True

        def score(self, requests, targets):
            n = sum(len(t.split()) + 1 for t in targets)  # words + end of sequence
            return n * math.log(8), n

    examples = [
        Example("d", 1, (Turn("customer", "hi"),), "hello there"),
        Example("d", 3, (Turn("customer", "bye"),), "ok"),
    ]
    replies, confidences, seconds, likelihood = evaluate.run_model(Uniform(), examples, 1, "uniform")
    assert replies == ["ok", "ok"] and confidences == [0.5, 0.5] and likelihood[1] == 5
    scores = evaluate.score_replies(replies, [e.target for e in examples], seconds, likelihood)
    assert scores["perplexity"] == pytest.approx(8.0)
    assert scores["token_f1"] == pytest.approx(0.5) and scores["avg_reply_words"] == 1.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--domain", "space"],
            (
                "no dialog has domain 'space' in meta.domains; domains present: "
                "['bank', 'restaurant', 'ride', 'weather']"
            ),
        ),
        (["--names", "a", "b"], "--names gives 2 names for 1 models"),
        (["--generator-option", "beam_size=5"], "does not accept option(s) ['beam_size']"),
        (["--generator-option", "lstm:beam_size=5"], "no model labelled 'lstm'"),
        (["--generator-option", "top_k"], "expected [NAME:]KEY=VALUE"),
        (["--limit", "0"], "limit must be >= 1, got 0"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(setup, capsys, extra, message):
    _, dialogs, exact, _ = setup
    assert evaluate.main([str(exact), "--dialogs", str(dialogs), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_bad_model_directories_and_files_exit_2(setup, tmp_path, capsys):
    _, dialogs, exact, _ = setup
    assert evaluate.main([str(tmp_path / "nope"), "--dialogs", str(dialogs)]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "assistant.json").write_text(json.dumps({"kind": "gpt"}))
    assert evaluate.main([str(tmp_path), "--dialogs", str(dialogs)]) == 2
    assert "'kind' must be one of" in capsys.readouterr().err
    assert evaluate.main([str(exact), str(exact), "--dialogs", str(dialogs)]) == 2
    assert "used twice" in capsys.readouterr().err
    assert evaluate.main([str(exact), "--dialogs", str(tmp_path / "none.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert build_baseline.main(["--train", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "m")]) == 2
    assert "no such file" in capsys.readouterr().err
    odd = tmp_path / "odd.jsonl"
    odd.write_text(json.dumps({"id": "o", "turns": DIALOGS[1]["turns"], "meta": {"domains": "bank"}}) + "\n")
    assert evaluate.main([str(exact), "--dialogs", str(odd), "--domain", "bank"]) == 2
    assert "dialog 'o': meta.domains must be a list of names, got 'bank'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # argparse: a required flag is missing
        evaluate.main([str(exact)])
    assert e.value.code == 2
