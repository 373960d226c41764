"""``llmops finetune run | promote`` through the real console script."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli

SMALL = """\
lora: {r: 4, lora_alpha: 8, lora_dropout: 0.0, target_modules: [q_proj, v_proj]}
training: {epochs: 1, learning_rate: 0.005, eval_fraction: 0.25}
evaluation: {max_new_tokens: 8}
"""


def test_run_prints_scores_and_version_then_promote(project: Path, sft_file: Path) -> None:
    (project / "small.yaml").write_text(SMALL)
    out = run_cli("finetune", "run", "--data", str(sft_file), "--config", "small.yaml",
                  "--alias", "staging", "--no-progress", cwd=project)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("token F1 on 3 held-out rows: base ")
    assert "-> adapter" in lines[0]
    assert "tokens/s" in lines[1]
    assert lines[2] == "registered docs-qa-lora/1 (served as docs-qa-lora-v1, alias staging)"
    assert "training: sft LoRA r=4" in out.stderr

    promoted = run_cli("finetune", "promote", "docs-qa-lora", "--alias", "production", cwd=project)
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.strip() == "docs-qa-lora@production -> docs-qa-lora/1"


def test_bad_input_is_one_line_and_status_1(project: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = run_cli("finetune", "run", "--data", str(empty), cwd=project)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "no training rows" in out.stderr
    out = run_cli("finetune", "promote", "no-such-adapter", "--alias", "production", cwd=project)
    assert out.returncode == 1 and "error: adapter 'no-such-adapter'" in out.stderr
