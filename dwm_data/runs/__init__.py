"""Resumable runs, from the files of the run folder alone.

The pattern is datatrove's and video2dataset's: the plan is frozen to `plan.json` (units and
their task), each task writes its own shards, stats, failures, log and completion marker, and a
re-run with the same command skips what is finished. Any process that can see the run folder can
run any task, which is all a Slurm array element or a Ray worker needs.

`folder` holds the layout, `plan` the frozen plan, `records` the per-task files written while
units run, `task` the worker's loop and `status` the one reading of a run's progress.
"""
