"""StandardScaler: numpy statistics as the truth, cached tensors, `.npy` files, `.pt` fallback."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from offlinerlkit.utils.scaler import StandardScaler


def _data() -> np.ndarray:
    rng = np.random.default_rng(0)
    data = rng.normal(2.0, 3.0, size=(200, 4)).astype(np.float32)
    data[:, 2] = 5.0  # a constant column: std 0 -> 1
    return data


def test_fit_uses_population_std_and_replaces_tiny_std():
    data = _data()
    scaler = StandardScaler().fit(data)
    assert scaler.mu.shape == scaler.std.shape == (1, 4)
    assert scaler.mu.dtype == scaler.std.dtype == np.float32
    np.testing.assert_allclose(scaler.mu[0], data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(scaler.std[0, [0, 1, 3]], data.std(0, ddof=0)[[0, 1, 3]], rtol=1e-6)
    assert scaler.std[0, 2] == 1.0
    out = scaler.transform(data)
    np.testing.assert_allclose(out[:, 2], 0.0)
    np.testing.assert_allclose(out[:, [0, 1, 3]].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaler.inverse_transform(out), data, rtol=1e-5, atol=1e-5)


def test_tensor_transform_matches_numpy_and_leaves_numpy_truth(tmp_path):
    data = _data()
    scaler = StandardScaler().fit(data)
    mu_before = scaler.mu.copy()
    out = scaler.transform_tensor(torch.from_numpy(data))
    np.testing.assert_allclose(out.numpy(), scaler.transform(data), rtol=1e-6, atol=1e-6)
    assert isinstance(scaler.mu, np.ndarray) and np.array_equal(scaler.mu, mu_before)
    assert scaler.tensors()[0] is scaler.tensors()[0]  # cached per device/dtype
    scaler.save(tmp_path)  # still .npy after a tensor transform (spec §12 item 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mu.npy", "std.npy"]


def test_save_load_roundtrip_shapes(tmp_path):
    scaler = StandardScaler().fit(_data())
    scaler.save(tmp_path / "model")
    assert np.load(tmp_path / "model" / "mu.npy").shape == (1, 4)
    loaded = StandardScaler.load(tmp_path / "model")
    assert np.array_equal(loaded.mu, scaler.mu) and np.array_equal(loaded.std, scaler.std)


def test_load_falls_back_to_original_pt_files(tmp_path):
    mu, std = np.arange(5, dtype=np.float32)[None], np.full((1, 5), 2.0, np.float32)
    torch.save(torch.from_numpy(mu), tmp_path / "mu.pt")
    torch.save(torch.from_numpy(std), tmp_path / "std.pt")
    loaded = StandardScaler.load(tmp_path)
    assert np.array_equal(loaded.mu, mu) and np.array_equal(loaded.std, std)


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="mu.npy"):
        StandardScaler.load(tmp_path)
    (tmp_path / "mu.npy").write_bytes(b"not a numpy file")
    (tmp_path / "std.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match="cannot read scaler file"):
        StandardScaler.load(tmp_path)
    np.save(tmp_path / "mu.npy", np.zeros((1, 3), np.float32))
    np.save(tmp_path / "std.npy", np.ones((1, 4), np.float32))
    with pytest.raises(ValueError, match="differ in size"):
        StandardScaler.load(tmp_path)


def test_unfitted_scaler_refuses_to_transform():
    with pytest.raises(RuntimeError, match="not fitted"):
        StandardScaler().transform(np.zeros((2, 3)))
