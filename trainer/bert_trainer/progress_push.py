"""Rank 0's reports to the operator, so progress and results appear on the BertTrainingJob.

The operator renders three variables into the MPIJob (exported to ranks with
mpirun -x; their names are bert_common.contract's): BERTJOB_PROGRESS_URL (its
/progress/<namespace>/<name> endpoint), BERTJOB_STAGE and BERTJOB_TOKEN_FILE (a
projected service-account token whose audience is the operator, rotated by the
kubelet, so it is re-read for every report). Standard library only and never
raising: a report that cannot be delivered is logged and dropped; progress.json
in the output stays the record.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Mapping

from bert_common.contract import (
    ENV_PROGRESS_CA, ENV_PROGRESS_URL, ENV_STAGE, ENV_TOKEN_FILE, REPORT_PROGRESS, REPORT_RESULTS, REPORT_STAGE,
)

log = logging.getLogger(__name__)


def strict_json(value: Any) -> Any:
    """`value` with NaN and ±Infinity as None: Python's json writes them as bare NaN/Infinity, which no JSON
    reader outside Python takes (the API server refuses the status write, and the stage's one results report is
    lost). An evaluation of 0 batches is NaN by design, so this is an expected value, not an error."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


@dataclass
class ProgressPusher:
    url: str
    stage: str
    token_file: str
    #: PEM of the CA that signed the operator's certificate (an https:// URL); None: the system's CAs.
    ca_pem: str | None = None
    min_interval: float = 10.0
    timeout: float = 5.0
    _last_sent: float = field(default=0.0, init=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "ProgressPusher | None":
        """A pusher when the operator asked for reports (all three variables set), else None."""
        url, stage, token = env.get(ENV_PROGRESS_URL), env.get(ENV_STAGE), env.get(ENV_TOKEN_FILE)
        if not (url and stage and token):
            return None
        ca = env.get(ENV_PROGRESS_CA)
        try:
            ca_pem = base64.b64decode(ca, validate=True).decode() if ca else None
        except (ValueError, UnicodeDecodeError):
            log.warning("event=report_ca_unreadable variable=%s", ENV_PROGRESS_CA)
            ca_pem = None
        return cls(url=url, stage=stage, token_file=token, ca_pem=ca_pem)

    def progress(self, progress: dict[str, Any], final: bool = False) -> bool:
        """Send progress; at most one report per `min_interval` seconds unless `final`."""
        now = time.monotonic()
        if not final and now - self._last_sent < self.min_interval:
            return False
        sent = self._post({REPORT_STAGE: self.stage, REPORT_PROGRESS: progress})
        if sent:
            self._last_sent = now
        return sent

    def results(self, results: dict[str, Any]) -> bool:
        return self._post({REPORT_STAGE: self.stage, REPORT_RESULTS: results})

    def _post(self, report: dict[str, Any]) -> bool:
        try:
            with open(self.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            log.warning("event=report_skipped reason=token_unreadable file=%s error=%s", self.token_file, exc.strerror)
            return False
        request = urllib.request.Request(
            self.url, data=json.dumps(strict_json(report), allow_nan=False).encode(), method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            context = ssl.create_default_context(cadata=self.ca_pem) if self.ca_pem else None
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as answer:
                return 200 <= answer.status < 300
        except urllib.error.HTTPError as exc:
            log.warning("event=report_refused status=%s body=%s", exc.code, exc.read()[:300].decode(errors="replace"))
        except (urllib.error.URLError, OSError) as exc:
            log.warning("event=report_failed url=%s error=%s", self.url, exc)
        return False
