"""Typed configuration of a tagger: the model, its training, saved as JSON beside the model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from etagger.clioptions import option

ENCODERS = ("bilstm", "transformer", "qrnn", "bilstm_transformer", "bilstm_mha")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How tokens become features. Saved with the preprocessed data and the model."""

    lowercase: bool = option(
        True,
        help="look words up lowercased (GloVe 6B is; case survives in the "
        "character and shape features)",
    )
    zero_digits: bool = option(False, help="map every digit to 0 before the word lookup")
    max_word_chars: int = 30  # longer words keep their first characters only
    max_shape_chars: int = 8
    max_gazetteer_words: int = 6  # longer gazetteer entries are not matched


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The network: embeddings -> encoder -> CRF (or softmax)."""

    # Embeddings. Word vectors come from OUT/glove_filtered.npy.
    train_word_embeddings: bool = True
    char_dim: int = 30
    char_filters: tuple[tuple[int, int], ...] = ((3, 50),)  # (width, count) per char CNN filter
    use_shape: bool = True
    shape_dim: int = 10
    use_pos: bool = False  # POS/chunk need those columns at tagging time too
    use_chunk: bool = False
    pos_dim: int = 10
    chunk_dim: int = 10
    # Gazetteer matches (needs `preprocess --gazetteer train|FILE`): an embedding of the bit
    # mask of entity types whose listed names cover the token. Training drops it per token
    # with gazetteer_dropout, so the model does not learn that every entity is listed (a
    # gazetteer from the training split lists every training entity, but not the test ones).
    use_gazetteer: bool = False
    gazetteer_dim: int = 8
    gazetteer_dropout: float = 0.0
    highway_layers: int = 0
    embedding_dropout: float = 0.5
    # Training replaces this fraction of word ids by UNK, so the UNK vector is learned and
    # the model learns to lean on characters for words GloVe and training lack.
    word_dropout: float = 0.0
    # One dropout mask per sentence, shared by all its tokens (Gal & Ghahramani's variational
    # dropout), for the embedding and encoder-output dropout and between BiLSTM layers;
    # recurrent connections stay undropped so Keras keeps its fused LSTM kernel.
    variational_dropout: bool = False
    # 0: the encoder reads one sentence at a time. N > 0: consecutive sentences of a document
    # are packed into sequences of up to N tokens (etagger.packing.pack_documents) for training,
    # evaluation and tag-corpus, so the encoder and CRF see the neighbouring sentences
    # (a headline's context, an earlier full name); predictions are split back per sentence.
    document_context: int = 0
    # Encoder.
    encoder: str = "bilstm"
    lstm_units: int = 200
    lstm_layers: int = 2
    transformer_layers: int = 4
    num_heads: int = 4
    model_dim: int = 128
    ff_dim: int = 256
    # 0: absolute sinusoidal positions and Keras attention; K > 0: a learned attention bias per
    # head and relative offset in [-K, K], no absolute positions (TENER-style, see
    # etagger.layers.transformer.RelativeSelfAttention). Unscaled attention needs K > 0
    # (TransformerEncoder checks both when the model is built).
    relative_positions: int = 0
    scale_attention: bool = True
    qrnn_units: int = 200
    qrnn_layers: int = 2
    encoder_dropout: float = 0.5
    # Rei (2017)'s auxiliary language-modelling objective, for encoders that start with a
    # BiLSTM: the first BiLSTM layer's forward states predict the next word and its backward
    # states the previous one, over the lm_vocab most frequent training words (the rest as
    # UNK), through a tanh layer of lm_hidden units; the training loss adds lm_weight times
    # their summed negative log-likelihood. Training only: potentials, decoding and the
    # exported graph are unchanged. 0 turns it off.
    lm_weight: float = 0.0
    lm_vocab: int = 7500
    lm_hidden: int = 50
    # Output.
    decoder: str = "crf"  # "crf" or "softmax"
    # Contextual word features (etagger.layers.contextual): a LOCAL TF-Hub BERT encoder folder
    # (`cli.py convert-bert --out DIR` writes DIR/encoder), relative paths resolved against the
    # working directory when the model is built; None = no BERT features.
    bert_handle: str | None = None
    bert_pooling: str = "first"  # a word's "first" wordpiece, or the "mean" of its pieces
    bert_layers: int = 1  # 1: sequence_output; n: mean of the last n encoder layers
    bert_trainable: bool = False  # fine-tune the encoder (else frozen)
    bert_max_pieces: int = 256  # packed length per sentence, [CLS] and [SEP] included
    # > 0: the frozen encoder reads packs of consecutive sentences of one document of at most
    # this many tokens (etagger.packing), so a word's vector sees the sentences around it; the
    # rest of the model reads each sentence alone. Training reads these vectors as preprocess
    # --contextual-pack-tokens stored them; 0: the encoder reads each sentence alone.
    bert_pack_tokens: int = 0
    # ELMo word features (etagger.layers.contextual.ElmoWordEmbedding): a LOCAL hub module with
    # ELMo's "tokens" signature (`cli.py pretrain-bilm --out DIR` writes DIR/module); None = none.
    elmo_handle: str | None = None

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, not {self.encoder!r}")
        if self.decoder not in ("crf", "softmax"):
            raise ValueError(f"decoder must be 'crf' or 'softmax', not {self.decoder!r}")
        for name in ("bert_handle", "elmo_handle"):
            handle = getattr(self, name)
            if handle is not None and (not isinstance(handle, str) or not handle):
                raise ValueError(f"{name} must be a non-empty path or null, not {handle!r}")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), not {self.word_dropout!r}")
        for name, minimum in (
            ("document_context", 0),
            ("bert_pack_tokens", 0),
            ("bert_layers", 1),
            ("bert_max_pieces", 3),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
        if self.bert_pack_tokens and (
            self.bert_handle is None or self.bert_trainable or self.document_context
        ):
            raise ValueError(
                "bert_pack_tokens needs a frozen BERT encoder (bert_handle, bert_trainable "
                "false) in a model without document_context"
            )
        if not 0.0 <= self.gazetteer_dropout < 1.0:
            raise ValueError(f"gazetteer_dropout must be in [0, 1), not {self.gazetteer_dropout!r}")
        if not self.lm_weight >= 0.0:
            raise ValueError(f"lm_weight must be >= 0, not {self.lm_weight!r}")
        if self.lm_weight and not self.encoder.startswith("bilstm"):
            raise ValueError(
                f"lm_weight needs an encoder that starts with a BiLSTM, not {self.encoder!r}"
            )
        if self.lm_weight and (self.lm_vocab < 3 or self.lm_hidden < 1):
            raise ValueError(
                "lm_vocab must be >= 3 and lm_hidden >= 1, "
                f"not {self.lm_vocab!r} and {self.lm_hidden!r}"
            )
        if self.bert_pooling not in ("first", "mean"):
            raise ValueError(f"bert_pooling must be 'first' or 'mean', not {self.bert_pooling!r}")
        if not isinstance(self.bert_trainable, bool):
            raise ValueError(f"bert_trainable must be true or false, not {self.bert_trainable!r}")

    @property
    def reads_words(self) -> bool:
        """Whether the model reads the word strings (feature "word"): BERT or ELMo features."""
        return self.bert_handle is not None or self.elmo_handle is not None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The optimisation: Adam, warm-up then exponential decay, clipping, early stopping."""

    batch_size: int = 32
    epochs: int = 30
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    decay_rate: float = 0.9  # multiply the learning rate by this ...
    decay_steps: int = 1000  # ... every this many steps after warm-up
    clip_norm: float = 5.0
    patience: int = 5  # epochs without a better dev entity F1 before stopping
    seed: int = 42
    # Exponential moving average of the weights (etagger.averaging), used for dev evaluation
    # and the best checkpoint; 0 turns it off.
    ema_decay: float = 0.0
    # The splits to train on: "train", or "train+dev" to fit a final model on all labelled
    # data. Dev then no longer measures generalisation, so it cannot choose the checkpoint or
    # stop training: all epochs run and the best checkpoint holds the last epoch's weights.
    train_split: str = "train"
    # Distillation: a preprocess output of the same vocabularies whose records carry a
    # teacher's CRF marginals (``preprocess --soft-targets``). Every step then takes a gold
    # batch and a silver batch (sentences of ``silver_splits`` that have soft targets), and
    # the loss is (1 - distill_weight) * the gold negative log-likelihood + distill_weight *
    # the summed token KL divergence of the model's marginals from the teacher's. An epoch
    # is still one pass over the gold data; the silver data cycles.
    silver_data: str | None = None
    silver_splits: str = "train+raw"
    distill_weight: float = 0.5

    def __post_init__(self):
        parts = self.train_split.split("+") if isinstance(self.train_split, str) else [None]
        if not all(parts) or "test" in parts or len(set(parts)) != len(parts):
            raise ValueError(
                f"train_split must name distinct splits other than test joined by '+' "
                f"(e.g. 'train' or 'train+dev'), not {self.train_split!r}"
            )
        if not 0.0 < self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must be in (0, 1], not {self.distill_weight!r}")
        if self.silver_data is not None and (
            not isinstance(self.silver_data, str) or not self.silver_data
        ):
            raise ValueError(f"silver_data must be a folder or null, not {self.silver_data!r}")
        if not (self.ema_decay == 0.0 or 0.0 < self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be 0 (off) or in (0, 1), not {self.ema_decay!r}")

    @property
    def selects_on_dev(self) -> bool:
        """Whether dev is held out, so that it stops training and chooses the checkpoint."""
        return "dev" not in self.train_split.split("+")


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> None:
        from etagger.fsutil import atomic_write

        with atomic_write(path) as f:
            f.write(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Builds a config from a (possibly partial) dict; unknown keys are an error."""
        unknown = set(data) - {"model", "train"}
        if unknown:
            raise ValueError(f"unknown config sections: {sorted(unknown)}")
        model = _build(ModelConfig, data.get("model", {}))
        train = _build(TrainConfig, data.get("train", {}))
        return cls(model=model, train=train)

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def replace(self, **train_overrides) -> Config:
        """A copy with some training fields changed (e.g. from command-line flags)."""
        given = {k: v for k, v in train_overrides.items() if v is not None}
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **given))


def _build(cls, data: dict[str, Any]):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    values = {}
    for key, value in data.items():
        # JSON has no tuples: restore nested tuples for tuple-typed fields.
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        values[key] = value
    return cls(**values)
