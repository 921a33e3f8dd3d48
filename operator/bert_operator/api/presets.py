"""Facts of the NVIDIA BERT recipe that several parts of the API share.

Kept apart from the pydantic models so that the renderer and the trainer's
command line can quote the same numbers without importing model classes.
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

#: Google's released BERT configurations (uncased_L-12_H-768_A-12 and
#: uncased_L-24_H-1024_A-16); bert_config.json field names as Google wrote them.
_BASE: Final[dict[str, object]] = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
}
BERT_PRESETS: Final[dict[str, dict[str, object]]] = {
    "base": _BASE,
    "large": {**_BASE, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
}


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
    extra bookkeeping (reference.md, "Data").
    """
    return (
        f"lower_case_{int(lower_case)}_seq_len_{max_seq_length}"
        f"_max_pred_{max_predictions_per_seq}_masked_lm_prob_{masked_lm_prob}"
        f"_random_seed_{random_seed}_dupe_factor_{dupe_factor}"
        f"_shard_{shards}_test_split_{test_split}"
    )


#: Sub-folder of an NVIDIA TFRecord set that holds the combined corpus.
NVIDIA_CORPUS_FOLDER: Final = "books_wiki_en_corpus"
