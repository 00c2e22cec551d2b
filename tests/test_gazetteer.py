"""The gazetteer feature: n-gram matching as TF ops, preprocess --gazetteer (training split
and user files, bad lines named), and a tagger that uses it through training and export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from etagger import conll, features, records, tagschemes
from tests.fixtures import (
    predicted_tags,
    preprocess_tiny,
    serve_conll,
    write_conll_dir,
    write_glove,
)

VOCABS = {
    "word": ["<pad>", "<unk>"],
    "char": ["<pad>", "<unk>"],
    "shape": ["<pad>", "<unk>"],
    "gazetteer": [
        "PER\tjohn smith",
        "LOC\tnew york",
        "ORG\tnew york times",
        "LOC\tparis",
        "PER\tparis",
    ],
}


def test_matches_cover_every_word_of_a_listed_name():
    extractor = features.FeatureExtractor(VOCABS, features.FeatureConfig())
    assert features.gazetteer_types(VOCABS["gazetteer"]) == ["LOC", "ORG", "PER"]  # bits 1, 2, 4
    words = tf.ragged.constant(
        [["John", "Smith", "visited", "New", "York", "Times"], ["Paris"], []]
    )
    assert extractor({"word": words})["gazetteer_id"].to_list() == [[4, 4, 0, 3, 3, 2], [5], []]
    # Dense with "" padding (the serving graph): a name cut by padding does not match.
    dense = tf.constant([["new", "york", ""], ["times", "", ""]])
    assert extractor({"word": dense})["gazetteer_id"].numpy().tolist() == [[1, 1, 0], [0, 0, 0]]
    assert extractor({"word": tf.zeros([0, 0], tf.string)})["gazetteer_id"].shape == (0, 0)
    # Names longer than max_gazetteer_words are not listed.
    assert features.gazetteer_entry("ORG", ["a"] * 7, features.FeatureConfig()) is None
    assert features.gazetteer_entry("ORG", ["The", "UN"], features.FeatureConfig()) == "ORG\tthe un"


def test_gazetteer_dropout_is_a_probability():
    from etagger.config import ModelConfig

    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="gazetteer_dropout"):
            ModelConfig(gazetteer_dropout=bad)


def test_bad_gazetteer_line_names_file_and_line(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("# people\nPER\tAngela Merkel\n\nLOC\tLisbon\n")
    assert features.read_gazetteer_file(good, features.FeatureConfig()) == [
        "PER\tangela merkel",
        "LOC\tlisbon",
    ]
    bad = tmp_path / "bad.tsv"
    bad.write_text("PER\tAngela Merkel\nLOC Lisbon\n")
    with pytest.raises(conll.ConllFormatError, match=r"bad.tsv:2: expected TYPE<TAB>name"):
        features.read_gazetteer_file(bad, features.FeatureConfig())


@pytest.fixture(scope="module")
def gazetteer_data(tmp_path_factory):
    from pipelines import preprocess

    root = tmp_path_factory.mktemp("gazetteer")
    write_conll_dir(root / "conll")
    (root / "extra.tsv").write_text("LOC\tAtlantis\nMISC\tOlympic Games\n")
    preprocess.run(
        [
            "--data-dir",
            str(root / "conll"),
            "--out",
            str(root / "data"),
            "--glove",
            str(write_glove(root / "glove.txt")),
            "--num-shards",
            "2",
            "--gazetteer",
            "train",
            "--gazetteer",
            str(root / "extra.tsv"),
        ]
    )
    return root


def test_preprocess_lists_training_entities_and_user_names(gazetteer_data):
    root = gazetteer_data
    entries = features.read_vocab(root / "data" / "vocab" / "gazetteer.txt")
    assert entries == sorted(entries)
    assert {"PER\tjohn smith", "LOC\tatlantis", "MISC\tolympic games"} <= set(entries)
    train_entities = {
        features.gazetteer_entry(kind, s.words[a:b], features.FeatureConfig())
        for s in conll.read_conll(root / "conll" / "train.txt")
        for kind, a, b in tagschemes.chunks(s.columns["tag"])
    }
    assert train_entities | {"LOC\tatlantis", "MISC\tolympic games"} == set(entries)
    info = json.loads((root / "data" / "preprocess.json").read_text())
    assert info["gazetteer"][0] == "train"
    # Every training entity is covered by its type's bit in the stored ids.
    types = features.gazetteer_types(entries)
    for record in records.read_records(root / "data", "train"):
        for kind, a, b in tagschemes.chunks(record["tag"]):
            assert all(int(i) >> types.index(kind) & 1 for i in record["gazetteer_id"][a:b])


def test_tagger_with_gazetteer_trains_and_serves_the_same_tags(gazetteer_data, tmp_path):
    from etagger import config as config_lib
    from etagger.evaluate import evaluate_split
    from etagger.export import export
    from etagger.train import input_names, train

    root = gazetteer_data
    model = {
        "lstm_units": 16,
        "lstm_layers": 1,
        "char_filters": [[3, 8]],
        "char_dim": 8,
        "use_gazetteer": True,
        "gazetteer_dropout": 0.5,
        "embedding_dropout": 0.1,
        "encoder_dropout": 0.1,
    }
    config = config_lib.Config.from_dict(
        {"model": model, "train": {"batch_size": 8, "epochs": 1, "warmup_steps": 5}}
    )
    assert input_names(config)[-1] == "gazetteer_id"
    train(root / "data", config, tmp_path / "model", progress=False)
    evaluate_split(tmp_path / "model", root / "data", "test", tmp_path / "pred.txt")
    loaded = tf.saved_model.load(str(export(tmp_path / "model", tmp_path / "saved")))
    assert serve_conll(loaded, root / "conll" / "test.txt", extra=1)[0] == predicted_tags(
        tmp_path / "pred.txt"
    )
    # Without a gazetteer in the data the option is refused with a clear message.
    plain = preprocess_tiny(tmp_path / "plain")
    with pytest.raises(ValueError, match="--gazetteer"):
        train(plain / "data", config, tmp_path / "model2", progress=False)
    assert np.isfinite(json.loads((tmp_path / "model" / "history.json").read_text())[0]["loss"])
