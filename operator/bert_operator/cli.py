"""`bertjob`: validate, render and describe BertTrainingJobs (and validate BertTrainingPolicies) from the command line.

Exit codes: 0 success, 2 bad input (with one `path: message` line per
problem on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import yaml

from .api import BertTrainingJob, SpecError
from .api.parse import load_documents, parse_job, parse_text
from .dependencies import in_file, resolve_file, resolve_in_file
from .tasks import task_of
from .api.crd import crd_yaml, policy_crd_yaml
from .config import OperatorSettings, SettingsError
from .kubectl import add_commands as add_cluster_commands, add_version
from .pod_security import LEVELS
from .policy import parse_policy
from .policy_files import Decided, PolicyFile, decide_documents, is_policy, parse_labels, read_policy_files
from .render import RenderSettings, render_all
from .api.policy import MAX_FORCED_TEMPLATES
from .templates import Overlay, TemplateInvalid, parse_overlay, render_with_overlays
from .templates.schema import MPIJOB_CRD, SchemaCheck, mpijob_check
from .render.values import DEFAULT_TRAINER_IMAGE
from .terminal import escape, one_line

EXIT_OK = 0
EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input that is not a spec problem (unreadable file, bad option)."""


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected a YAML file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None


def _resolved(path: str, *, need_all: bool) -> list[BertTrainingJob]:
    """The jobs of one file, with the references between them resolved (as if each producer had succeeded)."""
    return resolve_file(parse_text(_read(path), path), path, need_all=need_all)


def _policies(args: argparse.Namespace) -> PolicyFile | None:
    """The policies and namespaces of --policy (None: no --policy, so no policy applies, as before)."""
    if args.namespace_labels is not None and not args.policy:
        raise UsageError("--namespace-labels: only with --policy (the labels are what the policies select)")
    if not args.policy and not getattr(args, "jobs", False):
        return None
    return read_policy_files([(_read(path), path) for path in args.policy])


def _labelled(path: str, text: str) -> list[tuple[str, Any]]:
    """The documents of a file, each with the label its errors carry (the file, and its index when several)."""
    documents = load_documents(text, path)
    return [(path if len(documents) == 1 else f"{path}[{index}]", document) for index, document in enumerate(documents)]


def _decided(path: str, documents: list[tuple[str, Any]], known: PolicyFile, args: argparse.Namespace, *,
             need_all: bool) -> list[Decided]:
    return decide_documents(documents, path, known, args.namespace_labels, need_all=need_all)


