"""The main job, end to end on embedded defaults: ``llmops demo``.

Each step is a plain function call from the toolkit; the demo only wires them
(``run.py``), serves the endpoint for its middle steps (``serving.py``), plays
simulated users (``users.py``) and reports for a person (``report.py``).
"""

from __future__ import annotations

from llmops.demo.run import DEMO_QUESTIONS, STEPS, run_demo

__all__ = ["DEMO_QUESTIONS", "STEPS", "run_demo"]
