"""`bertjob serve --local FILE --job NAME`: the model a local run trained, answering requests on this machine.

The job must have succeeded here (`bertjob run --local`, whose saved status lists its exports) and exported a
Triton repository (the `triton` format, a glue or squad job's default). Its folder is found as the run found it
(the job's claims: --volume, the file's annotation, else WORKDIR/volumes/CLAIM), and the trainer serves it:
`python -m bert_trainer serve local`, the InferenceService's transformer in front of the SavedModel run
in-process over the v2 protocol, in this terminal until Ctrl-C. Requests go to
`http://127.0.0.1:PORT/v1/models/NAME:predict`, NAME being the job's, as an InferenceService is named after it.
"""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

from bert_common.contract import EXPORT_TRITON
from ..api import BertTrainingJob
from ..untrusted import mapping, records, text
from .runner import LocalOptions, saved_run
from .volumes import LocalSetupError, volume_map

#: The tasks whose models answer requests (their Triton export is the default).
SERVED_TASKS = ("glue", "squad")
#: The trainer modules serving needs: the trainer (TensorFlow, tokenizers) and KServe's server (the serve extra).
SERVE_MODULES = ("tensorflow", "tokenizers", "kserve")


def triton_repository(job: BertTrainingJob, options: LocalOptions) -> Path:
    """The local folder of the job's Triton repository, from its saved status; LocalSetupError naming the fix."""
    name = job.metadata.name
    body = saved_run(options, job)
    status = mapping((body or {}).get("status"))
    if text(status.get("phase")) != "Succeeded":
        raise LocalSetupError(f"--job: {name} has not succeeded under {options.workdir} (phase "
                              f"{text(status.get('phase')) or 'none'}): run it first, bertjob run --local FILE --job {name}")
    uris = [text(a.get("uri")) for a in records(mapping(status.get("results")).get("artifacts"))
            if text(a.get("format")) == EXPORT_TRITON]
    if not uris or not uris[-1]:
        raise LocalSetupError(f"--job: {name} exported no Triton repository: spec.output.exportFormats must list "
                              f"{EXPORT_TRITON} (a glue or squad job's default), and the job run again with --fresh")
    job_dir = (options.workdir / job.metadata.namespace / name).resolve()
    volumes = volume_map(job, options.yaml_dir, options.volumes, options.workdir, job_dir)
    try:
        local = volumes.local_uri(uris[-1])
    except ValueError as exc:
        raise LocalSetupError(f"--job: {name}: its Triton repository {uris[-1]} is not a local folder ({exc})") from None
    if "://" in local or not Path(local).is_dir():
        raise LocalSetupError(f"--job: {name}: its Triton repository {local} is not a folder on this machine (serve "
                              "--local runs what a local run wrote; copy an s3:// export down and serve it with "
                              "python -m bert_trainer serve local --model_repository DIR)")
    return Path(local)


def serve_command(repository: Path, name: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bert_trainer", "serve", "local", "--model_repository", str(repository),
            "--model_name", name, "--http_port", str(port)]


def serve_local(job: BertTrainingJob, options: LocalOptions, port: int) -> int:
    """Serve the job's model until interrupted; the server's exit status (Ctrl-C reaches both processes)."""
    missing = [module for module in SERVE_MODULES if importlib.util.find_spec(module) is None]
    if missing:
        raise LocalSetupError(f"serving needs the trainer and KServe ({', '.join(missing)} not installed); install "
                              "them with: bash scripts/bootstrap.sh local")
    repository = triton_repository(job, options)
    server = subprocess.Popen(serve_command(repository, job.metadata.name, port))
    # SIGTERM to bertjob stops the server too (Ctrl-C reaches both: the server stops on its own, bertjob waits).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: server.terminate())
    try:
        while True:
            try:
                return server.wait()
            except KeyboardInterrupt:
                server.send_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
