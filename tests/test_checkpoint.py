"""Tests of `offlinerlkit.utils.checkpoint`: atomic writes, pruning, latest selection, clear errors,
weights-only round trips and "resume equals uninterrupted"."""
from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from offlinerlkit.utils.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from offlinerlkit.utils.seeding import set_seed


def _parts() -> tuple[nn.Linear, torch.optim.Adam, torch.optim.lr_scheduler.LRScheduler]:
    model = nn.Linear(3, 1)
    optim = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=40)
    return model, optim, sched


def _train(model: nn.Linear, optim: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LRScheduler, steps: int) -> None:
    """Linear regression on data drawn from all three global generators."""
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    for _ in range(steps):
        x = torch.randn(16, 3)
        noise = torch.from_numpy(np.random.normal(scale=0.1, size=(16, 1)).astype(np.float32))
        x = x * random.uniform(0.5, 1.5)
        loss = ((model(x) - (x @ w + noise)) ** 2).mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        sched.step()


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    k = 20
    set_seed(0)
    model, optim, sched = _parts()
    set_seed(0)
    _train(model, optim, sched, 2 * k)

    set_seed(0)
    first, first_optim, first_sched = _parts()
    set_seed(0)
    _train(first, first_optim, first_sched, k)
    path = save_checkpoint(tmp_path, epoch=k, model=first, optim=first_optim, sched=first_sched)
    del first, first_optim, first_sched

    set_seed(123)  # a new process: other weights, other RNG states
    resumed, resumed_optim, resumed_sched = _parts()
    epoch = restore_checkpoint(load_checkpoint(path), model=resumed, optim=resumed_optim,
                               sched=resumed_sched)
    assert epoch == k
    _train(resumed, resumed_optim, resumed_sched, k)

    for a, b in zip(model.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    assert sched.get_last_lr() == resumed_sched.get_last_lr()
    state, resumed_state = optim.state_dict()["state"], resumed_optim.state_dict()["state"]
    for i in state:
        for name in state[i]:
            assert torch.equal(state[i][name], resumed_state[i][name])


def test_round_trip_of_stateful_objects_numpy_and_rng(tmp_path: Path) -> None:
    set_seed(5)
    model, optim, sched = _parts()
    _train(model, optim, sched, 3)
    extras = {"mu": np.arange(6, dtype=np.float32).reshape(2, 3)[:, ::-1],  # non-contiguous
              "count": np.int64(7), "last_10": [1.0, 2.5], "meta": {"name": "x", "dims": (4, 4)},
              "t": torch.ones(2), "ids": np.array([3, 1], dtype=np.uint32)}
    path = save_checkpoint(tmp_path, epoch=3, model=model, optim=optim, sched=sched, **extras)
    after_save = (np.random.rand(), random.random())
    torch_after_save = torch.rand(3)
    assert path == tmp_path / "checkpoint_000003.pt"

    raw = torch.load(path, weights_only=True)  # readable without any allowlist
    assert raw["epoch"] == 3 and "rng" in raw

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt["mu"], np.ndarray) and ckpt["mu"].dtype == np.float32
    np.testing.assert_array_equal(ckpt["mu"], extras["mu"])
    assert type(ckpt["count"]) is np.int64 and ckpt["count"] == 7
    assert ckpt["ids"].dtype == np.uint32 and ckpt["ids"].tolist() == [3, 1]
    assert ckpt["last_10"] == [1.0, 2.5] and ckpt["meta"] == {"name": "x", "dims": (4, 4)}
    assert torch.equal(ckpt["t"], torch.ones(2))

    model2, optim2, sched2 = _parts()
    set_seed(77)
    assert restore_checkpoint(ckpt, model=model2, optim=optim2, sched=sched2) == 3
    assert (np.random.rand(), random.random()) == after_save
    assert torch.equal(torch.rand(3), torch_after_save)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert optim2.state_dict()["state"][0]["step"] == optim.state_dict()["state"][0]["step"]
    assert sched2.state_dict() == sched.state_dict()


def test_rng_restore_repeats_torch_draws(tmp_path: Path) -> None:
    set_seed(3)
    path = save_checkpoint(tmp_path, epoch=0)
    expected = torch.rand(4)
    set_seed(4)
    restore_checkpoint(load_checkpoint(path))
    assert torch.equal(torch.rand(4), expected)


