"""Pretraining, step by step, against Hugging Face transformers' BertForPreTraining (PyTorch, CPU, fp32).

Both sides start from the same weights (our BertPretrainer's initial weights, converted to Hugging Face names by
model/hf_export.py), read the same batches (synthetic pretraining records written by data/synthetic.py, read back
in file order through the trainer's own parse_batch) and take N optimizer steps with dropout off. Ours is the
trainer's PretrainEngine (the step `bert_trainer pretrain` runs: fused forward/backward, clip to global norm 1.0,
the optimizer); the reference is BertForPreTraining's forward and loss (masked LM + next sentence, transformers'
own) with autograd, and the update written out below in PyTorch:

* ``adam``: Google BERT's AdamWeightDecay (optimization.py): no bias correction unless asked, weight decay added
  to the update and skipped for LayerNorm and biases (transformers' examples' ``no_decay`` convention, on Hugging
  Face names, independently of our name patterns);
* ``lamb``: NVIDIA's LAMB (apex FusedLAMB, the BERT recipe's): the gradient divided by its global norm when that
  exceeds 1, bias-corrected moments, weight decay, the layer-wise trust ratio ||w||/||update|| for decayed
  tensors only.

Before either update the gradient is clipped as tf.clip_by_global_norm does: times clip/max(norm, clip).

Prints, per step and optimizer, both sides' loss (MLM + NSP) and gradient global norm (before clipping) and their
differences, and checks them against TOLERANCE. ``--write-reference PATH`` stores the reference side (with the
protocol and fingerprints of the initial weights and batches) for tests/trainer/test_pretrain_reference.py, which
replays our side without PyTorch. Needs the ``bench`` extra (torch==2.13.0, transformers):

    .venv/bin/python bench/pretrain_reference.py [--steps 8] [--write-reference tests/trainer/data/pretrain_reference.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "common"), str(REPO / "trainer")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

#: The whole protocol; --write-reference stores it, and the test reads it back from there.
PROTOCOL: dict[str, Any] = {
    "bert_config": {
        "vocab_size": 128, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 128, "max_position_embeddings": 64, "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    },
    "model_seed": 12345,  # EngineOptions.seed: BertPretrainer's initializer
    "records_seed": 27,  # write_synthetic_records(seed=...)
    "max_seq_length": 32, "max_predictions_per_seq": 5, "batch_size": 8, "steps": 8,
    "learning_rate": 2e-3, "num_warmup_steps": 2, "num_train_steps": 16,
    "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-6, "weight_decay_rate": 0.01, "clip_norm": 1.0,
    "optimizers": ["adam", "lamb"],
    "records": "synthetic",
}
#: --records prepare-data: the tiny example's corpus through `bert_trainer prepare-data` (its vocab: 512 tokens).
TINY_EXAMPLE = REPO / "examples" / "tiny"

#: Largest allowed |ours - reference| / |reference| per step, for the loss terms and the gradient norm. Step 0
#: differs by float32 rounding only (summation order of matmuls and reductions, ~1e-7 relative); each update
#: carries that into the weights and Adam's m/sqrt(v) passes it on, so later steps drift to a few 1e-6. 1e-4 is
#: 10x-100x above that drift and far below what a recipe difference makes (no clip, decay on LayerNorm, bias
#: correction: 1e-3 and more within these steps, see docs/benchmarks.md).
TOLERANCE = 1e-4
METRICS = ("loss", "mlm_loss", "nsp_loss", "grad_norm")
#: The losses hardly see weight decay at 0.01 in 8 steps (turning it off moves them by ~7e-6), so the final weights
#: are compared too, as two figures per tensor: how far it moved, ||w_N - w_0||, and how far along its initial
#: direction, (w_N - w_0).w_0/||w_0|| (where weight decay pulls). Each difference is taken relative to the
#: reference's movement (at least MOVED_FLOOR: the attention key bias gets no gradient and moves by rounding only).
#: Ours lands within ~2e-5 of the movement; no weight decay is off by ~1.4e-3.
WEIGHT_TOLERANCE = 2e-4
MOVED_FLOOR = 1e-4


# ----- shared inputs ------------------------------------------------------------------------------------------------
def read_batches(protocol: dict[str, Any], work: str) -> list[dict[str, np.ndarray]]:
    """Write the records (synthetic, or prepare-data's of the tiny example) and read the first steps x batch back,
    in order, as the trainer parses them."""
    import tensorflow as tf  # noqa: PLC0415

    from bert_trainer.data.schema import parse_batch  # noqa: PLC0415
    from bert_trainer.data.synthetic import write_synthetic_records  # noqa: PLC0415

    seq, pred, batch = protocol["max_seq_length"], protocol["max_predictions_per_seq"], protocol["batch_size"]
    if protocol["records"] == "prepare-data":
        out = Path(work) / "prepared"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "common"), str(REPO / "trainer")])}
        subprocess.run([sys.executable, "-m", "bert_trainer", "prepare-data", "--input_dir",
                        str(TINY_EXAMPLE / "corpus"), "--vocab_file", str(TINY_EXAMPLE / "vocab.txt"), "--output_dir",
                        str(out), "--local_dir", str(Path(work) / "scratch"), "--max_seq_length", str(seq),
                        "--max_predictions_per_seq", str(pred), "--dupe_factor", "1", "--n_shards", "1",
                        "--num_workers", "1", "--random_seed", str(protocol["records_seed"])],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        files = sorted(str(path) for path in (out / "training").iterdir())
    else:
        files = write_synthetic_records(work, num_files=1, examples_per_file=batch * protocol["steps"],
                                        vocab_size=protocol["bert_config"]["vocab_size"], max_seq_length=seq,
                                        max_predictions_per_seq=pred, seed=protocol["records_seed"])
    ds = tf.data.TFRecordDataset(files).take(batch * protocol["steps"]).batch(batch, drop_remainder=True)
    return [{k: v.numpy() for k, v in parse_batch(b, seq, pred).items()} for b in ds]


def fingerprint(arrays: dict[str, np.ndarray] | list[dict[str, np.ndarray]]) -> str:
    """sha256 over names, dtypes, shapes and bytes: the inputs both sides share, pinned in the stored file."""
    digest = hashlib.sha256()
    for item in (arrays if isinstance(arrays, list) else [arrays]):
        for name in sorted(item):
            value = np.ascontiguousarray(item[name])
            digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
            digest.update(value.tobytes())
    return digest.hexdigest()


# ----- ours ---------------------------------------------------------------------------------------------------------
Weights = dict[str, np.ndarray]


def run_ours(protocol: dict[str, Any], batches: list[dict[str, np.ndarray]], optimizer: str,
             decay_everything: bool = False, **overrides: Any) -> tuple[Weights, list[dict[str, float]], Weights]:
    """(initial weights, per-step metrics, final weights) of the trainer's PretrainEngine, weights by our names."""
    from bert_trainer.engine import EngineOptions, PretrainEngine  # noqa: PLC0415
    from bert_trainer.model import BertConfig  # noqa: PLC0415

    keys = ("learning_rate", "num_train_steps", "num_warmup_steps", "beta_1", "beta_2", "epsilon",
            "weight_decay_rate", "clip_norm")
    opts = EngineOptions(**({key: protocol[key] for key in keys} | overrides), optimizer=optimizer, precision="fp32",
                         seed=protocol["model_seed"])
    engine = PretrainEngine(BertConfig.from_dict(protocol["bert_config"]), opts)
    initial = {name: var.numpy().copy() for name, var in engine.model.named_variables().items()}
    if decay_everything:  # a control: LayerNorm and biases decayed too (read when the update is first traced)
        engine.optimizer.decay_mask = [True] * len(engine.optimizer.decay_mask)
    steps = []
    for batch in batches:
        out = engine.train_step([batch])
        steps.append({key: float(out[key]) for key in METRICS})
    return initial, steps, {name: var.numpy() for name, var in engine.model.named_variables().items()}


# ----- the reference ------------------------------------------------------------------------------------------------
def learning_rate(protocol: dict[str, Any], step: int) -> float:
    """BERT's schedule (Google's create_optimizer): linear warmup, then linear decay to 0 over num_train_steps."""
    base, warmup, total = protocol["learning_rate"], protocol["num_warmup_steps"], protocol["num_train_steps"]
    if step < warmup:
        return base * step / warmup
    return base * (1.0 - min(step, total) / total)


def clip_by_global_norm(grads: list, clip: float):
    """(clipped grads, norm before clipping), as tf.clip_by_global_norm: g * clip / max(norm, clip)."""
    import torch  # noqa: PLC0415

    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).float()
    if clip <= 0:
        return grads, float(norm)
    return [g * (clip / torch.maximum(norm, torch.tensor(clip))) for g in grads], float(norm)


