"""The README's first command: `bertjob run --local examples/bertjob-tiny.yaml`, end to end (about 90 s on 2 cores).

prepareData (two sequence lengths) -> two-phase pretraining -> CoLA fine-tuning, through the
operator's reconciler, with the trainer's command lines exactly as the MPIJobs carry them. The jobs
name each other (spec.dataset.fromJob, model.initCheckpointFrom, model.vocabFrom): the reconciler
resolves them from the producers' statuses, as on a cluster.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bert_operator.api.parse import parse_text
from bert_operator.dependencies import resolve_file
from bert_operator.local.volumes import to_local
from bert_operator.render import render_all
from tests.conftest import REPO, free_port, rank_command
from tests.local.helpers import BERTJOB, TINY, TINY_INPUTS, run_local, saved_statuses, statuses, summary_rows
from tests.operator.fakes import condition

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("tiny") / "runs"
    started = time.monotonic()
    result = run_local(str(TINY), "--workdir", str(workdir), output=None)  # as a user runs it: the table at the end
    return result, workdir, time.monotonic() - started


NAMES = ("tiny-data", "tiny-pretrain", "tiny-cola")


def saved(workdir: Path) -> dict[str, dict]:
    return saved_statuses(workdir, *NAMES)


def test_all_three_jobs_succeed_with_the_operators_status(tiny_run) -> None:
    result, workdir, seconds = tiny_run
    assert result.returncode == 0, result.stderr[-3000:]
    found = saved(workdir)
    for name, status in found.items():
        assert status["phase"] == "Succeeded", (name, status)
        assert condition(status, "Valid")["status"] == "True"
        assert condition(status, "Succeeded")["reason"] == "MPIJobSucceeded"
        assert condition(status, "ProgressAvailable")["status"] == "True"
        assert status["progress"]["percent"] == 100
    assert [s["name"] for s in found["tiny-pretrain"]["stages"]] == ["phase1", "phase2"]
    assert [s["name"] for s in found["tiny-data"]["stages"]] == ["prepare", "prepare-seq128"]
    assert seconds < 300, f"the embedded default must run in under 5 minutes, took {seconds:.0f} s"


def test_the_run_ends_with_a_table_of_phase_metric_and_outputs(tiny_run) -> None:
    result, workdir, _ = tiny_run
    rows, found = summary_rows(result.stdout), saved(workdir)
    assert list(rows) == list(NAMES) and all(row["PHASE"] == "Succeeded" and row["DURATION"] for row in rows.values())
    data, pretrain, cola = (found[name]["results"] for name in NAMES)
    assert rows["tiny-data"]["METRIC"] == f"{data['instances']} instances, {data['shards']} shards"
    assert rows["tiny-pretrain"]["METRIC"] == (f"loss {pretrain['finalLoss']:.3f}, "
                                               f"eval MLM acc {pretrain['evalMlmAccuracy']:.3f}")
    assert rows["tiny-cola"]["METRIC"] == f"CoLA dev MCC {cola['dev']['mcc']:.3f}"
    volume = workdir.resolve() / "volumes" / "bert-tiny"
    assert rows["tiny-pretrain"]["OUTPUTS"] == str(volume / "pretrain")
    assert rows["tiny-pretrain"]["EXPORTS"] == "phase1/export/hf, phase2/export/hf"
    assert rows["tiny-cola"]["EXPORTS"] == "glue/export/hf, glue/export/savedmodel, glue/export/triton"
    assert len(result.stdout.splitlines()) == 4  # the header and a row per job: the whole status is -o yaml's


def test_data_preparation_wrote_records_for_both_phases(tiny_run) -> None:
    result, workdir, _ = tiny_run
    found = saved(workdir)
    results = found["tiny-data"]["results"]  # (the last stage's report: seq 128)
    assert results["documents"] == 480 and results["instances"] > 1000
    records = workdir / "volumes" / "bert-tiny" / "records"
    folders = sorted(folder.name for folder in records.iterdir())
    assert [name.split("_max_pred")[0] for name in folders] == ["lower_case_1_seq_len_128", "lower_case_1_seq_len_64"]
    for folder in records.iterdir():
        assert len(list((folder / "books_wiki_en_corpus" / "training").iterdir())) > 0
    # tiny-pretrain read them: each phase the set of its lengths, found through spec.dataset.fromJob
    resolved = found["tiny-pretrain"]["resolved"]
    assert resolved["dataset"] == {"uri": "pvc://bert-tiny/records"}
    assert resolved["dataPaths"] == [f"{name}/books_wiki_en_corpus" for name in reversed(folders)]
    assert found["tiny-pretrain"]["dependencies"] == [
        {"name": "tiny-data", "fields": ["spec.dataset.fromJob"], "phase": "Succeeded"}]


def test_pretraining_learns_and_writes_everything_a_user_looks_at(tiny_run) -> None:
    result, workdir, _ = tiny_run
    results = saved(workdir)["tiny-pretrain"]["results"]
    assert results["evalMlmAccuracy"] > 0.08  # chance over a 512-token vocab is 0.002
    out = workdir / "volumes" / "bert-tiny" / "pretrain"
    history = json.loads((out / "phase1" / "history.json").read_text())
    assert history[0][1] - history[-1][1] > 1.0, "masked-LM + NSP loss falls by more than 1 nat in phase 1"
    for phase, steps in (("phase1", 540), ("phase2", 60)):
        assert (out / phase / "checkpoints" / f"ckpt-{steps}.index").exists()
        assert (out / phase / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert list((out / phase / "tensorboard").glob("events.out.tfevents.*"))
        assert json.loads((out / phase / "results.json").read_text())["steps"] == steps
    phase2_log = (workdir / "default" / "tiny-pretrain" / "tiny-pretrain-phase2.log").read_text()
    assert f"source={out / 'phase1' / 'checkpoints' / 'ckpt-540'}" in phase2_log  # phase 2 starts from phase 1


def test_fine_tuning_reports_its_metric(tiny_run) -> None:
    result, workdir, _ = tiny_run
    results = saved(workdir)["tiny-cola"]["results"]
    # The MCC itself varies too much to assert (docs/benchmarks.md: 0.33-0.73 mostly, about one run in seven
    # collapses to one class); what must hold is that fine-tuning started from the pretrained encoder, every tensor of it.
    assert results["task"] == "CoLA" and -1.0 <= results["dev"]["mcc"] <= 1.0 and results["steps"] == 188
    log = (workdir / "default" / "tiny-cola" / "tiny-cola-glue.log").read_text()
    assert re.search(r"event=init_checkpoint_summary loaded=\d+ missing=\[\] unused=\[\]", log), log[-2000:]
    assert "source=" in log and "/pretrain/phase2/checkpoints/ckpt-60" in log
    assert (workdir / "volumes" / "bert-tiny" / "cola" / "glue" / "results.json").exists()  # <output>/<stage>/
    cola = saved(workdir)["tiny-cola"]
    assert cola["resolved"]["initCheckpoint"] == "pvc://bert-tiny/pretrain/phase2"  # initCheckpointFrom, last stage
    assert cola["resolved"]["vocab"] == "pvc://bert-tiny-inputs/vocab.txt"  # vocabFrom tiny-data


def test_every_training_stage_exported_what_its_task_exports_by_default(tiny_run) -> None:
    result, workdir, _ = tiny_run
    found = saved(workdir)
    assert found["tiny-pretrain"]["results"]["artifacts"] == [
        {"stage": "phase1", "format": "hf", "uri": "pvc://bert-tiny/pretrain/phase1/export/hf"},
        {"stage": "phase2", "format": "hf", "uri": "pvc://bert-tiny/pretrain/phase2/export/hf"}]
    assert found["tiny-cola"]["results"]["artifacts"] == [
        {"stage": "glue", "format": "hf", "uri": "pvc://bert-tiny/cola/glue/export/hf"},
        {"stage": "glue", "format": "savedmodel", "uri": "pvc://bert-tiny/cola/glue/export/savedmodel"},
        {"stage": "glue", "format": "triton", "uri": "pvc://bert-tiny/cola/glue/export/triton"}]
    volume = workdir / "volumes" / "bert-tiny"
    for folder in ("pretrain/phase1", "pretrain/phase2", "cola/glue"):
        assert {p.name for p in (volume / folder / "export" / "hf").iterdir()} >= {"config.json", "model.safetensors"}
    assert (volume / "cola" / "glue" / "export" / "savedmodel" / "saved_model.pb").exists()
    assert (volume / "cola" / "glue" / "export" / "triton" / "cola" / "config.pbtxt").exists()
    assert found["tiny-cola"]["results"]["exported"] == ["hf", "savedmodel", "triton"]


def wait_until_served(url: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:  # TensorFlow's import and the model's load come first
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def test_serve_local_answers_the_dev_rows_with_the_labels_the_trainers_predict_gives(tiny_run, tmp_path) -> None:
    """`bertjob serve --local` on tiny-cola's Triton export, asked over HTTP by `bertjob predict --tsv` with CoLA's
    dev rows, answers for every row the label `python -m bert_trainer predict` writes from the SavedModel export."""
    _, workdir, _ = tiny_run
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/models/tiny-cola"
    dev = TINY_INPUTS / "CoLA" / "dev.tsv"
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        server = subprocess.Popen([BERTJOB, "serve", "--local", str(TINY), "--job", "tiny-cola", "--workdir", str(workdir),
                                   "--port", str(port)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        export = workdir / "volumes" / "bert-tiny" / "cola" / "glue" / "export" / "savedmodel"
        offline = subprocess.run([sys.executable, "-m", "bert_trainer", "predict", "--model", str(export), "--task_name",
                                  "CoLA", "--predict_file", str(dev), "--output_dir", str(tmp_path / "predict")],
                                 capture_output=True, text=True, timeout=300)  # while the server starts
        assert offline.returncode == 0, offline.stderr[-3000:]
        wait_until_served(url, server, log)
        asked = subprocess.run([BERTJOB, "predict", "--url", f"{url}:predict", "--tsv", str(dev), "--task", "CoLA"],
                               capture_output=True, text=True, timeout=300)
        assert asked.returncode == 0, asked.stderr[-3000:]
    finally:
        server.terminate()  # bertjob passes SIGTERM on to the server it started
        server.wait(timeout=60)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the server outlived bertjob serve"
    names = ("unacceptable", "acceptable")  # CoLA's 0 and 1
    rows = (tmp_path / "predict" / "predictions.tsv").read_text().splitlines()[1:]
    served = [json.loads(line) for line in asked.stdout.splitlines()]
    assert len(served) == len(rows) == len(dev.read_text().splitlines())
    assert [p["label"] for p in served] == [names[int(row.split("\t")[1])] for row in rows]
    assert all(0.5 <= p["score"] <= 1 for p in served)


def test_each_stage_ran_the_rendered_launcher_command_with_volumes_bound(tiny_run) -> None:
    """A local run's argv is the MPIJob's, with only mount paths and the interpreter swapped."""
    _, workdir, _ = tiny_run
    mounts = [("/mnt/pvc/bert-tiny-inputs", TINY_INPUTS), ("/mnt/pvc/bert-tiny", workdir.resolve() / "volumes" / "bert-tiny")]
    for job in resolve_file(parse_text(TINY.read_text(), TINY.name)):
        for mpijob in render_all(job):
            command = mpijob["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]["command"]
            rendered = [to_local(arg, mounts) for arg in rank_command(command)[3:]]
            log = workdir / "default" / job.metadata.name / f"{mpijob['metadata']['name']}.log"
            header = next(line for line in log.read_text().splitlines() if " launcher: " in line)
            ran = shlex.split(header.split(" launcher: ", 1)[1])
            assert ran[ran.index("bert_trainer") + 1:] == [a for a in rendered if a != "--horovod" or "--horovod" in ran]


def test_a_second_run_skips_what_succeeded(tiny_run) -> None:
    _, workdir, _ = tiny_run
    again = run_local(str(TINY), "--workdir", str(workdir), timeout=120)  # -o yaml: each job's whole status
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already Succeeded in an earlier run") == 3
    printed = statuses(again.stdout)
    assert list(printed) == list(NAMES) and all(status["phase"] == "Succeeded" for status in printed.values())
    for name, status in saved(workdir).items():  # as saved, without acceptedSpec (the spec itself, echoed)
        assert "acceptedSpec" in status and {k: v for k, v in status.items() if k != "acceptedSpec"} == printed[name]


def test_the_cola_job_as_a_four_trial_sweep_runs_its_trials_one_by_one_and_picks_the_best(tiny_run, tmp_path) -> None:
    """The tiny CoLA job as a sweep (2 learning rates x 2 seeds, one epoch each), from the pretraining this module's
    run made: local mode runs the trials one after the other whatever maxParallel says, each reports its dev MCC,
    and the best by MCC is chosen, its exports the job's artifacts."""
    import yaml

    _, workdir, _ = tiny_run
    documents = list(yaml.safe_load_all(TINY.read_text()))  # (a job takes inputs from the jobs of its file only)
    for document in documents:  # (the inputs' claim is bound by --volume below: this file is in another folder)
        document["metadata"].pop("annotations", None)
    cola = documents[-1]
    assert cola["metadata"]["name"] == "tiny-cola"
    cola["metadata"]["name"] = "tiny-sweep"
    cola["spec"]["task"]["glue"].update(epochs=1, sweep={"learningRates": [3e-4, 1e-4], "seeds": [1, 2], "maxParallel": 2,
                                                         "keepTrialCheckpoints": False})
    cola["spec"]["output"] = {"uri": "pvc://bert-tiny/cola-sweep", "exportFormats": ["hf"]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    result = run_local(str(path), "--workdir", str(workdir), "--volume", f"bert-tiny-inputs={TINY_INPUTS}", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("already Succeeded in an earlier run") == 2  # the data and the pretraining
    assert "sweep.maxParallel 2 ignored: its trials run one after the other here" in result.stderr
    status = statuses(result.stdout)["tiny-sweep"]
    assert status["phase"] == "Succeeded"
    trials = status["trials"]
    assert [(t["name"], t["phase"], t["hyperparameters"]["learningRate"], t["hyperparameters"]["seed"]) for t in trials] \
        == [("t0", "Succeeded", 3e-4, 1), ("t1", "Succeeded", 3e-4, 2), ("t2", "Succeeded", 1e-4, 1),
            ("t3", "Succeeded", 1e-4, 2)]
    mccs = [t["metrics"]["mcc"] for t in trials]
    best = status["results"]["best"]
    assert (best["metric"], best["value"], best["final"]) == ("mcc", max(mccs), True)
    assert best["trial"] == f"t{mccs.index(max(mccs))}" and [t.get("best") for t in trials].count(True) == 1
    stages = status["stages"]  # one after the other
    assert all(a["completionTime"] <= b["startTime"] for a, b in zip(stages, stages[1:]))
    assert [a["stage"] for a in status["results"]["artifacts"]] == [best["trial"]]
    picture = workdir / "default" / "tiny-sweep" / "sweep.png"
    assert f"the trials' dev metric, the best marked: {picture}" in result.stderr
    assert picture.read_bytes().startswith(b"\x89PNG") and picture.stat().st_size > 5000
    # keepTrialCheckpoints: false: the cleanup Job's command ran as a process after the last trial.
    cleanup = status["trialCleanup"]
    others = [t["name"] for t in trials if t["name"] != best["trial"]]
    assert (cleanup["phase"], cleanup["kept"], cleanup["removed"]) == ("Succeeded", best["trial"], others)
    [folder] = {path.parent.parent for path in workdir.rglob("cola-sweep/glue/t*/results.json")}
    assert list((folder / best["trial"] / "checkpoints").glob("ckpt-*.index"))  # the best keeps its own
    for trial in others:
        assert not (folder / trial / "checkpoints").exists() and (folder / trial / "results.json").is_file()
    assert [t.get("checkpoints") for t in trials if t["name"] in others] == ["removed"] * 3
    assert f"tiny-sweep: trial cleanup Succeeded: checkpoints of {', '.join(others)} removed" in result.stderr
    # A run stopped while its cleanup ran (the status says Running): the next run does the cleanup, not "skipped".
    saved_status = workdir / "default" / "tiny-sweep" / "status.json"
    cut_short = json.loads(saved_status.read_text())
    cut_short["trialCleanup"] = {k: v for k, v in cut_short["trialCleanup"].items() if k != "completionTime"}
    cut_short["trialCleanup"]["phase"] = "Running"
    saved_status.write_text(json.dumps(cut_short))
    left = folder / others[0] / "checkpoints" / "ckpt-1.index"
    left.parent.mkdir()
    left.write_text("left by the cut-short cleanup")
    again = run_local(str(path), "--workdir", str(workdir), "--volume", f"bert-tiny-inputs={TINY_INPUTS}", timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tiny-sweep: already Succeeded" not in again.stderr and not left.parent.exists()
    assert statuses(again.stdout)["tiny-sweep"]["trialCleanup"]["phase"] == "Succeeded"
