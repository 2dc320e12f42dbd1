"""Saved directories' manifests and provenance: one place that writes, reads and checks them.

Every directory the project saves (LSTM, T5 and retrieval-baseline model directories, FAQ indexes)
carries a JSON manifest: ``kind``, ``format_version``, what the directory holds, and its provenance,
which this module stamps:

* ``versions``: Python's and the behaviour-relevant libraries' installed versions
  (:func:`library_versions`). FAQ indexes written before this module called it ``libraries``;
  :func:`read_manifest` reads that name as ``versions``, so older directories still load.
* ``created``: the UTC time of writing (ISO 8601, seconds).
* ``files`` (when the writer lists files): name → sha256 of each file, checked on load by
  :func:`verify_files`. LSTM model directories and the retrieval baseline list all their files; T5
  model directories none yet; an FAQ index checks its entries file through its own ``faq`` record.

Writes are atomic: the data goes to a temporary file in the same folder, which ``os.replace`` then
moves over the target (:func:`replacing`), so a reader sees the old file or the new one, never half
of one. This module knows no directory's layout (the manifest's file name and the files to hash are
passed in) and does not decide what a manifest's body holds.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError, CheckpointError

#: The manifest key holding library versions, and older names read as it.
VERSIONS_KEY = "versions"
_OLD_VERSIONS_KEYS = ("libraries",)
#: Permissions of atomically written files (``mkstemp`` makes them private; servers read them too).
_FILE_MODE = 0o644


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


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; moved over ``path`` when the block succeeds.

    The temporary file is in the same folder (so ``os.replace`` is atomic) and has a unique name (so
    concurrent writers do not mix their bytes). If the block raises, the temporary file is removed and
    ``path`` is left as it was.

    Usage::

        with replacing(directory / "model.safetensors") as tmp:
            safetensors.torch.save_model(model, str(tmp))
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def replacing_directory(path: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; swapped in for ``path`` when the block succeeds.

    The old folder (if any) is renamed aside, the new one renamed into place, then the old one removed,
    so a reader sees either the whole old or the whole new folder. If the block raises, the temporary
    folder is removed and ``path`` is left as it was.

    Raises:
        OSError: the folder cannot be created or swapped (callers wrap it in their own error).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; servers read saved folders as another user too
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
        tmp.rename(path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` atomically (see :func:`replacing`)."""
    with replacing(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON (one trailing newline) to ``path`` atomically."""
    write_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_manifest(
    directory: str | Path,
    name: str,
    *,
    kind: str,
    format_version: int,
    body: Mapping[str, Any],
    libraries: Sequence[str],
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """Stamp and atomically write a directory's manifest; the directory's other files come first.

    The manifest is ``{"kind", "format_version", "files"?, **body, "versions", "created"}``: ``files``
    (only when ``files`` is given) maps each listed file to its sha256, hashed now.

    Args:
        directory: the saved directory (must exist).
        name: the manifest's file name (``assistant.json``, ``faq-index.json``).
        kind, format_version: what the directory is, and the layout version its reader checks.
        body: the kind-specific content (configs, data provenance, training figures, ...); it must not
            use the stamped keys.
        libraries: distributions whose versions are recorded beside Python's.
        files: names (relative to ``directory``) of files to hash into ``files``.

    Returns:
        the manifest written.

    Raises:
        ValueError: ``body`` uses a stamped key (a programming error).
        OSError: the manifest or a listed file cannot be read or written.
    """
    directory = Path(directory)
    stamped = {"kind", "format_version", "files", VERSIONS_KEY, "created", *_OLD_VERSIONS_KEYS}
    clash = sorted(stamped & set(body))
    if clash:
        raise ValueError(f"manifest body must not set the stamped keys {clash}")
    manifest: dict[str, Any] = {"kind": kind, "format_version": format_version}
    if files:
        manifest["files"] = {f: file_sha256(directory / f) for f in files}
    manifest.update(body)
    manifest[VERSIONS_KEY] = library_versions(*libraries)
    manifest["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    write_json(directory / name, manifest)
    return manifest


def rewrite_manifest(directory: str | Path, name: str, manifest: Mapping[str, Any]) -> None:
    """Atomically replace a manifest read with :func:`read_manifest` and then amended (e.g. training
    figures added after the fact), keeping its stamps (``files``, ``versions``, ``created``) as they are.

    Raises:
        ValueError: ``manifest`` has no ``kind`` or ``format_version`` (it was not read from a manifest).
    """
    if "kind" not in manifest or "format_version" not in manifest:
        raise ValueError("rewrite_manifest needs a manifest read with read_manifest (kind, format_version)")
    write_json(Path(directory) / name, dict(manifest))


def manifest_kind(directory: str | Path, name: str) -> str | None:
    """The ``kind`` of ``directory``'s manifest, or ``None`` when it has none or it is unreadable.

    For callers that only need to know whether a directory is theirs (e.g. before overwriting it).
    """
    try:
        manifest = json.loads((Path(directory) / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = manifest.get("kind") if isinstance(manifest, dict) else None
    return kind if isinstance(kind, str) else None


def read_manifest(
    directory: str | Path,
    name: str,
    *,
    kinds: Collection[str],
    kind: str | None = None,
    format_version: int | None = None,
    what: str = "model directory",
    error: type[AssistantError] = CheckpointError,
    hint: str = "",
) -> dict[str, Any]:
    """Read a directory's manifest and check its ``kind`` and ``format_version``.

    Older key names are read as today's (``libraries`` → ``versions``), so directories written
    before a rename still load.

    Args:
        directory: the saved directory.
        name: the manifest's file name.
        kinds: the kinds a manifest of this name may have.
        kind: the one kind the caller needs (``None``: any of ``kinds``).
        format_version: the layout version the caller reads (``None``: not checked here).
        what: what the directory is, for messages ("model directory", "FAQ index").
        error: the exception type raised (``CheckpointError`` for models, ``RetrievalError`` for
            indexes).
        hint: appended to the format-version message (e.g. how to rebuild).

    Returns:
        the manifest.

    Raises:
        ``error``: the directory or manifest is missing, the manifest is not a JSON object, its
            ``kind`` is not in ``kinds`` (or not ``kind``), or its ``format_version`` differs.
    """
    directory = Path(directory)
    path = directory / name
    if not directory.is_dir():
        raise error(f"{directory}: not a directory (expected a {what} with {name})")
    if not path.is_file():
        raise error(f"{directory}: no {name}; this is not a {what} written by this project")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise error(f"{path}: cannot be read ({e})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise error(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    found = manifest.get("kind")
    if found not in kinds:
        expected = f"{next(iter(kinds))!r}" if len(kinds) == 1 else f"one of {sorted(kinds)}"
        raise error(f"{path}: 'kind' must be {expected}, got {found!r}")
    if kind is not None and found != kind:
        raise error(f"{path}: kind is {found!r}, expected {kind!r}")
    if format_version is not None and manifest.get("format_version") != format_version:
        raise error(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(this code reads format_version {format_version})" + (f"; {hint}" if hint else "")
        )
    for old in _OLD_VERSIONS_KEYS:
        if old in manifest:
            value = manifest.pop(old)
            manifest.setdefault(VERSIONS_KEY, value)
    return manifest
