"""The in-domain check with the real MiniLM encoder: calibration, persistence, the pipeline and the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.data import Turn, read_dialogs, write_jsonl
from assistant.errors import CheckpointError, ConfigError
from assistant.pipeline import Pipeline, PipelineConfig
from assistant.routing.scope import FEATURES, ScopeCheck, ScopeConfig, load_scope_check
from tests.conftest import EchoGenerator

pytestmark = pytest.mark.slow

IN_DOMAIN = [
    "where is my parcel",
    "my package has not arrived yet",
    "I want to return my headphones",
    "can I get a refund for the broken charger",
    "the laptop I ordered arrived damaged",
    "how do I change my delivery address",
]
OUT_OF_SCOPE = ["who painted the mona lisa", "set an alarm for 7am", "how do I bake sourdough bread"]


def test_calibration_on_separable_messages_gives_the_known_threshold(tmp_path: Path) -> None:
    check = ScopeCheck.build(IN_DOMAIN + IN_DOMAIN[:2], ScopeConfig(top_k=2))
    assert len(check.texts) == len(IN_DOMAIN)  # duplicates dropped
    features = check.features(IN_DOMAIN)
    assert features.shape == (len(IN_DOMAIN), len(FEATURES))
    np.testing.assert_allclose(features[:, 0], 1.0, atol=2e-3)  # each finds itself (float16 storage)
    report = check.calibrate(IN_DOMAIN, OUT_OF_SCOPE)
    p_in, p_out = check.scores(IN_DOMAIN), check.scores(OUT_OF_SCOPE)
    assert p_in.min() > p_out.max()  # separable
    # the FAQ threshold's rule on separable classes: the lowest threshold with every message right,
    # i.e. the midpoint between the highest out-of-scope and the lowest in-domain probability
    assert report["threshold"] == pytest.approx((p_out.max() + p_in.min()) / 2)
    assert report["in_domain_accepted"] == report["out_of_scope_rejected"] == report["auroc"] == 1.0
    assert (report["n_in_domain"], report["n_out_of_scope"]) == (6, 3)
    # a context is judged by its last customer turn
    context = (
        Turn("customer", "who painted the mona lisa"),
        Turn("agent", "?"),
        Turn("customer", IN_DOMAIN[0]),
    )
    assert check.score(context) == pytest.approx(p_in[0])

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    check.save(model_dir)
    loaded = load_scope_check(model_dir)
    assert loaded is not None and loaded.threshold == check.threshold
    np.testing.assert_allclose(
        loaded.scores(OUT_OF_SCOPE + IN_DOMAIN), np.r_[p_out, p_in], rtol=1e-5
    )  # float32 batch noise
    manifest = json.loads((model_dir / "scope" / "scope.json").read_text())
    assert (
        manifest["kind"] == "scope-check"
        and manifest["calibration"]["report"]["threshold"] == report["threshold"]
    )
    (model_dir / "scope" / "texts.jsonl").write_text('"tampered"\n')
    with pytest.raises(CheckpointError, match="differs from the manifest"):
        load_scope_check(model_dir)


def test_the_threshold_is_lowered_to_keep_most_in_domain_messages() -> None:
    from assistant.routing.scope import acceptance_cap

    probabilities = np.linspace(0.1, 1.0, 10)
    assert acceptance_cap(probabilities, 0.8) == pytest.approx(0.3)  # rejects 0.1 and 0.2 only
    assert (
        acceptance_cap(probabilities, 1.0) == pytest.approx(0.1) and acceptance_cap(probabilities, 0.0) == 1.0
    )
    check = ScopeCheck.build(IN_DOMAIN)
    odd_one = "who painted the sistine chapel"  # labelled in domain, but it reads like the out-of-scope ones
    report = check.calibrate([*IN_DOMAIN, odd_one], OUT_OF_SCOPE)
    assert report["balanced_in_domain_accepted"] < 1.0  # the balanced rule gives the odd one up
    assert report["threshold"] == pytest.approx(check.score(odd_one))  # 7 messages: the cap keeps all
    assert report["in_domain_accepted"] == 1.0 and "lowered to accept >= 0.95" in report["rule"]


def test_an_uncalibrated_check_is_refused(tmp_path: Path) -> None:
    check = ScopeCheck.build(IN_DOMAIN)
    with pytest.raises(ConfigError, match="needs a generator and a calibration"):
        Pipeline(None, EchoGenerator(), scope=check)
    from assistant.errors import DataError, ModelError

    with pytest.raises(ModelError, match="refusing to save an uncalibrated in-domain check"):
        check.save(tmp_path)
    with pytest.raises(ModelError, match="not calibrated"):
        check.scores(IN_DOMAIN)
    with pytest.raises(DataError, match="needs in-domain and out-of-scope messages"):
        check.calibrate(IN_DOMAIN, [])


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory, demo_data) -> Path:
    """The retrieval baseline of the demo dialogs with its in-domain check (demo valid vs the generic set)."""
    from finetune.build_baseline import main as build_baseline

    out = tmp_path_factory.mktemp("demo") / "baseline"
    dialogs = demo_data / "dialogs"
    args = [
        "--train",
        str(dialogs / "train.jsonl"),
        "--valid",
        str(dialogs / "valid.jsonl"),
        "--out",
        str(out),
    ]
    assert build_baseline(args) == 0
    return out


def test_weather_in_paris_is_handed_off_by_the_demo_pipeline(demo_model, demo_faq_index, demo_data) -> None:
    scope = load_scope_check(demo_model)
    assert scope is not None and scope.calibration["report"]["generic_out_of_scope"] is True
    confident = EchoGenerator(confidence=0.94)  # like the demo LSTM: confident whatever it is asked
    before = Pipeline(demo_faq_index, confident, PipelineConfig()).respond(
        [], "What is the weather in Paris?"
    )
    assert (before.source, before.handoff) == ("model", False)  # the failure this check exists for
    after = Pipeline(demo_faq_index, confident, PipelineConfig(), scope=scope)
    reply = after.respond([], "What is the weather in Paris?")
    assert (reply.source, reply.handoff, reply.reason) == ("fallback", True, "out_of_scope")
    for text in ("how much has the dow changed today", "can you dim the brightness of my screen"):
        assert after.respond([], text).reason == "out_of_scope", text
    # the demo's own customers are still answered: the test dialogs' turns that reach the model
    turns = [
        (d.turns[:i], t.text)
        for d in read_dialogs(demo_data / "dialogs" / "test.jsonl")
        for i, t in enumerate(d.turns)
        if t.role == "customer"
    ]
    replies = [after.respond(list(history), text) for history, text in turns]
    reached = [r for r in replies if r.source != "faq" and r.source != "smalltalk"]
    in_domain = [r for r in reached if r.reason != "out_of_scope"]
    assert len(in_domain) >= 0.8 * len(reached) and len(reached) > 20


def test_the_server_loads_the_models_check_and_hands_off_out_of_scope(make_app, demo_model) -> None:
    client = make_app(use_pipeline=None, model_dir=str(demo_model)).test_client()
    answer = client.post(
        "/v1/chat", json={"conversation_id": "w", "text": "What is the weather in Paris?"}
    ).json
    assert answer["handoff"] is True and answer["replies"][0]["source"] == "fallback"
    answer = client.post("/v1/chat", json={"conversation_id": "w", "text": "thanks, bye"}).json
    assert answer["handoff"] is False and answer["replies"][0]["source"] == "smalltalk"


def test_calibrate_scope_cli_recalibrates_with_own_out_of_scope_messages(
    demo_model, demo_data, tmp_path, capsys
) -> None:
    from finetune.calibrate_scope import main

    oos = tmp_path / "oos.jsonl"
    write_jsonl(oos, [{"text": t, "faq_id": None} for t in OUT_OF_SCOPE] + [{"text": "ok", "faq_id": "x"}])
    assert main(["--model-dir", str(demo_model), "--oos-queries", str(oos), "--threads", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["n_out_of_scope"] == 3 and report["generic_out_of_scope"] is False  # faq_id x ignored
    assert "WARNING" not in captured.err
    assert report["sources"]["in_domain"] == [str((demo_data / "dialogs" / "valid.jsonl").resolve())]
    assert main(["--model-dir", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_eval_routing_runs_before_and_after_side_by_side(demo_model, demo_faq_index, demo_data, tmp_path):
    from finetune.eval_routing import main

    demo_faq_index.save(tmp_path / "index")
    queries = tmp_path / "queries.jsonl"
    lines = (demo_data / "faq" / "queries-dev.jsonl").read_text().splitlines()[:30]
    queries.write_text("\n".join(lines) + "\n")
    oos = tmp_path / "oos.jsonl"
    write_jsonl(oos, [{"text": t, "faq_id": None} for t in ["what is the weather in Paris?", *OUT_OF_SCOPE]])
    out = tmp_path / "routing"
    args = ["--model-dir", str(demo_model), "--index-dir", str(tmp_path / "index"), "--queries", str(queries)]
    args += ["--oos", str(oos), "--dialogs", str(demo_data / "dialogs" / "test.jsonl"), "--max-dialogs", "5"]
    assert main([*args, "--out-dir", str(out)]) == 0
    report = json.loads((out / "routing.json").read_text())
    before, after = (
        report["configurations"]["before"]["overall"],
        report["configurations"]["after"]["overall"],
    )
    assert report["simulation_mismatches"] == 0
    folder = tmp_path.name  # traffic is named <folder>/<file>: query sets share file names
    assert report["traffic"] == {
        f"{folder}/oos.jsonl": 4,
        f"{folder}/queries.jsonl": 30,
        "dialogs/test.jsonl": after["messages"]["dialog"],
    }
    assert after["oos_handoff_recall"] >= before["oos_handoff_recall"]
    assert after["oos_confident_wrong"] <= before["oos_confident_wrong"]
    assert report["operating_point"]["scope_threshold"] == load_scope_check(demo_model).threshold
    rows = report["curves"]["scope_threshold"]
    assert rows[0]["threshold"] == 0.0 and rows[-1]["threshold"] == 1.0
    # a higher in-domain threshold hands off more: recall up, dialog answers down
    assert rows[-1]["oos_handoff_recall"] >= rows[0]["oos_handoff_recall"]
    assert rows[-1]["dialog_answer_rate"] <= rows[0]["dialog_answer_rate"]
    assert "in-domain check (calibrated top1 + topk)" in report["signals"]
    markdown = (out / "routing.md").read_text()
    assert "| OOS handoff recall |" in markdown and "## Curve: in-domain threshold" in markdown


def test_a_demo_model_from_before_the_check_gets_one_at_start_up(tmp_path, demo_data) -> None:
    from finetune.build_baseline import main as build_baseline
    from server.demo import ensure_demo_scope

    model_dir = tmp_path / "demo-model"
    assert (
        build_baseline(["--train", str(demo_data / "dialogs" / "train.jsonl"), "--out", str(model_dir)]) == 0
    )
    messages: list[str] = []
    ensure_demo_scope(model_dir, messages.append)
    manifest = model_dir / "scope" / "scope.json"
    assert manifest.is_file() and messages == [
        f"calibrating the demo model's in-domain check in {model_dir} ..."
    ]
    stamp = manifest.stat().st_mtime_ns
    ensure_demo_scope(model_dir, messages.append)  # already there: nothing to do
    assert manifest.stat().st_mtime_ns == stamp and len(messages) == 1