def _shown_value(value: Any) -> str:
    """A value a policy set, as JSON: quoted and escaped, so no control character of a file reaches the terminal."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _validated(path: str, known: PolicyFile | None, args: argparse.Namespace) -> list[str]:
    """What `validate` says of one file: a line per policy and per job (with --policy: what the policies set);
    SpecError with every problem of the file."""
    text = _read(path)
    documents = _labelled(path, text)
    lines: list[str] = []
    errors = []
    for label, document in documents:
        if is_policy(document):
            try:
                lines.append(f"{label}: {parse_policy(document).metadata.name} is a valid BertTrainingPolicy")
            except SpecError as exc:
                errors.extend(SpecError(exc.errors, label).errors)
    jobs = [(label, document) for label, document in documents if not is_policy(document)]
    try:
        if known is None:
            parsed, failed = [], []
            for label, document in jobs:
                try:
                    parsed.append(parse_job(document, label))
                except SpecError as exc:
                    failed.extend(exc.errors)
            if failed:
                raise SpecError(failed)
            for job in resolve_file(parsed, path, need_all=False):
                lines.append(f"{path}: {job.metadata.namespace}/{job.metadata.name} is a valid {task_of(job.spec).name} job")
        else:
            for done in _decided(path, jobs, known, args, need_all=False):
                lines.extend(_decided_lines(path, done))
    except SpecError as exc:
        errors.extend(exc.errors)
    if errors:
        raise SpecError(errors)
    return lines


def _decided_lines(path: str, done: Decided) -> list[str]:
    job, meta = done.job, done.job.metadata
    head = f"{path}: {meta.namespace}/{meta.name} is a valid {task_of(job.spec).name} job"
    if not done.decision.policies:
        return [f"{head}; no BertTrainingPolicy selects namespace {meta.namespace} ({done.labels_from})"]
    lines = [f"{head} under BertTrainingPolicy {', '.join(done.decision.policies)}"]
    lines += [f"  {a.path} = {_shown_value(a.value)} ({a.how}, {a.policy})" for a in done.decision.applied]
    return lines


def _overlays(args: argparse.Namespace) -> list[Overlay]:
    """The --template files, parsed (exit 2 naming the file, its line and field)."""
    if len(args.template) > MAX_FORCED_TEMPLATES:
        raise UsageError(f"--template: at most {MAX_FORCED_TEMPLATES} templates (as many as a policy forces), "
                         f"not {len(args.template)}")
    overlays = []
    for path in args.template:
        try:
            overlays.append(parse_overlay(_read(path), path))
        except TemplateInvalid as exc:
            raise UsageError(f"--template {path}: {exc}") from None
    names = [o.name for o in overlays]
    if len(set(names)) != len(names):
        raise UsageError(f"--template: two files name the same overlay ({', '.join(names)})")
    return overlays


def _mpijob_schema(args: argparse.Namespace) -> SchemaCheck | None:
    """--mpijob-crd, read once (exit 2 naming the file when it is not an MPIJob CRD with a v2beta1 schema)."""
    path = getattr(args, "mpijob_crd", None)
    if not path:
        return None
    cached = getattr(args, "mpijob_schema", None)
    if cached is None:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # (the CRD is 1 MB of YAML)
        try:
            documents = [d for d in yaml.load_all(_read(path), Loader=loader) if isinstance(d, dict)]
        except yaml.YAMLError as exc:
            raise UsageError(f"--mpijob-crd {path}: not YAML: {exc}") from None
        crd = next((d for d in documents if (d.get("metadata") or {}).get("name") == MPIJOB_CRD), None)
        if crd is None:
            raise UsageError(f"--mpijob-crd {path}: no CustomResourceDefinition named {MPIJOB_CRD} in it")
        try:
            cached = args.mpijob_schema = mpijob_check(crd)
        except ValueError as exc:
            raise UsageError(f"--mpijob-crd {path}: {exc}") from None
    return cached


def _with_overlays(job: BertTrainingJob, overlays: list[Overlay], args: argparse.Namespace,
                   settings: RenderSettings | None = None) -> list[dict[str, Any]]:
    try:
        return render_with_overlays(job, overlays, settings, level=args.pod_security, mpijob_schema=_mpijob_schema(args))
    except TemplateInvalid as exc:
        raise UsageError(f"{job.metadata.namespace}/{job.metadata.name}: {exc}") from None


def _template_lines(path: str, overlays: list[Overlay], args: argparse.Namespace) -> list[str]:
    """What `validate --template` says of each job of a file: its MPIJobs with the templates pass their checks, or
    they cannot be made here (a job taking inputs from a job not in the file is rendered only on the cluster)."""
    jobs = resolve_file(parse_text(_read(path), path), path, need_all=False)
    bodies = in_file(jobs)
    lines = []
    for job in jobs:
        name = f"{path}: {job.metadata.namespace}/{job.metadata.name}"
        try:
            resolved = resolve_in_file(job, bodies, need_all=True)
        except SpecError:
            lines.append(f"{name}: templates not checked: it takes inputs from a job not in this file, so its MPIJobs "
                         "are made only on the cluster")
            continue
        _with_overlays(resolved, overlays, args)
        crd = "the MPIJob CRD of --mpijob-crd" if args.mpijob_crd else "no MPIJob CRD: give --mpijob-crd to check it too"
        lines.append(f"{name} renders with templates {', '.join(o.ref for o in overlays)} and passes their checks "
                     f"(core/v1, PodSecurity {args.pod_security}, {crd})")
    return lines


def cmd_validate(args: argparse.Namespace) -> int:
    known = _policies(args)
    overlays = _overlays(args)
    errors = []
    for path in args.files:
        try:
            for line in _validated(path, known, args):
                print(line)
            if overlays:
                for line in _template_lines(path, overlays, args):
                    print(line)
        except SpecError as exc:
            errors.extend(exc.errors)
    if errors:
        raise SpecError(errors)
    return EXIT_OK


def cmd_render(args: argparse.Namespace) -> int:
    settings = RenderSettings(default_image=args.image)
    known = _policies(args)
    overlays = _overlays(args)
    if overlays and (known is not None or args.jobs):
        raise UsageError("--template: not with --policy or --jobs yet (render the jobs' MPIJobs with overlays alone)")
    if overlays:
        objects = [obj for path in args.files for job in _resolved(path, need_all=True)
                   for obj in _with_overlays(job, overlays, args, settings)]
    elif known is None:
        objects = [obj for path in args.files for job in _resolved(path, need_all=True) for obj in render_all(job, settings)]
    else:
        decided = [done for path in args.files for done in _decided(path, _labelled(path, _read(path)), known, args,
                                                                    need_all=not args.jobs)]
        if args.jobs:  # the jobs as the operator sees them: the spec with the policies' values, and status.policy
            objects = [{**done.job.model_dump(by_alias=True, exclude_unset=True, mode="json"),
                        **({"status": {"policy": done.decision.status()}} if done.decision.policies else {})}
                       for done in decided]
        else:
            objects = [obj for done in decided for obj in render_all(done.resolved, settings)]
    if args.output == "json":
        print(json.dumps(objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": objects}, indent=2))
    else:
        print(yaml.safe_dump_all(objects, sort_keys=False, width=120), end="")
    return EXIT_OK


def _namespace_labels(text: str) -> dict[str, str]:
    try:
        return parse_labels(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_template_options(parser: argparse.ArgumentParser, mpijob_crd: bool = True) -> None:
    parser.add_argument("--template", action="append", default=[], metavar="OVERLAY.yaml",
                        help="apply this job template overlay to every MPIJob (repeatable, in order; "
                             "examples/templates/ has some) and check the result as the operator would")
    parser.add_argument("--pod-security", choices=LEVELS, default="restricted",
                        help="the PodSecurity level the pods must pass with the overlays (default restricted)")
    if not mpijob_crd:  # (run --local makes no MPIJob)
        return
    parser.add_argument("--mpijob-crd", metavar="CRD.yaml",
                        help="check what the overlays change against this MPIJob CustomResourceDefinition too (the MPI "
                             "Operator's kubeflow.org_mpijobs.yaml; the operator reads the cluster's own)")


def _add_policy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", action="append", default=[], metavar="POLICY.yaml",
                        help="judge the jobs under these BertTrainingPolicies (repeatable; Namespace documents in it "
                             "give namespaces' labels; `kubectl get btp,namespaces -o yaml` makes one), as the "
                             "operator would: exit 2 naming every violation")
    parser.add_argument("--namespace-labels", type=_namespace_labels, default=None, metavar="KEY=VALUE,...",
                        help="the labels of every job's namespace (default: its Namespace document in the policy "
                             "file, else none); kubernetes.io/metadata.name is always the namespace's name")


def cmd_crd(args: argparse.Namespace) -> int:
    print(policy_crd_yaml() if args.policy else crd_yaml(), end="")
    return EXIT_OK


def _volume(text: str) -> tuple[str, Path]:
    claim, sep, folder = text.partition("=")
    if not sep or not claim or not folder:
        raise argparse.ArgumentTypeError(f"expected CLAIM=DIR, got {text!r}")
    return claim, Path(folder)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        raise UsageError("run: only --local is supported here; on a cluster, kubectl apply -f the file")
    if args.processes is not None and args.processes < 1:
        raise UsageError(f"--processes: must be at least 1, got {args.processes}")
    # The reconciler (and tqdm, the [operator] extra) loads only here.
    from .local import LocalOptions, LocalSetupError, run_jobs, status_json, status_yaml, summary_table  # noqa: PLC0415

    jobs = parse_text(_read(args.file), args.file)
    resolve_file(jobs, args.file, need_all=False)  # a cycle, or a producer that cannot give what is asked: exit 2 now
    options = LocalOptions(
        workdir=Path(args.workdir), yaml_dir=Path(args.file).resolve().parent if args.file != "-" else None,
        volumes=dict(args.volume), processes=args.processes, fresh=args.fresh, only=tuple(args.job),
        templates=tuple(_overlays(args)), pod_security=args.pod_security,
    )
    try:
        code, runs = run_jobs(jobs, options)
    except LocalSetupError as exc:
        raise UsageError(str(exc)) from None
    shown = {"yaml": status_yaml, "json": status_json}.get(args.output, summary_table)
    print(shown(runs), end="")
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    if not args.local:
        raise UsageError("serve: only --local is supported here; on a cluster, set spec.serve on the job")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port: must be 1 to 65535, got {args.port}")
    from .local import LocalOptions, LocalSetupError  # noqa: PLC0415 - as run --local
    from .local.serve import SERVED_TASKS, serve_local  # noqa: PLC0415

    jobs = parse_text(_read(args.file), args.file)
    job = next((job for job in jobs if job.metadata.name == args.job), None)
    if job is None:
        raise UsageError(f"--job: {args.file} has no job {args.job!r} (it has {', '.join(j.metadata.name for j in jobs)})")
    if task_of(job.spec).name not in SERVED_TASKS:
        raise UsageError(f"--job: {args.job} is a {task_of(job.spec).name} job; a served model is a fine-tuned one "
                         f"({', '.join(SERVED_TASKS)})")
    options = LocalOptions(workdir=Path(args.workdir), yaml_dir=Path(args.file).resolve().parent if args.file != "-" else None,
                           volumes=dict(args.volume))
    try:
        return serve_local(job, options, args.port)
    except LocalSetupError as exc:
        raise UsageError(str(exc)) from None


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict_client import PredictError, predict_all, tsv_instances  # noqa: PLC0415

    if not 0 < args.batch <= 64:
        raise UsageError(f"--batch: must be 1 to 64 (the server takes at most 64 instances a request), got {args.batch}")

    try:
        if args.tsv:
            if not args.task:
                raise UsageError("--task: required with --tsv (the GLUE task whose layout the file has)")
            body: Any = {"instances": tsv_instances(_read(args.tsv), args.task)}
        else:
            source = "--data" if args.data is not None else "--file"
            try:
                body = json.loads(args.data if args.data is not None else _read(args.file))
            except ValueError as exc:
                raise UsageError(f"{source}: not JSON ({exc})") from None
        predictions = predict_all(args.url, body, args.batch)
    except PredictError as exc:
        print(f"bertjob: predict: {one_line(str(exc))}", file=sys.stderr)
        return exc.code
    for prediction in predictions:
        print(json.dumps(prediction))
    return EXIT_OK


def cmd_operator(args: argparse.Namespace) -> int:
    import kubernetes  # noqa: PLC0415 - with kopf, only the operator needs it

    from .main import run  # noqa: PLC0415 - kopf and the kubernetes client load only here

    try:
        settings = OperatorSettings.from_env(
            namespaces=tuple(n for spec in args.namespace for n in spec.split(",") if n),
            trainer_image=args.trainer_image, kubeconfig=args.kubeconfig, liveness_port=args.liveness_port,
            metrics_port=args.metrics_port, progress_port=args.progress_port, progress_url=args.progress_url,
            resync_seconds=args.resync_seconds, webhook_port=args.webhook_port, webhook_cert_dir=args.webhook_cert_dir,
            progress_cert_dir=args.progress_cert_dir, restart_backoff_seconds=args.restart_backoff_seconds,
        )
    except SettingsError as exc:
        raise UsageError(str(exc)) from None
    try:
        run(settings)
    except kubernetes.config.ConfigException as exc:
        raise UsageError(f"--kubeconfig: no cluster to connect to: not in a pod, and {exc}") from None
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bertjob", description="BERT training jobs on Kubernetes (bert-operator).")
    add_version(parser, "bertjob")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check BertTrainingJob and BertTrainingPolicy YAML files")
    validate.add_argument("files", nargs="+", metavar="FILE", help="YAML file(s), '-' for stdin; multi-document allowed")
    _add_policy_options(validate)
    _add_template_options(validate)
    validate.set_defaults(func=cmd_validate)

    render = sub.add_parser("render", help="print the MPIJobs a BertTrainingJob runs, one per stage")
    render.add_argument("files", nargs="+", metavar="FILE")
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    render.add_argument("--image", default=DEFAULT_TRAINER_IMAGE,
                        help=f"trainer image when spec.image is unset (default {DEFAULT_TRAINER_IMAGE})")
    _add_policy_options(render)
    _add_template_options(render)
    render.add_argument("--jobs", action="store_true",
                        help="print the BertTrainingJobs as the policies make them (defaults and forced values in "
                             "the spec, status.policy), not their MPIJobs")
    render.set_defaults(func=cmd_render)

    crd = sub.add_parser("crd", help="print the BertTrainingJob CustomResourceDefinition (--policy: BertTrainingPolicy's)")
    crd.add_argument("--policy", action="store_true",
                     help="print the BertTrainingPolicy CRD instead (manifests/policy-crd.yaml is its output)")
    crd.set_defaults(func=cmd_crd)

    run = sub.add_parser("run", help="run the jobs of a file to completion on this machine (--local), no cluster needed")
    run.add_argument("file", metavar="FILE", help="BertTrainingJob YAML; several documents run in order")
    run.add_argument("--local", action="store_true", help="run here: the same trainer command lines, as processes")
    run.add_argument("--workdir", default="bertjob-runs",
                     help="status, logs and claims without a folder (default ./bertjob-runs)")
    run.add_argument("--volume", action="append", type=_volume, default=[], metavar="CLAIM=DIR",
                     help="folder standing for PersistentVolumeClaim CLAIM (repeatable); default: the job's "
                          "local.bertoperator.io/pvc.CLAIM annotation, else WORKDIR/volumes/CLAIM")
    run.add_argument("--processes", type=int, default=None, metavar="N",
                     help="ranks to start (default: the job's workers x GPUs); above 1 runs mpirun on localhost")
    run.add_argument("--job", action="append", default=[], metavar="NAME", help="run only this job of the file (repeatable)")
    run.add_argument("--fresh", action="store_true", help="forget saved status (a changed spec needs it); checkpoints stay")
    _add_template_options(run, mpijob_crd=False)
    run.add_argument("-o", "--output", choices=("yaml", "json"), default=None,
                     help="end with each job's whole status (default: a table of phase, duration, main metric, outputs)")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="serve a job's trained model on this machine (--local): text in, labels out")
    serve.add_argument("file", metavar="FILE", help="the BertTrainingJob YAML the job was run from (bertjob run --local)")
    serve.add_argument("--local", action="store_true", help="serve here, with KServe's model server")
    serve.add_argument("--job", required=True, metavar="NAME", help="the glue or squad job whose model to serve")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080): /v1/models/NAME:predict")
    serve.add_argument("--workdir", default="bertjob-runs", help="the run's --workdir (default ./bertjob-runs)")
    serve.add_argument("--volume", action="append", type=_volume, default=[], metavar="CLAIM=DIR",
                       help="the run's --volume (repeatable)")
    serve.set_defaults(func=cmd_serve)

    predict = sub.add_parser("predict", help="send text to a served model and print its predictions, one JSON line each")
    predict.add_argument("--url", required=True, help="the predict endpoint: http(s)://HOST[:PORT]/v1/models/NAME:predict")
    body = predict.add_mutually_exclusive_group(required=True)
    body.add_argument("-d", "--data", help='the request body: {"instances": [{"sentence1": ..., "sentence2": ...}]}')
    body.add_argument("-f", "--file", help="a file holding the request body ('-': standard input)")
    body.add_argument("--tsv", help="a GLUE TSV in --task's layout: its rows' texts are the instances")
    predict.add_argument("--task", choices=("CoLA", "MRPC", "MNLI"), help="the GLUE task of --tsv")
    predict.add_argument("--batch", type=int, default=32, help="instances a request (default 32, at most 64)")
    predict.set_defaults(func=cmd_predict)

    operator = sub.add_parser("operator", help="run the operator against the cluster in KUBECONFIG or in-cluster")
    operator.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                          help="watch only these namespaces (repeat or comma-separate); default cluster-wide; "
                               "env BERTOP_NAMESPACES")
    operator.add_argument("--trainer-image", default=None,
                          help="trainer image for jobs without spec.image; env BERTOP_TRAINER_IMAGE")
    operator.add_argument("--kubeconfig", default=None, help="kubeconfig file; default in-cluster, then KUBECONFIG")
    operator.add_argument("--liveness-port", type=int, default=8080, help="serves /healthz (0: off)")
    operator.add_argument("--metrics-port", type=int, default=9090, help="Prometheus /metrics (0: off)")
    operator.add_argument("--progress-port", type=int, default=8081, help="trainer progress endpoint")
    operator.add_argument("--progress-url", default=None, help="URL pods reach the progress endpoint at; env BERTOP_PROGRESS_URL")
    operator.add_argument("--progress-cert-dir", default=None,
                          help="serve the progress endpoint over HTTPS with tls.crt and tls.key from this folder (its ca.crt, "
                               "or tls.crt, is given to the trainer pods to verify it); env BERTOP_PROGRESS_CERT_DIR")
    operator.add_argument("--resync-seconds", type=float, default=None, help="safety-net resync period (default 60)")
    operator.add_argument("--restart-backoff-seconds", type=float, default=None,
                          help="wait before re-creating a stage that failed for an infrastructure reason, doubling per "
                               "restart (default 30, at most BERTOP_RESTART_BACKOFF_MAX_SECONDS, 360); env "
                               "BERTOP_RESTART_BACKOFF_SECONDS")
    operator.add_argument("--webhook-port", type=int, default=None,
                          help="serve the validating admission webhook (HTTPS) on this port (default 0: off); "
                               "env BERTOP_WEBHOOK_PORT")
    operator.add_argument("--webhook-cert-dir", default=None,
                          help="folder with the webhook's tls.crt and tls.key; env BERTOP_WEBHOOK_CERT_DIR")
    operator.set_defaults(func=cmd_operator)

    # get, describe, logs, wait, watch: the cluster-side commands, the same as `kubectl bertjob`'s (kubectl/).
    add_cluster_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:  # a job file's values are quoted back: escaped, as everything bertjob prints
        print(escape(exc.render()), file=sys.stderr)
        return EXIT_BAD_INPUT
    except UsageError as exc:
        print(f"bertjob: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:  # outside run --local's own handling (which records the interruption first)
        print("bertjob: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
