"""End-to-end: preprocess a tiny fixture, train a tiny BiLSTM-CRF that must fit it,
evaluate it, resume it, and check the files a model folder must hold."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the Viterbi op that exported models call)

from etagger import config as config_lib
from etagger import conll, data
from etagger.errors import InputError
from etagger.evaluate import evaluate_split
from etagger.export import export, rebuild_model_dir
from etagger.model import _drop_ids
from etagger.predictor import read_meta
from etagger.train import WarmupExponentialDecay, train
from tests.fixtures import TINY, predicted_tags, preprocess_tiny, serve_conll


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return preprocess_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny_model(tiny_data):
    config = config_lib.Config.from_dict(TINY)
    model_dir = tiny_data / "model"
    result = train(tiny_data / "data", config, model_dir, progress=False)
    return model_dir, config, result


def test_tiny_model_fits_fixture(tiny_data, tiny_model):
    model_dir, config, result = tiny_model
    assert result["dev_entity_f1"] >= 0.95
    summary, text = evaluate_split(model_dir, tiny_data / "data", "train", tiny_data / "pred.txt")
    assert summary["entity_f1"] >= 0.95, text
    assert summary["sentences"] == 40
    for name in (
        "config.json",
        "preprocess.json",
        "history.json",
        "glove_filtered.npy",
        "vocab/words.txt",
    ):
        assert (model_dir / name).exists(), name
    assert config_lib.Config.load(model_dir / "config.json") == config
    lines = (tiny_data / "pred.txt").read_text().split("\n")
    assert len(lines[0].split()) == 5  # word POS chunk gold pred

    # Resuming a finished run trains no further epoch and keeps the history.
    history = json.loads((model_dir / "history.json").read_text())
    again = train(tiny_data / "data", config, model_dir, progress=False)
    assert again["epochs_run"] == len(history) and again["dev_entity_f1"] == result["dev_entity_f1"]


def test_other_config_refused_in_same_model_dir(tiny_data, tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    config_lib.Config.from_dict(TINY).save(model_dir / "config.json")  # what train writes first
    other = config_lib.Config.from_dict({**TINY, "model": {**TINY["model"], "lstm_units": 8}})
    with pytest.raises(ValueError, match="another configuration"):
        train(tiny_data / "data", other, model_dir, progress=False)


def test_train_plus_dev_trains_on_both_and_keeps_the_last_epoch(tiny_data, tmp_path):
    both = data.make_dataset(tiny_data / "data", "train+dev", 64, ("word",), bucket=False)
    assert sum(int(b["length"].shape[0]) for b in both) == 40 + 10
    packed = data.make_dataset(
        tiny_data / "data", "train+dev", 64, ("word",), bucket=False, document_context=16
    )
    assert sum(int((b["sentence_lengths"].numpy() > 0).sum()) for b in packed) == 40 + 10

    # Dev is trained on, so it neither stops training (patience 1) nor picks the checkpoint.
    config = config_lib.Config.from_dict(
        {**TINY, "train": {**TINY["train"], "epochs": 3, "patience": 1}}
    )
    config = config.replace(train_split="train+dev")
    result = train(tiny_data / "data", config, tmp_path / "m", progress=False)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert result["epochs_run"] == 3 and result["best_epoch"] == 3
    assert [row["best"] for row in history] == [True, True, True]


@pytest.mark.parametrize("split", ["train+test", "train+train", "train+", ""])
def test_train_split_refuses_test_and_malformed_names(split):
    with pytest.raises(ValueError, match="train_split"):
        config_lib.TrainConfig(train_split=split)


def test_word_dropout_replaces_only_real_positions():
    ids = tf.fill([200, 50], tf.constant(7, tf.int64))
    mask = tf.sequence_mask(tf.fill([200], 30), 50)
    dropped = _drop_ids(ids, 0.1, 1, mask).numpy()
    assert set(dropped[:, 30:].ravel()) == {7}
    assert 0.07 < (dropped[:, :30] == 1).mean() < 0.13
    assert _drop_ids(ids, 0.0, 1, mask) is ids


def test_document_packs_hold_the_sentences_of_one_document_in_order(tiny_data):
    dataset = data.make_dataset(
        tiny_data / "data", "train", 64, ("word",), bucket=False, document_context=16
    )
    words, pack_sizes = [], []
    for batch in dataset:
        for row, lengths in zip(batch["word"].numpy(), batch["sentence_lengths"].numpy()):
            start = 0
            for n in lengths[lengths > 0]:
                words.append(tuple(w.decode() for w in row[start : start + n]))
                start += n
            pack_sizes.append(int((lengths > 0).sum()))
    sentences = list(conll.read_conll(tiny_data / "conll" / "train.txt"))
    assert words == [s.words for s in sentences]
    assert max(pack_sizes) > 1
    # The second document starts a pack (the fixture has two documents of 20 sentences).
    first = [sum(pack_sizes[:k]) for k in range(len(pack_sizes))]
    assert [s.index for s in sentences if s.doc_start] == [0, 20] and 20 in first


def test_export_serves_the_same_tags_as_evaluation(tiny_data, tiny_model, tmp_path):
    model_dir, _, _ = tiny_model
    saved = export(model_dir, tmp_path / "saved")
    loaded = tf.saved_model.load(str(saved))
    evaluate_split(model_dir, tiny_data / "data", "test", tmp_path / "pred.txt")
    expected = predicted_tags(tmp_path / "pred.txt")
    sentences = list(conll.read_conll(tiny_data / "conll" / "test.txt"))
    # Batched, padded serving gives exactly the evaluation's predictions (TINY uses POS).
    tags, out = serve_conll(
        loaded, tiny_data / "conll" / "test.txt", "tag_with_confidence", columns=("pos",)
    )
    assert tags == expected
    # One sentence alone gives the same tags as inside the padded batch.
    alone = loaded.signatures["serving_default"](
        tokens=tf.constant([sentences[0].words]), pos=tf.constant([sentences[0].columns["pos"]])
    )
    assert [t.decode() for t in alone["tags"].numpy()[0]] == expected[0]
    confidence = out["entity_confidence"].numpy()
    assert ((confidence >= 0) & (confidence <= 1.0 + 1e-6)).all()
    assert (confidence[out["tags"].numpy() == b"O"] == 0).all()


def served_test_split(tiny_data, saved):
    """The ``tag_with_confidence`` outputs of an exported tiny model on the fixture's test split."""
    loaded = tf.saved_model.load(str(saved))
    test = tiny_data / "conll" / "test.txt"
    return serve_conll(loaded, test, "tag_with_confidence", columns=("pos",))[1]


