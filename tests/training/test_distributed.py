"""CPU SyncBatchNorm and the torchrun environment (training/distributed.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from training.distributed import CPUSyncBatchNorm, DistEnv, convert_sync_bn
from training.errors import UsageError

# Each of 2 processes normalizes half of one batch with CPUSyncBatchNorm; rank 0
# compares outputs, input gradients, parameter gradients (summed over ranks)
# and running statistics with a plain BatchNorm2d on the whole batch.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from torch import nn
    from training.distributed import CPUSyncBatchNorm

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 4, 4, generator=gen) * 3 + 1
    probe = torch.randn(8, 3, 4, 4, generator=gen)
    reference = nn.BatchNorm2d(3, momentum=0.2)
    with torch.no_grad():
        reference.weight.copy_(torch.tensor([0.5, 1.5, 2.0]))
        reference.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    sync = CPUSyncBatchNorm(nn.BatchNorm2d(3, momentum=0.2), dist.new_group(backend="gloo"))
    sync.load_state_dict(reference.state_dict())

    part = slice(4 * rank, 4 * rank + 4)
    x_local = x[part].clone().requires_grad_(True)
    y_local = sync(x_local)
    (y_local * probe[part]).sum().backward()
    outs = [torch.zeros_like(y_local) for _ in range(2)]
    grads = [torch.zeros_like(x_local) for _ in range(2)]
    dist.all_gather(outs, y_local.detach())
    dist.all_gather(grads, x_local.grad)
    param_grad = torch.cat([sync.weight.grad, sync.bias.grad])
    dist.all_reduce(param_grad)
    if rank == 0:
        x_full = x.clone().requires_grad_(True)
        y_full = reference(x_full)
        (y_full * probe).sum().backward()
        report = {
            "out": (torch.cat(outs) - y_full).abs().max().item(),
            "grad_x": (torch.cat(grads) - x_full.grad).abs().max().item(),
            "grad_params": (
                param_grad - torch.cat([reference.weight.grad, reference.bias.grad])
            ).abs().max().item(),
            "running_mean": (sync.running_mean - reference.running_mean).abs().max().item(),
            "running_var": (sync.running_var - reference.running_var).abs().max().item(),
            "tracked": int(sync.num_batches_tracked),
        }
        with open(sys.argv[1], "w") as fh:
            json.dump(report, fh)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_cpu_sync_bn_over_two_processes_equals_bn_over_the_whole_batch(tmp_path: Path) -> None:
    script = tmp_path / "sync_bn_check.py"
    script.write_text(SCRIPT)
    report_path = tmp_path / "report.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, str(script), str(report_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["tracked"] == 1
    for key in ("out", "grad_x", "grad_params", "running_mean", "running_var"):
        assert report[key] < 1e-5, (key, report)


def test_cpu_sync_bn_without_a_process_group_is_plain_bn() -> None:
    torch.manual_seed(0)
    reference = nn.BatchNorm1d(5)
    sync = CPUSyncBatchNorm(nn.BatchNorm1d(5))
    sync.load_state_dict(reference.state_dict())
    x = torch.randn(16, 5)
    torch.testing.assert_close(sync(x), reference(x))
    torch.testing.assert_close(sync.running_var, reference.running_var)
    assert set(sync.state_dict()) == set(reference.state_dict())


def test_convert_shares_parameters_and_keeps_state_dict_keys() -> None:
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU())
    keys = set(model.state_dict())
    weight = model[1].weight
    if not torch.distributed.is_initialized():
        # Converting needs a process group on CPU; emulate one process with a file store.
        store = torch.distributed.HashStore()
        torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
        try:
            convert_sync_bn(model, torch.device("cpu"))
        finally:
            torch.distributed.destroy_process_group()
    assert isinstance(model[1], CPUSyncBatchNorm)
    assert model[1].weight is weight
    assert set(model.state_dict()) == keys


def test_dist_env_from_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert DistEnv.from_environ() == DistEnv(0, 1, 0)
    assert DistEnv.from_environ().is_main and not DistEnv.from_environ().distributed
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    env = DistEnv.from_environ()
    assert env.distributed and not env.is_main
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UsageError, match="torchrun"):
        DistEnv.from_environ()
