"""Every shipped config loads, and each variant (of bilstm_crf: contextual features, gazetteer;
of bilstm_crf_words, the words-only student: the MiniLM teacher, and one layer fewer for the
bundled model's serving cost;
of transformer_crf: relative positions; of both: document context) adds only its own model
fields (and the document-context variants their batch size and decay steps, as a pack
holds about three sentences): the same encoder and training budget, so the comparisons in
bench/RESULTS.md change one thing at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etagger.config import Config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# variant -> (the config it varies, the model fields it adds[, the training fields it changes[,
# the model fields it changes]])
DOCUMENT_TRAINING = {"batch_size": 16, "decay_steps": 600}
VARIANTS = {
    "minilm_bilstm_crf": (
        "bilstm_crf",
        {
            "bert_handle": "work/minilm-hub/encoder",
            "bert_trainable": False,
            "bert_pooling": "first",
            "bert_layers": 4,
            "bert_max_pieces": 256,
        },
    ),
    "minilm_teacher_crf": (
        "bilstm_crf_words",
        {
            "bert_handle": "work/minilm-hub/encoder",
            "bert_trainable": False,
            "bert_pooling": "first",
            "bert_layers": 4,
            "bert_max_pieces": 256,
        },
    ),
    "bilstm1_crf_words": ("bilstm_crf_words", {}, {}, {"lstm_layers": 1}),
    "elmo_bilstm_crf": ("bilstm_crf", {"elmo_handle": "work/bilm/wikitext2/module"}),
    "bilstm_gazetteer_crf": (
        "bilstm_crf",
        {"use_gazetteer": True, "gazetteer_dim": 8, "gazetteer_dropout": 0.5},
    ),
    "transformer_rel_crf": ("transformer_crf", {"relative_positions": 16}),
    "bilstm_doc_crf": ("bilstm_crf", {"document_context": 64}, DOCUMENT_TRAINING),
    "transformer_doc_crf": ("transformer_crf", {"document_context": 64}, DOCUMENT_TRAINING),
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_config_loads(path):
    Config.load(path)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_adds_only_its_fields(name):
    base, added, training, changed = (*VARIANTS[name], {}, {})[:4]
    reference = json.loads((CONFIGS / f"{base}.json").read_text())
    variant = json.loads((CONFIGS / f"{name}.json").read_text())
    assert variant["train"] == {**reference["train"], **training}
    assert {k: v for k, v in variant["model"].items() if k not in reference["model"]} == added
    assert {**reference["model"], **changed, **added} == variant["model"]
