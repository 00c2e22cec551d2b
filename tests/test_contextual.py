"""etagger.layers.contextual: BERT word vectors computed in-graph from word strings, with a
tiny random BERT converted to TF-Hub format: shapes, first/mean pooling against the NumPy
reference BERT, [UNK] for words with no piece, padding invariance, truncation, a tagger
trained with them (checkpoint restore included) and an export that serves the same tags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops of exported graphs)

from etagger import bert, tagschemes
from etagger import config as config_lib
from etagger.layers.contextual import BertWordEmbedding, resolve_handle
from etagger.stored_vectors import padded_words
from tests.fixtures import predicted_tags, preprocess_tiny, serve_conll, write_small_bert_checkpoint

LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOCAB = (
    [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        ".",
        "john",
        "smith",
        "paris",
        "new",
        "york",
        "visited",
        "left",
        "met",
        "in",
        "berlin",
        "reuters",
    ]
    + list(LETTERS)
    + ["##" + c for c in LETTERS]
)
ID = {token: i for i, token in enumerate(VOCAB)}
CLS, SEP, PAD, UNK = ID["[CLS]"], ID["[SEP]"], ID["[PAD]"], ID["[UNK]"]
POSITIONS = 256
TOL = 1e-4


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """(hub folder, BertModel config, weights) of a random 2-layer, 8-wide BERT."""
    root = tmp_path_factory.mktemp("tiny-bert")
    write_small_bert_checkpoint(root / "ckpt", VOCAB, positions=POSITIONS, seed=1)
    bert.convert(root / "ckpt", root / "hub")
    config, weights, _ = bert.load_checkpoint(root / "ckpt")
    return root / "hub", config, weights


def reference(tiny_bert, ids):
    """NumPy BERT layer outputs [embeddings, layer 1, layer 2] for one unpadded sequence."""
    _, config, weights = tiny_bert
    ids = np.array([ids], np.int32)
    return bert.numpy_forward(weights, config, ids, np.ones_like(ids), np.zeros_like(ids))


def test_handle_resolution_and_shapes(tiny_bert, monkeypatch):
    hub_dir, _, _ = tiny_bert
    assert resolve_handle(hub_dir) == resolve_handle(hub_dir / "encoder") == hub_dir / "encoder"
    monkeypatch.chdir(hub_dir.parent)  # a relative handle is resolved against the working directory
    layer = BertWordEmbedding("hub/encoder")
    assert layer.handle == hub_dir / "encoder" and layer.lower_case
    words = tf.constant([["John", "visited", "Paris", "."], ["Reuters", "", "", ""]])
    out = layer(words)
    assert out.shape == (2, 4, 8) and out.dtype == tf.float32
    norms = np.abs(out.numpy()).sum(-1)
    assert (norms[0] > 0).all() and norms[1, 0] > 0 and (out.numpy()[1, 1:] == 0).all()
    assert layer.trainable_weights == [] and len(layer.weights) > 0  # frozen by default
    with pytest.raises(FileNotFoundError):
        BertWordEmbedding("no/such/folder")
    with pytest.raises(ValueError, match="max_pieces"):
        BertWordEmbedding(hub_dir, max_pieces=POSITIONS + 1)
    with pytest.raises(ValueError, match="layers"):
        BertWordEmbedding(hub_dir, layers=3)


def test_first_and_mean_pooling_by_hand(tiny_bert):
    hub_dir, _, _ = tiny_bert
    words = tf.constant([["Johns", "PARIS"]])  # "johns" -> john ##s; uncased
    first = BertWordEmbedding(hub_dir, pooling="first")
    inputs = first.pack(words, tf.not_equal(words, ""))[0]
    ids = [CLS, ID["john"], ID["##s"], ID["paris"], SEP]
    assert inputs["input_word_ids"].numpy().tolist() == [ids]
    assert (
        inputs["input_mask"].numpy().tolist() == [[1] * 5]
        and not inputs["input_type_ids"].numpy().any()
    )
    layers = reference(tiny_bert, ids)

    got = first(words).numpy()[0]
    np.testing.assert_allclose(got[0], layers[-1][0, 1], atol=TOL)  # first piece of "Johns"
    np.testing.assert_allclose(got[1], layers[-1][0, 3], atol=TOL)
    got = BertWordEmbedding(hub_dir, pooling="mean")(words).numpy()[0]
    np.testing.assert_allclose(got[0], (layers[-1][0, 1] + layers[-1][0, 2]) / 2, atol=TOL)
    np.testing.assert_allclose(got[1], layers[-1][0, 3], atol=TOL)
    # layers=2: the mean of the last two layers' outputs, then pooled.
    got = BertWordEmbedding(hub_dir, pooling="mean", layers=2)(words).numpy()[0]
    two = (layers[1] + layers[2]) / 2
    np.testing.assert_allclose(got[0], (two[0, 1] + two[0, 2]) / 2, atol=TOL)


def test_word_without_pieces_becomes_unk(tiny_bert):
    hub_dir, _, _ = tiny_bert
    layer = BertWordEmbedding(hub_dir)
    words = tf.constant([["\x07", "Paris", "\u200b"]])  # a control character, a zero-width space
    ids = [CLS, UNK, ID["paris"], UNK, SEP]
    assert layer.pack(words, tf.not_equal(words, ""))[0]["input_word_ids"].numpy().tolist() == [ids]
    # Each word is tokenized alone: a word outside the vocabulary is one [UNK], not a gap.
    packed = layer.pack(tf.constant([["Zürich", "1996"]]), tf.constant([[True, True]]))[0]
    z = [
        ID["z"],
        ID["##u"],
        ID["##r"],
        ID["##i"],
        ID["##c"],
        ID["##h"],
    ]  # ü -> u (accents stripped)
    assert packed["input_word_ids"].numpy().tolist() == [[CLS, *z, UNK, SEP]]
    got = layer(words).numpy()[0]
    want = reference(tiny_bert, ids)[-1][0]
    np.testing.assert_allclose(got, want[[1, 2, 3]], atol=TOL)


def test_padding_never_changes_real_positions(tiny_bert):
    hub_dir, _, _ = tiny_bert
    for pooling in ("first", "mean"):
        layer = BertWordEmbedding(hub_dir, pooling=pooling)
        sentence = ["Johns", "met", "Angela", "in", "Paris", "."]
        alone = layer(tf.constant([sentence])).numpy()[0]
        # In a batch beside a longer sentence, with extra padding columns, and in second place.
        longer = [
            "New",
            "York",
            "officials",
            "praised",
            "Reuters",
            "in",
            "Berlin",
            "yesterday",
            ".",
        ]
        width = len(longer) + 3
        batch = tf.constant(
            [longer + [""] * (width - len(longer)), sentence + [""] * (width - len(sentence))]
        )
        out = layer(batch).numpy()
        np.testing.assert_allclose(out[1, : len(sentence)], alone, atol=1e-5)
        assert (out[1, len(sentence) :] == 0).all() and (out[0, len(longer) :] == 0).all()
        # An explicit mask gives the same, and masked-out words are ignored whatever they say.
        garbage = tf.constant(
            [longer + ["x"] * (width - len(longer)), sentence + ["y"] * (width - len(sentence))]
        )
        masked = layer(garbage, mask=tf.not_equal(batch, "")).numpy()
        np.testing.assert_allclose(masked, out, atol=1e-6)


def test_words_beyond_max_pieces_get_zeros(tiny_bert):
    hub_dir, _, _ = tiny_bert
    words = tf.constant([["Johns", "Paris", "Berlin"]])  # john ##s paris berlin
    layer = BertWordEmbedding(hub_dir, pooling="mean", max_pieces=4)  # [CLS] john ##s [SEP]
    assert layer.pack(words, tf.ones([1, 3], tf.bool))[0]["input_word_ids"].numpy().tolist() == [
        [CLS, ID["john"], ID["##s"], SEP]
    ]
    got = layer(words).numpy()[0]
    want = reference(tiny_bert, [CLS, ID["john"], ID["##s"], SEP])[-1][0]
    np.testing.assert_allclose(got[0], (want[1] + want[2]) / 2, atol=TOL)
    assert (got[1:] == 0).all()
    # A word cut in the middle keeps its surviving pieces.
    got = BertWordEmbedding(hub_dir, pooling="mean", max_pieces=3)(words).numpy()[0]
    np.testing.assert_allclose(
        got[0], reference(tiny_bert, [CLS, ID["john"], SEP])[-1][0, 1], atol=TOL
    )


def test_config_fields_default_and_validate():
    model = config_lib.ModelConfig()
    assert (
        model.bert_handle,
        model.bert_pooling,
        model.bert_layers,
        model.bert_trainable,
        model.bert_max_pieces,
        model.bert_pack_tokens,
    ) == (None, "first", 1, False, 256, 0)
    # An old config.json without the fields loads with them at their defaults.
    assert config_lib.Config.from_dict({"model": {"lstm_units": 8}}).model.bert_handle is None
    for bad in (
        {"bert_pooling": "max"},
        {"bert_layers": 0},
        {"bert_max_pieces": 2},
        {"bert_handle": ""},
        {"bert_trainable": "yes"},
        {"bert_handle": "hub", "bert_pack_tokens": -1},
        {"bert_handle": "hub", "bert_pack_tokens": True},
        {"bert_pack_tokens": 64},  # no encoder to read the packs
        {"bert_handle": "hub", "bert_pack_tokens": 64, "bert_trainable": True},
        {"bert_handle": "hub", "bert_pack_tokens": 64, "document_context": 64},
    ):
        with pytest.raises(ValueError):
            config_lib.ModelConfig(**bad)


# ----------------------------------------------------------------------------- a tagger with BERT
TINY = {
    "model": {
        "lstm_units": 16,
        "lstm_layers": 1,
        "char_filters": [[3, 8]],
        "char_dim": 8,
        "embedding_dropout": 0.1,
        "encoder_dropout": 0.1,
    },
    "train": {
        "batch_size": 8,
        "epochs": 1,
        "learning_rate": 0.01,
        "warmup_steps": 5,
        "patience": 12,
    },
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return preprocess_tiny(tmp_path_factory.mktemp("tiny-tagger"))


def train_tiny(tiny_data, tiny_bert, name, **bert_fields):
    from etagger.train import train

    model = {**TINY["model"], "bert_handle": str(tiny_bert[0] / "encoder"), **bert_fields}
    config = config_lib.Config.from_dict({"model": model, "train": TINY["train"]})
    result = train(tiny_data / "data", config, tiny_data / name, progress=False)
    return tiny_data / name, config, result


@pytest.fixture(scope="module")
def frozen_model(tiny_data, tiny_bert):
    return train_tiny(tiny_data, tiny_bert, "frozen")


def test_fine_tuned_bert_is_restored_from_the_checkpoint(tiny_data, tiny_bert):
    from etagger.evaluate import evaluate_split
    from etagger.train import input_names, load_model

    model_dir, config, result = train_tiny(
        tiny_data, tiny_bert, "tuned", bert_trainable=True, bert_pooling="mean", bert_layers=2
    )
    assert result["epochs_run"] == 1 and input_names(config)[-1] == "word"
    model, loaded_config, _, _ = load_model(model_dir)
    assert loaded_config == config
    trainable = {id(v) for v in model.trainable_variables}
    assert model.bert.trainable_weights and all(id(v) in trainable for v in model.bert.weights)
    # The trained encoder weights come back from the checkpoint, not from the handle.
    _, _, original = tiny_bert
    restored = {v.name.split("/")[-1].split(":")[0]: v.numpy() for v in model.bert.weights}
    word_embeddings = restored["embeddings.word_embeddings.weight"]
    assert not np.allclose(word_embeddings, original["embeddings.word_embeddings.weight"])
    reader = tf.train.load_checkpoint(str(model_dir / "best" / "ckpt"))
    stored = [
        k
        for k in reader.get_variable_to_shape_map()
        if "word_embeddings" in k and "OPTIMIZER" not in k
    ]
    assert len(stored) == 1
    np.testing.assert_array_equal(reader.get_tensor(stored[0]), word_embeddings)
    # Evaluation after training reproduces the dev figures training computed in-process.
    history = json.loads((model_dir / "history.json").read_text())
    summary, _ = evaluate_split(model_dir, tiny_data / "data", "dev")
    assert summary["entity_f1"] == round(history[-1]["dev_entity_f1"], 6)
    assert summary["token_f1"] == round(history[-1]["dev_token_f1"], 6)


def test_export_serves_the_same_tags_without_the_hub_folder(
    tiny_data, tiny_bert, frozen_model, tmp_path
):
    from etagger.conll import read_conll
    from etagger.evaluate import evaluate_split
    from etagger.export import export

    model_dir, config, result = frozen_model
    assert result["epochs_run"] == 1
    history = json.loads((model_dir / "history.json").read_text())
    summary, _ = evaluate_split(model_dir, tiny_data / "data", "test", tmp_path / "pred.txt")
    dev, _ = evaluate_split(model_dir, tiny_data / "data", "dev")
    assert dev["token_f1"] == round(history[-1]["dev_token_f1"], 6)
    expected = predicted_tags(tmp_path / "pred.txt")
    saved = export(model_dir, tmp_path / "saved")
    assert (saved / "assets" / "vocab.txt").read_text() == "\n".join(VOCAB) + "\n"

    hub_dir = tiny_bert[0]
    away = hub_dir.with_name("hub-away")
    hub_dir.rename(away)  # the SavedModel must carry the encoder's weights and vocabulary itself
    try:
        loaded = tf.saved_model.load(str(saved))
        sentences = list(read_conll(tiny_data / "conll" / "test.txt"))
        assert (
            serve_conll(loaded, tiny_data / "conll" / "test.txt", "tag_with_confidence", extra=2)[0]
            == expected
        )
        alone = loaded.signatures["serving_default"](tokens=tf.constant([list(sentences[0].words)]))
        assert [t.decode() for t in alone["tags"].numpy()[0]] == expected[0]
    finally:
        away.rename(hub_dir)
    # The encoder's weights are among the exported variables.
    assert sum("encoder.layer." in v.name for v in loaded.model_variables) == 2 * 16


def preprocess_with(tiny_data, out, *options: str):
    """The tiny fixture preprocessed again into ``out`` with more ``options``; returns out."""
    from pipelines import preprocess

    preprocess.run(
        [
            "--data-dir",
            str(tiny_data / "conll"),
            "--out",
            str(out),
            "--glove",
            str(tiny_data / "glove.txt"),
            "--num-shards",
            "2",
            "--quiet",
            *options,
        ]
    )
    return out


def test_preprocess_stores_the_wordpieces_training_reads(
    tiny_data, tiny_bert, frozen_model, tmp_path
):
    """`preprocess --bert-handle` stores each token's pieces (the word-to-subword alignment);
    a BERT tagger reads them instead of tokenizing, with the same result as in-graph."""
    from etagger import data, records
    from etagger.layers.contextual import WordPieces
    from etagger.train import input_names, load_model

    hub_dir = tiny_bert[0]
    out = preprocess_with(tiny_data, tmp_path / "data", "--bert-handle", str(hub_dir))
    info = data.load_preprocess_info(out)
    assert info["bert_handle"] == str(hub_dir / "encoder") and len(info["bert_vocab_sha256"]) == 64
    tokenizer = WordPieces(hub_dir)
    for record in records.read_records(out, "dev"):
        want = tokenizer(tf.constant(record["word"])).to_list()
        assert [list(p) for p in record["wordpiece_ids"]] == want
    assert "wordpiece_ids" not in next(
        records.read_records(tiny_data / "data", "dev")
    )  # only when asked

    model_dir, config, _ = frozen_model
    assert input_names(config, info)[-1] == "wordpiece_ids"
    assert "wordpiece_ids" not in input_names(config, data.load_preprocess_info(tiny_data / "data"))
    assert "wordpiece_ids" not in input_names(config, {**info, "bert_vocab_sha256": "0" * 64})
    model, _, _, _ = load_model(model_dir)
    batch = next(iter(data.make_dataset(out, "dev", 8, input_names(config, info))))
    assert batch["wordpiece_ids"].shape.rank == 3
    stored = model(batch).numpy()
    tokenized = model({k: v for k, v in batch.items() if k != "wordpiece_ids"}).numpy()
    np.testing.assert_allclose(stored, tokenized, atol=1e-6)


def assert_encoder_vectors(layer, words, stored) -> None:
    """``stored`` [T, H] float32 equals ``layer``'s vectors for ``words``, to float16 storage."""
    want = layer(tf.constant([list(words)]))[0].numpy()
    assert stored.shape == want.shape
    np.testing.assert_allclose(stored, want, rtol=2e-3, atol=2e-3)


