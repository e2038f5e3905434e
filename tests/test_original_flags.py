"""The original scripts' command lines run here as written (README: "flag spellings accepted").

Every flag of the original's argument tables (spec 4.8, 9.3-9.6), long and short, is a flag of
ours, except the ones the original never reads (spec 12 item 10), which are gone. CQL and IQL
accept the original's dynamics-size flags and refuse values the loaded dynamics contradict.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from policy_helpers import make_tiny_dynamics

from offlinerlkit.dynamics.io import save_dynamics
from offlinerlkit.run import load_anchor_dynamics
from offlinerlkit.utils.cli import build_parser, parse_config
from offlinerlkit.utils.tasks import parse_task

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "run_example"))
import run_anchor_seeker  # noqa: E402
import run_cql  # noqa: E402
import run_iql  # noqa: E402
import run_mobile  # noqa: E402
import run_mopo  # noqa: E402

TASK = "hopper-medium-v2"
WANDB = "--device --track --wandb_project_name --wandb_entity --wandb_tags"
COCOA = ("--actor_horizon_len -ahl --critic_horizon_len -chl --embedding_dim -ed --anchor_mode -am "
         "--closest_obs_sample_size -coss --anchor_seeker_hidden_dims -ashd --asp_layernorm -aln "
         "--load_anchor_seeker_path -lasp --tr_hidden_dims -thd")
DYNAMICS_SIZES = "--dynamics_hidden_dims -dhd --n_ensemble -ne --n_elites --load_dynamics_path -ldp"
MODEL_BASED = (
    "--dynamics_lr -dlr --dynamics_weight_decay --rollout_augmentation -ra --rollout_freq "
    "--rollout_batch_size --rollout_length -rl --model_retain_epochs --real_ratio -rr "
    "--penalty_coef -pc --hidden_dims -hd --gamma --tau --alpha --auto_alpha --target_entropy "
    "--alpha_lr --actor_lr -aclr --critic_lr -clr --layernorm -ln")
RUN = "--exp_name --algo_name --task --seed --epoch --step_per_epoch --eval_episodes --batch_size"

#: script -> (the original's flags, the original's flags it never reads: spec 12 item 10).
ORIGINAL_FLAGS = {
    run_cql: (f"{RUN} {WANDB} {COCOA} {DYNAMICS_SIZES} --hidden_dims -hd --actor_lr -aclr "
              "--critic_lr -clr --gamma --tau --alpha --target_entropy --auto_alpha --alpha_lr "
              "--layernorm -ln --actor_transd -at --critic_transd -ct --cql_weight --temperature "
              "--max_q_backup --deterministic_backup --with_lagrange --lagrange_threshold "
              "--cql_alpha_lr --num_repeat_actions", ""),
    run_iql: (f"{RUN} {WANDB} {COCOA} {DYNAMICS_SIZES} --hidden_dims -hd --actor_lr -aclr "
              "--critic_q_lr --critic_v_lr --dropout_rate -dr --lr_decay --gamma --tau "
              "--expectile --expt --temperature -tp --norm_reward -nr --layernorm -ln -bs", ""),
    run_mopo: (f"{RUN} {WANDB} {COCOA} {DYNAMICS_SIZES} {MODEL_BASED} -rf -rbs "
               "--uncertainty_mode -um", "--rollout_epoch -re"),
    run_mobile: (f"{RUN} {WANDB} {COCOA} {DYNAMICS_SIZES} {MODEL_BASED} --num_samples "
                 "--num_q_ensemble -nqe --max_q_backup -mqb --norm_reward -nr --lr_scheduler",
                 "--rollout_epoch -re"),
    run_anchor_seeker: (
        f"--exp_name --algo_name --task --seed {WANDB} --reverse_policy_mode -rpm --action_mode "
        "-acm --scale_coef -sc --noise_coef -nc --anchor_seeker_hidden_dims -ashd "
        "--asp_layernorm -aln --dynamics_lr -dlr --dynamics_hidden_dims -dhd "
        "--dynamics_weight_decay --n_ensemble -ne --n_elites --rollout_epoch -re "
        "--rollout_batch_size -rbs --rollout_length -rl --load_dynamics_path -ldp "
        "--load_reverse_dynamics_path -lrdp --holdout_ratio -hr --logvar_loss_coef -llc "
        "--max_epochs_since_update -mesu --batch_size --asp_epoch -aspe --asp_lr -asplr "
        "--asp_batch_size -bbs",
        "--load_policy_path -lpp --hidden_dims -hd --policy_train --split_validation -sv "
        "--split_k_means -skm --split_n_clusters -snc --max_holdout_size -mhs --policy_lr -plr "
        "--model_retain_epochs --real_ratio -rr --rollout_augmentation -ra --step_loss_coef -slc "
        "--epoch --step_per_epoch --eval_episodes"),
}


def _config_class(script: object) -> type:
    (cls,) = [v for k, v in vars(script).items()
              if k.endswith("Config") and isinstance(v, type) and v.__module__ == script.__name__]
    return cls


@pytest.mark.parametrize("script", list(ORIGINAL_FLAGS), ids=lambda s: s.__name__)
def test_every_flag_the_original_reads_is_accepted(script: object) -> None:
    used, unused = (text.split() for text in ORIGINAL_FLAGS[script])
    parser = build_parser(_config_class(script))
    ours = {flag for action in parser._actions for flag in action.option_strings}
    assert not set(used) - ours, "README says the original's flags are accepted"
    assert not set(unused) & ours, "flags the original never reads are listed here by mistake"


def _tiny_dynamics(folder: Path) -> Path:
    spec = parse_task(TASK)
    save_dynamics(folder, make_tiny_dynamics(spec.obs_dim, spec.action_dim, hidden=(16, 16)),
                  metadata={"task": TASK})
    return folder


@pytest.mark.parametrize("script", [run_cql, run_iql], ids=["cql", "iql"])
def test_model_free_scripts_check_the_original_dynamics_sizes(script: object, tmp_path: Path) -> None:
    path = str(_tiny_dynamics(tmp_path / "model"))
    cls = _config_class(script)
    base = ["--task", TASK, "-ldp", path, "--device", "cpu"]
    agreeing = parse_config(cls, [*base, "-dhd", "16", "16", "-ne", "3", "--n_elites", "2"])
    assert (agreeing.dynamics_hidden_dims, agreeing.num_ensemble, agreeing.num_elites) == ((16, 16), 3, 2)
    dynamics = load_anchor_dynamics(agreeing, parse_task(TASK))
    assert dynamics is not None and dynamics.model.num_members == 3
    assert load_anchor_dynamics(parse_config(cls, base), parse_task(TASK)) is not None  # no flags
    for flags, message in ((["-ne", "7"], "--num_ensemble 7 (the file has 3)"),
                           (["--dynamics_hidden_dims", "200", "200"],
                            "--dynamics_hidden_dims 200 200 (the file has 16 16)"),
                           (["--n_elites", "5"], "--num_elites 5 (the file has 2)")):
        with pytest.raises(ValueError, match=re.escape(f"contradict {message}")):
            load_anchor_dynamics(parse_config(cls, [*base, *flags]), parse_task(TASK))
    # without dynamics to check the flags change nothing (the original only builds a model)
    assert load_anchor_dynamics(parse_config(cls, ["-ne", "7"]), parse_task(TASK)) is None