def test_keep_last_prunes_only_own_files(tmp_path: Path) -> None:
    others = ["notes.txt", "checkpoint_final.pt", "dynamics_000001.pt", "checkpoint_000001.pt.bak"]
    for name in others:
        (tmp_path / name).write_text("keep")
    for epoch in range(1, 6):
        save_checkpoint(tmp_path, epoch=epoch, keep_last=2, x=epoch)
    assert _files(tmp_path) == sorted(others + ["checkpoint_000004.pt", "checkpoint_000005.pt"])
    assert all((tmp_path / n).read_text() == "keep" for n in others)


def test_prefixes_are_independent(tmp_path: Path) -> None:
    for epoch in range(3):
        save_checkpoint(tmp_path, epoch=epoch, keep_last=1, prefix="dynamics")
        save_checkpoint(tmp_path, epoch=epoch, keep_last=2)
    assert _files(tmp_path) == ["checkpoint_000001.pt", "checkpoint_000002.pt",
                                "dynamics_000002.pt"]


def test_just_written_file_is_never_pruned(tmp_path: Path) -> None:
    for epoch in (10, 20, 30):
        save_checkpoint(tmp_path, epoch=epoch, keep_last=2)
    path = save_checkpoint(tmp_path, epoch=5, keep_last=2)
    assert path.exists()


def test_latest_checkpoint(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for epoch in (10, 2, 7):
        save_checkpoint(tmp_path, epoch=epoch, keep_last=10)
    (tmp_path / ".checkpoint_000099.pt.abc.tmp").write_bytes(b"partial")  # a killed write
    (tmp_path / "checkpoint_000099.pt.tmp").write_bytes(b"partial")
    (tmp_path / "checkpoint_1000000.pt").mkdir()  # a folder, not a checkpoint
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_000010.pt"
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint_000002.pt", "checkpoint_000007.pt", "checkpoint_000010.pt"]
    save_checkpoint(tmp_path, epoch=1_234_567, keep_last=10)  # more than six digits
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_1234567.pt"


def test_crash_during_write_leaves_previous_checkpoint(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Linear(2, 2)
    good = save_checkpoint(tmp_path, epoch=1, model=model)
    good_bytes = good.read_bytes()
    real_save = torch.save

    def crashing_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        f.write(b"PK\x03\x04 half a zip archive")  # type: ignore[attr-defined]
        raise RuntimeError("simulated crash in the middle of torch.save")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(tmp_path, epoch=2, model=model)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(tmp_path, epoch=1, model=model)  # same final name as the good file
    monkeypatch.setattr(torch, "save", real_save)

    assert _files(tmp_path) == ["checkpoint_000001.pt"]  # no final-name or temp leftovers
    assert good.read_bytes() == good_bytes
    assert latest_checkpoint(tmp_path) == good
    restored = nn.Linear(2, 2)
    restore_checkpoint(load_checkpoint(good), model=restored)
    assert torch.equal(restored.weight, model.weight)


def test_load_errors_name_the_path_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "checkpoint_000001.pt"
    with pytest.raises(CheckpointError, match=re.escape(str(missing))):
        load_checkpoint(missing)

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.*resume from an earlier checkpoint"):
        load_checkpoint(empty)

    good = save_checkpoint(tmp_path, epoch=3, w=torch.randn(100, 100))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt is truncated or corrupt"):
        load_checkpoint(truncated)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(garbage)

    foreign = tmp_path / "foreign.pt"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint written by save_checkpoint"):
        load_checkpoint(foreign)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"epoch": 1, "obj": _Opaque()}, unsafe)
    with pytest.raises(CheckpointError, match=re.escape(str(unsafe))):
        load_checkpoint(unsafe)
    assert issubclass(CheckpointError, RuntimeError)


class _Opaque:
    """An arbitrary class: not loadable with weights_only=True."""


def test_save_rejects_unloadable_values(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"'extra'\['obj'\]"):
        save_checkpoint(tmp_path, epoch=1, extra={"obj": _Opaque()})
    with pytest.raises(TypeError, match="'names'.*dtype <U"):
        save_checkpoint(tmp_path, epoch=1, names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path, epoch=1, rng={})
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, epoch=1, keep_last=0)
    assert _files(tmp_path) == []  # nothing written on any failure


def test_restore_errors(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    path = save_checkpoint(tmp_path, epoch=4, include_rng=False, model=model)
    ckpt = load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"\['critic'\].*\['model'\]"):
        restore_checkpoint(ckpt, restore_rng=False, model=model, critic=model)
    with pytest.raises(CheckpointError, match="restore_rng=False"):
        restore_checkpoint(ckpt, model=model)
    with pytest.raises(TypeError, match="load_state_dict"):
        restore_checkpoint(ckpt, restore_rng=False, model=object())
    assert restore_checkpoint(ckpt, restore_rng=False, model=model) == 4