def test_preprocess_stores_the_vectors_training_reads(tiny_data, tiny_bert, frozen_model, tmp_path):
    """`preprocess --contextual` runs the encoder once per sentence (RunInference) and stores
    each token's vector with the encoder's fingerprint; a tagger with that encoder reads them
    instead of running it, and gives the tags the in-graph vectors give."""
    from etagger import data, records
    from etagger.stored_vectors import ContextualSpec
    from etagger.train import input_names, load_model, predict

    hub_dir = tiny_bert[0]
    out = preprocess_with(tiny_data, tmp_path / "data", "--contextual", str(hub_dir))
    info = data.load_preprocess_info(out)
    spec = ContextualSpec(str(hub_dir))
    assert info["contextual"] == str(hub_dir / "encoder")
    assert info["contextual_fingerprint"] == spec.fingerprint()
    assert ContextualSpec(str(hub_dir), layers=2).fingerprint() != spec.fingerprint()
    layer = BertWordEmbedding(hub_dir)
    for record in records.read_records(out, "dev"):
        assert_encoder_vectors(layer, record["word"], np.asarray(record["contextual"], np.float32))

    model_dir, config, _ = frozen_model
    names = input_names(config, info)
    assert names[-1] == "contextual"
    assert "contextual" not in input_names(config, {**info, "contextual_fingerprint": "0" * 64})
    model, _, vocabs, _ = load_model(model_dir)
    dev = data.make_dataset(out, "dev", 8, names + ("tag",))
    batch = next(iter(dev))
    assert batch["contextual"].dtype == tf.float16 and batch["contextual"].shape.rank == 3
    stored = model(batch).numpy()
    in_graph = model({k: v for k, v in batch.items() if k != "contextual"}).numpy()
    np.testing.assert_allclose(stored, in_graph, atol=1e-2)
    without = data.make_dataset(out, "dev", 8, input_names(config) + ("tag",))
    assert [r["pred"] for r in predict(model, dev, vocabs["tag"])] == [
        r["pred"] for r in predict(model, without, vocabs["tag"])
    ]


