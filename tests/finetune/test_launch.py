"""Multi-GPU launches: the commands built, checked by accelerate's and torchrun's own parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmops.finetune import FinetuneConfig, inside_launcher, launch_command
from llmops.finetune.launch import needs_launch

ARGS = ["finetune", "run", "--data", "feedback", "--env", "dev"]


def config(**distributed) -> FinetuneConfig:
    return FinetuneConfig.model_validate({"distributed": distributed})


def accelerate_args(cmd: list[str]):
    from accelerate.commands.launch import launch_command_parser

    assert Path(cmd[0]).name == "accelerate" and cmd[1] == "launch"
    return launch_command_parser().parse_args(cmd[2:])


def test_ddp_through_accelerate() -> None:
    cmd = launch_command(config(strategy="ddp", num_processes=4), ARGS)
    args = accelerate_args(cmd)
    assert args.multi_gpu and not args.use_fsdp and args.num_processes == 4
    assert args.mixed_precision == "bf16" and args.module
    assert args.training_script == "llmops.cli.main" and args.training_script_args == ARGS


def test_fsdp_through_accelerate() -> None:
    cmd = launch_command(config(strategy="fsdp", num_processes=8, main_process_port=29600,
                                fsdp={"transformer_layer_cls_to_wrap": "LlamaDecoderLayer"}), ARGS)
    args = accelerate_args(cmd)
    assert args.use_fsdp and not args.multi_gpu and args.num_processes == 8
    assert args.fsdp_version == "2" and args.fsdp_reshard_after_forward == "true"
    assert args.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_transformer_layer_cls_to_wrap == "LlamaDecoderLayer"
    assert args.fsdp_state_dict_type == "FULL_STATE_DICT" and args.main_process_port == 29600
    assert args.training_script_args == ARGS

    v1 = accelerate_args(launch_command(config(
        strategy="fsdp", num_processes=2, fsdp={"version": 1, "sharding_strategy": "SHARD_GRAD_OP",
                                                "offload_params": True}), ARGS))
    assert v1.fsdp_version == "1" and v1.fsdp_sharding_strategy == "SHARD_GRAD_OP"
    assert v1.fsdp_offload_params == "true" and v1.fsdp_use_orig_params == "true"


def test_torchrun() -> None:
    from torch.distributed.run import get_args_parser

    cmd = launch_command(config(strategy="ddp", num_processes=2, launcher="torchrun"), ARGS)
    assert Path(cmd[0]).name == "torchrun"
    args = get_args_parser().parse_args(cmd[1:])
    assert args.nproc_per_node == "2" and args.standalone and args.module
    assert args.training_script == "llmops.cli.main" and args.training_script_args == ARGS


def test_inside_a_launcher_nothing_relaunches(monkeypatch) -> None:
    two = config(strategy="ddp", num_processes=2)
    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert not inside_launcher() and needs_launch(two) and not needs_launch(config())
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert inside_launcher() and not needs_launch(two)


def test_cli_relaunches_itself_through_the_launcher(settings, monkeypatch) -> None:
    from llmops.cli import finetune as finetune_cli
    from llmops.cli.main import cli

    for var in ("LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    (settings.root / "ddp.yaml").write_text("distributed: {strategy: ddp, num_processes: 2}\n")
    launched: list[list[str]] = []
    monkeypatch.setattr(finetune_cli.subprocess, "call", lambda cmd, **kw: launched.append(cmd) or 0)
    result = CliRunner().invoke(cli, ["--env", "dev", "finetune", "run", "--config", "ddp.yaml",
                                      "--method", "sft", "--no-progress"])
    assert result.exit_code == 0, result.output
    (cmd,) = launched
    assert cmd[cmd.index("-m") + 1:] == [
        "llmops.cli.main", "finetune", "run", "--method", "sft", "--config",
        str(settings.root / "ddp.yaml"), "--env", "dev", "--no-progress"]
    assert "--multi_gpu" in cmd


@pytest.mark.parametrize("bad", [{"num_processes": 2}, {"strategy": "mpi"}])
def test_bad_distributed_settings(bad) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        config(**bad)
