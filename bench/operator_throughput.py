"""Operator throughput: N BertTrainingJobs applied at once against the Kubernetes API emulator.

Prints p50/p99 latency from apply to MPIJob created, jobs reconciled per
second, API writes and requests per job start, the operator's CPU per job
start (its process's user and system time over the run, divided by the jobs)
and its peak RSS. Two baselines, each on a fresh emulator in the same run:
plain MPIJob creates by the client (one request per job), and the emulator's
ceiling for job starts: for each job the very requests a start costs (the
apply, then the operator's MPIJob create, status patch and Event, with the
bodies the reconciler makes, prepared beforehand) sent by the client with no
operator. A job start cannot be faster than the emulator serves its requests;
the ratio to the ceiling shows how much of the gap is the operator's. The CPU each process spent over the burst and
over the ceiling run (the bench's client, the emulator where it has a process of its own, the operator), as cores busy
and per job start, shows what bounds either rate: where the processes share fewer free cores than they could use, a
rate is the free CPU over the CPU per start of all of them together.

    .venv/bin/python bench/operator_throughput.py [--jobs 500] [--rate R] [--emulator-process] [--profile FILE]
                                                  [--templates efa,istio-off]

`--templates NAMES` adds what the platform's job templates cost per job start: the operator's reconciler making each
job's start (policy, MPIJob, status, Event; its own code, no I/O) without templates and with these examples/templates/
forced by a policy and checked against the MPI Operator's CRD (../shared/crds), interleaved rounds, CPU time of this
process; the issue's bound is 1 ms more per MPIJob.

`--profile FILE` runs the operator under cProfile, every thread of it (kopf's loop, its handler threads, the work
queue's workers), counting only the burst (from the first apply to the last status), and writes the merged pstats
to FILE; its top entries are printed. Times are each thread's CPU time (time.thread_time). cProfile's own overhead inflates the CPU figure of such a run: read the CPU per
start from a run without it.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # for tests.operator.cluster
from tests.operator.cluster import EmulatedCluster, EmulatorProcess, OperatorProcess  # noqa: E402

NS = "bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def baseline(cluster: EmulatedCluster, jobs: int) -> float:
    """Seconds for the client alone to create `jobs` MPIJobs on the emulator (8 threads)."""
    body = {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"namespace": "baseline"}, "spec": {}}
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: cluster.custom.create_namespaced_custom_object(
            "kubeflow.org", "v2beta1", "baseline", "mpijobs", {**body, "metadata": {"name": f"b-{i}", "namespace": "baseline"}}),
            range(jobs)))
    return time.perf_counter() - started


class _Recorded:
    """The reconciler's side of the API for a job's first reconcile, recording what it would send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.sent.append(("mpijob", copy.deepcopy(body)))
        return copy.deepcopy(body), True

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(("status", copy.deepcopy(status)))
        return {"status": status}

    def post(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.sent.append(("event", (kind, reason, message)))


def start_requests(document: dict[str, Any], uid: str) -> list[tuple[str, Any]]:
    """What the operator sends for this job's start, made by its own reconciler (no I/O)."""
    from bert_operator.reconcile import Reconciler
    recorded = _Recorded()
    body = {**copy.deepcopy(document), "metadata": {**document["metadata"], "uid": uid, "generation": 1}}
    Reconciler(api=recorded, events=recorded).reconcile(body)  # type: ignore[arg-type]
    return recorded.sent


def ceiling(cluster: EmulatedCluster, documents: list[dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """Seconds for the client alone to send every job's start requests (apply, MPIJob, status, Event; 8 threads), and
    the CPU seconds each process spent meanwhile (Usage)."""
    core = kubernetes.client.CoreV1Api(cluster.client)
    prepared = [(document, start_requests(document, f"uid-{i}")) for i, document in enumerate(documents)]

    def start(i: int) -> None:
        document, sent = prepared[i]
        meta = document["metadata"]
        cluster.apply_job(document, uid=f"uid-{i}")
        for kind, body in sent:
            if kind == "mpijob":
                cluster.custom.create_namespaced_custom_object("kubeflow.org", "v2beta1", meta["namespace"], "mpijobs", body,
                                                               _preload_content=False)
            elif kind == "status":
                cluster.custom.patch_namespaced_custom_object_status("bertoperator.io", "v1alpha1", meta["namespace"],
                                                                     "berttrainingjobs", meta["name"], {"status": body})
            else:
                event_kind, reason, message = body
                core.create_namespaced_event(meta["namespace"], {
                    "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{meta['name']}.start", "namespace": meta["namespace"]},
                    "involvedObject": {"kind": "BertTrainingJob", "name": meta["name"], "namespace": meta["namespace"]},
                    "type": event_kind, "reason": reason, "message": message}, _preload_content=False)

    usage = Usage(cluster)
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(start, range(len(documents))))
    return time.perf_counter() - started, usage.spent()


class _Serialised(_Recorded):
    """_Recorded, each body serialised as the operator's writes send it (kube.JsonWrites: json.dumps) instead of
    copied: what a start costs the operator besides its reconciler."""

    def create_or_adopt_mpijob(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.sent.append(("mpijob", body))
        json.dumps(body)
        return body, True

    def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(("status", status))
        json.dumps(status)
        return {"status": status}


def template_cost(documents: list[dict[str, Any]], names: list[str], rounds: int = 10) -> tuple[float, float]:
    """CPU ms per job start of the reconciler without and with `names` forced by a policy (median of interleaved
    rounds over every document, each a new job: no cache of a job's own helps either side)."""
    from bert_operator.policy import PolicyInput, parse_policy
    from bert_operator.reconcile import Reconciler
    from bert_operator.templates.catalog import TEMPLATE_KEY, TEMPLATE_LABEL, Catalog
    from tests.operator.cluster import mpijob_crd_object

    catalog = Catalog()
    for name in names:
        catalog.configmap_event("ADDED", {"metadata": {"namespace": "bert-operator", "name": f"template-{name}",
                                                       "labels": {TEMPLATE_LABEL: name}},
                                          "data": {TEMPLATE_KEY: (REPO / "examples" / "templates" / f"{name}.yaml").read_text()}})
    catalog.mpijob_crd({**mpijob_crd_object(), "metadata": {"name": "mpijobs.kubeflow.org", "resourceVersion": "1"}})
    policy = parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy", "metadata": {"name": "bench"},
                           "spec": {"namespaceSelector": {}, "templates": {"forced": names}}})
    plain_policy = parse_policy({"apiVersion": "bertoperator.io/v1alpha1", "kind": "BertTrainingPolicy",
                                 "metadata": {"name": "bench"}, "spec": {"namespaceSelector": {}}})

    def starts(templated: bool, round_index: int) -> float:
        given = (policy if templated else plain_policy,)
        cpu = 0.0
        for i, document in enumerate(documents):
            recorded = _Serialised()
            meta = {**document["metadata"], "name": f"r{round_index}-{i}", "uid": f"uid-{round_index}-{i}", "generation": 1}
            reconciler = Reconciler(api=recorded, events=recorded, policies=lambda namespace: PolicyInput({}, given),  # type: ignore[arg-type]
                                    templates=catalog.snapshot)
            body = {**copy.deepcopy(document), "metadata": meta}
            start = time.process_time()
            reconciler.reconcile(body)
            cpu += time.process_time() - start
            kinds = [kind for kind, _ in recorded.sent]
            assert "mpijob" in kinds, f"no MPIJob made: {recorded.sent}"
            made = next(body for kind, body in recorded.sent if kind == "mpijob")
            assert bool((made["metadata"].get("annotations") or {}).get("bertoperator.io/templates")) == templated
        return cpu / len(documents) * 1000

    starts(False, -1), starts(True, -2)  # warm: templates compiled, validators built
    per: dict[bool, list[float]] = {False: [], True: []}
    for round_index in range(rounds):
        for templated in (False, True):
            per[templated].append(starts(templated, round_index))
    return statistics.median(per[False]), statistics.median(per[True])


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    return sum(cpu_times(pid))