@pytest.fixture(scope="module")
def packed_data(tiny_data, tiny_bert, tmp_path_factory):
    """The tiny fixture preprocessed with the tiny encoder's vectors of packs of <= 30 tokens."""
    return preprocess_with(
        tiny_data,
        tmp_path_factory.mktemp("packed") / "data",
        "--contextual",
        str(tiny_bert[0]),
        "--contextual-pack-tokens",
        "30",
    )


def test_preprocess_stores_vectors_of_packs_of_sentences(tiny_data, tiny_bert, packed_data):
    """`preprocess --contextual-pack-tokens N` runs the encoder on packs of consecutive
    sentences of one document (etagger.packing, as tag-corpus cuts them) and stores each
    sentence's slice of its pack's vectors, under a fingerprint of its own. The layer's
    ``pack_ids`` path, which exported models run, gives the same vectors."""
    from etagger import conll, data, packing, records
    from etagger.stored_vectors import ContextualSpec

    hub_dir = tiny_bert[0]
    info = data.load_preprocess_info(packed_data)
    spec = ContextualSpec(str(hub_dir), pack_tokens=30)
    assert info["contextual_fingerprint"] == spec.fingerprint()
    assert spec.fingerprint() != ContextualSpec(str(hub_dir)).fingerprint()
    stored = {
        r["index"]: np.asarray(r["contextual"], np.float32)
        for r in records.read_records(packed_data, "dev", {"index", "contextual"})
    }
    layer = BertWordEmbedding(hub_dir)
    packs = packing.pack_sentences(list(conll.read_conll(tiny_data / "conll" / "dev.txt")), 30)
    assert any(len(pack) > 1 for pack in packs) and len(stored) == sum(map(len, packs))
    rows = tf.constant(padded_words([s.words for pack in packs for s in pack]))
    pack_ids = tf.constant([i for i, pack in enumerate(packs) for _ in pack])
    by_rows = layer(rows, pack_ids=pack_ids).numpy()
    alone = layer(rows).numpy()
    row = 0
    for pack in packs:
        joined = layer(tf.constant([[w for s in pack for w in s.words]]))[0].numpy()
        start = 0
        for s in pack:
            want = joined[start : start + len(s)]
            np.testing.assert_allclose(stored[s.index], want, rtol=2e-3, atol=2e-3)
            np.testing.assert_allclose(by_rows[row, : len(s)], want, atol=1e-5)
            assert not by_rows[row, len(s) :].any()
            if len(pack) > 1:  # the neighbours change the vectors
                assert np.abs(alone[row, : len(s)] - want).max() > 1e-3
            start += len(s)
            row += 1


