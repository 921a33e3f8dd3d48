"""spec.serve in a local run: there is no KServe on this machine, so it is dropped with a line saying how to serve the
model here instead (`bertjob serve --local`), as spec.queueName is dropped for want of Kueue."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from bert_operator.api.parse import parse_job
from bert_operator.local.display import Display
from bert_operator.local.runner import Interrupt, LocalOptions, run_job
from tests.conftest import REPO


def test_a_local_run_drops_spec_serve_and_says_how_to_serve_here(tmp_path: Path) -> None:
    document = yaml.safe_load((REPO / "examples" / "glue-mrpc.yaml").read_text())
    document["spec"]["serve"] = {"replicas": 1}
    job = parse_job(document)
    volumes = {claim: tmp_path / claim for claim in ("bert-models", "glue-data", "bert-results")}
    for folder in volumes.values():
        folder.mkdir()
    job_dir = tmp_path / "work" / "ml-training" / "glue-mrpc"
    job_dir.mkdir(parents=True)
    (job_dir / "status.json").write_text(json.dumps({"phase": "Succeeded"}))  # an earlier run: nothing runs now
    stream = io.StringIO()
    done = run_job(job, LocalOptions(workdir=tmp_path / "work", yaml_dir=None, volumes=volumes),
                   Display(stream, interactive=False), Interrupt())
    assert done.phase == "Succeeded"
    assert ("glue-mrpc: spec.serve ignored: no KServe on this machine; serve the model with `bertjob serve --local "
            "FILE --job glue-mrpc`") in stream.getvalue()
