"""COCOA stage B: reverse dynamics, divergent reverse rollouts, and the anchor seeker.

    python run_example/run_anchor_seeker.py --task halfcheetah-medium-expert-v2 --reverse_policy_mode divergent --load_dynamics_path dummy --rollout_epoch 100 --rollout_length 5 --scale_coef 0.8 --noise_coef 0.1 --seed 0

Steps (spec 4.1): train the reverse dynamics `(s', a) -> s - s'` (or load them with
`--load_reverse_dynamics_path`); roll them out backwards from every dataset next-state along a
fixed random dataset-action direction (`result/reverse_imagination.pkl`, or load one with
`--load_imagination_path`); clone the actions that lead back towards the data into the anchor
seeker (`model/anchor_seeker_pretrain.pth`). The forward dynamics are not used here
(`--load_dynamics_path` is accepted for the original's command line and ignored).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

from offlinerlkit.anchor import (
    IMAGINATION_FILE,
    SEEKER_FILE,
    AnchorSeeker,
    divergent_reverse_rollouts,
    load_imagination,
    pretrain_seeker,
    save_imagination,
    save_seeker,
)
from offlinerlkit.config import CommonConfig, DynamicsOptions, check_ranges
from offlinerlkit.dynamics.io import load_dynamics
from offlinerlkit.dynamics.training import build_dynamics, train_dynamics
from offlinerlkit.presets import ANCHOR_SEEKER_ALL
from offlinerlkit.run import clear_steps, load_step, open_run, prepare_run, restart_stage, save_step
from offlinerlkit.utils.cli import opt, run_main
from offlinerlkit.utils.resume import resumed_config

#: `--load_*_path dummy` in the original's README means "no path".
NO_PATH = ("", "dummy", "none", "None")


@dataclass(frozen=True)
class AnchorSeekerConfig(CommonConfig, DynamicsOptions):
    """Train the anchor seeker (spec 4.8; the original's flag names)."""

    task: str = opt("walker2d-medium-expert-v2", "D4RL task, e.g. hopper-medium-replay-v2")
    seed: int = opt(1, "random seed (python, numpy, torch)")
    holdout_ratio: float = opt(0.1, "reverse dynamics: fraction held out (at most 1000 rows)", "-hr")
    reverse_policy_mode: Literal["divergent", "cvae"] = opt(
        "divergent", "reverse rollout policy (only divergent works; the original's cvae was broken)",
        "-rpm")
    action_mode: Literal["sample"] = opt(
        "sample", "direction of each reverse rollout: a dataset action drawn uniformly", "-acm")
    scale_coef: Optional[float] = opt(None, "direction scale (default 0.8)", "-sc")
    noise_coef: Optional[float] = opt(None, "action noise std (default 0.1)", "-nc")
    rollout_length: int = opt(5, "reverse rollout length L", "-rl")
    imagination_buffer: Literal["ring", "all"] = opt(
        "ring", "ring: the original's buffer of rollout_batch_size*rollout_length*rollout_epoch "
        "rows, keeping only the last rollouts when N*L exceeds it (faithful); all: keep every one")
    rollout_epoch: int = opt(100, "with --imagination_buffer ring: sizes the buffer", "-re")
    rollout_batch_size: int = opt(3000, "with --imagination_buffer ring: sizes the buffer", "-rbs")
    batch_size: int = opt(256, "start states per block of the original's append order")
    rollout_chunk: int = opt(65536, "start states per batched model call (speed only)")
    load_dynamics_path: Optional[str] = opt(
        None, "forward dynamics: not used by this stage (accepted for the original's commands)", "-ldp")
    load_reverse_dynamics_path: Optional[str] = opt(
        None, "trained reverse dynamics to use instead of training them", "-lrdp")
    load_imagination_path: Optional[str] = opt(
        None, "an existing reverse_imagination.pkl to train the seeker on (skips the rollouts)")
    anchor_seeker_hidden_dims: tuple[int, ...] = opt((100, 100), "seeker hidden sizes", "-ashd")
    seeker_layernorm: bool = opt(
        True, "LayerNorm in the seeker's hidden blocks (--asp_layernorm: the original's name; a "
        "bare flag here means True, the original's bare flag meant False)", "--asp_layernorm",
        "-aln", saved_as=("asp_layernorm",))
    seeker_epochs: int = opt(50, "seeker pretraining epochs (at most)", "--asp_epoch", "-aspe",
                             saved_as=("asp_epoch",))
    seeker_lr: float = opt(1e-3, "seeker learning rate", "--asp_lr", "-asplr",
                           saved_as=("asp_lr",))
    seeker_batch_size: int = opt(256, "seeker minibatch size", "--asp_batch_size", "-bbs",
                                 saved_as=("asp_batch_size",))
    seeker_training: Literal["original", "improved"] = opt(
        "original", "original: sequential batches and the original's early stop (faithful); "
        "improved: shuffled batches, a held-out split, stop on no improvement")
    resume: Optional[str] = opt(None, "run this stopped run folder again with its saved options "
                                      "(the stage restarts from its beginning)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reverse_policy_mode != "divergent":
            raise ValueError("--reverse_policy_mode cvae is not supported: the original's CVAE "
                             "reverse policy never worked (spec 12.41); use divergent")
        check_ranges(self, count=("rollout_length", "rollout_epoch", "rollout_batch_size",
                                  "batch_size", "rollout_chunk", "seeker_epochs",
                                  "seeker_batch_size"),
                     positive=("seeker_lr",), non_negative=("scale_coef", "noise_coef"),
                     sizes=("anchor_seeker_hidden_dims",))


def _path(value: Optional[str]) -> Optional[str]:
    return None if value is None or value in NO_PATH else value


def main(cfg: AnchorSeekerConfig, *, dataset: Optional[Mapping[str, np.ndarray]] = None) -> Path:
    """Run stage B; returns the run directory (seeker in `model/`, rollouts in `result/`)."""
    if cfg.resume:
        cfg = resumed_config(cfg)
    inputs = prepare_run(cfg, dataset)
    device, task, dataset, source, spec = (inputs.device, inputs.task, inputs.dataset,
                                           inputs.source, inputs.spec)
    scale = ANCHOR_SEEKER_ALL.values["scale_coef"] if cfg.scale_coef is None else cfg.scale_coef
    noise = ANCHOR_SEEKER_ALL.values["noise_coef"] if cfg.noise_coef is None else cfg.noise_coef
    layernorm = cfg.seeker_layernorm
    capacity = (cfg.rollout_batch_size * cfg.rollout_length * cfg.rollout_epoch
                if cfg.imagination_buffer == "ring" else None)
    run_dir, logger = open_run(
        cfg, algo="reverse",
        tags={"action_mode": cfg.action_mode, "scale_coef": scale, "noise_coef": noise},
        extra_record={"stage": "anchor seeker", **inputs.record(),
                      "resolved": {"scale_coef": scale, "noise_coef": noise,
                                   "seeker_layernorm": layernorm,
                                   "imagination_capacity": capacity}},
        warnings=inputs.warnings)
    with logger:
        resume = bool(cfg.resume)
        if resume and not restart_stage(run_dir, logger, final=run_dir.model / SEEKER_FILE,
                                        phases=["anchor_seeker"]):
            return run_dir.path
        # --- reverse dynamics ---
        reverse_path = _path(cfg.load_reverse_dynamics_path)
        imagination_path = _path(cfg.load_imagination_path)
        own_imagination = run_dir.result / IMAGINATION_FILE
        if imagination_path is not None:
            imagination = load_imagination(imagination_path, obs_dim=spec.obs_dim,
                                           action_dim=spec.action_dim)
            logger.info(f"reverse imagination loaded from {imagination_path}")
        elif (resume and own_imagination.is_file()
              and load_step(run_dir, "imagination") is not None):
            imagination = load_imagination(own_imagination, obs_dim=spec.obs_dim,
                                           action_dim=spec.action_dim)
            logger.info(f"the stopped run's reverse imagination reused ({own_imagination})")
        else:
            if reverse_path is not None:
                reverse = load_dynamics(reverse_path, task=task.name, obs_dim=spec.obs_dim,
                                        action_dim=spec.action_dim, direction="reverse",
                                        device=device)
                logger.info(f"reverse dynamics loaded from {reverse_path}")
            else:
                reverse = build_dynamics(cfg, spec, direction="reverse", device=device)
                fitted = load_step(run_dir, "reverse_dynamics") if resume else None
                if fitted is not None:  # the weights the rollouts used, not model/'s best ones
                    reverse.model.load_state_dict(fitted["model"])
                    logger.info("the stopped run's reverse dynamics reused")
                else:
                    train_dynamics(reverse, dataset, options=cfg, run_dir=run_dir, logger=logger,
                                   task=task.name, metadata={"dataset_source": source},
                                   progress=cfg.progress, resume=resume)
                    save_step(run_dir, "reverse_dynamics", {"model": reverse.model.state_dict()})
            # --- divergent reverse rollouts from every dataset next-state ---
            imagination = divergent_reverse_rollouts(
                reverse, torch.as_tensor(dataset["next_observations"], device=device),
                torch.as_tensor(dataset["actions"], device=device),
                rollout_length=cfg.rollout_length, scale_coef=scale, noise_coef=noise,
                max_action=spec.max_action, chunk_size=cfg.rollout_chunk,
                block_size=cfg.batch_size, capacity=capacity, progress=cfg.progress)
            path = save_imagination(own_imagination, imagination,
                                    overwrite=resume)  # a resumed run writes it again
            save_step(run_dir, "imagination")
            logger.info(f"{len(imagination['observations'])} reverse-imagined transitions "
                        f"saved to {path}")
        # --- anchor seeker: behaviour cloning on the imagination ---
        seeker = AnchorSeeker(spec.obs_dim, spec.action_dim, cfg.anchor_seeker_hidden_dims,
                              layernorm=layernorm, max_action=spec.max_action).to(device)

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            logger.record_dict(metrics)
            logger.dump(epoch, phase="anchor_seeker")

        pretrain_seeker(seeker, imagination["observations"], imagination["actions"],
                        epochs=cfg.seeker_epochs, lr=cfg.seeker_lr,
                        batch_size=cfg.seeker_batch_size,
                        mode=cfg.seeker_training, progress=cfg.progress, on_epoch=on_epoch)
        path = save_seeker(run_dir.model, seeker, metadata={
            "task": task.name, "dataset_source": source, "scale_coef": scale,
            "noise_coef": noise, "rollout_length": cfg.rollout_length,
            "seeker_training": cfg.seeker_training})
        clear_steps(run_dir)
        logger.info(f"anchor seeker saved to {path}; use it with --load_anchor_seeker_path "
                    f"{run_dir.model}")
    return run_dir.path


if __name__ == "__main__":
    run_main(main, AnchorSeekerConfig)
