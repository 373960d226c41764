"""Per-call overhead of a chain served through its loaded pyfunc model vs the bare Runnable.

Both sides call the very same Runnable object (``unwrap_python_model().chain``),
so the difference is what the pyfunc wrapper adds: input conversion, schema
enforcement and output handling. Calls alternate between the two sides, so
machine noise hits both alike. Two chains are measured:

- ``echo``: the same chain builder with a one-variable prompt, no retrieval and
  LangChain's deterministic fake chat model, so the wrapper's overhead is not
  buried in retrieval and generation time;
- ``tiny``: the application's ``chains/docs_qa.py`` (retrieval from the docs index, then
  the offline tiny model).

Usage: python benchmarks/chain_overhead.py [--calls N]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _harness import REPO, parser, side_by_side

ECHO_CHAIN = '''
import mlflow
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from llmops.chains import ChainModel, build_qa_chain, chain_config, chain_prompt, chain_versions

CONFIG = {"prompt": "echo@production"}
config = chain_config(CONFIG)
chat = FakeListChatModel(responses=["Promote it with llmops chains promote."])
mlflow.models.set_model(ChainModel(build_qa_chain(chain_prompt(config), chat, chain_versions(config))))
'''


def measure(model, calls: int, warmup: int = 20) -> dict[str, float]:
    import pandas as pd

    chain = model.unwrap_python_model().chain
    row = {"question": "How do I promote a chain to production?"}
    frame = pd.DataFrame([row])
    times = side_by_side({"direct": lambda: chain.invoke(row),
                          "list": lambda: model.predict([row]),
                          "frame": lambda: model.predict(frame)}, calls, warmup)
    direct, listed, framed = times["direct"], times["list"], times["frame"]
    ms = 1000.0
    return {
        "direct_p50_ms": statistics.median(direct) * ms,
        "pyfunc_list_p50_ms": statistics.median(listed) * ms,
        "pyfunc_frame_p50_ms": statistics.median(framed) * ms,
        "overhead_list_p50_ms": statistics.median(b - a for a, b in zip(direct, listed, strict=True)) * ms,
        "overhead_frame_p50_ms": statistics.median(b - a for a, b in zip(direct, framed, strict=True)) * ms,
    }


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--calls", type=int, default=300, help="calls per side and chain")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    from llmops.chains import log_chain
    from llmops.config import load_settings
    from llmops.indexing import update_index
    from llmops.prompts import set_alias, sync_prompts

    work = Path(tempfile.mkdtemp(prefix="chain-overhead-"))
    try:
        for folder in ("prompts", "chains", "docs"):
            if (REPO / folder).is_dir():
                shutil.copytree(REPO / folder, work / folder)
        (work / "chains" / "echo_qa.py").write_text(ECHO_CHAIN)
        (work / "prompts" / "echo.yaml").write_text(
            "variables: [question]\ntemplate:\n  - {role: user, content: 'Q: {{question}}'}\n")
        (work / "llmops.yaml").write_text(
            f"project: bench\nmodels_dir: {REPO / '.llmops' / 'models'}\n"
            "chat_model: {kind: local, model: tiny, max_tokens: 8}\n"
        )
        settings = load_settings(root=work)
        sync_prompts(settings)
        set_alias("qa", "production", 1, settings)
        set_alias("echo", "production", 1, settings)
        update_index(settings, progress=False, record=False)
        results = {}
        for name, file in (("echo", "echo_qa.py"), ("tiny", "docs_qa.py")):
            logged = log_chain(work / "chains" / file, settings=settings)
            model = mlflow.pyfunc.load_model(logged.model_uri)
            calls = args.calls if name == "echo" else max(50, args.calls // 3)
            results[name] = measure(model, calls)
        print(f"{'chain':<6} {'direct p50':>11} {'pyfunc(list) p50':>17} {'pyfunc(df) p50':>15} "
              f"{'overhead(list)':>15} {'overhead(df)':>13} {'ratio(list)':>11}")
        for name, r in results.items():
            ratio = r["pyfunc_list_p50_ms"] / r["direct_p50_ms"]
            print(f"{name:<6} {r['direct_p50_ms']:>9.3f}ms {r['pyfunc_list_p50_ms']:>15.3f}ms "
                  f"{r['pyfunc_frame_p50_ms']:>13.3f}ms {r['overhead_list_p50_ms']:>13.3f}ms "
                  f"{r['overhead_frame_p50_ms']:>11.3f}ms {ratio:>10.3f}x")
        worst = max(results["echo"]["overhead_list_p50_ms"], results["echo"]["overhead_frame_p50_ms"])
        verdict = "meets" if worst < 1.0 else "MISSES"
        print(f"median per-call overhead (echo chain, worst input form): {worst:.3f} ms: "
              f"{verdict} the 1 ms target")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