class Usage:
    """CPU seconds of each process of a run since this was made: the bench's own (its client threads, and the
    emulator's thread where it runs in this process), the emulator's where it has a process of its own, and the
    operator's. Over the same wall time they show which of the processes sharing the machine's cores was busy."""

    def __init__(self, cluster: EmulatedCluster, operator_pid: int | None = None) -> None:
        self.pids = {"bench" if isinstance(cluster, EmulatorProcess) else "bench+emulator": os.getpid()}
        if isinstance(cluster, EmulatorProcess):
            self.pids["emulator"] = cluster.child.pid
        if operator_pid is not None:
            self.pids["operator"] = operator_pid
        self.before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def spent(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self.before[name] for name, pid in self.pids.items()}


def cores(spent: dict[str, float], wall: float, jobs: int) -> str:
    """Each process's CPU over `wall` seconds as cores busy, and per job start. Where the processes share fewer free
    cores than they could use, a rate is the free CPU divided by the CPU per start of all of them together."""
    busy = ", ".join(f"{name} {seconds / wall:.2f}" for name, seconds in spent.items())
    per_start = ", ".join(f"{name} {seconds / jobs * 1000:.1f}" for name, seconds in spent.items())
    return (f"{busy}; all {sum(spent.values()) / wall:.2f}  |  CPU ms per start: {per_start}; "
            f"all {sum(spent.values()) / jobs * 1000:.1f}")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Profiles:
    """The operator process's side of --profile: one cProfile.Profile per thread, cleared on SIGUSR1 (the burst
    starts), merged and written on SIGUSR2 (it is over)."""

    def __init__(self, path: str) -> None:
        import cProfile
        import signal
        import threading

        # Each thread's own CPU clock: a thread waiting for an answer costs nothing, as in the CPU figure.
        self.path, self.profiles = path, [cProfile.Profile(time.thread_time)]
        run = threading.Thread.run

        def profiled(thread: threading.Thread) -> None:
            profile = cProfile.Profile(time.thread_time)
            self.profiles.append(profile)
            profile.enable()
            try:
                run(thread)
            finally:
                profile.disable()

        threading.Thread.run = profiled  # type: ignore[method-assign]
        signal.signal(signal.SIGUSR1, lambda *_: [profile.clear() for profile in self.profiles])
        signal.signal(signal.SIGUSR2, lambda *_: self.dump())
        self.profiles[0].enable()

    def dump(self) -> None:
        import pstats

        class Snapshot:  # pstats reads .stats after create_stats(); snapshot_stats() leaves the profiler running
            def __init__(self, profile: Any) -> None:
                self.profile = profile

            def create_stats(self) -> None:
                if not hasattr(self, "stats"):
                    self.profile.snapshot_stats()
                    self.stats = self.profile.stats

        snapshots = [Snapshot(profile) for profile in self.profiles]
        for snapshot in snapshots:
            snapshot.create_stats()
        # pstats refuses an empty profile (a thread idle over the burst)
        pstats.Stats(*[snapshot for snapshot in snapshots if snapshot.stats]).dump_stats(self.path)


