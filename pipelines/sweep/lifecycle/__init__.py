"""A sweep's life across drivers: the state file and its phases (`state`), its only writer
(`life`: opened anew, resumed, extended by a file that adds trials, moved phase to phase,
stopped with no run left RUNNING), the parent run in MLflow (`parent_run`), the driver's
stop signals (`signals`) and the Ray runtime its stages share (`ray_runtime`). Imports the
set-up only: no stage, no trial."""
