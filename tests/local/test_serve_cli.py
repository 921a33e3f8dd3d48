"""`bertjob serve --local` and `bertjob predict`'s bad input: exit 2 naming the flag (a job not in the file, not a
served task, not run here; a URL that is no predict endpoint, a body that is not JSON), exit 1 when the server
cannot be reached; never a traceback. (Serving itself: tests/local/test_tiny_example.py and tests/trainer/test_serve.py.)"""

from __future__ import annotations

import pytest

from bert_operator import cli
from tests.conftest import free_port
from tests.local.helpers import TINY


@pytest.mark.parametrize(("args", "code", "error"), [
    (["serve", str(TINY), "--job", "tiny-cola"], 2, "bertjob: serve: only --local is supported here"),
    (["serve", "--local", str(TINY), "--job", "tiny-bert"], 2,
     "bertjob: --job: {TINY} has no job 'tiny-bert' (it has tiny-data, tiny-pretrain, tiny-cola)"),
    (["serve", "--local", str(TINY), "--job", "tiny-pretrain"], 2,
     "bertjob: --job: tiny-pretrain is a pretrain job; a served model is a fine-tuned one (glue, squad)"),
    (["serve", "--local", str(TINY), "--job", "tiny-cola", "--workdir", "{tmp}"], 2,
     "bertjob: --job: tiny-cola has not succeeded under {tmp} (phase none): run it first"),
    (["serve", "--local", str(TINY), "--job", "tiny-cola", "--port", "70000"], 2, "bertjob: --port: must be 1 to 65535"),
    (["predict", "--url", "http://127.0.0.1:8080/", "-d", "{}"], 2, "bertjob: predict: --url: give a v1 predict endpoint"),
    (["predict", "--url", "http://h/v1/models/m:predict", "-d", "{nope"], 2, "bertjob: --data: not JSON"),
    (["predict", "--url", "http://h/v1/models/m:predict", "--tsv", str(TINY)], 2, "bertjob: --task: required with --tsv"),
    (["predict", "--url", "http://h/v1/models/m:predict", "-d", "{}", "--batch", "65"], 2, "bertjob: --batch: must be 1 to 64"),
    (["predict", "--url", "http://127.0.0.1:{port}/v1/models/m:predict", "-d", '{"instances": [{"sentence": "a"}]}'], 1,
     "bertjob: predict: --url: cannot reach http://127.0.0.1:{port}/v1/models/m:predict"),
])
def test_bad_input_exits_naming_the_flag(args, code, error, tmp_path, capsys) -> None:
    fill = {"{tmp}": str(tmp_path), "{port}": str(free_port()), "{TINY}": str(TINY)}

    def filled(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    assert cli.main([filled(arg) for arg in args]) == code
    err = capsys.readouterr().err
    assert err.startswith(filled(error)) and "Traceback" not in err, err
