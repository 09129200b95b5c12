"""Data parallelism shared by QAT and evaluation (snnconvert.distributed) under two gloo processes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch

from snnconvert.distributed import DistContext
from snnconvert.errors import SnnConvertError
from snnconvert.pipeline import quantize
from snnconvert.quantize import QuantizeConfig

QAT = {"qat_epochs": 3, "qat_batches_per_epoch": 4, "qat_lr": 1e-3, "batch_size": 16, "device": "cpu",
       "calib_limit": 64}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    q = quantize("lenet5", data="digits", config=QuantizeConfig(**QAT), eval_limit=0)
    torch.save({"state": q.model.state_dict(), "history": q.qat_history}, Path(out) / f"rank{rank}.pt")
    ctx = DistContext.from_env()
    ctx.init(torch.device("cpu"))
    try:  # rows 0..6 computed by their owners (rank r: r, r+2, ...), reassembled in order on every rank
        mine = torch.tensor([[float(i), 10.0 * i] for i in ctx.shard(7)])
        gathered = ctx.gather_rows(mine, 7, torch.device("cpu"))
        torch.save(gathered, Path(out) / f"gathered{rank}.pt")
    finally:
        dist.barrier()
        ctx.close()


@pytest.mark.slow
def test_qat_under_two_processes_stays_in_sync(tmp_path: Path) -> None:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key, value in a["state"].items():  # DDP keeps the replicas identical
        torch.testing.assert_close(b["state"][key], value, atol=0.0, rtol=0.0, msg=key)
    assert a["history"] == b["history"] and len(a["history"]) == 3  # the loss is the all-reduced mean
    single = quantize("lenet5", data="digits", config=QuantizeConfig(**QAT), eval_limit=0)
    moved = [k for k, v in single.model.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, a["state"][k])]
    assert moved  # 2 ranks average 2 batches per step: a different (but synchronized) trajectory
    expected = torch.tensor([[float(i), 10.0 * i] for i in range(7)])
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"gathered{rank}.pt", weights_only=True), expected)


def test_shards_cover_every_index_once() -> None:
    ranks = [DistContext(rank=r, world_size=3) for r in range(3)]
    taken = sorted(i for ctx in ranks for i in ctx.shard(10))
    assert taken == list(range(10))
    assert list(ranks[1].shard(10)) == [1, 4, 7]
    assert DistContext().gather_rows(torch.ones(2, 3), 2, torch.device("cpu")).shape == (2, 3)


def test_quantize_device_is_checked_up_front() -> None:
    with pytest.raises(SnnConvertError):
        QuantizeConfig(device="tpu").validate()
    if not torch.cuda.is_available():
        with pytest.raises(SnnConvertError, match="cuda"):
            QuantizeConfig(device="cuda").validate()


def test_to_snn_on_cpu_device_equals_default() -> None:
    from snnconvert.pipeline import to_snn

    q = quantize("lenet5", data="digits", config=QuantizeConfig(calib_limit=64), eval_limit=0)
    a = to_snn(q, "rate", T=8)
    b = to_snn(q, "rate", T=8, device="cpu")
    x = torch.rand(q.info.input_spec.example_shape(4))
    assert torch.equal(a(x), b(x))


def _eval_worker(rank: int, world: int, port: int, out: str) -> None:
    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.pipeline import to_snn

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    q = quantize("lenet5", data="digits", config=QuantizeConfig(calib_limit=64), eval_limit=0)
    report = evaluate(q, to_snn(q, "rate", T=8), EvaluateConfig(limit=37, device="cpu", sweep={"T": ["4"]}))
    (Path(out) / f"eval{rank}.json").write_text(json.dumps(_comparable(report), default=str))


def _comparable(report) -> dict:
    """The report without timings (each rank times its own share)."""
    data = report.as_dict()
    data.pop("timing", None)
    for row in data.get("sweep") or []:
        row.pop("seconds", None)
    return data


@pytest.mark.slow
def test_evaluate_under_two_processes_equals_one(tmp_path: Path) -> None:
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from snnconvert.evaluate import EvaluateConfig, evaluate
    from snnconvert.pipeline import to_snn

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    mp.spawn(_eval_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    q = quantize("lenet5", data="digits", config=QuantizeConfig(calib_limit=64), eval_limit=0)
    single = json.loads(json.dumps(_comparable(evaluate(
        q, to_snn(q, "rate", T=8), EvaluateConfig(limit=37, device="cpu", sweep={"T": ["4"]}))), default=str))
    for rank in (0, 1):  # 37 images: rank 0 runs 19, rank 1 runs 18
        sharded = json.loads((tmp_path / f"eval{rank}.json").read_text())
        assert sharded["accuracy"] == single["accuracy"]
        _assert_close_tree(sharded, single)


def _assert_close_tree(a, b, path: str = "report") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_close_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-9), path
    else:
        assert a == b, path


def _session_worker(rank: int, world: int, port: int, out: str) -> None:
    import os

    import torch.distributed as dist

    from snnconvert.distributed import DistContext, process_group

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    seen = []
    with process_group("cpu") as session:
        group = dist.group.WORLD
        for _ in range(2):  # two stages, each with its own context, as quantize and finetune have
            stage = DistContext.from_env()
            stage.init(torch.device("cpu"))
            seen.append(stage.owns_group)
            stage.close()
            seen.append(dist.is_initialized() and dist.group.WORLD is group)
        assert session.owns_group
    seen.append(dist.is_initialized())
    torch.save(seen, f"{out}/rank{rank}.pt")


def test_one_process_group_for_every_stage(tmp_path) -> None:
    import socket

    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_session_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        # each stage found the group running (owns nothing) and left it open; the session closed it
        assert torch.load(tmp_path / f"rank{rank}.pt") == [False, True, False, True, False]


def test_outside_torchrun_the_session_does_nothing(monkeypatch) -> None:
    import torch.distributed as dist

    from snnconvert.distributed import process_group

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group("cpu") as session:
        assert not session.enabled and not dist.is_initialized()
