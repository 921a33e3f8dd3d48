"""``serve``: answer requests with a fine-tuned model, on KServe's model server (:mod:`bert_trainer.serve`).

``serve transformer`` is the InferenceService's transformer container: text in, token ids to the predictor (Triton)
over v2 REST, labels or answers out. It takes the export's assets (``--assets_uri``, local or s3://) and the
predictor's model name; KServe's controller appends ``--model_name``, ``--predictor_host`` and ``--http_port``
(and may append ``--predictor_protocol`` or its older spelling ``--protocol``), which it accepts.
``serve local`` runs the same transformer in front of the repository's SavedModel, in one server on this machine
(``bertjob serve --local``). ``serve predictor`` is that SavedModel alone behind v2 REST: the InferenceService's
predictor where ``spec.serve.runtime`` is ``python`` (no Triton), its repository where KServe's storage initializer
put ``storageUri`` (/mnt/models). The checks run before TensorFlow or KServe load: a bad flag or a repository that is
not a ``triton`` export exits 2 naming it.
"""

from __future__ import annotations

import argparse
import os

from bert_common.contract import SERVING_FILE, TRITON_ASSETS, TRITON_VERSION
from bert_trainer import storage
from bert_trainer.tasks.common import run_guarded

NAME = "serve"
HELP = "serve a fine-tuned model's triton export on KServe's model server: the transformer, or it and the model locally"
ORDER = 90
SAVEDMODEL = os.path.join(TRITON_VERSION, "model.savedmodel")


def add_arguments(g: argparse.ArgumentParser) -> None:
    modes = g.add_subparsers(dest="mode", required=True, metavar="{transformer,local,predictor}")
    t = modes.add_parser("transformer", help="the InferenceService's transformer, in front of a v2 predictor (Triton)")
    t.add_argument("--assets_uri", required=True, help="the export's <model>/assets folder: local or s3://")
    t.add_argument("--predictor_model", required=True, help="the predictor's model name (the Triton model folder's)")
    t.add_argument("--model_name", help="the name requests use, /v1/models/<name>:predict (default: the model's)")
    t.add_argument("--predictor_host", required=True, help="host[:port] of the predictor's v2 REST endpoint")
    t.add_argument("--predictor_protocol", "--protocol", default="v2",
                   help="the protocol to the predictor: v2 (Open Inference Protocol over REST), the only one spoken")
    t.add_argument("--http_port", type=int, default=8080)
    _repository_arguments(modes.add_parser("local", help="the transformer and the SavedModel in one server on this "
                                                         "machine"), "/v1/models/<name>:predict")
    _repository_arguments(modes.add_parser("predictor", help="the SavedModel alone over v2 REST: an InferenceService's "
                                                             "predictor with runtime: python"), "/v2/models/<name>/infer")


def _repository_arguments(mode: argparse.ArgumentParser, path: str) -> None:
    """What the two modes that run the SavedModel in this process take: its repository, a name, the batching."""
    mode.add_argument("--model_repository", required=True,
                      help="a triton export (<output>/export/triton) or its <model> folder, on local disk")
    mode.add_argument("--model_name", help=f"the name requests use, {path} (default: the model's)")
    mode.add_argument("--http_port", type=int, default=8080)
    mode.add_argument("--batch_delay_ms", type=float, default=0.0,
                      help="dynamic batching: run requests arriving within this many ms as one batch (0: off)")
    mode.add_argument("--max_batch", type=int, default=32, help="rows in one dynamic batch at most")


