"""Provenance of saved artefacts: file hashes, their verification on load, and library versions.

Saved directories record the sha256 of the data they were built from and the versions of the
libraries their behaviour depends on; LSTM model directories and the retrieval baseline also record
and check the sha256 of each of their files (T5 model directories and FAQ indexes do not yet: an FAQ
index checks only its entries file). This module computes and checks those hashes; it does not know
any directory's layout.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from assistant.errors import CheckpointError


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(directory: str | Path, files: Mapping[str, str], manifest_name: str) -> None:
    """Check that every listed file exists in ``directory`` with the listed sha256.

    Args:
        directory: the artefact directory.
        files: file name (relative to ``directory``) → expected hex sha256.
        manifest_name: the manifest that lists them, for messages.

    Raises:
        CheckpointError: a file is missing, or its content differs from what was saved.
    """
    directory = Path(directory)
    for name, expected in files.items():
        file = directory / name
        if not file.is_file():
            raise CheckpointError(f"{directory}: missing {name} (listed in {manifest_name})")
        actual = file_sha256(file)
        if actual != expected:
            raise CheckpointError(
                f"{file}: sha256 {actual[:12]}… differs from the manifest's {str(expected)[:12]}…; "
                f"the file was changed or comes from another build"
            )


def library_versions(*distributions: str) -> dict[str, str]:
    """Python's version and each named distribution's installed version ("not installed" if absent)."""
    versions = {"python": platform.python_version()}
    for dist in distributions:
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