def test_fused_exports_serve_the_same_tags(tiny_data, tiny_model, tmp_path):
    model_dir, _, _ = tiny_model
    plain = export(model_dir, tmp_path / "plain")
    crf_only = export(model_dir, tmp_path / "crf", fused_crf=True)
    fused = export(model_dir, tmp_path / "fused", fused_lstm="float32", fused_crf=True)
    assert read_meta(plain)["ops"] == [] and read_meta(crf_only)["ops"] == ["EtaggerCrfMarginals"]
    assert read_meta(fused)["ops"] == ["EtaggerLstmSequence", "EtaggerCrfMarginals"]
    outputs = [served_test_split(tiny_data, saved) for saved in (plain, crf_only, fused)]
    # The CRF op computes the marginals exactly as the graph does; the LSTM op rounds apart.
    for name in ("tags", "token_confidence", "entity_confidence"):
        np.testing.assert_array_equal(outputs[0][name].numpy(), outputs[1][name].numpy())
    np.testing.assert_array_equal(outputs[0]["tags"].numpy(), outputs[2]["tags"].numpy())
    np.testing.assert_allclose(
        outputs[0]["token_confidence"].numpy(), outputs[2]["token_confidence"].numpy(), atol=1e-5
    )
    # `--bf16`: the same graph, with the LSTM's products in bfloat16 where the CPU allows.
    bf16 = export(model_dir, tmp_path / "bf16", fused_lstm="bfloat16", fused_crf=True)
    assert (read_meta(fused)["lstm_products"], read_meta(bf16)["lstm_products"]) == (
        "float32",
        "bfloat16",
    )
    tags = [outputs[2]["tags"].numpy(), served_test_split(tiny_data, bf16)["tags"].numpy()]
    assert np.mean(tags[0] == tags[1]) > 0.99
    # A fresh process: etagger's loader registers the op itself before loading the graph.
    load = f"from etagger.predictor import Predictor; print(Predictor({str(fused)!r}).load_seconds)"
    subprocess.run([sys.executable, "-c", load], check=True, capture_output=True)


