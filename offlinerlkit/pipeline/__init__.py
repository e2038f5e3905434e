"""Experiment pipeline: stage runner with artifact reuse, and results read back from run folders.

* `runner`: `run_pipeline(PipelinePlan)` runs forward dynamics, the anchor seeker and a policy
  in order, reusing finished artifacts of the same configuration and skipping or resuming the
  policy run; `record/pipeline.json` in the policy run says what it used.
* `artifacts`: how an artifact is found by its configuration (`find_artifact`,
  `find_policy_run`) and the per-configuration file locks.
* `results`: `find_policy_runs(roots)` reads policy runs (curves, final last-10 score, data
  source, seed).
* `table`: the paper's table format next to the published numbers (Markdown and CSV).
* `plots`: learning curves to PNG (matplotlib, imported only when drawing).
* `grid`: a results grid's cells, each with its own gradient-step budget, and the compute
  estimate of the work left from measured rates.
* `report`: the results page of a grid (scores, budgets, wall times, the paper's numbers, the
  computed COCOA-vs-alone analysis).

Nothing here imports `run_example`, parses command lines or imports Ray; the scripts
`run_example/run_pipeline.py`, `sweep.py`, `make_table.py` and `plotter.py` do.
"""
from offlinerlkit.pipeline.artifacts import (
    ANCHOR_SEEKER,
    FORWARD_DYNAMICS,
    POLICY,
    ArtifactKind,
    PolicyRunState,
    completed_epochs,
    find_artifact,
    find_policy_run,
    match_fields,
)
from offlinerlkit.pipeline.plots import (
    aggregate_curves,
    draw_learning_curves,
    plot_learning_curves,
    smooth_curve,
)
from offlinerlkit.pipeline.results import (
    PolicyRun,
    data_kind,
    find_policy_runs,
    load_policy_run,
    one_run_per_seed,
    read_progress,
)
from offlinerlkit.pipeline.runner import (
    PIPELINE_FILE,
    PipelinePlan,
    PipelineResult,
    PlannedWork,
    StageOutcome,
    StageSpec,
    artifact_seed_for,
    dataset_description,
    needs_dynamics,
    needs_seeker,
    planned_work,
    run_pipeline,
)
from offlinerlkit.pipeline.table import (
    Cell,
    ResultTable,
    build_table,
    format_markdown,
    table_rows,
    write_csv,
)

__all__ = [
    "ANCHOR_SEEKER",
    "FORWARD_DYNAMICS",
    "PIPELINE_FILE",
    "POLICY",
    "ArtifactKind",
    "Cell",
    "PipelinePlan",
    "PipelineResult",
    "PlannedWork",
    "PolicyRun",
    "PolicyRunState",
    "ResultTable",
    "StageOutcome",
    "StageSpec",
    "aggregate_curves",
    "draw_learning_curves",
    "artifact_seed_for",
    "build_table",
    "completed_epochs",
    "data_kind",
    "dataset_description",
    "find_artifact",
    "find_policy_run",
    "find_policy_runs",
    "format_markdown",
    "load_policy_run",
    "match_fields",
    "needs_dynamics",
    "needs_seeker",
    "one_run_per_seed",
    "planned_work",
    "plot_learning_curves",
    "read_progress",
    "run_pipeline",
    "smooth_curve",
    "table_rows",
    "write_csv",
]
