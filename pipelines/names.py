"""Every name the pipeline stores in MLflow: run and version tags, params, metric keys and
the values a tag takes. A module that writes or reads one imports it from here; no tag name
is spelled anywhere else (tests/test_layout.py checks it). The trainer's epoch metrics and
the objectives' own names are the library's (postag/training/trainer.py,
postag/training/objective.py).

MLflow's own names are spelled out rather than imported: a trial's worker reads these for
its result keys, and importing any part of mlflow costs it a second at start.
tests/pipelines/test_names.py checks them against MLflow's own.
"""

# The MLflow experiment's name where neither the experiment file (sweep.experiment) nor
# MLflow's own $MLFLOW_EXPERIMENT_NAME names another.
EXPERIMENT_NAME = "postag"
EXPERIMENT_NAME_ENV = "MLFLOW_EXPERIMENT_NAME"

# MLflow's run statuses, and its run-name tag.
FINISHED = "FINISHED"
FAILED = "FAILED"
KILLED = "KILLED"
RUNNING = "RUNNING"
MLFLOW_RUN_NAME = "mlflow.runName"

# The MLflow experiment's kind: the UI then shows its runs pages, not GenAI traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"

# What a run is, in the tag ROLE_TAG.
ROLE_TAG = "role"
SWEEP_ROLE = "sweep"
TRIAL_ROLE = "trial"
BASELINE_ROLE = "deep-baseline"
# A search configuration trained again with another seed (the sweep's confirmation stage).
CONFIRMATION_ROLE = "confirmation"
EVALUATION_ROLE = "evaluation"
# The winning configuration's seeds as one model (pipelines/sweep/end/seed_ensemble.py).
ENSEMBLE_ROLE = "ensemble"

# Which code a run came from, beside MLflow's commit tag: whether the tree held changes.
GIT_DIRTY_TAG = "git_dirty"

# The sweep a run (parent, trial, ensemble) or a version belongs to, by its name.
SWEEP_TAG = "sweep"
# Params of a sweep's parent run: each sweep setting under this prefix (`sweep.search`).
SWEEP_SETTING_PREFIX = "sweep."

# Tags of a sweep's parent run: why it was abandoned (--fresh, a lost Tune state), and at its
# end the winner's run, the version registered and what happened to `best`.
ABANDONED_TAG = "abandoned"
BEST_RUN_TAG = "best_run_id"
REGISTERED_VERSION_TAG = "registered_version"
BEST_ALIAS_TAG = "best_alias"
# The parent run's artifact that holds the sweep's answer: its trial table and findings.
TRIALS_MD = "trials.md"

# Tags of a trial run: its Tune trial, where each epoch ran (also the keys of its result),
# its model, and what befell it on the way.
TRIAL_TAG = "ray_trial_id"
NODE_TAG = "ray_node_id"
DEVICE_TAG = "device"  # where the trial trained, as its worker found it
RESUMED_TAG = "resumed_from_epoch"
PID_TAG = "ray_pid"  # lets an operator find a trial's process
MODEL_URI_TAG = "model_uri"
# Written with a run's params: a run without it does not hold its trial's config yet.
CONFIG_TAG = "postag.config_logged"
# Why a trial trained afresh after a restart: its checkpoint could not be read.
DAMAGED_CHECKPOINT_TAG = "restarted_after_damaged_checkpoint"
RETRIED_TAG = "retried_after_error"
ERROR_TAG = "error"
# The end of an error trace kept in a tag (MLflow caps tag values); error.txt keeps it all.
ERROR_TAG_CHARS = 5000
# On a trial's record in a sweep that took it from an earlier one
# (pipelines/sweep/stages/held.py): the run that trained it, and that run's sweep.
REUSED_TAG = "reused_from_run"
REUSED_SWEEP_TAG = "reused_from_sweep"
# On a Pareto front member's run and version: its place, best on the first objective first.
PARETO_RANK_TAG = "pareto_front_rank"

# The epoch of a finished trial's best (its score is its objective's `best_metric`).
BEST_EPOCH = "best_epoch"
# Params logged beside the config's own fields.
DATASET_FINGERPRINT_PARAM = "dataset_fingerprint"
VALIDATION_DIGEST_PARAM = "validation_digest"
VOCABULARY_SIZE_PARAM = "vocabulary_size"
NUM_CLASSES_PARAM = "num_classes"

# A confirmed configuration, on its search run and on the parent run: the mean and sample
# standard deviation of its seeds' scores on the sweep's objective, and its seeds' runs.
CONFIRMED_MEAN = "confirmed_mean"
CONFIRMED_SD = "confirmed_sd"
CONFIRMATION_RUNS_TAG = "confirmation_runs"

# An ensemble's run and version: its members' runs (in order), and the tagging time of one
# member beside its own (postag/evaluation/cost.py's tagging_ms_per_sentence), measured alike.
MEMBERS_TAG = "member_run_ids"
MEMBER_TAGGING_TIME = "member_tagging_ms_per_sentence"
# An ensemble's params: how many members, and their seeds.
ENSEMBLE_MEMBERS_PARAM = "ensemble.members"
ENSEMBLE_SEEDS_PARAM = "ensemble.seeds"

# Tags of a registered version: the run it came from, and where it is a configuration's
# seeds (its best seed's model, or all of them as one), their seeds, runs, mean and spread.
RUN_ID_TAG = "run_id"
SEEDS_TAG = "seeds"
SEED_RUNS_TAG = "seed_run_ids"
MEMBERS_COUNT_TAG = "members"
SEEDS_MEAN_TAG = "seeds_mean"
SEEDS_SD_TAG = "seeds_sd"
# The champion rule's: the objective a version was chosen by, what it scored on it (under
# the metric's own name), and on which validation data; on a version that took `best` by
# --force-best, that it was forced (no other sweep's repair moves it back).
OBJECTIVE_METRIC_TAG = "objective_metric"
OBJECTIVE_MODE_TAG = "objective_mode"
VALIDATION_DIGEST_TAG = "validation_digest"
FORCED_TAG = "forced_best"

# An evaluation run's tags: its data, whether it read the gold file's words or its raw text,
# and the version it evaluated.
DATA_TAG = "data"
EVALUATION_INPUT_TAG = "evaluation_input"
REGISTERED_MODEL_TAG = "registered_model"
REGISTERED_MODEL_VERSION_TAG = "registered_model_version"
# A version's tags from its latest evaluation.
EVALUATION_RUN_TAG = "evaluation_run_id"
TEST_ACCURACY = "test_token_accuracy"  # also the parent run's metric of its version's test
TEST_DATA_TAG = "test_data"
