"""The KServe transformer: text in (v1 ``instances``), token ids to the predictor over v2 REST, labels or answers out.

A ``kserve.Model`` whose ``preprocess`` checks and tokenises a request (:mod:`bert_trainer.serve.instances`),
``predict`` sends the ids to the predictor's model (Triton's ``<model>``, or the in-process SavedModel of
``serve local``) with KServe's own v2 REST client, and ``postprocess`` turns the logits into answers. What
preprocess made travels to postprocess through predict's result, not through shared state, so concurrent requests
cannot see each other's windows. A request this model cannot take is ``InvalidInput``, which KServe's server
answers with 400 and the message naming the field; nothing a client sends reaches predict unchecked.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kserve import InferInput, InferRequest, InferResponse, Model
from kserve.errors import InferenceError, InvalidInput

from bert_trainer.serve.instances import BadRequest, Encoded, answers, encode
from bert_trainer.serve.manifest import Manifest

INPUTS = ("input_ids", "input_mask", "segment_ids")


def infer_request(model: str, arrays: dict[str, np.ndarray]) -> InferRequest:
    """A v2 request of the three int32 tensors, in the protocol's binary extension (Triton and KServe take it)."""
    inputs = []
    for name in INPUTS:
        tensor = InferInput(name, list(arrays[name].shape), "INT32")
        tensor.set_data_from_numpy(np.ascontiguousarray(arrays[name], dtype=np.int32), binary_data=True)
        inputs.append(tensor)
    return InferRequest(model_name=model, infer_inputs=inputs)


class BertTransformer(Model):
    """Registered under the InferenceService's name (KServe's --model_name): ``/v1/models/<name>:predict``."""

    def __init__(self, name: str, manifest: Manifest, tokenizer: Any, predictor_model: str) -> None:
        super().__init__(name)
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.predictor_model = predictor_model
        self.ready = True

    def validate(self, payload: Any) -> Any:
        """preprocess has checked the request into an Encoded already (KServe's own check reads a dict only)."""
        return payload

    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Encoded:
        if isinstance(payload, InferRequest):
            raise InvalidInput(f"body: {self.name} takes text, as v1 {{\"instances\": [...]}} at "
                               f"/v1/models/{self.name}:predict; token ids go to the predictor's v2 model "
                               f"{self.predictor_model}")
        try:
            return encode(self.manifest, self.tokenizer, payload)
        except BadRequest as exc:
            raise InvalidInput(str(exc)) from None

    async def predict(self, payload: Encoded, headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> tuple[Encoded, dict[str, np.ndarray]]:
        config = self.predictor_config
        if config is None or not config.predictor_host:
            raise InferenceError("the transformer has no predictor (--predictor_host)")
        response = await self._http_client.infer(config.predictor_base_url, infer_request(self.predictor_model, payload.arrays),
                                                 model_name=self.predictor_model)
        if not isinstance(response, InferResponse):
            raise InferenceError(f"predictor {self.predictor_model} did not answer in the v2 protocol")
        return payload, {output.name: output.as_numpy() for output in response.outputs}

    async def postprocess(self, result: Any, headers: dict[str, str] | None = None,
                          response_headers: dict[str, str] | None = None) -> dict[str, Any]:
        encoded, outputs = result
        rows = len(encoded.arrays["input_ids"])
        wanted = ("logits",) if self.manifest.head == "classifier" else ("start_logits", "end_logits")
        missing = [name for name in wanted if name not in outputs or len(outputs[name]) != rows]
        if missing:
            raise InferenceError(f"predictor {self.predictor_model} returned no {rows}-row {', '.join(missing)} "
                                 f"(got {sorted(outputs)}): is it the model of these assets ({self.manifest.model})?")
        return {"predictions": answers(self.manifest, encoded, outputs)}
