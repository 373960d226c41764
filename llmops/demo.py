"""The main job, end to end on embedded defaults: ``llmops demo``.

Each step is a plain function call from the toolkit; the demo only wires them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmops.config import Settings, load_settings

__all__ = ["DEMO_QUESTIONS", "run_demo"]

DEMO_QUESTIONS = [
    "How do I promote a chain to production?",
    "What does llmops prompts sync do?",
]


def run_demo(settings: Settings | None = None, echo: Callable[[str], None] = print) -> dict[str, object]:
    """Build the model, sync prompts, build the index, log + register + invoke the chain, promote it."""
    from llmops.chains import invoke, log_chain, promote
    from llmops.indexing import update_index
    from llmops.models import ensure_tiny_model
    from llmops.prompts import get_version, list_prompts, set_alias, sync_prompts

    settings = settings or load_settings()
    echo(f"[1/6] offline model: {ensure_tiny_model(settings.models_dir, settings.root / 'docs')}")

    report = sync_prompts(settings)
    echo(f"[2/6] prompts: {len(report.registered)} registered, {len(report.unchanged)} unchanged")
    aliases = {i.name: i.aliases for i in list_prompts(settings)}
    if "production" not in aliases.get("qa", {}):
        latest = int(get_version("qa", settings).version)
        set_alias("qa", "production", latest, settings)
        echo(f"      qa@production -> qa/{latest}")

    indexed = update_index(settings, progress=False)
    echo(f"[3/6] index '{indexed.collection}': {indexed.summary()}")

    chain_file = settings.root / "chains" / "docs_qa.py"
    logged = log_chain(Path(chain_file), alias="staging", settings=settings)
    echo(f"[4/6] chain: registered {logged.name}/{logged.version} @staging ({logged.prompt_uri}, "
         f"index {indexed.index_version})")

    answers = {}
    for question in DEMO_QUESTIONS:
        answer = invoke(f"{logged.name}@staging", question, settings)
        answers[question] = answer
        echo(f"[5/6] Q: {question}\n      A: {answer['answer']!r}\n"
             f"      sources: {', '.join(answer['sources'])} (prompt {answer['prompt']})")

    version = promote(logged.name, "production", logged.version, settings=settings)
    echo(f"[6/6] promoted {logged.name}/{version} to @production")
    return {"chain": logged, "answers": answers}