def model_folder(parser: argparse.ArgumentParser, repository: str) -> str:
    """The <model> folder of a repository root holding one model, or the folder itself when it is a model's."""
    if os.path.isfile(os.path.join(repository, "config.pbtxt")):
        return repository
    if not os.path.isdir(repository):
        parser.error(f"--model_repository: {repository}: no such folder")
    models = sorted(name for name in os.listdir(repository) if os.path.isfile(os.path.join(repository, name, "config.pbtxt")))
    if len(models) != 1:
        parser.error(f"--model_repository: {repository}: holds {len(models)} models with a config.pbtxt "
                     f"({', '.join(models) or 'none'}); give a triton export's folder, which holds one")
    return os.path.join(repository, models[0])


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Ports in range, the protocol spoken, the assets (and locally the SavedModel) there; sets args.assets_uri."""
    if not 0 < args.http_port < 65536:
        parser.error(f"--http_port: must be 1 to 65535, got {args.http_port}")
    if args.mode == "transformer":
        if args.predictor_protocol != "v2":
            parser.error(f"--predictor_protocol: the transformer speaks v2 (REST) to its predictor, got "
                         f"{args.predictor_protocol[:32]!r}")
    else:
        if storage.is_s3(args.model_repository):
            parser.error("--model_repository: a folder on local disk (the model runs in this process)")
        if args.batch_delay_ms < 0 or args.max_batch < 1:
            parser.error("--batch_delay_ms must be >= 0 and --max_batch >= 1")
        args.model_dir = model_folder(parser, args.model_repository)
        if not os.path.isfile(os.path.join(args.model_dir, SAVEDMODEL, "saved_model.pb")):
            parser.error(f"--model_repository: {args.model_dir}: no {SAVEDMODEL}/saved_model.pb (not a triton export)")
        args.assets_uri = os.path.join(args.model_dir, TRITON_ASSETS)
    try:
        found = storage.exists(storage.join(args.assets_uri, SERVING_FILE))
    except storage.StorageError as exc:
        parser.error(f"--assets_uri: {exc}")
    if not found:
        flag = "assets_uri" if args.mode == "transformer" else "model_repository"
        parser.error(f"--{flag}: {args.assets_uri}: no {SERVING_FILE} (the assets of a triton export)")


def _serve(args: argparse.Namespace) -> None:
    from bert_trainer.finetune.tokenization import load_tokenizer  # noqa: PLC0415
    from bert_trainer.scratch import fresh_scratch_dir  # noqa: PLC0415
    from bert_trainer.serve.manifest import load_manifest  # noqa: PLC0415
    from bert_trainer.serve.server import start  # noqa: PLC0415
    from bert_trainer.serve.transformer import BertTransformer  # noqa: PLC0415 - imports kserve

    scratch = fresh_scratch_dir()
    manifest = load_manifest(args.assets_uri)
    tokenizer = load_tokenizer(manifest.vocab_file, manifest.do_lower_case, scratch)
    name = args.model_name or manifest.model
    if args.mode == "transformer":
        transformer = BertTransformer(name, manifest, tokenizer, args.predictor_model)
        start([transformer], args.http_port, args.predictor_host, args.predictor_protocol)
        return
    from bert_trainer.serve.predictor import SavedModelPredictor  # noqa: PLC0415

    if args.mode == "predictor":
        alone = SavedModelPredictor(name, os.path.join(args.model_dir, SAVEDMODEL), manifest,
                                    batch_delay_ms=args.batch_delay_ms, max_batch=args.max_batch)
        alone.load()
        print(f"serving {manifest.task} ({manifest.head}) token ids at http://0.0.0.0:{args.http_port}/v2/models/"
              f"{name}/infer", flush=True)
        start([alone], args.http_port, None)
        return
    # The predictor goes by the model's name, as in Triton, unless requests use that name for the transformer.
    predictor_name = manifest.model if manifest.model != name else f"{manifest.model}-savedmodel"
    predictor = SavedModelPredictor(predictor_name, os.path.join(args.model_dir, SAVEDMODEL), manifest,
                                    batch_delay_ms=args.batch_delay_ms, max_batch=args.max_batch)
    predictor.load()
    transformer = BertTransformer(name, manifest, tokenizer, predictor_name)
    print(f"serving {manifest.task} ({manifest.head}) at http://127.0.0.1:{args.http_port}/v1/models/{name}:predict "
          f"(token ids: /v2/models/{predictor_name}/infer)", flush=True)
    start([transformer, predictor], args.http_port, f"127.0.0.1:{args.http_port}")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from bert_trainer.finetune.tokenization import VocabError  # noqa: PLC0415
    from bert_trainer.serve.manifest import ManifestError  # noqa: PLC0415

    return run_guarded(parser, NAME, lambda: _serve(args), stoppable=False, input_errors=(ManifestError, VocabError))
