"""inference_log rows built in one place: the gateway, batch jobs and the widget agree."""

from __future__ import annotations

import pytest

from llmops.errors import LlmopsError
from llmops.lakehouse import check_row, inference_row, name_and_version


@pytest.mark.parametrize(("ref", "expected"), [
    ("qa/3", ("qa", "3")),
    ("qa", ("qa", None)),
    ("qa@production", ("qa@production", None)),  # kept as given: nothing pins it here
    ("not a ref/x", ("not a ref/x", None)),
    (None, (None, None)),
    ("", (None, None)),
])
def test_name_and_version(ref: str | None, expected: tuple[str | None, str | None]) -> None:
    assert name_and_version(ref) == expected


def test_inference_row_fills_the_prompt_columns_and_fits_the_table() -> None:
    row = inference_row("r1", "batch", env="dev", status=200, prompt_ref="qa/3", chain="c")
    assert row == {"request_id": "r1", "endpoint": "batch", "env": "dev", "status": 200,
                   "chain": "c", "prompt": "qa", "prompt_version": "3"}
    check_row("inference_log", row)
    assert "prompt" not in inference_row("r2", "/v1/chat/completions")


def test_an_unknown_column_fails_where_the_row_is_built() -> None:
    with pytest.raises(LlmopsError, match="unknown column.*stauts"):
        inference_row("r1", "batch", stauts=200)


def test_a_table_of_another_schema_is_refused_before_anything_is_written(tmp_path) -> None:
    """Delta's schema merge would cast new rows to the table's own types without a word (a
    rating of 1 stored as the string '1'); the appender refuses instead, naming the column."""
    from datetime import datetime, timezone

    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from llmops.lakehouse import append_rows, read_table

    write_deltalake(str(tmp_path / "feedback"), pa.table({"feedback_id": ["old"],
                                                          "rating": ["up"]}))
    row = {"feedback_id": "f", "request_id": "r", "ts": datetime.now(timezone.utc), "rating": 1}
    with pytest.raises(LlmopsError, match=r"feedback table .*rating is string where llmops "
                                          r"writes int32.*nothing was written") as info:
        append_rows(tmp_path, "feedback", [row])
    assert "\n" not in str(info.value)
    assert DeltaTable(str(tmp_path / "feedback")).version() == 0
    assert list(read_table(tmp_path, "feedback")["feedback_id"]) == ["old"]
