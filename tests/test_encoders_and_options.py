"""Tiny trainings of the options: every encoder for one epoch, and weight averaging, word
and variational dropout and document context in one model that must fit the fixture.
(Apart from tests/test_train.py so that `make test` runs the two files on its two workers.)"""

import pytest

from etagger import config as config_lib
from etagger.evaluate import evaluate_split
from etagger.train import train
from tests.fixtures import TINY, preprocess_tiny


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return preprocess_tiny(tmp_path_factory.mktemp("tiny"))


ENCODERS = {
    "transformer": {},
    "transformer_relative": {
        "encoder": "transformer",
        "relative_positions": 4,
        "scale_attention": False,
    },
    "qrnn": {},
    "qrnn_softmax": {"encoder": "qrnn", "decoder": "softmax"},
    "bilstm_transformer": {},
    "bilstm_mha": {},
}


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_every_encoder_trains_one_epoch(tiny_data, tmp_path, encoder):
    cfg = {
        "model": {
            **TINY["model"],
            "encoder": encoder,
            "transformer_layers": 1,
            "num_heads": 2,
            "model_dim": 16,
            "ff_dim": 16,
            "qrnn_units": 8,
            "qrnn_layers": 1,
            **ENCODERS[encoder],
        },
        "train": {**TINY["train"], "epochs": 1},
    }
    result = train(
        tiny_data / "data", config_lib.Config.from_dict(cfg), tmp_path / encoder, progress=False
    )
    assert result["epochs_run"] == 1
    if not encoder.startswith("bilstm"):  # etagger's fused LSTM op has no LSTM to run here
        from etagger.errors import InputError
        from etagger.export import export

        with pytest.raises(InputError, match="--fused-lstm needs a BiLSTM encoder"):
            export(tmp_path / encoder, tmp_path / "saved", fused_lstm="float32")
        if encoder.endswith("softmax"):  # nor has the CRF-marginals op a CRF to run
            with pytest.raises(InputError, match="--fused-crf needs a model with a CRF"):
                export(tmp_path / encoder, tmp_path / "saved", fused_crf=True)


def test_averaging_dropouts_and_document_context_fit_and_tag_alike_everywhere(tiny_data, tmp_path):
    """Weight averaging, word and variational dropout and document context in one model:
    it fits; evaluation scores the averages that dev was scored with, on packs split back
    into sentences; and tag-corpus, which packs the same way, writes the same file."""
    from etagger.export import export
    from pipelines import tag_corpus

    cfg = {
        "model": {
            **TINY["model"],
            "word_dropout": 0.05,
            "variational_dropout": True,
            "document_context": 16,
        },
        "train": {**TINY["train"], "batch_size": 4, "ema_decay": 0.9},
    }
    model_dir = tmp_path / "ema"
    result = train(tiny_data / "data", config_lib.Config.from_dict(cfg), model_dir, progress=False)
    assert result["dev_entity_f1"] >= 0.95
    # The best checkpoint holds the weights dev was scored with: the averages.
    summary, _ = evaluate_split(model_dir, tiny_data / "data", "dev", tmp_path / "dev.txt")
    assert summary["entity_f1"] == pytest.approx(result["dev_entity_f1"], abs=1e-6)
    summary, _ = evaluate_split(model_dir, tiny_data / "data", "test", tmp_path / "pred.txt")
    assert summary["sentences"] == 10
    tag_corpus.run(
        [
            "--model",
            str(export(model_dir, tmp_path / "saved")),
            "--input",
            str(tiny_data / "conll" / "test.txt"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    assert (tmp_path / "out" / "test.txt.conll").read_bytes() == (
        tmp_path / "pred.txt"
    ).read_bytes()
