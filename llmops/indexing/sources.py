"""Sources of documents: a folder of text files, or a Delta table with an id and a text column.

A source yields every document it holds, or the reason it skipped one; it never
raises for one bad document. A source that does not exist is an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from llmops.config import IndexConfig
from llmops.errors import IndexSourceError

__all__ = [
    "DeltaSource",
    "DocumentSource",
    "FolderSource",
    "SkippedDocument",
    "SourceDocument",
    "open_source",
]


@dataclass(frozen=True)
class SourceDocument:
    """One document: a stable id (the relative path, or the id column) and its text."""

    id: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedDocument:
    """A document the source could not use, and why.

    ``keep_previous`` says whether chunks already indexed for it stay: yes for
    a file that cannot be read right now, no for one that is now empty.
    """

    id: str
    reason: str
    keep_previous: bool = True


class DocumentSource(Protocol):
    """Anything that yields documents (and skipped ones) with stable ids."""

    name: str

    def read(self) -> Iterator[SourceDocument | SkippedDocument]: ...


class FolderSource:
    """Markdown and text files under a folder, read as strict UTF-8.

    A symbolic link (to a file, or to a folder on the way to one) is followed only while it
    stays inside the folder: one that leads out of it is refused, and what was indexed from
    it is removed, so a link in a docs folder cannot put other files of the machine into the
    index.
    """

    def __init__(self, folder: Path, config: IndexConfig) -> None:
        self.folder = Path(folder)
        self.name = str(folder)
        self.config = config

    def read(self) -> Iterator[SourceDocument | SkippedDocument]:
        extensions = {e.lower() for e in self.config.extensions}
        root = self.folder.resolve()
        for path in sorted(p for p in self.folder.rglob("*") if p.is_file() or p.is_symlink()):
            doc_id = path.relative_to(self.folder).as_posix()
            if any(part.startswith(".") for part in path.relative_to(self.folder).parts):
                continue
            if not path.resolve().is_relative_to(root):
                yield SkippedDocument(doc_id, "a symbolic link that leads out of the source "
                                      "folder (refused)", keep_previous=False)
                continue
            if path.suffix.lower() not in extensions:
                yield SkippedDocument(doc_id, f"not a text document ({path.suffix or 'no extension'})",
                                      keep_previous=False)
                continue
            yield self._read_one(path, doc_id)

    def _read_one(self, path: Path, doc_id: str) -> SourceDocument | SkippedDocument:
        try:
            size = path.stat().st_size
            if size > self.config.max_document_bytes:
                return SkippedDocument(
                    doc_id, f"larger than max_document_bytes ({size} > {self.config.max_document_bytes})"
                )
            data = path.read_bytes()
        except OSError as exc:
            return SkippedDocument(doc_id, f"unreadable: {exc.strerror or exc}")
        if b"\x00" in data[:8192]:
            return SkippedDocument(doc_id, "binary file")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return SkippedDocument(doc_id, f"not UTF-8 text (byte {exc.start})")
        if not text.strip():
            return SkippedDocument(doc_id, "empty", keep_previous=False)
        return SourceDocument(doc_id, text, {"source": doc_id})


class DeltaSource:
    """Rows of a Delta table: one document per row, from an id and a text column."""

    def __init__(self, path: Path, config: IndexConfig) -> None:
        self.path = Path(path)
        self.name = f"delta:{path}"
        self.config = config

    def read(self) -> Iterator[SourceDocument | SkippedDocument]:
        from deltalake import DeltaTable

        cfg = self.config
        table = DeltaTable(str(self.path))
        names = [f.name for f in table.schema().fields]
        missing = [c for c in (cfg.id_column, cfg.text_column) if c not in names]
        if missing:
            raise IndexSourceError(
                f"Delta table {self.path} has no column {', '.join(missing)} (it has "
                f"{', '.join(names)}): set index.id_column / index.text_column in llmops.yaml"
            )
        data = table.to_pyarrow_table(columns=[cfg.id_column, cfg.text_column]).to_pylist()
        seen: set[str] = set()
        for row in data:
            raw_id, text = row[cfg.id_column], row[cfg.text_column]
            if raw_id is None:
                continue
            doc_id = str(raw_id)
            if doc_id in seen:
                yield SkippedDocument(doc_id, "duplicate id in the table (first row kept)")
                continue
            seen.add(doc_id)
            if not isinstance(text, str) or not text.strip():
                yield SkippedDocument(doc_id, "empty", keep_previous=False)
            elif len(text.encode("utf-8")) > cfg.max_document_bytes:
                yield SkippedDocument(doc_id, "larger than max_document_bytes")
            else:
                yield SourceDocument(doc_id, text, {"source": doc_id})


def open_source(location: str | Path, config: IndexConfig) -> DocumentSource:
    """A folder source or, for a folder with a ``_delta_log``, a Delta table source."""
    path = Path(location)
    if not path.exists():
        raise IndexSourceError(
            f"source {path} does not exist: pass --source DIR or set index.source in llmops.yaml"
        )
    if not path.is_dir():
        raise IndexSourceError(f"source {path} is not a folder (or a Delta table folder)")
    if (path / "_delta_log").is_dir():
        return DeltaSource(path, config)
    return FolderSource(path, config)
