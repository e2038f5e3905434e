"""COCOA's anchors: reverse imagination, the anchor seeker, and anchor functions (spec §4, §5).

Stage B builds the anchor seeker: `divergent_reverse_rollouts` imagines states that lead back to
the data (`save_imagination` / `load_imagination`), `pretrain_seeker` clones them into an
`AnchorSeeker`, and `save_seeker` / `load_seeker` handle `anchor_seeker_pretrain.pth` (ours and
the original's). Stage C turns a frozen seeker and forward dynamics into an anchor function
(`rollout_anchor_fn`), or uses the `closest_delta_anchor_fn` ablation.
"""
from offlinerlkit.anchor.anchor_fn import (
    AnchorFn,
    ClosestDeltaAnchorFn,
    RolloutAnchorFn,
    closest_delta_anchor_fn,
    rollout_anchor_fn,
)
from offlinerlkit.anchor.pretrain import (
    HOLDOUT_LOSS_KEY,
    TRAIN_LOSS_KEY,
    PretrainMode,
    original_stop_epoch,
    pretrain_seeker,
    update_stall_count,
)
from offlinerlkit.anchor.reverse_rollout import (
    IMAGINATION_FILE,
    ImaginationFileError,
    divergent_reverse_rollouts,
    imagination_layout,
    load_imagination,
    save_imagination,
)
from offlinerlkit.anchor.seeker import (
    SEEKER_FILE,
    AnchorSeeker,
    SeekerFileError,
    load_seeker,
    resolve_seeker_file,
    save_seeker,
)

__all__ = [
    "HOLDOUT_LOSS_KEY",
    "IMAGINATION_FILE",
    "SEEKER_FILE",
    "TRAIN_LOSS_KEY",
    "AnchorFn",
    "AnchorSeeker",
    "ClosestDeltaAnchorFn",
    "ImaginationFileError",
    "PretrainMode",
    "RolloutAnchorFn",
    "SeekerFileError",
    "closest_delta_anchor_fn",
    "divergent_reverse_rollouts",
    "imagination_layout",
    "load_imagination",
    "load_seeker",
    "original_stop_epoch",
    "pretrain_seeker",
    "resolve_seeker_file",
    "rollout_anchor_fn",
    "save_imagination",
    "save_seeker",
    "update_stall_count",
]
