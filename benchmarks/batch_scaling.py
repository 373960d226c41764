"""The batch path on Ray against the single-process path, on the same data, on this machine.

Two jobs, each run side by side in one process:

- **index build**: a full build of a corpus (``docs/`` copied ``--copies`` times, each copy a
  different document) into a fresh Chroma store, embedded in this process (``engine: local``)
  and on Ray actors (``engine: ray``) with 1 and 2 actors;
- **batch inference**: the registered RAG chain (the project's local chat model, SmolLM2,
  in process) answers ``--questions`` golden questions, by the same worker class called here
  in batches (single process) and through ``run_batch`` on Ray with 1 and 2 actors.

Each Ray time includes what a user waits for: starting a local Ray, the actors loading their
model, the job. Target: the Ray path at most 1.1x the single-process path (Ray's overhead
stays small); rows/s with 1 and 2 actors are printed (on 2 cores, 2 actors share the cores).

Usage:
  python benchmarks/batch_scaling.py [--copies 8] [--questions 48] [--json-out FILE]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _harness import REPO, parser, ratio_table, timed, write_json


def project(work: Path, name: str, copies: int, max_tokens: int) -> Path:
    root = work / name
    root.mkdir(parents=True)
    for folder in ("prompts", "chains"):
        shutil.copytree(REPO / folder, root / folder)
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(copies):
        for doc in sorted((REPO / "docs").glob("*.md")):
            text = doc.read_text(encoding="utf-8")
            (corpus / f"{doc.stem}-{i}.md").write_text(f"# Copy {i} of {doc.stem}\n\n{text}")
    shutil.copytree(REPO / "docs", root / "docs")
    (root / "llmops.yaml").write_text(
        f"project: batch-bench\nmodels_dir: {REPO / '.llmops/models'}\n"
        f"chat_model:\n  kind: local\n  model: smollm2\n  max_tokens: {max_tokens}\n"
        f"index:\n  source: corpus\n")
    return root


def main() -> int:
    p = parser(__doc__, json_out=True)
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--questions", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=24)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))

    import pandas as pd

    from llmops.chains import log_chain
    from llmops.chains.batch import batch_run
    from llmops.chains.workers import ChainWorker
    from llmops.config import load_settings
    from llmops.indexing import update_index
    from llmops.prompts import set_alias, sync_prompts

    results: dict[str, float] = {}
    # index builds: each in a fresh store, so each embeds the whole corpus
    chunks = 0
    for label, engine, actors in (("local", "local", None), ("ray, 1 actor", "ray", 1),
                                  ("ray, 2 actors", "ray", 2)):
        root = project(work, f"index-{engine}-{actors or 0}", args.copies, args.max_tokens)
        settings = load_settings(root=root)
        settings = settings.model_copy(update={"ray": settings.ray.model_copy(
            update={"actors": actors})})
        report, results[f"index {label}"] = timed(
            lambda settings=settings, engine=engine: update_index(
                settings, progress=False, record=False, engine=engine))
        chunks = report.embedded
        print(f"index build, {label}: {report.embedded} chunks in "
              f"{results[f'index {label}']:.1f} s", flush=True)

    # batch inference: one project, one registered chain
    root = project(work, "inference", 1, args.max_tokens)
    settings = load_settings(root=root)
    sync_prompts(settings)
    set_alias("qa", "production", 1, settings)
    update_index(settings, source=root / "docs", progress=False, record=False)
    logged = log_chain(root / "chains" / "docs_qa.py", alias="production", settings=settings)
    golden = [json.loads(x) for x in (REPO / "evals" / "golden.jsonl").read_text().splitlines()
              if x]
    frame = pd.DataFrame({"id": [f"q{i}" for i in range(args.questions)],
                          "question": [golden[i % len(golden)]["question"]
                                       for i in range(args.questions)]})
    def single_process() -> None:
        worker = ChainWorker(settings, logged.name, str(logged.version), None, concurrency=1)
        for i in range(0, len(frame), 8):
            worker.process(frame.iloc[i:i + 8])

    _, results["inference local"] = timed(single_process)
    print(f"batch inference, single process: {args.questions} questions in "
          f"{results['inference local']:.1f} s", flush=True)
    for actors in (1, 2):
        label = f"inference ray, {actors} actor{'s' if actors > 1 else ''}"
        _, results[label] = timed(lambda actors=actors: batch_run(
            f"{logged.name}@production", frame, settings, actors=actors, concurrency=1,
            batch_size=8, progress=False, log=False))
        print(f"batch inference, ray with {actors} actor(s): {results[label]:.1f} s", flush=True)

    print()
    for job, rows, base in (("index", chunks, "index local"),
                            ("inference", args.questions, "inference local")):
        ratio_table({key: secs for key, secs in results.items() if key.startswith(job)},
                    {"vs single process": base}, items=rows, label=job, width=30)
    worst = max(results["index ray, 1 actor"] / results["index local"],
                results["inference ray, 1 actor"] / results["inference local"])
    print(f"target: the Ray path (1 actor) at most 1.1x the single process: "
          f"{'MET' if worst <= 1.1 else 'NOT MET'} (worst {worst:.2f}x); "
          f"{os.cpu_count()} CPUs here")
    write_json(args.json_out, {"seconds": results, "chunks": chunks, "questions": args.questions})
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
