"""What the platform's job templates cost per MPIJob: the operator's rendering alone against rendering with templates
applied and checked, interleaved in one run.

The issue's bound is 1 ms more per MPIJob. Both sides run the operator's own code for a stage to create: the plain
side `render_mpijob`, the templated side what reconcile/template_step.py does (the template's values, the base
MPIJob, each overlay's Jinja patch rendered and parsed, the strategic merge, every check: the operator's rendering
kept, accelerators, images, core/v1's Pod schema and the MPIJob CRD's (the MPI Operator's, from ../shared/crds, as
the operator reads it from the cluster), PodSecurity, and the launcher's exports). CPU time of this process (time.process_time),
rounds alternating so that load on the machine falls on both sides alike.

    .venv/bin/python bench/template_overhead.py [--templates efa,istio-off] [--rounds 20] [--per-round 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    from bert_operator.api.parse import parse_text
    from bert_operator.dependencies import resolve_file
    from bert_operator.render import RenderSettings, render_mpijob, render_values
    from bert_operator.render.values import template_values
    from bert_operator.tasks import stages_of
    from bert_operator.templates import apply_overlays, overlay_context, parse_overlay
    from bert_operator.templates.schema import mpijob_check

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", default="efa,istio-off", help="examples/templates/ names, applied in this order")
    ap.add_argument("--job", default="examples/bert-large-pretrain.yaml")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=50)
    args = ap.parse_args()
    path = str(REPO / args.job)
    first = resolve_file(parse_text(Path(path).read_text(), path), path, need_all=True)[0]
    stage = stages_of(first.spec)[0]
    # A new job each MPIJob, as in a burst: a template that reads the job's name renders new text for each.
    def named(round_index: int, i: int):
        return first.model_copy(update={"metadata": first.metadata.model_copy(
            update={"name": f"{first.metadata.name}-{round_index}-{i}"})})
    settings = RenderSettings()
    overlays = [parse_overlay((REPO / "examples" / "templates" / f"{name}.yaml").read_text(), name)
                for name in args.templates.split(",") if name]

    def plain(job) -> None:
        render_mpijob(job, stage, settings)

    crd = REPO.parent / "shared" / "crds" / "kubeflow.org_mpijobs.yaml"
    schema = mpijob_check(yaml.load(crd.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

    def templated(job) -> None:
        values = template_values(job, stage, settings)
        apply_overlays(render_values(values), overlays, overlay_context(job, stage, values), mpijob_schema=schema)

    for fn in (plain, templated):  # warm: the template's compile, the skeleton cache, the overlays' compile
        fn(first)
    per: dict[str, list[float]] = {"plain": [], "templated": []}
    for round_index in range(args.rounds):
        jobs = [named(round_index, i) for i in range(args.per_round)]  # never seen before: no cache helps either side
        for name, fn in (("plain", plain), ("templated", templated)):
            start = time.process_time()
            for job in jobs:
                fn(job)
            per[name].append((time.process_time() - start) / args.per_round * 1000)
    plain_ms, templated_ms = statistics.median(per["plain"]), statistics.median(per["templated"])
    shown = ", ".join(o.ref for o in overlays) or "(none)"
    print(f"{args.per_round} jobs like {args.job} (each a new name), stage {stage.name}, templates {shown}; "
          f"{args.rounds} rounds x {args.per_round} MPIJobs each side, CPU ms per MPIJob (median of rounds)")
    print(f"{'operator rendering alone':32s} {plain_ms:8.3f} ms")
    print(f"{'with the templates, checked':32s} {templated_ms:8.3f} ms")
    print(f"{'templates cost':32s} {templated_ms - plain_ms:8.3f} ms per MPIJob ({templated_ms / plain_ms:.2f}x); "
          f"bound: 1 ms -> {'met' if templated_ms - plain_ms <= 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
