"""Multi-GPU launches: the ``accelerate launch`` / ``torchrun`` command a config asks for.

``llmops finetune run`` with ``distributed.num_processes > 1`` re-executes itself
through this command unless it already runs under a launcher; every process
then trains, and the main one tracks, evaluates and registers.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from llmops.finetune.config import FinetuneConfig

__all__ = ["inside_launcher", "launch_command", "needs_launch"]

_ENTRY = "llmops.cli.main"


def inside_launcher() -> bool:
    """True in a process that accelerate or torchrun started (they set these variables)."""
    return "LOCAL_RANK" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def needs_launch(config: FinetuneConfig) -> bool:
    return config.distributed.num_processes > 1 and not inside_launcher()


def _tool(name: str) -> str:
    """The console script next to this interpreter (the project's venv), else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else (shutil.which(name) or name)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def launch_command(config: FinetuneConfig, script_args: list[str]) -> list[str]:
    """The command running ``python -m llmops.cli.main *script_args`` on every process.

    accelerate: ``accelerate launch --multi_gpu`` (DDP) or ``--use_fsdp`` with the
    ``fsdp:`` options; torchrun: ``torchrun --standalone --nproc_per_node N``, with
    FSDP then set up by the Trainer from the same config.
    """
    dist = config.distributed
    n = str(dist.num_processes)
    if dist.launcher == "torchrun":
        cmd = [_tool("torchrun"), "--nproc_per_node", n]
        cmd += ([f"--master_port={dist.main_process_port}"] if dist.main_process_port
                else ["--standalone"])
        return [*cmd, "-m", _ENTRY, *script_args]

    bf16 = config.training.bf16 is not False  # multi-GPU means GPUs: bf16 unless turned off
    cmd = [_tool("accelerate"), "launch", "--num_processes", n, "--num_machines", "1",
           "--mixed_precision", "bf16" if bf16 else "no"]
    if dist.main_process_port:
        cmd += ["--main_process_port", str(dist.main_process_port)]
    if dist.strategy == "fsdp":
        f = dist.fsdp
        cmd += ["--use_fsdp", "--fsdp_version", str(f.version),
                "--fsdp_auto_wrap_policy", f.auto_wrap_policy,
                "--fsdp_state_dict_type", f.state_dict_type,
                "--fsdp_offload_params", _bool(f.offload_params),
                "--fsdp_activation_checkpointing", _bool(f.activation_checkpointing),
                "--fsdp_cpu_ram_efficient_loading", _bool(f.cpu_ram_efficient_loading)]
        if f.version == 1:
            cmd += ["--fsdp_sharding_strategy", f.sharding_strategy,
                    "--fsdp_use_orig_params", "true", "--fsdp_sync_module_states", "true"]
        else:
            cmd += ["--fsdp_reshard_after_forward", _bool(f.sharding_strategy != "SHARD_GRAD_OP")]
        if f.transformer_layer_cls_to_wrap:
            cmd += ["--fsdp_transformer_layer_cls_to_wrap", f.transformer_layer_cls_to_wrap]
    else:
        cmd += ["--multi_gpu"]
    return [*cmd, "-m", _ENTRY, *script_args]