def adam_weight_decay(params: list, grads: list, state: dict, decay: list[bool], lr: float, hp: dict[str, Any],
                      bias_correction: bool = False) -> None:
    """Google BERT's AdamWeightDecay (bias_correction=False) or textbook AdamW (True), in place:
    m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; u = m^/(sqrt(v^)+eps) [+ wd w]; w -= lr u."""
    import torch  # noqa: PLC0415

    b1, b2, eps, wd = hp["beta_1"], hp["beta_2"], hp["epsilon"], hp["weight_decay_rate"]
    state["t"] = t = state.get("t", 0) + 1
    with torch.no_grad():
        for i, (w, g) in enumerate(zip(params, grads)):
            m = state.setdefault(("m", i), torch.zeros_like(w))
            v = state.setdefault(("v", i), torch.zeros_like(w))
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            m_hat, v_hat = (m / (1 - b1 ** t), v / (1 - b2 ** t)) if bias_correction else (m, v)
            update = m_hat / (torch.sqrt(v_hat) + eps)
            if decay[i]:
                update = update + wd * w
            w.sub_(lr * update)


def nvlamb(params: list, grads: list, state: dict, decay: list[bool], lr: float, hp: dict[str, Any]) -> None:
    """NVIDIA's LAMB (apex FusedLAMB, max_grad_norm=1): g /= max(||g||_global, 1); bias-corrected Adam direction
    u = m^/(sqrt(v^)+eps) + wd w; decayed tensors step lr * ||w||/||u|| * u (1 where either norm is 0), the others
    lr * u."""
    import torch  # noqa: PLC0415

    b1, b2, eps, wd = hp["beta_1"], hp["beta_2"], hp["epsilon"], hp["weight_decay_rate"]
    state["t"] = t = state.get("t", 0) + 1
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).float()
    scale = 1.0 / torch.maximum(norm, torch.tensor(1.0))
    with torch.no_grad():
        for i, (w, g) in enumerate(zip(params, grads)):
            g = g * scale
            m = state.setdefault(("m", i), torch.zeros_like(w))
            v = state.setdefault(("v", i), torch.zeros_like(w))
            m.mul_(b1).add_((1 - b1) * g)
            v.mul_(b2).add_((1 - b2) * g * g)
            update = (m / (1 - b1 ** t)) / (torch.sqrt(v / (1 - b2 ** t)) + eps)
            ratio = 1.0
            if decay[i]:
                update = update + wd * w
                w_norm, u_norm = float(w.norm()), float(update.norm())
                ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            w.sub_(lr * ratio * update)


