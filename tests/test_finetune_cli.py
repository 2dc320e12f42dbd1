"""Tests for finetune/cli.py: the shared --threads flag."""

from __future__ import annotations

import argparse

import pytest
import torch

from assistant.errors import ConfigError
from finetune import build_index
from finetune.cli import add_threads_argument, apply_threads


def test_threads_flag_is_applied_and_validated():
    parser = argparse.ArgumentParser()
    add_threads_argument(parser, "the tests")
    assert parser.parse_args([]).threads is None
    before = torch.get_num_threads()
    try:
        apply_threads(parser.parse_args(["--threads", "1"]).threads)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="--threads must be >= 1, got 0"):
        apply_threads(0)


def test_a_cli_reports_a_bad_thread_count(demo_data, tmp_path, capsys):
    code = build_index.main(
        [
            "--faq",
            str(demo_data / "faq" / "faq.jsonl"),
            "--out",
            str(tmp_path / "i"),
            "--method",
            "bm25",
            "--threads",
            "0",
        ]
    )
    assert code == 2 and "--threads must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "i").exists()
