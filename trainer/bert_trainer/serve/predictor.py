"""The local predictor: a Triton repository's SavedModel run in-process behind the v2 protocol, as Triton runs it.

``serve local`` registers it beside the transformer, which calls it over HTTP at ``/v2/models/<model>/infer``
exactly as it calls Triton on a cluster. It checks a v2 request as Triton checks one against config.pbtxt (the
three inputs, INT32, [rows, sequence] of one shape, within the model's sequence length): a bad request is a 400
naming the input. The SavedModel runs in the server's thread pool, so the event loop keeps taking requests.

With ``batch_delay_ms`` > 0 it batches dynamically, as Triton's dynamic_batching block does: requests arriving
within the delay are run as one batch of up to ``max_batch`` rows (shorter rows padded to the longest, which the
[CLS] classifier does not see; SQuAD rows all have the model's length), and each gets its own rows back.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Awaitable, Callable

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from bert_trainer.serve.manifest import Manifest

INPUTS = ("input_ids", "input_mask", "segment_ids")
MAX_ROWS = 1024  # a request's rows (a SQuAD request of 64 long contexts makes a few hundred windows)
RUN_ROWS = 64  # rows per run of the SavedModel: a large request does not take memory in proportion
Arrays = dict[str, np.ndarray]


class Batcher:
    """Dynamic batching of concurrent requests (see the module's docstring)."""

    def __init__(self, run: Callable[[Arrays], Awaitable[Arrays]], max_rows: int, delay_s: float,
                 sequence_outputs: tuple[str, ...]) -> None:
        self.run, self.max_rows, self.delay_s = run, max_rows, delay_s
        self.sequence_outputs = sequence_outputs
        self.queue: asyncio.Queue[tuple[Arrays, asyncio.Future[Arrays]]] | None = None
        self.worker: asyncio.Task[None] | None = None

    async def submit(self, arrays: Arrays) -> Arrays:
        if self.queue is None:  # created in the server's own event loop, on the first request
            self.queue = asyncio.Queue()
            self.worker = asyncio.get_running_loop().create_task(self._work())
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        await self.queue.put((arrays, future))
        return await future

    async def _work(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            rows = len(items[0][0]["input_ids"])
            deadline = loop.time() + self.delay_s
            while rows < self.max_rows and (left := deadline - loop.time()) > 0:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
                rows += len(items[-1][0]["input_ids"])
            longest = max(arrays["input_ids"].shape[1] for arrays, _ in items)
            merged = {name: np.concatenate([np.pad(arrays[name], ((0, 0), (0, longest - arrays[name].shape[1])))
                                            for arrays, _ in items]) for name in INPUTS}
            try:
                outputs = await self.run(merged)
            except Exception as exc:  # noqa: BLE001 - every waiting request gets the failure
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for arrays, future in items:
                count, length = arrays["input_ids"].shape
                part = {name: value[start:start + count] for name, value in outputs.items()}
                for name in self.sequence_outputs:  # back to the request's own length
                    part[name] = part[name][:, :length]
                start += count
                if not future.done():
                    future.set_result(part)


class SavedModelPredictor(Model):
    """Registered under the Triton model's name: ``/v2/models/<model>/infer``."""

    def __init__(self, name: str, savedmodel_dir: str, manifest: Manifest, *, batch_delay_ms: float = 0.0,
                 max_batch: int = 32) -> None:
        super().__init__(name)
        self.savedmodel_dir = savedmodel_dir
        self.manifest = manifest
        self.fn: Any = None
        self._keep: Any = None
        sequence_outputs = ("start_logits", "end_logits") if manifest.head == "span" else ()
        self.batcher = (Batcher(self._run_async, max_batch, batch_delay_ms / 1000, sequence_outputs)
                        if batch_delay_ms > 0 else None)

    def load(self) -> bool:
        import tensorflow as tf  # noqa: PLC0415 - the transformer alone never loads TensorFlow

        self._keep = tf.saved_model.load(self.savedmodel_dir)
        self.fn = self._keep.signatures["serving_default"]
        self.ready = True
        return self.ready

    def _run(self, arrays: Arrays) -> Arrays:
        import tensorflow as tf  # noqa: PLC0415

        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(arrays["input_ids"]), RUN_ROWS):
            out = self.fn(**{name: tf.constant(arrays[name][start:start + RUN_ROWS]) for name in INPUTS})
            for name, value in out.items():
                parts.setdefault(name, []).append(value.numpy())
        return {name: np.concatenate(values) for name, values in parts.items()}

    async def _run_async(self, arrays: Arrays) -> Arrays:
        return await asyncio.get_running_loop().run_in_executor(None, self._run, arrays)

    def check(self, request: InferRequest) -> Arrays:
        """The request's three tensors, or InvalidInput naming the input (Triton's checks against config.pbtxt)."""
        given = {tensor.name: tensor for tensor in request.inputs}
        unknown = sorted(set(given) - set(INPUTS))
        if unknown:
            raise InvalidInput(f"inputs: unknown input {unknown[0][:64]!r} (this model takes {', '.join(INPUTS)})")
        arrays: Arrays = {}
        for name in INPUTS:
            if name not in given:
                raise InvalidInput(f"inputs: {name} is required (this model takes {', '.join(INPUTS)})")
            tensor = given[name]
            if tensor.datatype != "INT32":
                raise InvalidInput(f"inputs.{name}: datatype must be INT32, got {tensor.datatype[:16]}")
            try:
                value = np.asarray(tensor.as_numpy(), dtype=np.int32)
            except (ValueError, TypeError) as exc:
                raise InvalidInput(f"inputs.{name}: data does not match its shape and datatype ({exc})") from None
            if value.ndim != 2 or not 0 < value.shape[0] <= MAX_ROWS or not 0 < value.shape[1] <= self.manifest.max_seq_length:
                raise InvalidInput(f"inputs.{name}: shape must be [rows, sequence] with 1 to {MAX_ROWS} rows and a "
                                   f"sequence of 1 to {self.manifest.max_seq_length}, got {list(value.shape)}")
            arrays[name] = value
        shapes = {arrays[name].shape for name in INPUTS}
        if len(shapes) > 1:
            raise InvalidInput(f"inputs: {', '.join(INPUTS)} must have one shape, got {sorted(shapes)}")
        return arrays

    async def predict(self, payload: Any, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput(f"body: {self.name} takes token ids in the v2 protocol at /v2/models/{self.name}/infer")
        arrays = self.check(payload)
        outputs = await (self.batcher.submit(arrays) if self.batcher else self._run_async(arrays))
        tensors = []
        for name, value in outputs.items():
            tensor = InferOutput(name, list(value.shape), "FP32")
            tensor.set_data_from_numpy(np.ascontiguousarray(value, dtype=np.float32), binary_data=False)
            tensors.append(tensor)
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=tensors)