def hf_model(protocol: dict[str, Any], initial: dict[str, np.ndarray]):
    """BertForPreTraining with our initial weights (hf_export's names and layouts; the decoder tied as usual)."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    from bert_trainer.model import BertConfig  # noqa: PLC0415
    from bert_trainer.model.hf_export import hf_config, hf_tensors  # noqa: PLC0415

    body = hf_config(BertConfig.from_dict(protocol["bert_config"]), "BertForPreTraining")
    config = transformers.BertConfig(**body, attn_implementation="eager")
    model = transformers.BertForPreTraining(config)
    state = {name: torch.from_numpy(value) for name, value in hf_tensors(initial).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    left = set(missing) - {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias",
                           "bert.embeddings.position_ids", "bert.embeddings.token_type_ids"}
    if left or unexpected:
        raise SystemExit(f"weights do not line up: missing {sorted(left)}, unexpected {sorted(unexpected)}")
    model.tie_weights()
    params = dict(model.named_parameters())  # tied tensors once, as ours
    if len(params) != len(initial):
        raise SystemExit(f"{len(params)} Hugging Face parameters for our {len(initial)} variables")
    return model


def run_reference(protocol: dict[str, Any], initial: dict[str, np.ndarray], batches: list[dict[str, np.ndarray]],
                  optimizer: str, bias_correction: bool = False) -> tuple[list[dict[str, float]], dict[str, np.ndarray]]:
    """(per-step metrics, final weights by our names) of BertForPreTraining with the update written out above."""
    import torch  # noqa: PLC0415

    torch.manual_seed(0)
    model = hf_model(protocol, initial)
    model.train()  # dropout probabilities are 0: train mode changes nothing but says what runs
    names, params = zip(*model.named_parameters())
    decay = [not (name.endswith("bias") or "LayerNorm" in name) for name in names]
    state: dict = {}
    steps = []
    for step, batch in enumerate(batches):
        ids = torch.from_numpy(batch["input_ids"].astype(np.int64))
        labels = torch.full_like(ids, -100)
        rows, cols = np.nonzero(batch["masked_lm_weights"] > 0)
        positions = batch["masked_lm_positions"][rows, cols]
        labels[rows, positions] = torch.from_numpy(batch["masked_lm_ids"][rows, cols].astype(np.int64))
        nsp = torch.from_numpy(batch["next_sentence_labels"].reshape(-1).astype(np.int64))
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, attention_mask=torch.from_numpy(batch["input_mask"].astype(np.int64)),
                    token_type_ids=torch.from_numpy(batch["segment_ids"].astype(np.int64)))
        mlm = torch.nn.functional.cross_entropy(out.prediction_logits.reshape(-1, out.prediction_logits.shape[-1]),
                                                labels.reshape(-1), ignore_index=-100)
        nsp_loss = torch.nn.functional.cross_entropy(out.seq_relationship_logits, nsp)
        loss = mlm + nsp_loss
        loss.backward()
        grads = [p.grad.detach().clone() for p in params]
        grads, norm = clip_by_global_norm(grads, protocol["clip_norm"])
        lr = learning_rate(protocol, step)
        if optimizer == "adam":
            adam_weight_decay(list(params), grads, state, decay, lr, protocol, bias_correction)
        else:
            nvlamb(list(params), grads, state, decay, lr, protocol)
        steps.append({"loss": loss.item(), "mlm_loss": mlm.item(), "nsp_loss": nsp_loss.item(), "grad_norm": norm})
    return steps, ours_names(model)


def ours_names(model) -> dict[str, np.ndarray]:
    """The model's parameters under our names and layouts (hf_names' table, read backwards)."""
    from bert_trainer.model.hf_names import hf_to_google  # noqa: PLC0415

    out = {}
    for name, param in model.named_parameters():
        found = hf_to_google(name)
        assert found is not None, name
        gname, transpose = found
        value = param.detach().numpy()
        out[gname] = np.ascontiguousarray(value.T if transpose else value)
    return out


# ----- report -------------------------------------------------------------------------------------------------------
def relative(ours: float, ref: float) -> float:
    return abs(ours - ref) / max(abs(ref), 1e-12)


def table(optimizer: str, ours: list[dict[str, float]], ref: list[dict[str, float]]) -> list[str]:
    lines = [f"| {optimizer} step | loss ours | loss ref | rel diff | MLM rel | NSP rel | grad norm ours | "
             "grad norm ref | rel diff |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for step, (a, b) in enumerate(zip(ours, ref)):
        lines.append(f"| {step} | {a['loss']:.7f} | {b['loss']:.7f} | {relative(a['loss'], b['loss']):.1e} | "
                     f"{relative(a['mlm_loss'], b['mlm_loss']):.1e} | {relative(a['nsp_loss'], b['nsp_loss']):.1e} | "
                     f"{a['grad_norm']:.6f} | {b['grad_norm']:.6f} | {relative(a['grad_norm'], b['grad_norm']):.1e} |")
    return lines


def worst(ours: list[dict[str, float]], ref: list[dict[str, float]]) -> float:
    return max(relative(a[key], b[key]) for a, b in zip(ours, ref) for key in METRICS)


def weight_stats(initial: dict[str, np.ndarray], final: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Per tensor [||w_N - w_0||, (w_N - w_0).w_0/||w_0||] in float64 (0 along a zero initial tensor)."""
    out = {}
    for name in sorted(final):
        w0 = initial[name].astype(np.float64)
        moved = final[name].astype(np.float64) - w0
        norm0 = float(np.linalg.norm(w0))
        out[name] = [float(np.linalg.norm(moved)), float(np.sum(moved * w0)) / norm0 if norm0 > 0 else 0.0]
    return out