def test_a_tagger_whose_encoder_reads_packs_trains_exports_and_teaches(
    tiny_data, tiny_bert, packed_data, tmp_path
):
    """A model with ``bert_pack_tokens`` trains on the stored vectors of packs (and refuses
    data without them); its export computes them in-graph from the sentences of each pack and
    tags every sentence as evaluation on the stored vectors does; as a --soft-targets teacher
    it gets the sentences of the train file in the same packs."""
    from etagger import conll, data, packing, records
    from etagger.export import export
    from etagger.predictor import Predictor
    from etagger.train import input_names, load_model, predict, train

    model = {**TINY["model"], "bert_handle": str(tiny_bert[0] / "encoder"), "bert_pack_tokens": 30}
    config = config_lib.Config.from_dict({"model": model, "train": TINY["train"]})
    info = data.load_preprocess_info(packed_data)
    assert input_names(config, info)[-1] == "contextual"
    for other in (
        data.load_preprocess_info(tiny_data / "data"),
        {**info, "contextual_fingerprint": "0" * 64},
    ):
        with pytest.raises(ValueError, match="bert_pack_tokens 30"):
            input_names(config, other)
    train(packed_data, config, tmp_path / "model", progress=False)
    tagger, _, vocabs, _ = load_model(tmp_path / "model")
    dev = data.make_dataset(packed_data, "dev", 8, input_names(config, info) + ("index",))
    stored = {r["index"]: r["pred"] for r in predict(tagger, dev, vocabs["tag"])}

    predictor = Predictor(export(tmp_path / "model", tmp_path / "export"))
    assert predictor.takes_pack_ids and predictor.document_context == 30
    sentences = list(conll.read_conll(tiny_data / "conll" / "dev.txt"))
    packs = packing.pack_sentences(sentences, 30)
    tagged = predictor.tag_packs([[s.columns for s in pack] for pack in packs])
    in_graph = {s.index: t.tags for pack, out in zip(packs, tagged) for s, t in zip(pack, out)}
    assert in_graph == {
        i: tagschemes.convert_tags(t, info["tag_scheme"], "IOB2") for i, t in stored.items()
    }

    silver = preprocess_with(
        tiny_data,
        tmp_path / "silver",
        "--vocab-from",
        str(tiny_data / "data"),
        "--soft-targets",
        str(tmp_path / "export"),
        "--held-out",
        str(tiny_data / "conll" / "test.txt"),
    )
    targets = {
        r["index"]: np.asarray(r["soft_tags"], np.float32)
        for r in records.read_records(silver, "train", {"index", "soft_tags"})
        if "soft_tags" in r  # not for a sentence equal to a test sentence
    }
    held_out = {
        conll.sentence_key(s.words) for s in conll.read_conll(tiny_data / "conll" / "test.txt")
    }
    packs = packing.pack_sentences(list(conll.read_conll(tiny_data / "conll" / "train.txt")), 30)
    in_order = [s for pack in packs for s in pack]
    ids = [i for i, pack in enumerate(packs) for _ in pack]
    packed = predictor.marginals([s.words for s in in_order], ids)
    alone = predictor.marginals([s.words for s in in_order])
    columns = [predictor.meta["tags"].index(t) for t in vocabs["tag"]]
    assert set(targets) == {
        s.index for s in in_order if conll.sentence_key(s.words) not in held_out
    }
    for s, want in zip(in_order, packed):
        if s.index in targets:  # held-out neighbours were still read as context
            np.testing.assert_allclose(targets[s.index], want[:, columns], atol=2e-3)
    assert max(np.abs(a - b).max() for a, b in zip(packed, alone)) > 1e-4


