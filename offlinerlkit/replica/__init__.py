"""Replica datasets: D4RL's protocol run locally in gymnasium's `-v4` simulators.

* `behaviour`: `BehaviourPolicy`, the saved actors that sample the data;
* `sampling`: sampling a level from a behaviour policy and writing it with provenance;
* `make`: `make_replica`, online SAC (`policy_trainer.online`) to all five levels of a robot.
"""
from offlinerlkit.replica.behaviour import BEHAVIOUR_FORMAT, BehaviourPolicy
from offlinerlkit.replica.make import (
    ReplicaResult,
    SACTrainOptions,
    build_online_sac,
    choose_medium_snapshot,
    make_replica,
)
from offlinerlkit.replica.sampling import LevelResult, replica_seeds, sample_from_policy

__all__ = ["BEHAVIOUR_FORMAT", "BehaviourPolicy", "LevelResult", "ReplicaResult",
           "SACTrainOptions", "build_online_sac", "choose_medium_snapshot", "make_replica", "replica_seeds",
           "sample_from_policy"]
