"""`bertjob predict --url URL`: send a request to a served model (`bertjob serve --local`, or an InferenceService's
transformer) and print its predictions, one JSON line each, in the order of the instances. The instances are sent
--batch at a time (the server takes at most 64 a request), one request after the other.

The body is KServe's v1 `{"instances": [...]}` (--data, or --file; `-` is standard input), or, with --tsv, the rows
of a GLUE file in the layout of --task (as `python -m bert_trainer predict --predict_file` reads it): each row's
texts become an instance, so a served model's labels can be set beside predictions.tsv's. The server's answer
is untrusted: bounded in size, and its error message escaped before it reaches the terminal. Standard library only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .terminal import one_line

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
TIMEOUT_SECONDS = 120
#: GLUE layouts by the fields a model takes (serving.json's): the columns of sentence A (and B), the header row.
TSV_LAYOUTS = {"CoLA": (("sentence",), (3,), False), "MRPC": (("sentence1", "sentence2"), (3, 4), True),
               "MNLI": (("sentence1", "sentence2"), (8, 9), True)}


class PredictError(Exception):
    """The request could not be made or was refused; the message says why, `code` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def check_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or not url.rstrip("/").endswith(":predict"):
        raise PredictError(f"--url: give a v1 predict endpoint, http(s)://HOST[:PORT]/v1/models/NAME:predict, got "
                           f"{one_line(url)[:200]}", 2)
    return url


def tsv_instances(content: str, task: str) -> list[dict[str, str]]:
    """A GLUE file's rows as instances (the task's columns: CoLA's sentence, MRPC's and MNLI's pair)."""
    fields, columns, header = TSV_LAYOUTS[task]
    instances = []
    for number, line in enumerate(content.splitlines(), start=1):
        if (header and number == 1) or not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) <= max(columns):
            raise PredictError(f"--tsv: line {number}: {len(cells)} columns, {task} has at least {max(columns) + 1}", 2)
        instances.append({field: cells[column] for field, column in zip(fields, columns)})
    return instances


def predict_all(url: str, body: Any, batch: int) -> list[Any]:
    """Every instance's prediction, `batch` instances a request; a body without an instances list goes as it is
    (the server says what is wrong with it)."""
    instances = body.get("instances") if isinstance(body, dict) and set(body) == {"instances"} else None
    if not isinstance(instances, list) or not instances:
        return predict(url, body)
    found: list[Any] = []
    for start in range(0, len(instances), batch):
        found += predict(url, {"instances": instances[start:start + batch]})
    return found


def predict(url: str, body: Any) -> list[Any]:
    """POST `body` to `url`; the `predictions` list. PredictError with the server's message on a refusal (exit 2,
    as bad input) or when the server cannot be reached or answers something else (exit 1)."""
    request = urllib.request.Request(check_url(url), data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            raw = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as error:
        detail = error.read(64 * 1024).decode("utf-8", "replace")
        try:
            detail = str(json.loads(detail).get("error", detail))
        except (ValueError, AttributeError):
            pass
        raise PredictError(f"{error.code}: {one_line(detail)[:2000]}", 2 if 400 <= error.code < 500 else 1) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PredictError(f"--url: cannot reach {one_line(url)[:200]} ({one_line(str(exc))[:300]})") from None
    if len(raw) > MAX_RESPONSE_BYTES:
        raise PredictError(f"the answer is larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise PredictError("the answer is not JSON") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
        raise PredictError('the answer has no "predictions" list')
    return answer["predictions"]
