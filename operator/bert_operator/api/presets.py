"""The API's names and the NVIDIA recipe's folder names that several parts of the operator share.

Kept apart from the pydantic models so that the renderer, the client and the
handlers can quote them without importing model classes. The BERT model presets
are the trainer's too: they live in ``bert_common.bert_config``.
"""

from __future__ import annotations

from typing import Final

API_GROUP: Final = "bertoperator.io"
API_VERSION: Final = "v1alpha1"
KIND: Final = "BertTrainingJob"
PLURAL: Final = "berttrainingjobs"
SINGULAR: Final = "berttrainingjob"
SHORT_NAMES: Final = ("btj",)
CATEGORIES: Final = ("all", "ml", "kubeflow")


def nvidia_dataset_folder(
    *,
    lower_case: bool,
    max_seq_length: int,
    max_predictions_per_seq: int,
    masked_lm_prob: float,
    random_seed: int,
    dupe_factor: int,
    shards: int,
    test_split: int,
) -> str:
    """Folder name NVIDIA's data scripts give a TFRecord set.

    The name records every setting the records were made with, so a
    pretraining phase can find the set a prepareData job wrote without any
    extra bookkeeping (the folder names of NVIDIA's data preparation scripts).
    """
    return (
        f"lower_case_{int(lower_case)}_seq_len_{max_seq_length}"
        f"_max_pred_{max_predictions_per_seq}_masked_lm_prob_{masked_lm_prob}"
        f"_random_seed_{random_seed}_dupe_factor_{dupe_factor}"
        f"_shard_{shards}_test_split_{test_split}"
    )


#: Sub-folder of an NVIDIA TFRecord set that holds the combined corpus.
NVIDIA_CORPUS_FOLDER: Final = "books_wiki_en_corpus"