class _ProfiledOperator(OperatorProcess):
    """OperatorProcess run through this script's --profiled-operator mode (the same `bertjob operator` arguments)."""

    def __init__(self, cluster: EmulatedCluster, path: str, *extra: str, resync_seconds: float = 2.0) -> None:
        super().__init__(cluster, *extra, resync_seconds=resync_seconds)
        self.path = path

    def start(self) -> "OperatorProcess":
        import subprocess
        self.handle = open(self.log, "w")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--profiled-operator", self.path, "operator", "--kubeconfig",
             str(self.cluster.kubeconfig), "--liveness-port", "0", "--metrics-port", "0", "--progress-port",
             str(self.progress_port), "--resync-seconds", str(self.resync_seconds), *self.extra],
            stdout=self.handle, stderr=subprocess.STDOUT, cwd=self.cluster.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self


def print_profile(path: str, top: int = 25) -> None:
    import pstats
    stats = pstats.Stats(path)
    for key in ("tottime", "cumulative"):
        print(f"\n--- operator profile, top {top} by {key} (cProfile, every thread's CPU time; {path})")
        stats.sort_stats(key).print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--emulator-process", action="store_true",
                        help="run the emulator in a process of its own (default: in this process, as the tests do)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="apply this many jobs per second (default 0: all at once, the burst case)")
    parser.add_argument("--profile", metavar="FILE", help="profile the operator over the burst (cProfile, every thread, its CPU time)")
    parser.add_argument("--templates", default="", metavar="NAMES",
                        help="also measure what these examples/templates/ (comma-separated) cost per job start")
    args = parser.parse_args()
    template = yaml.safe_load((REPO / "examples" / "squad-v1.1.yaml").read_text())
    workdir = tempfile.mkdtemp(prefix="bench-operator-")
    kind = EmulatorProcess if args.emulator_process else EmulatedCluster
    documents = []
    for i in range(args.jobs):
        document = copy.deepcopy(template)
        document["metadata"] = {"name": f"job-{i}", "namespace": NS}
        documents.append(document)
    with kind(Path(workdir), trim_history=True) as empty:  # its own emulator: the same start state
        base_seconds = baseline(empty, args.jobs)
    with kind(Path(workdir), trim_history=True) as empty:
        ceiling_seconds, ceiling_usage = ceiling(empty, documents)
    with kind(Path(workdir), trim_history=True) as cluster:
        operator = (_ProfiledOperator(cluster, args.profile, resync_seconds=60) if args.profile
                    else OperatorProcess(cluster, resync_seconds=60)).start()
        print(f"operator log: {operator.log}", file=sys.stderr)
        try:
            time.sleep(3.0)  # operator started and watching
            requests_before = len(cluster.requests())
            cpu_before = cpu_times(operator.process.pid)
            usage = Usage(cluster, operator.process.pid)
            if args.profile:
                os.kill(operator.process.pid, signal.SIGUSR1)
            applied: dict[str, float] = {}

            def apply(i: int) -> None:
                if args.rate:
                    time.sleep(max(0.0, started + i / args.rate - time.perf_counter()))
                cluster.apply_job(documents[i], uid=f"uid-{i}")
                applied[f"job-{i}-squad"] = time.perf_counter()

            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(apply, range(args.jobs)))
            print(f"applied {args.jobs} jobs", file=sys.stderr)
            def created() -> dict[str, float]:
                """When the emulator served each MPIJob create of the operator (20 ms resolution)."""
                return {name: when for method, plural, _, agent, name, when in cluster.requests()[requests_before:]
                        if method == "POST" and plural == "mpijobs" and agent.startswith("bert-operator")}

            seen = cluster.wait(lambda: (found := created()) and len(found) >= args.jobs and found, timeout=300, what="all MPIJobs",
                                interval=0.5)
            created_all = max(seen.values())
            burst_usage = usage.spent()  # (up to the wait's last look, at most its interval after the last create)
            burst_seen = time.perf_counter() - started
            cluster.wait(lambda: all((cluster.job(NS, f"job-{i}").get("status") or {}).get("phase") == "Pending"
                                     for i in range(0, args.jobs, max(1, args.jobs // 50))), timeout=300, what="statuses")
            time.sleep(2.0)  # let trailing writes (status, Events) land
            # The reconciler's own calls (its client's User-Agent), not kopf's watches nor this script's reads.
            operator_requests = [(method, plural) for method, plural, watch, agent, _, _ in cluster.requests()[requests_before:]
                                 if agent.startswith("bert-operator") and not watch]
            writes = [(method, plural) for method, plural in operator_requests if method in ("POST", "PATCH", "PUT", "DELETE")]
            latencies = [(seen[name] - applied[name]) * 1000 for name in applied if name in seen]
            wall = created_all - started
            rss = peak_rss_mib(operator.process.pid)
            user, system = (after - before for after, before in zip(cpu_times(operator.process.pid), cpu_before))
            cpu_per_job = (user + system) / args.jobs
            if args.profile:
                os.kill(operator.process.pid, signal.SIGUSR2)
                time.sleep(3.0)
        finally:
            operator.stop()
    print(f"jobs                         {args.jobs} ({'all at once' if not args.rate else f'{args.rate:g}/s'})")
    print(f"apply -> MPIJob p50 / p99    {statistics.median(latencies):.1f} ms / {percentile(latencies, 99):.1f} ms")
    print(f"jobs reconciled per second   {args.jobs / wall:.1f}  (all {args.jobs} MPIJobs in {wall:.2f} s)")
    print(f"API writes per job start     {len(writes) / args.jobs:.2f}  "
          f"(POST mpijobs {writes.count(('POST', 'mpijobs')) / args.jobs:.2f}, "
          f"PATCH status {sum(1 for method, _ in writes if method == 'PATCH') / args.jobs:.2f}, "
          f"POST events {writes.count(('POST', 'events')) / args.jobs:.2f})")
    print(f"API requests per job start   {len(operator_requests) / args.jobs:.2f}")
    print(f"operator peak RSS            {rss:.0f} MiB")
    print(f"operator CPU per job start   {cpu_per_job * 1000:.1f} ms  (user {user / args.jobs * 1000:.1f}, system "
          f"{system / args.jobs * 1000:.1f}; one core's worth: {1 / cpu_per_job:.0f} jobs/s)")
    print(f"baseline: client-only MPIJob creates {args.jobs / base_seconds:.1f}/s; operator/baseline rate ratio "
          f"{(args.jobs / wall) / (args.jobs / base_seconds):.2f}")
    print(f"ceiling: the emulator serving each start's 4 requests (apply, MPIJob, status, Event) from the client alone "
          f"{args.jobs / ceiling_seconds:.1f} starts/s; operator/ceiling rate ratio "
          f"{(args.jobs / wall) / (args.jobs / ceiling_seconds):.2f}")
    print(f"cores busy, burst            {cores(burst_usage, burst_seen, args.jobs)}  (over {burst_seen:.2f} s)")
    print(f"cores busy, ceiling          {cores(ceiling_usage, ceiling_seconds, args.jobs)}  (over {ceiling_seconds:.2f} s)")
    burst_cpu, ceiling_cpu = sum(burst_usage.values()), sum(ceiling_usage.values())
    line = (f"ceiling/burst CPU per start  all processes {ceiling_cpu / burst_cpu:.2f} (the rate ratio where they share "
            f"the free CPU)")
    if "emulator" in burst_usage:
        line += (f"; the emulator's {ceiling_usage['emulator'] / burst_usage['emulator']:.2f} (where it has a core of "
                 f"its own)")
    print(line)
    if args.templates:
        names = [name for name in args.templates.split(",") if name]
        plain_ms, templated_ms = template_cost(documents[:100], names)
        print(f"job templates, per job start the reconciler's CPU (in-process, median of 10 interleaved rounds of "
              f"{min(100, args.jobs)} jobs): without {plain_ms:.2f} ms, with {', '.join(names)} {templated_ms:.2f} ms; "
              f"cost {templated_ms - plain_ms:.2f} ms per MPIJob ({templated_ms / plain_ms:.2f}x); bound 1 ms -> "
              f"{'met' if templated_ms - plain_ms <= 1.0 else 'NOT met'}")
    print(f"machine                      {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} "
          f"(other processes included)")

    if args.profile:
        print_profile(args.profile)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--profiled-operator"]:
        _Profiles(sys.argv[2])
        from bert_operator.cli import main as bertjob
        sys.argv = ["bertjob", *sys.argv[3:]]
        sys.exit(bertjob())
    else:
        main()
