"""The launcher's command line: mpirun plus `python -m bert_trainer <task>`.

Each task renders its own trainer arguments (``bert_operator.tasks``), in
NVIDIA's flag names (run_pretraining.py, run_squad.py, run_classifier.py,
create_pretraining_data.py), so a rendered job reads like the recipe and can be
reproduced from its command line alone (NVIDIA's BERT for TensorFlow 2 README lists the same flags).
"""

from __future__ import annotations

from ..api.models import BertTrainingJobSpec
from ..api.stages import Stage
from ..tasks import task_of
from .image import SSH_PORT

#: How a container starts the trainer (the image's interpreter); local mode finds and replaces exactly this.
TRAINER_ENTRY = ("python", "-m", "bert_trainer")
#: The trainer's task that waits for the workers' sshd, then execs the rest of the launcher's command.
LAUNCH_TASK = "launch"
#: How long it waits: a day, because a queued stage's launcher may start while its workers still sync the dataset
#: (hundreds of GiB for pretraining); runPolicy.activeDeadlineSeconds is the stage's own bound.
LAUNCH_WAIT_SECONDS = 86400
#: Variables every rank needs from the launcher's environment.
BASE_EXPORTS = ("NCCL_DEBUG", "LD_LIBRARY_PATH", "PATH", "PYTHONUNBUFFERED")


def mpirun(spec: BertTrainingJobSpec, exported: list[str]) -> list[str]:
    """mpirun with the recipe's flags for this task.

    The task decides process binding (NVIDIA bound pretraining ranks to
    sockets, fine-tuning by slot). Ranks started over ssh do not inherit the
    pod's environment, so every variable they need is exported with -x.
    The pods run as the image's user, so no --allow-run-as-root (NVIDIA's
    containers ran as root); the workers' sshd listens on SSH_PORT, which
    plm_rsh_args passes to every ssh that mpirun starts, so the port is
    rendered in one place for both sides rather than baked into the image.
    """
    exports = [flag for name in (*BASE_EXPORTS, *exported) for flag in ("-x", name)]
    return [
        "mpirun", "-np", str(spec.resources.total_processes()),
        *task_of(spec).mpirun_binding(spec), *exports, "-mca", "pml", "ob1", "-mca", "btl", "^openib",
        "-mca", "plm_rsh_args", f"-p {SSH_PORT}",
    ]


def trainer_args(spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
    """Arguments after `python -m bert_trainer` for one stage (its task's)."""
    return task_of(spec).trainer_args(spec, stage)


def trainer_command(spec: BertTrainingJobSpec, stage: Stage) -> list[str]:
    """`python -m bert_trainer ...` exactly as a rank runs it (also what a local run executes)."""
    return [*TRAINER_ENTRY, *trainer_args(spec, stage)]


def launcher_command(spec: BertTrainingJobSpec, stage: Stage, exported: list[str]) -> list[str]:
    """The launcher container's whole command: `python -m bert_trainer launch` waits until every worker's sshd
    answers (the MPI Operator may start the launcher before its workers are ready: a queued MPIJob resumed by
    Kueue, kubeflow/mpi-operator#615), then execs mpirun with the trainer's command."""
    wait = [*TRAINER_ENTRY, LAUNCH_TASK, "--ssh_port", str(SSH_PORT), "--timeout_seconds", str(LAUNCH_WAIT_SECONDS), "--"]
    return [*wait, *mpirun(spec, exported), *trainer_command(spec, stage)]
