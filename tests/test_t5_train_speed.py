"""The fast T5 training step (``finetune/t5_step.py``) and ``bench/t5_train_speed.py``: real steps on tiny
models. The loss over real target tokens must equal the model's own ``.loss`` (and give the same
gradients); the benchmark's two paths (our loop, ``Seq2SeqTrainer``) must train the same model on the same
batches; ``--compile`` must give the eager loss."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from assistant.data import read_dialogs
from assistant.generators.t5.adapters import LoraSettings, attach_lora
from assistant.generators.t5.model import T5GenerationSettings, build_model, load_tokenizer
from assistant.generators.t5.model import T5ModelConfig as Size
from finetune.t5_data import make_collator, tokenize_examples
from finetune.t5_step import (
    LinearCrossEntropy,
    compile_model,
    target_token_loss,
    target_token_nll,
    unwrapped_t5,
)

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
#: a tiny T5 without dropout, so two computations of one step can be compared exactly
TINY = {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 4}


def load_bench():
    spec = importlib.util.spec_from_file_location("t5_train_speed", ROOT / "bench" / "t5_train_speed.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["t5_train_speed"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tok(t5_tokenizer_dir):
    return load_tokenizer(t5_tokenizer_dir)


@pytest.fixture(scope="module")
def batch(tok, demo_data):
    dialogs = read_dialogs(demo_data / "dialogs" / "valid.jsonl")[:6]
    examples = tokenize_examples(dialogs, tok, T5GenerationSettings(max_source_len=40, max_target_len=40))
    b = make_collator(tok)(examples[:6])
    assert (b["labels"] == -100).any(), "the batch must have padded target positions"
    return b


def tiny_model(tok, tied: bool = True, dropout: float = 0.0):
    return build_model(Size(**TINY, dropout_rate=dropout, tie_word_embeddings=tied).to_hf(), tok, seed=1)


def grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tied", [True, False])
def test_loss_over_target_tokens_equals_the_models_own_loss_and_gradients(tok, batch, tied):
    model = tiny_model(tok, tied, dropout=0.1)
    model.train()
    torch.manual_seed(5)  # same dropout masks: both run the encoder, then the decoder
    own = model(**batch).loss
    own.backward()
    expected = grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    ours = target_token_loss(model, batch)
    ours.backward()
    got = grads(model)
    assert torch.allclose(ours, own, rtol=1e-5, atol=1e-6), (float(ours), float(own))
    assert expected.keys() == got.keys()
    for name, g in expected.items():
        assert torch.allclose(got[name], g, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("weight_grad", [True, False])  # full fine-tuning / a frozen (LoRA) projection
def test_fused_linear_cross_entropy_matches_linear_then_cross_entropy(weight_grad):
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=g, requires_grad=True)
    weight = (torch.randn(300, 16, generator=g) * 0.3).requires_grad_(weight_grad)
    targets = torch.randint(0, 300, (37,), generator=g)
    ref = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets)
    ref_grads = torch.autograd.grad(ref * 3.0, [hidden, weight] if weight_grad else [hidden])
    got = LinearCrossEntropy.apply(hidden, weight, targets)
    got_grads = torch.autograd.grad(got * 3.0, [hidden, weight] if weight_grad else [hidden])
    assert torch.allclose(got, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(got_grads, ref_grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_lora_model_takes_the_short_path_with_the_same_loss(tok, batch):
    model = attach_lora(tiny_model(tok), LoraSettings(r=4, dropout=0.0), "bank")
    assert unwrapped_t5(model) is model.get_base_model()
    with torch.no_grad():  # a non-zero adapter, so that the LoRA layers matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.train()
    own = model(**batch).loss
    ours = target_token_loss(model, batch)
    assert torch.allclose(ours, own, rtol=1e-5, atol=1e-6)
    base_only = target_token_loss(tiny_model(tok), batch)
    assert not torch.allclose(ours, base_only), "the adapter must be part of the short path"


def test_validation_nll_per_example_matches_the_full_projection(tok, batch):
    model = tiny_model(tok)
    model.eval()
    with torch.no_grad():
        nll, tokens = target_token_nll(model, batch)
        logits = model(**batch).logits
        full = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), batch["labels"], ignore_index=-100, reduction="none"
        ).sum(dim=1)
    assert nll.shape == tokens.shape == (batch["labels"].shape[0],)
    assert torch.equal(tokens, (batch["labels"] != -100).sum(dim=1))
    assert torch.allclose(nll, full, rtol=1e-5, atol=1e-5)


def test_a_wrapper_without_a_t5_inside_uses_its_own_forward(tok, batch):
    class Wrapper(torch.nn.Module):  # stands for DDP: only its forward may run
        def __init__(self, inner):
            super().__init__()
            self.module = inner

        def forward(self, **kw):
            return self.module(**kw)

    model = tiny_model(tok)
    model.eval()
    wrapped = Wrapper(model)
    assert unwrapped_t5(wrapped) is None
    with torch.no_grad():
        assert torch.allclose(target_token_loss(wrapped, batch), model(**batch).loss)
        nll_w, tok_w = target_token_nll(wrapped, batch)
        nll_m, tok_m = target_token_nll(model, batch)
    assert torch.allclose(nll_w, nll_m, rtol=1e-5, atol=1e-5) and torch.equal(tok_w, tok_m)
    with pytest.raises(ValueError, match="--compile needs a T5"):
        compile_model(wrapped)


@pytest.mark.slow
# warnings torch raises from its own code while compiling (an import inside inductor, a dynamo trace)
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_compiled_step_gives_the_eager_loss_and_gradients(tok, batch):
    eager, compiled = tiny_model(tok), tiny_model(tok)
    compile_model(compiled)
    for m in (eager, compiled):
        m.train()
    a, b = target_token_loss(eager, batch), target_token_loss(compiled, batch)
    a.backward()
    b.backward()
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (float(a), float(b))
    ga, gb = grads(eager), grads(compiled)
    assert ga.keys() == gb.keys()
    assert all(torch.allclose(ga[n], gb[n], rtol=1e-4, atol=1e-6) for n in ga)
    assert compiled.state_dict().keys() == eager.state_dict().keys(), "compiling must keep state-dict keys"


@pytest.mark.slow
def test_bench_paths_train_the_same_model_on_the_same_batches(tmp_path, t5_tokenizer_dir, demo_data):
    bench = load_bench()
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "dropout_rate": 0.0}))
    out = tmp_path / "bench.json"
    code = bench.main(
        [
            "--model-config",
            str(config),
            "--tokenizer",
            str(t5_tokenizer_dir),
            "--train",
            str(demo_data / "dialogs" / "train.jsonl"),
            "--dialogs",
            "30",
            "--batch-size",
            "4",
            "--max-source-len",
            "40",
            "--max-target-len",
            "16",
            "--warmup",
            "1",
            "--steps",
            "2",
            "--lr-warmup",
            "1",
            "--lora-r",
            "4",
            "--lora-dropout",
            "0",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert [r["mode"] for r in report["rows"]] == ["full", "lora"]
    for row in report["rows"]:
        ours, peer = row["paths"].values()
        assert ours["steps"] == peer["steps"] == 3
        # step 1: same weights, same batch; steps 2-3: the same AdamW update, schedule and clipping too
        assert ours["first_losses"] == pytest.approx(peer["first_losses"], abs=2e-4), row
        assert row["ours"] > 0 and row["peer"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["peer"], rel=1e-2)
    full, lora = report["rows"]
    assert full["paths"]["ours"]["first_losses"][2] != lora["paths"]["ours"]["first_losses"][2]


def test_bench_refuses_cuda_without_a_device(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert load_bench().main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
