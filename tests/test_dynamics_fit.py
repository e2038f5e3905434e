"""fit_ensemble on a small linear-dynamics dataset: learning, keep-best rule, restore modes."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from device_helpers import assert_same
from policy_helpers import make_tiny_dynamics

from offlinerlkit.dynamics.ensemble import GaussianEnsemble
from offlinerlkit.dynamics.ensemble_dynamics import EnsembleDynamics
from offlinerlkit.dynamics.fit import (
    FIT_STATE_FORMAT,
    HOLDOUT_LOSS_KEY,
    TRAIN_LOSS_KEY,
    FitResult,
    fit_ensemble,
)

S, A = 3, 2
_F = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.2], [0.1, 0.0, 0.9]])
_G = torch.tensor([[0.5, -0.3, 0.2], [0.1, 0.4, -0.5]])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny networks gain nothing from threads, and busy machines make spinning threads crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _linear_data(n: int, seed: int, device="cpu") -> dict[str, torch.Tensor]:
    """`s' = s F + a G` (invertible in s), `r = sum(s') - |a|^2` (drawn on the CPU, then moved)."""
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, S, generator=gen)
    action = torch.rand(n, A, generator=gen) * 2 - 1
    next_obs = obs @ _F + action @ _G
    reward = next_obs.sum(-1) - action.square().sum(-1)
    data = {"obs": obs, "action": action, "next_obs": next_obs, "reward": reward}
    return {k: v.to(device) for k, v in data.items()}


def _dynamics(direction: str, hidden=(32, 32), members: int = 4, elites: int = 2, seed: int = 0,
              device="cpu"):
    torch.manual_seed(seed)
    decays = [2.5e-5 * (i + 1) for i in range(len(hidden) + 1)]
    return make_tiny_dynamics(S, A, direction=direction, hidden=hidden, num_members=members,
                              num_elites=elites, weight_decays=decays, device=device)


def _fit(dynamics: EnsembleDynamics, data, seed: int = 0, **kwargs) -> FitResult:
    """A CPU generator on every device: the same splits and batches for the model wherever it is."""
    x, y = dynamics.training_pairs(data["obs"], data["action"], data["next_obs"], data["reward"])
    kwargs = {"progress": False, **kwargs}
    return fit_ensemble(dynamics, x, y, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.fixture(scope="module")
def trained(device):
    data = _linear_data(2000, seed=0, device=device)
    forward = _dynamics("forward", hidden=(64, 64), device=device)
    reverse = _dynamics("reverse", hidden=(64, 64), device=device)
    fwd_result = _fit(forward, data, max_epochs=150)
    rev_result = _fit(reverse, data, max_epochs=150)
    return {"forward": forward, "reverse": reverse, "fwd_result": fwd_result, "rev_result": rev_result}


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean())


def test_holdout_loss_falls_and_forward_model_predicts_heldout_transitions(trained):
    history = trained["fwd_result"].history
    assert set(history[0]) == {TRAIN_LOSS_KEY, HOLDOUT_LOSS_KEY}
    assert history[-1][HOLDOUT_LOSS_KEY] < 0.05 * history[0][HOLDOUT_LOSS_KEY]
    assert history[-1][TRAIN_LOSS_KEY] < history[0][TRAIN_LOSS_KEY]
    test = _linear_data(500, seed=1, device=trained["forward"].device)  # unseen transitions
    forward = trained["forward"]
    pred = forward.predict_mean(test["obs"], test["action"])
    assert _mse(pred, test["next_obs"]) < 0.01 * float(test["next_obs"].var())
    _, reward, _, _ = forward.step(test["obs"], test["action"], sampling="elite_mean")
    assert _mse(reward[:, 0], test["reward"]) < 0.02 * float(test["reward"].var())


def test_reverse_model_inverts_forward_model(trained):
    """Spec §14 item 2: ForwardDet(ReverseDet(s', a), a) ~ s'."""
    forward, reverse = trained["forward"], trained["reverse"]
    test = _linear_data(500, seed=2, device=forward.device)
    prev_obs = reverse.predict_mean(test["next_obs"], test["action"])
    assert _mse(prev_obs, test["obs"]) < 0.01 * float(test["obs"].var())
    round_trip = forward.predict_mean(prev_obs, test["action"])
    error = _mse(round_trip, test["next_obs"])
    forward_error = _mse(forward.predict_mean(test["obs"], test["action"]), test["next_obs"])
    assert error < 0.01 * float(test["next_obs"].var())
    assert error < 10 * forward_error + 1e-3  # comparable to the forward model's own error


def test_elites_are_the_members_with_lowest_best_loss(trained):
    for key, name in (("fwd_result", "forward"), ("rev_result", "reverse")):
        result = trained[key]
        order = np.argsort(result.best_losses, kind="stable")[:2].tolist()
        assert result.elites == order
        assert result.saved_state["elite_idx"].tolist() == order
        assert trained[name].model.elite_idx.tolist() == order
        assert result.holdout_loss == pytest.approx(float(np.sort(result.best_losses)[:2].mean()))


def _replay_keep_best(member_losses: list[list[float]], patience: int) -> tuple[list[float], int]:
    """The spec §3.4 rule, replayed on recorded per-member holdout losses."""
    best, since = [1e10] * len(member_losses[0]), 0
    for epoch, losses in enumerate(member_losses, start=1):
        improved = [i for i, new in enumerate(losses) if (best[i] - new) / best[i] > 0.01]
        for i in improved:
            best[i] = losses[i]
        since = 0 if improved else since + 1
        if since >= patience:
            return best, epoch
    return best, len(member_losses)


def _validate(model: GaussianEnsemble, state: dict, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    clone = GaussianEnsemble(model.in_dim, model.out_dim, model.hidden_dims,
                             num_members=model.num_members, num_elites=model.num_elites)
    clone.load_state_dict(state)
    with torch.no_grad():
        return ((clone(x)[0] - y).square()).mean(dim=(1, 2)).tolist()


@pytest.fixture(scope="module")
def faithful_run():
    """A small run that stops by patience, recording every checkpoint request."""
    data = _linear_data(600, seed=3)
    dynamics = _dynamics("forward", hidden=(16,), members=3, elites=2, seed=1)
    calls: list[tuple[str, int, dict]] = []
    epochs: list[int] = []

    def checkpoint(kind):
        calls.append((kind, epochs[-1], {k: v.clone() for k, v in dynamics.model.state_dict().items()}))

    result = _fit(dynamics, data, seed=1, max_epochs=300, max_epochs_since_update=3,
                  on_epoch=lambda epoch, metrics: epochs.append(epoch), checkpoint_fn=checkpoint)
    x, y = dynamics.training_pairs(data["obs"], data["action"], data["next_obs"], data["reward"])
    hold = result.holdout_indices
    return {"dynamics": dynamics, "result": result, "calls": calls, "epochs": epochs,
            "hold_x": x[hold], "hold_y": y[hold], "x": x}


def test_keep_best_follows_the_one_percent_rule_and_patience(faithful_run):
    result = faithful_run["result"]
    assert result.epochs < 300, "the run should stop by patience"
    assert faithful_run["epochs"] == list(range(1, result.epochs + 1))
    best, stop_epoch = _replay_keep_best(result.member_holdout_losses, patience=3)
    assert stop_epoch == result.epochs
    assert result.best_losses == pytest.approx(best, rel=0, abs=0)


def test_every_epoch_mode_checkpoints_like_cocoa(faithful_run):
    result, calls = faithful_run["result"], faithful_run["calls"]
    last = [c for c in calls if c[0] == "last"]
    best = [c for c in calls if c[0] == "best"]
    # "last" after every epoch except the stopping one; "best" when the logged holdout loss
    # (measured before the reset) is the lowest so far
    assert [c[1] for c in last] == list(range(1, result.epochs))
    holdout = [h[HOLDOUT_LOSS_KEY] for h in result.history[:-1]]
    expected_best = [e for e in range(1, result.epochs) if holdout[e - 1] < min(holdout[: e - 1], default=np.inf)]
    assert [c[1] for c in best] == expected_best
    # saved_state is what the last checkpoint saw: per-member best weights with the elites
    for key, value in last[-1][2].items():
        torch.testing.assert_close(result.saved_state[key], value)
    losses = _validate(faithful_run["dynamics"].model, result.saved_state,
                       faithful_run["hold_x"], faithful_run["hold_y"])
    assert losses == pytest.approx(result.best_losses, rel=1e-5)


def test_every_epoch_mode_leaves_the_final_epoch_unreset_in_memory(faithful_run):
    result, model = faithful_run["result"], faithful_run["dynamics"].model
    in_memory = model.state_dict()
    assert not torch.equal(in_memory["output_layer.weight"], result.saved_state["output_layer.weight"])
    assert in_memory["elite_idx"].tolist() == result.elites


def test_end_mode_restores_each_members_best_weights():
    data = _linear_data(600, seed=3)
    states = []
    for use_checkpoints in (False, True):
        dynamics = _dynamics("forward", hidden=(16,), members=3, elites=2, seed=1)
        calls = []
        result = _fit(dynamics, data, seed=1, max_epochs=300, max_epochs_since_update=3, restore="end",
                      checkpoint_fn=calls.append if use_checkpoints else None)
        states.append(dynamics.model.state_dict())
    assert calls[-1] == "last" and calls.count("last") == result.epochs  # one per kept epoch + final
    for key, value in states[1].items():  # temporary swaps for checkpoints do not alter training
        torch.testing.assert_close(states[0][key], value)
        torch.testing.assert_close(result.saved_state[key], value)
    x, y = dynamics.training_pairs(data["obs"], data["action"], data["next_obs"], data["reward"])
    hold = result.holdout_indices
    losses = _validate(dynamics.model, dynamics.model.state_dict(), x[hold], y[hold])
    assert losses == pytest.approx(result.best_losses, rel=1e-5)
    assert dynamics.model.elite_idx.tolist() == result.elites


def test_holdout_cap_split_and_scaler_from_training_rows_only():
    data = _linear_data(1000, seed=4)
    dynamics = _dynamics("forward", hidden=(8,), members=3, elites=2)
    x, y = dynamics.training_pairs(data["obs"], data["action"], data["next_obs"], data["reward"])
    x[:5] += 1000.0  # outliers: they shift the mean only if they are in the training split
    result = fit_ensemble(dynamics, x.numpy(), y.numpy(), holdout_ratio=0.5, max_holdout=100, max_epochs=1,
                          progress=False, generator=torch.Generator().manual_seed(0))
    hold = result.holdout_indices
    assert hold.shape == (100,) and len(set(hold.tolist())) == 100
    train = torch.ones(1000, dtype=torch.bool)
    train[hold] = False
    torch.testing.assert_close(dynamics.model.in_mean, x[train].mean(0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dynamics.model.in_std, x[train].std(0, unbiased=False), rtol=1e-5, atol=1e-5)


def test_max_epochs_and_no_checkpoint_before_stop():
    data = _linear_data(300, seed=5)
    dynamics = _dynamics("forward", hidden=(8,), members=3, elites=2)
    calls = []
    result = _fit(dynamics, data, max_epochs=1, checkpoint_fn=calls.append)
    assert result.epochs == 1 and calls == []  # the stop check comes first (spec §3.4)
    assert result.saved_state["elite_idx"].tolist() == result.elites


def test_members_get_their_own_bootstrap_rows():
    data = _linear_data(300, seed=6)
    dynamics = _dynamics("forward", hidden=(8,), members=3, elites=2)
    with torch.no_grad():  # identical members: only their data can tell them apart
        for p in dynamics.model.member_parameters().values():
            p.copy_(p[:1].expand_as(p))
    _fit(dynamics, data, max_epochs=2, batch_size=64)  # several Adam steps (the first is +-lr)
    weight = dynamics.model.layers[0].weight
    assert not torch.allclose(weight[0], weight[1]) and not torch.allclose(weight[1], weight[2])


def test_same_generator_same_result(device):
    data = _linear_data(300, seed=7, device=device)
    states = []
    for _ in range(2):
        dynamics = _dynamics("reverse", hidden=(8,), members=3, elites=2, seed=3, device=device)
        _fit(dynamics, data, seed=9, max_epochs=3)
        states.append(dynamics.model.state_dict())
    for key, value in states[0].items():  # CUDA: atomics in index backward may reorder sums
        assert_same(device, value, states[1][key], key)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("restore", ["every_epoch", "end"])
def test_a_stopped_fit_resumes_to_the_uninterrupted_numbers(restore):
    """Stopped after epoch 2 and resumed from its saved state (written and read back through a
    file, as a run does), the fit ends with the uninterrupted fit's weights, losses and elites."""
    data = _linear_data(400, seed=5)
    fit = dict(seed=4, max_epochs=6, max_epochs_since_update=50, batch_size=64, restore=restore)
    full = _dynamics("forward", hidden=(16,), members=3, elites=2, seed=2)
    expected = _fit(full, data, **fit)

    saved = io.BytesIO()

    def stop_after_two(state):
        if state["epoch"] == 2:
            torch.save(state, saved)
            raise _Stop

    stopped = _dynamics("forward", hidden=(16,), members=3, elites=2, seed=2)
    with pytest.raises(_Stop):
        _fit(stopped, data, save_state=stop_after_two, **fit)
    saved.seek(0)
    state = torch.load(saved, weights_only=True)
    assert state["format"] == FIT_STATE_FORMAT and len(state["history"]) == 2

    resumed = _dynamics("forward", hidden=(16,), members=3, elites=2, seed=2)
    result = _fit(resumed, data, resume_state=state, **fit)
    assert result.epochs == expected.epochs == 6
    assert result.history == expected.history and result.elites == expected.elites
    assert result.member_holdout_losses == expected.member_holdout_losses
    for key, value in expected.saved_state.items():
        assert torch.equal(result.saved_state[key], value), key
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key

    other = _linear_data(400, seed=6)  # other rows: the holdout check refuses the state
    with pytest.raises(ValueError, match="holdout rows differ"):
        _fit(_dynamics("forward", hidden=(16,), members=3, elites=2, seed=2), other, seed=5,
             resume_state=state, max_epochs=3)


def test_fit_validates_arguments():
    dynamics = _dynamics("forward", hidden=(8,), members=3, elites=2)
    x, y = torch.zeros(10, S + A), torch.zeros(10, S + 1)
    with pytest.raises(ValueError, match="targets"):
        fit_ensemble(dynamics, x, torch.zeros(10, S), progress=False)
    with pytest.raises(ValueError, match="holdout"):
        fit_ensemble(dynamics, x, y, holdout_ratio=0.01, progress=False)
    with pytest.raises(ValueError, match="restore"):
        fit_ensemble(dynamics, x, y, restore="never", progress=False)  # type: ignore[arg-type]
