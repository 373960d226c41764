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

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=8)
    p.add_argument("--questions", type=int, default=48)
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--json-out", default=None)
    args = p.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))

    import pandas as pd

    from llmops.chains import log_chain
    from llmops.chains.batch import ChainWorker, batch_run
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
        start = time.perf_counter()
        report = update_index(settings, progress=False, record=False, engine=engine)
        results[f"index {label}"] = time.perf_counter() - start
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
    start = time.perf_counter()
    worker = ChainWorker(settings, logged.name, str(logged.version), None, concurrency=1)
    for i in range(0, len(frame), 8):
        worker.process(frame.iloc[i:i + 8])
    results["inference local"] = time.perf_counter() - start
    print(f"batch inference, single process: {args.questions} questions in "
          f"{results['inference local']:.1f} s", flush=True)
    for actors in (1, 2):
        start = time.perf_counter()
        batch_run(f"{logged.name}@production", frame, settings, actors=actors, concurrency=1,
                  batch_size=8, progress=False, log=False)
        label = f"inference ray, {actors} actor{'s' if actors > 1 else ''}"
        results[label] = time.perf_counter() - start
        print(f"batch inference, ray with {actors} actor(s): {results[label]:.1f} s", flush=True)

    print()
    print(f"{'job':<30}{'seconds':>9}{'rows/s':>9}{'vs single process':>19}")
    for job, rows, base in (("index", chunks, "index local"),
                            ("inference", args.questions, "inference local")):
        for key, secs in results.items():
            if key.startswith(job):
                print(f"{key:<30}{secs:9.1f}{rows / secs:9.1f}{secs / results[base]:19.2f}")
    worst = max(results["index ray, 1 actor"] / results["index local"],
                results["inference ray, 1 actor"] / results["inference local"])
    print(f"target: the Ray path (1 actor) at most 1.1x the single process: "
          f"{'MET' if worst <= 1.1 else 'NOT MET'} (worst {worst:.2f}x); "
          f"{os.cpu_count()} CPUs here")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"seconds": results, "chunks": chunks,
                                                   "questions": args.questions}, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
