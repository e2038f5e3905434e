"""Configuration shared by the run scripts, defined once.

A script composes its config from these frozen dataclasses by inheritance (`CommonConfig` for
every script, `RunConfig` for policy training, `DynamicsOptions` where dynamics are trained) and
adds its algorithm's fields. Field names say what they are; `opt` records the other spellings
a flag accepts (the original scripts' short forms and names, e.g. `--tr_hidden_dims` for
`--fg_hidden_dims`) and, with `saved_as`, the names older runs saved a field under (their
`hyper_param.json` still resumes and is still matched by the pipeline).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Optional

from offlinerlkit.utils.fields import opt

if TYPE_CHECKING:  # types.py imports torch; this module must stay light
    from offlinerlkit.types import DataclassInstance


def _chain_post_init(cls: type, obj: object) -> None:
    """Run the next `__post_init__` in the MRO, so every mixed-in config validates its fields."""
    nxt = getattr(super(cls, obj), "__post_init__", None)
    if nxt is not None:
        nxt()


_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "count": (lambda v: v >= 1, "at least 1"),
    "positive": (lambda v: v > 0, "greater than 0"),
    "non_negative": (lambda v: v >= 0, "at least 0"),
    "fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "proportion": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "open_unit": (lambda v: 0 < v < 1, "in (0, 1)"),
    "sizes": (lambda v: len(v) > 0 and all(x >= 1 for x in v), "one or more sizes, each at least 1"),
}


def check_ranges(config: DataclassInstance, **rules: Sequence[str]) -> None:
    """Refuse values that make a run meaningless: `rule=(field names)`, rules as in `_RULES`
    (`count`: int >= 1, `positive`, `non_negative`, `fraction`: (0, 1], `proportion`: [0, 1],
    `open_unit`: (0, 1), `sizes`: a non-empty tuple of ints >= 1). None passes (a default).

    Raises:
        ValueError: naming the flag, the rule and the value given.
    """
    for rule, names in rules.items():
        test, text = _RULES[rule]
        for name in names:
            value = getattr(config, name)
            if value is not None and not test(value):
                raise ValueError(f"--{name} must be {text}, got {_flag_value(value) or '(empty)'}")


def config_warnings(config: DataclassInstance) -> list[str]:
    """Values the original accepts for a reason but that change what a run means; the scripts
    print each loudly and record them in `hyper_param.json` under `warnings`."""
    warnings = []
    if getattr(config, "use_cocoa", False) and getattr(config, "anchor_mode", "") == "rollout":
        for name in ("actor_horizon_len", "critic_horizon_len"):
            if getattr(config, name) == 0:
                who = "actor" if name.startswith("actor") else "critics"
                warnings.append(f"--{name} 0: the {who}' anchor is the state itself and the delta "
                                "is 0, so COCOA's anchor + delta encoding carries no information "
                                "(the paper's horizon-0 ablation)")
    if getattr(config, "accept_dataset_anomalies", False):
        warnings.append("--accept_dataset_anomalies: the dataset is used even if it holds absurd "
                        "rewards, actions outside the action space or non-binary terminals")
    return warnings


@dataclass(frozen=True)
class CommonConfig:
    """Options every script has: task, data, seed, device, logging."""

    task: str = opt("hopper-medium-v2", "D4RL task, e.g. hopper-medium-replay-v2")
    seed: int = opt(0, "random seed (python, numpy, torch, simulator)")
    dataset_path: Optional[str] = opt(
        None, "explicit D4RL-format HDF5 file; default: D4RL_DATASET_DIR or ~/.d4rl/datasets"
    )
    algo_name: str = opt("", "name of the algorithm folder under log/<task>/ (default: the algorithm)")
    exp_name: str = opt("", "free-form experiment name, recorded in hyper_param.json")
    device: str = opt("auto", "torch device: auto (cuda when available), cpu, cuda, cuda:1, ...")
    threads: Optional[int] = opt(None, "torch CPU threads (default: torch's choice)")
    log_dir: str = opt("log", "root folder of run directories")
    progress: bool = opt(True, "show progress bars")
    track: bool = opt(False, "also log to Weights & Biases (needs `pip install wandb`)")
    wandb_project_name: str = opt("cocoa-rl", "W&B project")
    wandb_entity: Optional[str] = opt(None, "W&B entity (team or user)")
    wandb_tags: tuple[str, ...] = opt((), "W&B tags")
    accept_dataset_anomalies: bool = opt(
        False, "train on a dataset with absurd rewards (|r| > 1e6), actions outside the action "
        "space or non-binary terminals instead of refusing it (recorded in hyper_param.json)")

    def __post_init__(self) -> None:
        _chain_post_init(CommonConfig, self)
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"--seed must be in [0, 2**32), got {self.seed}")
        check_ranges(self, count=("threads",))


@dataclass(frozen=True)
class RunConfig(CommonConfig):
    """Options shared by all policy-training scripts."""

    epoch: int = opt(1000, "number of epochs")
    step_per_epoch: int = opt(1000, "gradient steps per epoch")
    batch_size: int = opt(256, "minibatch size", "-bs")
    eval_episodes: int = opt(10, "evaluation episodes after every epoch")
    resume: Optional[str] = opt(None, "continue the run in this run directory from its last checkpoint")
    checkpoint_freq: int = opt(50, "save a resumable checkpoint every this many epochs (and at the end)")
    keep_checkpoints: int = opt(2, "number of checkpoints kept per run")
    tf32: bool = opt(False, "TF32 tensor-core matmuls on CUDA (faster, changes numerics)")
    bf16: bool = opt(False, "run every training step under bf16 autocast (faster on GPUs and "
                            "bf16-capable CPUs, changes numerics)")
    compile: bool = opt(False, "torch.compile the policy's networks (first steps slow while compiling)")
    cuda_graphs: bool = opt(False, "torch.compile mode reduce-overhead: CUDA graphs for the "
                                   "networks' forward/backward (CUDA only)")

    def __post_init__(self) -> None:
        _chain_post_init(RunConfig, self)
        check_ranges(self, count=("epoch", "step_per_epoch", "batch_size", "checkpoint_freq",
                                  "keep_checkpoints"))
        if self.eval_episodes < 1:
            raise ValueError(f"--eval_episodes must be at least 1, got {self.eval_episodes}: "
                             "without evaluation episodes a run has no score, and its row of "
                             "the result table would be empty")


@dataclass(frozen=True)
class DynamicsOptions:
    """How a dynamics ensemble is built and trained (spec 3; the original's flag names)."""

    dynamics_lr: float = opt(1e-3, "dynamics learning rate", "-dlr")
    dynamics_hidden_dims: tuple[int, ...] = opt((200, 200, 200, 200), "ensemble hidden sizes", "-dhd")
    dynamics_weight_decay: tuple[float, ...] = opt(
        (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4),
        "weight decay per layer (one per hidden layer, then the output layer)")
    num_ensemble: int = opt(7, "ensemble members", "-ne", "--n_ensemble")
    num_elites: int = opt(5, "elite members", "--n_elites")
    holdout_ratio: float = opt(0.2, "fraction of the data held out (at most 1000 rows)", "-hr")
    logvar_loss_coef: float = opt(0.01, "weight of the log-variance bound loss", "-llc")
    max_epochs_since_update: int = opt(5, "stop after this many epochs without improvement", "-mesu")
    dynamics_max_epochs: Optional[int] = opt(None, "cap on dynamics training epochs (none: patience only)")
    dynamics_restore: Literal["every_epoch", "end"] = opt(
        "every_epoch", "keep-best: COCOA's per-epoch reset (faithful) or upstream's restore at the end")

    def __post_init__(self) -> None:
        _chain_post_init(DynamicsOptions, self)
        if len(self.dynamics_weight_decay) != len(self.dynamics_hidden_dims) + 1:
            raise ValueError(
                f"--dynamics_weight_decay needs {len(self.dynamics_hidden_dims) + 1} values (one per "
                f"hidden layer, then the output layer), got {len(self.dynamics_weight_decay)}")
        if not 1 <= self.num_elites <= self.num_ensemble:
            raise ValueError(f"need 1 <= --num_elites <= --num_ensemble, got {self.num_elites} and "
                             f"{self.num_ensemble}")
        check_ranges(self, open_unit=("holdout_ratio",), positive=("dynamics_lr",),
                     sizes=("dynamics_hidden_dims",), count=("max_epochs_since_update",
                                                            "dynamics_max_epochs"),
                     non_negative=("logvar_loss_coef",))
        if any(decay < 0 for decay in self.dynamics_weight_decay):
            raise ValueError("--dynamics_weight_decay values must be at least 0, got "
                             f"{_flag_value(self.dynamics_weight_decay)}")


@dataclass(frozen=True)
class LoadedDynamicsSizes:
    """The original's dynamics-size flags in the scripts that only load dynamics (CQL, IQL).

    The original overwrites them from the loaded run's `hyper_param.json` (spec 9.2); here the
    sizes come from the dynamics file itself, so a value given on the command line is only
    checked against it (`check_dynamics_sizes`), and a contradiction is refused.
    """

    dynamics_hidden_dims: Optional[tuple[int, ...]] = opt(
        None, "hidden sizes of the --load_dynamics_path model (checked; the file decides)", "-dhd")
    num_ensemble: Optional[int] = opt(
        None, "members of the --load_dynamics_path model (checked)", "-ne", "--n_ensemble")
    num_elites: Optional[int] = opt(None, "elites of the --load_dynamics_path model (checked)",
                                    "--n_elites")

    def check_dynamics_sizes(self, *, hidden_dims: Sequence[int], num_members: int,
                             num_elites: int, path: str) -> None:
        """Raise `ValueError` when a given size flag disagrees with the loaded dynamics."""
        pairs = (("dynamics_hidden_dims", self.dynamics_hidden_dims, tuple(hidden_dims)),
                 ("num_ensemble", self.num_ensemble, num_members),
                 ("num_elites", self.num_elites, num_elites))
        wrong = [f"--{name} {_flag_value(given)} (the file has {_flag_value(found)})"
                 for name, given, found in pairs if given is not None and given != found]
        if wrong:
            raise ValueError(f"the dynamics at {path} contradict {'; '.join(wrong)}: drop the flag "
                             "(the sizes are read from the file) or load dynamics of that size")


def _flag_value(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


@dataclass(frozen=True)
class SACOptions:
    """Actor-critic options shared by CQL, MOPO and MOBILE (the original's flag names)."""

    hidden_dims: Optional[tuple[int, ...]] = opt(
        None, "actor/critic backbone sizes (default: the algorithm's)", "-hd")
    actor_lr: float = opt(1e-4, "actor learning rate", "-aclr")
    critic_lr: float = opt(3e-4, "critic learning rate", "-clr")
    gamma: float = opt(0.99, "discount")
    tau: float = opt(0.005, "target network Polyak rate")
    alpha: float = opt(0.2, "entropy weight when --auto_alpha is off")
    auto_alpha: Optional[bool] = opt(None, "learn the entropy weight (default: on, unless the task preset says off)")
    target_entropy: Optional[float] = opt(None, "entropy target of auto-alpha (default: -action_dim)")
    alpha_lr: float = opt(1e-4, "learning rate of the entropy weight")
    layernorm: bool = opt(False, "LayerNorm in the actor/critic backbones", "-ln")

    def __post_init__(self) -> None:
        _chain_post_init(SACOptions, self)
        check_ranges(self, sizes=("hidden_dims",), positive=("actor_lr", "critic_lr", "alpha_lr"),
                     fraction=("gamma", "tau"), non_negative=("alpha",))

    def sac_kwargs(self, auto_alpha: bool) -> dict[str, object]:
        """The `SACPolicy` keyword arguments these options give."""
        return {"actor_lr": self.actor_lr, "critic_lr": self.critic_lr, "gamma": self.gamma,
                "tau": self.tau, "alpha": self.alpha, "auto_alpha": auto_alpha,
                "target_entropy": self.target_entropy, "alpha_lr": self.alpha_lr}


@dataclass(frozen=True)
class ModelRolloutOptions:
    """Model-rollout options of MOPO and MOBILE (spec 8.2)."""

    rollout_augmentation: bool = opt(True, "mix model rollouts into the batches", "-ra")
    rollout_freq: int = opt(1000, "gradient steps between model rollouts", "-rf")
    rollout_batch_size: int = opt(50000, "start states per model rollout", "-rbs")
    rollout_length: Optional[int] = opt(None, "model rollout horizon (default: task preset, else 1)", "-rl")
    model_retain_epochs: int = opt(5, "rollouts kept in the model buffer")
    real_ratio: float = opt(0.05, "fraction of dataset rows in each batch", "-rr")
    penalty_coef: Optional[float] = opt(None, "uncertainty penalty (default: task preset, else the algorithm's)", "-pc")

    def __post_init__(self) -> None:
        _chain_post_init(ModelRolloutOptions, self)
        if self.rollout_length is not None and self.rollout_length < 1:
            raise ValueError(
                f"--rollout_length must be at least 1, got {self.rollout_length} (the original then "
                "trained on batches of only batch_size * real_ratio dataset rows, and MOBILE "
                "crashed); to train on dataset rows only, use --rollout_augmentation False "
                "--real_ratio 1")
        check_ranges(self, count=("rollout_freq", "rollout_batch_size", "model_retain_epochs"),
                     proportion=("real_ratio",), non_negative=("penalty_coef",))

    def trainer_kwargs(self, dynamics: object, rollout_length: int) -> dict[str, object]:
        """The `MBPolicyTrainer` keyword arguments these options give (`rollout_length` resolved)."""
        return {"dynamics": dynamics, "rollout_freq": self.rollout_freq,
                "rollout_batch_size": self.rollout_batch_size, "rollout_length": rollout_length,
                "model_retain_epochs": self.model_retain_epochs, "real_ratio": self.real_ratio,
                "rollout_augmentation": self.rollout_augmentation}


class CocoaSizes(NamedTuple):
    """An algorithm's default COCOA network sizes (spec 6.4), given to `build_anchor_setup`.

    Attributes:
        fg_hidden_dims: f/g hidden widths; the last is the bilinear feature width.
        embedding_dim: bilinear block size D.
        backbone: backbone hidden widths of the anchor + delta networks.
    """

    fg_hidden_dims: tuple[int, ...]
    embedding_dim: int
    backbone: tuple[int, ...]


@dataclass(frozen=True)
class CocoaOptions:
    """COCOA's anchor options shared by the four policy scripts (spec 5, 6, 9.2).

    COCOA is on when `--load_anchor_seeker_path` is given (rollout anchors) or `--anchor_mode
    closest_delta`; `--anchor_delta_actor` / `--anchor_delta_critics` (the original's
    `--actor_transd` / `--critic_transd`) then choose, per network type, the anchor + delta
    network or the plain one.
    """

    load_dynamics_path: Optional[str] = opt(
        None, "trained forward dynamics (a run folder, its model/ or a checkpoint folder); MOPO/MOBILE "
        "without it train the dynamics, save them to model/ and stop", "-ldp")
    load_anchor_seeker_path: Optional[str] = opt(
        None, "pretrained anchor seeker (run_anchor_seeker.py run folder, its model/ or the .pth "
        "file): turns COCOA on", "-lasp")
    anchor_mode: Literal["rollout", "closest_delta", "top_10_d"] = opt(
        "rollout", "anchors from seeker rollouts (the paper), or the closest-delta ablation "
        "(top_10_d is its original name)", "-am")
    actor_horizon_len: int = opt(1, "anchor rollout horizon H for the actor", "-ahl")
    critic_horizon_len: int = opt(1, "anchor rollout horizon H for the critics (and IQL's V)", "-chl")
    anchor_delta_actor: Optional[bool] = opt(
        None, "anchor + delta actor (default: on with COCOA)", "--actor_transd", "-at",
        saved_as=("actor_transd",))
    anchor_delta_critics: Optional[bool] = opt(
        None, "anchor + delta critics (default: on with COCOA)", "--critic_transd", "-ct",
        saved_as=("critic_transd",))
    fg_hidden_dims: Optional[tuple[int, ...]] = opt(
        None, "f/g hidden sizes; the last is the bilinear feature width (default per algorithm)",
        "--tr_hidden_dims", "-thd", saved_as=("tr_hidden_dims",))
    embedding_dim: Optional[int] = opt(None, "bilinear block size D (default per algorithm)", "-ed")
    fg_layernorm: bool = opt(
        True, "LayerNorm inside the f/g networks (--asp_layernorm: the original's name; a bare "
        "flag here means True, the original's bare flag meant False, see docs/FIDELITY.md)",
        "--asp_layernorm", "-aln", saved_as=("asp_layernorm",))
    closest_obs_sample_size: int = opt(500, "closest_delta mode: candidates per query chunk", "-coss")
    anchor_seeker_hidden_dims: Optional[tuple[int, ...]] = opt(
        None, "expected seeker hidden sizes (checked against the loaded file)", "-ashd")
    anchor_cache: bool = opt(
        True, "compute the anchors of the dataset's states once before training and reuse them "
        "(same values; rollout anchors with equal horizons, model-free updates)")

    def __post_init__(self) -> None:
        _chain_post_init(CocoaOptions, self)
        for name in ("actor_horizon_len", "critic_horizon_len"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        check_ranges(self, count=("closest_obs_sample_size", "embedding_dim"),
                     sizes=("fg_hidden_dims", "anchor_seeker_hidden_dims"))
        if self.anchor_mode != "rollout" and self.load_anchor_seeker_path:
            raise ValueError("--load_anchor_seeker_path is for --anchor_mode rollout; the "
                             "closest_delta ablation uses no seeker")

    @property
    def use_cocoa(self) -> bool:
        """Whether anchors are computed (a seeker was given, or the closest-delta ablation)."""
        return bool(self.load_anchor_seeker_path) or self.anchor_mode in ("closest_delta", "top_10_d")
