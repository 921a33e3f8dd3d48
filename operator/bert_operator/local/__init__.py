"""Local mode: a BertTrainingJob run on this machine, no cluster (`bertjob run --local`).

The operator's reconciler drives it; only the MPIJobs' execution is local
(see stages.py). Kubernetes concepts map one to one: a claim is a folder
(volumes.py), a pod's command is a process with the same argv (commands.py),
the CR status is `<workdir>/<namespace>/<name>/status.json` (runner.py).
"""

from .runner import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_SUCCEEDED, LocalOptions, LocalRun, run_jobs, status_json,
                     status_yaml)
from .summary import summary_table
from .volumes import LocalSetupError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_SUCCEEDED", "LocalOptions", "LocalRun", "LocalSetupError", "run_jobs",
           "status_json", "status_yaml", "summary_table"]