def weight_gap(ours: dict[str, list[float]], ref: dict[str, list[float]]) -> float:
    """The largest difference of the weight figures, relative to the reference's movement of that tensor."""
    return max(abs(a - b) / max(ref[name][0], MOVED_FLOOR) for name in ref for a, b in zip(ours[name], ref[name]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=PROTOCOL["steps"])
    ap.add_argument("--write-reference", metavar="PATH", help="store the reference side for the test")
    ap.add_argument("--records", choices=("synthetic", "prepare-data"), default=PROTOCOL["records"],
                    help="synthetic records (data/synthetic.py; what the test replays) or prepare-data's of the "
                         "tiny example's corpus (examples/tiny, vocab 512)")
    ap.add_argument("--no-controls", action="store_true",
                    help="skip the control runs (ours with a recipe change) that show the tolerance has teeth")
    args = ap.parse_args(argv)
    protocol = {**PROTOCOL, "steps": args.steps, "records": args.records}
    if args.records == "prepare-data":
        vocab = (TINY_EXAMPLE / "vocab.txt").read_text().splitlines()
        protocol["bert_config"] = {**PROTOCOL["bert_config"], "vocab_size": len(vocab)}

    import tensorflow as tf  # noqa: PLC0415
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    torch.set_num_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    print(f"tensorflow {tf.__version__}, torch {torch.__version__}, transformers {transformers.__version__}; "
          f"fp32, dropout off, {protocol['steps']} steps of batch {protocol['batch_size']}, seq "
          f"{protocol['max_seq_length']}, {protocol['records']} records, tolerance {TOLERANCE:g} relative")
    with tempfile.TemporaryDirectory() as work:
        batches = read_batches(protocol, work)
    runs: dict[str, list[dict[str, float]]] = {}
    finals: dict[str, dict[str, list[float]]] = {}
    failed = False
    initial: dict[str, np.ndarray] = {}
    for optimizer in protocol["optimizers"]:
        initial, ours, ours_final = run_ours(protocol, batches, optimizer)
        ref, ref_final = run_reference(protocol, initial, batches, optimizer)
        runs[optimizer], finals[optimizer] = ref, weight_stats(initial, ref_final)
        print("\n".join(["", *table(optimizer, ours, ref)]))
        gap, wgap = worst(ours, ref), weight_gap(weight_stats(initial, ours_final), finals[optimizer])
        failed |= gap > TOLERANCE or wgap > WEIGHT_TOLERANCE
        print(f"{optimizer}: largest relative difference {gap:.1e} ({'within' if gap <= TOLERANCE else 'OVER'} "
              f"{TOLERANCE:g}); final weights {wgap:.1e} of the movement "
              f"({'within' if wgap <= WEIGHT_TOLERANCE else 'OVER'} {WEIGHT_TOLERANCE:g})")
    if not args.no_controls:
        # Controls: one recipe change each, against the unchanged other side; each must land outside a tolerance.
        print("\ncontrols (one side changed): largest relative difference of the steps / of the final weights")
        controls = [("ours without clipping (clip_norm 0)", "adam", {"clip_norm": 0.0}),
                    ("ours without weight decay", "adam", {"weight_decay_rate": 0.0}),
                    ("ours decaying LayerNorm and biases too", "adam", {"decay_everything": True}),
                    ("ours decaying LayerNorm and biases too", "lamb", {"decay_everything": True})]
        for label, optimizer, overrides in controls:
            _, ours, ours_final = run_ours(protocol, batches, optimizer, **overrides)
            print(f"  {optimizer}, {label}: {worst(ours, runs[optimizer]):.1e} / "
                  f"{weight_gap(weight_stats(initial, ours_final), finals[optimizer]):.1e}")
        biased, biased_final = run_reference(protocol, initial, batches, "adam", bias_correction=True)
        _, ours, ours_final = run_ours(protocol, batches, "adam")
        print(f"  adam, reference with bias correction: {worst(ours, biased):.1e} / "
              f"{weight_gap(weight_stats(initial, ours_final), weight_stats(initial, biased_final)):.1e}")
    if args.write_reference:
        weights = {name: value for name, value in initial.items()}
        stored = {
            "about": "written by bench/pretrain_reference.py --write-reference from transformers' BertForPreTraining "
                     f"(torch {torch.__version__}, transformers {transformers.__version__}); "
                     "read by tests/trainer/test_pretrain_reference.py",
            "protocol": protocol, "tolerance": TOLERANCE, "weight_tolerance": WEIGHT_TOLERANCE,
            "moved_floor": MOVED_FLOOR,
            "initial_weights_sha256": fingerprint(weights), "batches_sha256": fingerprint(batches),
            "reference": runs, "final_weights": finals,
        }
        Path(args.write_reference).write_text(json.dumps(stored, indent=1) + "\n")
        print(f"wrote {args.write_reference}")
    return 1 if failed or any(math.isnan(s["loss"]) for r in runs.values() for s in r) else 0


if __name__ == "__main__":
    sys.exit(main())
