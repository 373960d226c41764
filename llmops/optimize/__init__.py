"""Prompt optimization from feedback: a second way to improve the application, no training.

``optimize_prompt`` searches a better version of a registered prompt on the feedback the
gateway collected (corrections as expected answers, answers rated good as good ones), with
a few-shot search (``fewshot``) or GEPA's reflective evolution (``gepa``), and registers the
best as a new version with its lineage; a chain logged with it then takes the adapter's
path: ``eval gate``, a rollout judged by feedback.
"""

from llmops.optimize.config import OptimizeConfig
from llmops.optimize.data import Example, FeedbackExamples, feedback_examples, split_examples
from llmops.optimize.fewshot import fewshot_candidates, with_demonstrations
from llmops.optimize.job import OptimizeResult, optimize_prompt, score_on
from llmops.optimize.scoring import PromptScorer

__all__ = [
    "Example",
    "FeedbackExamples",
    "OptimizeConfig",
    "OptimizeResult",
    "PromptScorer",
    "feedback_examples",
    "fewshot_candidates",
    "optimize_prompt",
    "score_on",
    "split_examples",
    "with_demonstrations",
]
