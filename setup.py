"""The one compiled part of the project: prepare-data's core (trainer/bert_trainer/prep/_native.c).

Everything else is declared in pyproject.toml. The extension is optional: where it does not compile (no C
compiler), the install goes on and prepare-data uses its pure-Python path, which gives the same bytes
(bert_trainer/prep/native.py). Images build it in place: ``python setup.py build_ext --inplace``.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bert_trainer.prep._native",
            sources=["trainer/bert_trainer/prep/_native.c"],
            extra_compile_args=["-O3", "-std=c11"],
            optional=True,
        ),
    ],
)
