from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import IndexConfig
from llmops.errors import IndexSourceError
from llmops.indexing.sources import DeltaSource, SkippedDocument, SourceDocument, open_source


def read(folder: Path, **cfg) -> tuple[dict[str, str], dict[str, SkippedDocument]]:
    docs, skipped = {}, {}
    for item in open_source(folder, IndexConfig(**cfg)).read():
        if isinstance(item, SourceDocument):
            docs[item.id] = item.text
        else:
            skipped[item.id] = item
    return docs, skipped


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text("# Good\n\nText.\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.txt").write_text("nested text")
    (tmp_path / "latin1.md").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "binary.md").write_bytes(b"\x89PNG\x00\x00\x01binary")
    (tmp_path / "empty.md").write_text("  \n\n")
    (tmp_path / "big.md").write_text("x" * 5000)
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("hidden")
    (tmp_path / "dangling.md").symlink_to(tmp_path / "gone.md")  # unreadable, even for root
    docs, skipped = read(tmp_path, max_document_bytes=1000)
    assert set(docs) == {"good.md", "sub/nested.txt"}
    reasons = {k: v.reason for k, v in skipped.items()}
    assert reasons["latin1.md"].startswith("not UTF-8")
    assert reasons["binary.md"] == "binary file"
    assert reasons["empty.md"] == "empty"
    assert reasons["big.md"].startswith("larger than max_document_bytes")
    assert reasons["image.png"].startswith("not a text document")
    assert reasons["dangling.md"].startswith("unreadable")
    assert not skipped["empty.md"].keep_previous and skipped["binary.md"].keep_previous
    assert ".hidden.md" not in docs and ".hidden.md" not in skipped


def test_symlinks_out_of_the_folder_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "private").mkdir(parents=True)
    (outside / "secret.md").write_text("a secret of the machine")
    (outside / "private" / "key.md").write_text("another secret")
    docs_dir = tmp_path / "docs"
    (docs_dir / "sub").mkdir(parents=True)
    (docs_dir / "good.md").write_text("# Good\n\nText.\n")
    (docs_dir / "sub" / "inside.md").symlink_to(docs_dir / "good.md")  # stays inside: read
    (docs_dir / "leak.md").symlink_to(outside / "secret.md")
    (docs_dir / "sub" / "up.md").symlink_to(Path("..") / ".." / "outside" / "secret.md")
    (docs_dir / "linked").symlink_to(outside / "private", target_is_directory=True)
    docs, skipped = read(docs_dir)
    assert docs == {"good.md": "# Good\n\nText.\n", "sub/inside.md": "# Good\n\nText.\n"}
    refused = {"leak.md", "sub/up.md", "linked"}  # the folder link is refused whole
    assert set(skipped) == refused
    for doc_id in refused:  # and what was indexed from them before is removed
        assert "leads out of the source folder" in skipped[doc_id].reason
        assert not skipped[doc_id].keep_previous
    assert not any("secret" in text for text in docs.values())


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IndexSourceError, match="does not exist: pass --source"):
        open_source(tmp_path / "nope", IndexConfig())
    (tmp_path / "file.md").write_text("x")
    with pytest.raises(IndexSourceError, match="is not a folder"):
        open_source(tmp_path / "file.md", IndexConfig())


def test_delta_table_source(tmp_path: Path) -> None:
    import pyarrow as pa
    from deltalake import write_deltalake

    table = pa.table({"doc": ["a", "b", "b", "c"], "body": ["alpha text", "beta", "dup", ""]})
    write_deltalake(str(tmp_path / "t"), table)
    source = open_source(tmp_path / "t", IndexConfig(id_column="doc", text_column="body"))
    assert isinstance(source, DeltaSource)
    items = list(source.read())
    docs = {i.id: i.text for i in items if isinstance(i, SourceDocument)}
    skipped = {i.id: i.reason for i in items if isinstance(i, SkippedDocument)}
    assert docs == {"a": "alpha text", "b": "beta"}
    assert skipped == {"b": "duplicate id in the table (first row kept)", "c": "empty"}
    with pytest.raises(IndexSourceError, match="no column text"):
        list(open_source(tmp_path / "t", IndexConfig(id_column="doc")).read())
