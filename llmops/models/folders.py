"""Writing a built model folder atomically: weights, tokenizer and the build record."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["write_model_folder"]


def write_model_folder(out: Path, model: Any, tokenizer: Any, marker_file: str,
                       marker: dict[str, Any], drop_config_keys: Iterable[str] = ()) -> Path:
    """Save ``model`` and ``tokenizer`` with the record ``marker_file`` into ``out``.

    The folder is written next to ``out`` and renamed into place, so a crash never
    leaves a half-written model where a finished one is expected (the record is what
    marks a folder finished). ``drop_config_keys`` are removed from ``config.json``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        drop = list(drop_config_keys)
        if drop:
            path = tmp / "config.json"
            config = json.loads(path.read_text(encoding="utf-8"))
            for key in drop:
                config.pop(key, None)
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        (tmp / marker_file).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