def test_a_contextual_student_reads_stored_vectors_from_the_silver_data(
    tiny_data, tiny_bert, frozen_model, tmp_path
):
    """`preprocess --contextual --soft-targets` stores a teacher's marginals and the encoder's
    vectors side by side, so a student with that encoder (a teacher distilled from a teacher
    ensemble) reads both from the silver data and runs no encoder on its silver batches."""
    import dataclasses

    from etagger import data, records
    from etagger.export import export
    from etagger.train import input_names, silver_dataset, train

    model_dir, config, _ = frozen_model
    teacher = export(model_dir, tmp_path / "teacher")
    hub_dir = tiny_bert[0]
    silver = preprocess_with(
        tiny_data,
        tmp_path / "silver",
        "--vocab-from",
        str(tiny_data / "data"),
        "--contextual",
        str(hub_dir),
        "--soft-targets",
        str(teacher),
    )
    student = dataclasses.replace(
        config,
        train=dataclasses.replace(
            config.train, silver_data=str(silver), silver_splits="train", seed=3
        ),
    )
    assert input_names(student, data.load_preprocess_info(silver))[-1] == "contextual"
    batch = next(iter(silver_dataset(tiny_data / "data", student, 0)))
    assert {"contextual", "soft_tags"} <= set(batch)
    assert batch["contextual"].dtype == tf.float16
    stored = {
        tuple(r["word"]): np.asarray(r["contextual"], np.float32)
        for r in records.read_records(silver, "train", {"word", "contextual"})
    }
    layer = BertWordEmbedding(hub_dir)
    for words, length, vectors in zip(
        batch["word"].numpy(), batch["length"].numpy(), batch["contextual"].numpy()
    ):
        words = tuple(w.decode() for w in words[:length])
        assert_encoder_vectors(layer, words, stored[words])
        np.testing.assert_array_equal(vectors[:length].astype(np.float32), stored[words])
    result = train(tiny_data / "data", student, tmp_path / "student", progress=False)
    assert result["epochs_run"] == 1
