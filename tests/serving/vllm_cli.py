"""Parse an engine command line with vLLM's own argument parser, as ``vllm serve`` would."""

from __future__ import annotations

import importlib
import importlib.util
from argparse import Namespace
from functools import cache
from typing import Any


@cache
def _parser() -> tuple[Any, Any]:
    """vLLM's module with ``make_arg_parser`` (it moved in 0.3x) and the parser it makes."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    for name in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        if importlib.util.find_spec(name) is not None:
            module = importlib.import_module(name)
            return module, module.make_arg_parser(FlexibleArgumentParser())
    raise AssertionError("this vLLM has no make_arg_parser where llmops looks for it")


def vllm_parse(cmd: list[str]) -> Namespace:
    """The parsed arguments of ``[python, -m, module, *args]``, checked as vLLM checks them."""
    assert cmd[1] == "-m" and importlib.util.find_spec(cmd[2]) is not None, cmd[:3]
    module, parser = _parser()
    args = parser.parse_args(cmd[3:])
    module.validate_parsed_serve_args(args)
    return args