def test_rebuilt_model_exports_the_same_outputs(tiny_data, tiny_model, tmp_path):
    model_dir, _, _ = tiny_model
    first = export(model_dir, tmp_path / "first")
    rebuilt = rebuild_model_dir(first, tiny_data / "data", tmp_path / "rebuilt")
    second = export(rebuilt, tmp_path / "second")
    outputs = [served_test_split(tiny_data, saved) for saved in (first, second)]
    for name in ("tags", "token_confidence", "entity_confidence"):
        np.testing.assert_array_equal(outputs[0][name].numpy(), outputs[1][name].numpy())
    with pytest.raises(InputError, match="not a preprocess output"):
        rebuild_model_dir(first, tiny_data / "conll", tmp_path / "other")


def test_tag_corpus_writes_what_evaluate_writes(tiny_data, tiny_model, tmp_path):
    """The model card's claim, checked live on a model trained here: tag-corpus on the test
    file writes, byte for byte, the conlleval input that `evaluate --pred-out` writes, so
    conlleval scores both the same."""
    from etagger import metrics
    from pipelines import tag_corpus
    from pipelines.options import TagOptions

    model_dir, _, _ = tiny_model
    summary, _ = evaluate_split(model_dir, tiny_data / "data", "test", tmp_path / "pred.txt")
    saved = str(export(model_dir, tmp_path / "saved"))
    source = tiny_data / "conll" / "test.txt"
    options = TagOptions(model=saved, input=(str(source),), output=str(tmp_path / "out"))
    tag_corpus.tag_corpus(options)
    tagged = tmp_path / "out" / "test.txt.conll"
    assert tagged.read_bytes() == (tmp_path / "pred.txt").read_bytes()
    report = metrics.evaluate(*metrics.read_conlleval_file(tagged))
    assert round(report.f1, 6) == round(summary["entity_f1"], 6)


def test_batch_function_traces_once_for_all_batch_shapes(tiny_data):
    traces = []

    def width(batch):
        traces.append(1)  # Python runs only while tracing
        return tf.shape(batch["char_ids"])

    dataset = data.make_dataset(
        tiny_data / "data", "train", 4, ("word_id", "char_ids", "tag_id"), shuffle=True
    )
    traced = data.batch_function(width, dataset)
    shapes = {tuple(traced(batch).numpy()) for batch in dataset}
    assert len(shapes) > 2 and len(traces) == 1


def test_resumed_training_continues_the_optimizer_and_the_history(tiny_data, tmp_path):
    one = config_lib.Config.from_dict({**TINY, "train": {**TINY["train"], "epochs": 1}})
    train(tiny_data / "data", one, tmp_path / "m", progress=False)
    result = train(tiny_data / "data", one.replace(epochs=2), tmp_path / "m", progress=False)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert result["epochs_run"] == 2 and [row["epoch"] for row in history] == [1, 2]
    # The step counter came back from last/: the learning rate after epoch 2 is that of 2 epochs' steps.
    steps = sum(
        1
        for _ in data.make_dataset(
            tiny_data / "data", "train", TINY["train"]["batch_size"], ("word_id",)
        )
    )
    tc = one.train
    schedule = WarmupExponentialDecay(
        tc.learning_rate, tc.warmup_steps, tc.decay_rate, tc.decay_steps
    )
    assert history[1]["learning_rate"] == pytest.approx(float(schedule(2 * steps)))
    assert history[1]["elapsed_seconds"] >= history[0]["elapsed_seconds"]
