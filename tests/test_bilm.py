"""etagger.bilm and ElmoWordEmbedding: character ids, the biLM's directions (no peeking at
the word a direction predicts), padding invariance, pretraining on preprocessed text, the
exported ELMo-signature hub module, and a tagger with ELMo features through export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from etagger import bilm
from etagger import config as config_lib
from etagger.layers.contextual import ElmoWordEmbedding
from tests.fixtures import predicted_tags, preprocess_tiny, serve_conll

TINY_BILM = bilm.BiLMConfig(
    max_chars=10,
    char_dim=4,
    char_filters=((2, 8), (3, 8)),
    highway_layers=1,
    lstm_units=8,
    lstm_layers=2,
    dropout=0.0,
    vocab_size=100,
    num_sampled=8,
    batch_size=16,
    epochs=3,
    learning_rate=0.01,
    heldout_every=5,
)


def test_char_ids_frame_bytes_and_cut_long_words():
    ids = bilm.char_ids(tf.constant([["ab", "", "é"], ["abcdefghij", "", ""]]), 6).numpy()
    B, E = bilm.BOW, bilm.EOW
    assert ids.shape == (2, 3, 6)
    assert ids[0, 0].tolist() == [B, ord("a") + 1, ord("b") + 1, E, 0, 0]
    assert ids[0, 1].tolist() == [0] * 6  # padding has no markers
    assert ids[0, 2].tolist() == [B, 0xC3 + 1, 0xA9 + 1, E, 0, 0]  # UTF-8 bytes of é
    assert ids[1, 0].tolist() == [B] + [c + 1 for c in b"abcd"] + [E]  # cut to max_chars - 2 bytes
    assert bilm.char_ids(tf.zeros([0, 4], tf.string), 6).shape == (0, 4, 6)


@pytest.fixture(scope="module")
def model():
    m = bilm.BiLM(TINY_BILM, vocab_size=20)
    m(tf.constant([["a"]]), tf.constant([1]))
    return m


def test_each_direction_sees_only_its_side(model):
    """The forward state at t must not depend on words after t (it predicts t+1), the
    backward state not on words before t."""
    a = tf.constant([["John", "visited", "Paris", "yesterday", "."]])
    b = tf.constant([["John", "visited", "Paris", "today", "!"]])  # differs from position 3 on
    c = tf.constant([["Mary", "left", "Paris", "yesterday", "."]])  # differs up to position 1
    n = tf.constant([5])
    (_, la), (_, lb), (_, lc) = (model.directions(x, n) for x in (a, b, c))
    for (fa, ba), (fb, _bb), (_fc, bc) in zip(la, lb, lc):
        np.testing.assert_allclose(fa[0, :3], fb[0, :3], atol=1e-6)
        assert not np.allclose(fa[0, 3], fb[0, 3])
        np.testing.assert_allclose(ba[0, 2:], bc[0, 2:], atol=1e-6)
        assert not np.allclose(ba[0, 1], bc[0, 1])


def test_padding_never_changes_real_positions(model):
    sentence = ["John", "visited", "Paris", "."]
    alone = model(tf.constant([sentence]), tf.constant([4]))
    batch = tf.constant(
        [["New", "York", "is", "big", "today", ".", ""], sentence + ["x", "y", "z"]]
    )
    padded = model(batch, tf.constant([6, 4]))
    for one, many in zip(alone, padded):
        np.testing.assert_allclose(many[1, :4], one[0], atol=1e-5)
        assert (many.numpy()[1, 4:] == 0).all() and (many.numpy()[0, 6:] == 0).all()
    assert [x.shape[-1] for x in alone] == [8, 16, 16]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = preprocess_tiny(tmp_path_factory.mktemp("bilm"))
    result = bilm.pretrain(root / "data", root / "bilm", TINY_BILM, split="train", progress=False)
    return root, result


def test_pretraining_lowers_perplexity_and_exports_a_hub_module(pretrained):
    import tensorflow_hub as hub

    root, result = pretrained
    history = result["history"]
    assert (
        len(history) == 3 and history[-1]["heldout_perplexity"] < history[0]["heldout_perplexity"]
    )
    vocab = (root / "bilm" / "lm_vocab.txt").read_text().split("\n")[:-1]
    assert (
        vocab[:3] == ["<S>", "</S>", "<UNK>"]
        and "Paris" in vocab
        and result["vocab_size"] == len(vocab)
    )
    assert json.loads((root / "bilm" / "bilm_config.json").read_text())["lstm_units"] == 8
    assert not (root / "bilm" / "module.tmp").exists()
    assert json.loads((root / "bilm" / "history.json").read_text()) == history

    # Loaded the way original ELMo modules are; outputs equal the best epoch's biLM.
    layer = hub.KerasLayer(
        str(root / "bilm" / "module"), signature="tokens", signature_outputs_as_dict=True
    )
    tokens = tf.constant([["John", "visited", "Paris", "."], ["Reuters", "", "", ""]])
    lengths = tf.constant([4, 1])
    out = layer({"tokens": tokens, "sequence_len": lengths})
    assert set(out) == {
        "word_emb",
        "lstm_outputs1",
        "lstm_outputs2",
        "elmo",
        "default",
        "sequence_len",
    }
    assert (
        out["word_emb"].shape == (2, 4, 8)
        and out["elmo"].shape == (2, 4, 16)
        and out["default"].shape == (2, 16)
    )
    reference = bilm.BiLM(TINY_BILM, result["vocab_size"])
    reference(tokens, lengths)
    reference.load_weights(str(root / "bilm" / "best" / "weights"))
    token, one, two = reference(tokens, lengths)
    np.testing.assert_allclose(out["word_emb"], token, atol=1e-5)
    np.testing.assert_allclose(out["lstm_outputs2"], two, atol=1e-5)
    np.testing.assert_allclose(
        out["elmo"], (tf.concat([token, token], -1) + one + two) / 3, atol=1e-5
    )


def test_elmo_word_embedding_mixes_the_layers(pretrained):
    root, _ = pretrained
    layer = ElmoWordEmbedding(root / "bilm")  # the pretrain output folder resolves to its module
    assert layer.handle == root / "bilm" / "module"
    words = tf.constant([["John", "visited", "Paris", "."], ["Reuters", "", "", ""]])
    out = layer(words).numpy()
    assert (
        out.shape == (2, 4, 16) and (out[1, 1:] == 0).all() and (np.abs(out[0]).sum(-1) > 0).all()
    )
    # Only the scalar mix trains; with equal weights it is the module's "elmo" output.
    assert sorted(v.name.split("/")[-1] for v in layer.trainable_weights) == [
        "gamma:0",
        "mix_weights:0",
    ]
    elmo = layer.module({"tokens": words, "sequence_len": tf.constant([4, 1])})["elmo"].numpy()
    np.testing.assert_allclose(out[0], elmo[0], atol=1e-5)
    with pytest.raises(FileNotFoundError):
        ElmoWordEmbedding(root / "nowhere")


def test_tagger_with_elmo_trains_and_exports_without_the_module_folder(pretrained, tmp_path):
    from etagger.evaluate import evaluate_split
    from etagger.export import export
    from etagger.train import input_names, train

    root, _ = pretrained
    model = {
        "lstm_units": 16,
        "lstm_layers": 1,
        "char_filters": [[3, 8]],
        "char_dim": 8,
        "embedding_dropout": 0.1,
        "encoder_dropout": 0.1,
        "elmo_handle": str(root / "bilm"),
    }
    config = config_lib.Config.from_dict(
        {"model": model, "train": {"batch_size": 8, "epochs": 1, "warmup_steps": 5}}
    )
    assert input_names(config)[-1] == "word"
    result = train(root / "data", config, tmp_path / "model", progress=False)
    assert result["epochs_run"] == 1
    evaluate_split(tmp_path / "model", root / "data", "test", tmp_path / "pred.txt")
    expected = predicted_tags(tmp_path / "pred.txt")
    saved = export(tmp_path / "model", tmp_path / "saved")

    away = root / "bilm-away"
    (root / "bilm").rename(away)  # the SavedModel carries the biLM itself
    try:
        loaded = tf.saved_model.load(str(saved))
        assert serve_conll(loaded, root / "conll" / "test.txt", extra=2)[0] == expected
    finally:
        away.rename(root / "bilm")


def test_config_field_validates():
    assert config_lib.ModelConfig().elmo_handle is None
    with pytest.raises(ValueError):
        config_lib.ModelConfig(elmo_handle="")
    with pytest.raises(ValueError, match="unknown"):
        bilm.BiLMConfig.from_dict({"lstm_size": 3})
