"""Tests for assistant/config.py: dataclass ↔ argparse flags, dict loading, validation."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Literal

import pytest

from assistant.config import add_dataclass_arguments, dataclass_from_args, dataclass_from_dict, require
from assistant.errors import ConfigError


@dataclass
class DemoConfig:
    """A config used only by these tests."""

    hidden: int = field(default=64, metadata={"help": "hidden size"})
    dropout: float = field(default=0.1, metadata={"help": "dropout probability"})
    attention: Literal["dot", "general"] = field(default="dot", metadata={"help": "attention score"})
    tied: bool = field(default=True, metadata={"help": "tie embeddings"})
    modules: tuple[str, ...] = field(default=("q", "v"), metadata={"help": "target modules"})
    name: str | None = field(default=None, metadata={"help": "optional name"})

    def __post_init__(self) -> None:
        require(self.hidden > 0, f"hidden must be > 0, got {self.hidden}")


def parse(argv, prefix=""):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, DemoConfig, prefix)
    return dataclass_from_args(DemoConfig, parser.parse_args(argv), prefix)


def test_defaults_and_flags():
    assert parse([]) == DemoConfig()
    cfg = parse(
        ["--hidden", "8", "--attention", "general", "--no-tied", "--modules", "q", "k", "v", "--name", "x"]
    )
    assert cfg == DemoConfig(hidden=8, attention="general", tied=False, modules=("q", "k", "v"), name="x")


def test_prefix_keeps_configs_apart():
    assert parse(["--lora-hidden", "4"], prefix="lora-").hidden == 4


def test_bad_values_are_rejected():
    with pytest.raises(SystemExit):
        parse(["--attention", "cosine"])
    with pytest.raises(ConfigError, match="hidden must be > 0, got -1"):
        parse(["--hidden", "-1"])


def test_help_shows_field_help(capsys):
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, DemoConfig)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "dropout probability (default: 0.1)" in out and "--no-tied" in out


def test_from_dict_rejects_unknown_keys_and_restores_tuples():
    assert dataclass_from_dict(DemoConfig, {"modules": ["a"]}, "cfg.json").modules == ("a",)
    with pytest.raises(ConfigError, match=r"cfg\.json: unknown DemoConfig fields \['hiden'\]"):
        dataclass_from_dict(DemoConfig, {"hiden": 3}, "cfg.json")
