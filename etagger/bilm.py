"""A character-level bidirectional language model in the ELMo architecture (Peters et al.
2018), pretrained on raw text and exported as a TF-Hub module with ELMo's "tokens" signature.

Architecture (the biLM of ELMo, scaled down for a CPU): each token's UTF-8 bytes, framed by
begin/end-of-word markers, go through a character CNN (max-pooled over real characters),
highway layers and a linear projection; a forward and a backward stack of LSTMs read the
projected tokens, with residual connections from the second layer on. The forward stack's
top layer predicts the next token, the backward stack's the previous one, through one
softmax over the corpus vocabulary that both directions share (sampled softmax in training,
the full softmax for perplexity).

The exported module (``export_hub_module``) computes character ids in-graph from the token
strings, so it needs no vocabulary, and has ELMo's signature:

  tokens(tokens [B,T] string, sequence_len [B] int32) ->
      word_emb [B,T,P], lstm_outputs1 / lstm_outputs2 [B,T,2U] (forward ++ backward),
      elmo [B,T,2U] (mean of the three layers, word_emb repeated to 2U as in ELMo),
      default [B,2U] (mean of elmo over real tokens), sequence_len [B]

so ``hub.KerasLayer(path, signature="tokens", signature_outputs_as_dict=True)`` loads it
like an original ELMo module; ``etagger.layers.contextual.ElmoWordEmbedding`` does.

Training data is the "word" column of ``cli.py preprocess --raw`` TFRecords (the same Beam
pipeline that prepares corpora for tagging): ``pretrain`` builds the LM vocabulary from
them, holds out every ``heldout_every``-th sentence for perplexity and keeps the best epoch.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
from pathlib import Path

import tensorflow as tf
import tf_keras as keras

from etagger import data, fsutil
from etagger.layers.char_cnn import CharCNN
from etagger.layers.highway import Highway
from etagger.train import train_epoch

# Character ids: byte + 1 (so 0 is padding), then begin- and end-of-word markers.
BOW, EOW = 257, 258
NUM_CHARS = 259
BOS, EOS, UNK = "<S>", "</S>", "<UNK>"


@dataclasses.dataclass(frozen=True)
class BiLMConfig:
    """The biLM and its pretraining; saved as bilm_config.json in the output folder."""

    max_chars: int = 24  # bytes per token including the two markers; longer tokens are cut
    char_dim: int = 16
    char_filters: tuple[tuple[int, int], ...] = ((1, 32), (2, 32), (3, 64), (4, 128), (5, 128))
    highway_layers: int = 1
    lstm_units: int = 256  # per direction; also the projection size (residuals need equal sizes)
    lstm_layers: int = 2
    dropout: float = 0.1
    vocab_size: int = 30000  # most frequent tokens kept for the softmax (+ <S>, </S>, <UNK>)
    num_sampled: int = 1024  # negative classes per sampled-softmax step
    batch_size: int = 64
    epochs: int = 5
    learning_rate: float = 2e-3
    clip_norm: float = 5.0
    heldout_every: int = 50  # every n-th sentence is held out for perplexity
    seed: int = 42

    @classmethod
    def from_dict(cls, values: dict) -> BiLMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown BiLMConfig fields: {sorted(unknown)}")
        if "char_filters" in values:
            values = {**values, "char_filters": tuple(tuple(f) for f in values["char_filters"])}
        return cls(**values)


def char_ids(words: tf.Tensor, max_chars: int) -> tf.Tensor:
    """Token strings [B, T] -> int32 [B, T, max_chars]: BOW, the token's first
    ``max_chars - 2`` bytes (+1), EOW, then 0; "" (padding) gives all zeros."""
    words = tf.convert_to_tensor(words, tf.string)
    flat = tf.reshape(words, [-1])
    pieces = tf.strings.bytes_split(flat)  # [N, (bytes)] one-byte strings
    values = tf.reshape(tf.io.decode_raw(pieces.flat_values, tf.uint8), [-1])
    ids = pieces.with_flat_values(tf.cast(values, tf.int32) + 1)[:, : max_chars - 2]
    nonempty = tf.cast(ids.row_lengths() > 0, tf.int64)
    count = tf.cast(tf.reduce_sum(nonempty), tf.int32)

    def marker(value):
        return tf.RaggedTensor.from_row_lengths(tf.fill([count], value), nonempty)

    framed = tf.concat([marker(BOW), ids, marker(EOW)], axis=1)
    dense = framed.to_tensor(0, shape=[None, max_chars])
    return tf.reshape(dense, tf.concat([tf.shape(words), [max_chars]], axis=0))


class BiLM(keras.Model):
    """The biLM. ``call(words, lengths)`` returns the layer representations
    [token [B,T,U], layer 1 [B,T,2U], ..., layer L [B,T,2U]] (zeros at padding), the
    token layer of size U = lstm_units; ``lm_loss`` trains it."""

    def __init__(self, config: BiLMConfig, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        units = config.lstm_units
        self.char_cnn = CharCNN(NUM_CHARS, config.char_dim, config.char_filters, name="char_cnn")
        self.highway = (
            Highway(config.highway_layers, name="highway") if config.highway_layers else None
        )
        self.projection = keras.layers.Dense(units, name="projection")
        self.forward_lstms = [
            keras.layers.LSTM(units, return_sequences=True, name=f"forward_{i}")
            for i in range(config.lstm_layers)
        ]
        self.backward_lstms = [
            keras.layers.LSTM(units, return_sequences=True, go_backwards=True, name=f"backward_{i}")
            for i in range(config.lstm_layers)
        ]
        self.dropout = keras.layers.Dropout(config.dropout)
        self.softmax_weights = self.add_weight(
            name="softmax_weights",
            shape=[vocab_size, units],
            initializer=keras.initializers.RandomNormal(stddev=units**-0.5),
        )
        self.softmax_bias = self.add_weight(
            name="softmax_bias", shape=[vocab_size], initializer="zeros"
        )

    def directions(self, words, lengths, training=False):
        """(token layer [B,T,U], [(forward [B,T,U], backward [B,T,U]) per LSTM layer])."""
        mask = tf.sequence_mask(lengths, tf.shape(words)[1])
        maskf = tf.cast(mask, tf.float32)[..., None]
        x = self.char_cnn(char_ids(words, self.config.max_chars), mask=mask, training=training)
        if self.highway is not None:
            x = self.highway(x, mask=mask)
        token = self.projection(x) * maskf
        layers, forward, backward = [], token, token
        for i, (f_lstm, b_lstm) in enumerate(zip(self.forward_lstms, self.backward_lstms)):
            f = f_lstm(self.dropout(forward, training=training), mask=mask)
            # go_backwards returns the outputs last step first: flip them back. Right padding
            # comes first in that order and is masked, so the state starts at the last word.
            b = tf.reverse(b_lstm(self.dropout(backward, training=training), mask=mask), axis=[1])
            if i > 0:  # residual connections between LSTM layers, as in ELMo
                f, b = f + forward, b + backward
            forward, backward = f * maskf, b * maskf
            layers.append((forward, backward))
        return token, layers

    def call(self, words, lengths, training=False):
        token, layers = self.directions(words, lengths, training)
        return [token] + [tf.concat(pair, axis=-1) for pair in layers]

    def lm_loss(self, words, lengths, next_ids, previous_ids, training=True):
        """Mean per-token negative log-likelihood of both directions: sampled softmax when
        training, the exact softmax otherwise."""
        _, layers = self.directions(words, lengths, training)
        forward, backward = layers[-1]
        mask = tf.sequence_mask(lengths, tf.shape(words)[1])
        losses = []
        for states, targets in ((forward, next_ids), (backward, previous_ids)):
            states = tf.boolean_mask(self.dropout(states, training=training), mask)
            labels = tf.boolean_mask(targets, mask)
            if training:
                losses.append(
                    tf.nn.sampled_softmax_loss(
                        self.softmax_weights,
                        self.softmax_bias,
                        labels[:, None],
                        states,
                        self.config.num_sampled,
                        self.softmax_weights.shape[0],
                        remove_accidental_hits=True,
                        seed=self.config.seed,
                    )
                )
            else:
                logits = (
                    tf.matmul(states, self.softmax_weights, transpose_b=True) + self.softmax_bias
                )
                losses.append(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return (tf.reduce_mean(losses[0]) + tf.reduce_mean(losses[1])) / 2.0


def build_vocab(words: collections.Counter, size: int) -> list[str]:
    """<S>, </S>, <UNK>, then the ``size`` most frequent tokens (ties by token), most
    frequent first: the log-uniform sampler of the sampled softmax assumes that order."""
    ranked = sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return [BOS, EOS, UNK] + [w for w, _ in ranked]


def sentences(
    data_dir: str | Path, split: str, config: BiLMConfig, heldout: bool
) -> tf.data.Dataset:
    """{"word" [T], "length" []} of the training (``heldout`` False) or held-out sentences of
    ``split``: every ``heldout_every``-th sentence is held out."""
    every = config.heldout_every
    ds = data.parsed_records(data_dir, split, ["word"]).enumerate()
    ds = ds.filter(lambda i, r: tf.equal(tf.equal(i % every, every - 1), heldout))
    return ds.map(lambda i, r: {"word": r["word"], "length": r["length"]})


def lm_dataset(
    data_dir: str | Path,
    split: str,
    vocab: list[str],
    config: BiLMConfig,
    heldout: bool,
    shuffle: bool,
) -> tf.data.Dataset:
    """Batches {"word", "length", "next_id", "previous_id"} of the training (``heldout``
    False) or held-out sentences of ``split``."""
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocab), tf.range(len(vocab), dtype=tf.int64)
        ),
        default_value=vocab.index(UNK),
    )
    bos, eos = vocab.index(BOS), vocab.index(EOS)

    def targets(record):
        ids = table.lookup(record["word"])
        record["next_id"] = tf.concat([ids[1:], [eos]], axis=0)
        record["previous_id"] = tf.concat([[bos], ids[:-1]], axis=0)
        return record

    ds = sentences(data_dir, split, config, heldout).map(targets).cache()
    if shuffle:
        ds = ds.shuffle(50000, seed=config.seed, reshuffle_each_iteration=True)
    padding = {
        "word": tf.constant(b""),
        "length": tf.constant(0),
        "next_id": tf.constant(0, tf.int64),
        "previous_id": tf.constant(0, tf.int64),
    }
    boundaries = list(data.BUCKET_BOUNDARIES)
    ds = ds.bucket_by_sequence_length(
        lambda r: r["length"],
        boundaries,
        [config.batch_size] * (len(boundaries) + 1),
        padding_values=padding,
    )
    if shuffle:
        ds = ds.shuffle(64, seed=config.seed + 1, reshuffle_each_iteration=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def count_words(data_dir: str | Path, split: str, config: BiLMConfig) -> collections.Counter:
    """Token counts of the training (not held-out) sentences of ``split``."""
    counts: collections.Counter[str] = collections.Counter()
    for record in sentences(data_dir, split, config, heldout=False).as_numpy_iterator():
        counts.update(w.decode("utf-8") for w in record["word"])
    return counts


def pretrain(
    data_dir: str | Path,
    out_dir: str | Path,
    config: BiLMConfig,
    split: str = "raw",
    progress: bool = True,
) -> dict:
    """Pretrains the biLM on ``split`` of a preprocess output and exports the best epoch
    (lowest held-out perplexity) as a hub module in ``out_dir``; returns the history."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    vocab = build_vocab(count_words(data_dir, split, config), config.vocab_size)
    # Config and vocabulary first: with them, best/weights alone can be exported (export_best).
    with fsutil.atomic_write(out_dir / "bilm_config.json") as f:
        f.write(json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True) + "\n")
    with fsutil.atomic_write(out_dir / "lm_vocab.txt") as f:
        f.write("".join(w + "\n" for w in vocab))
    train_ds = lm_dataset(data_dir, split, vocab, config, heldout=False, shuffle=True)
    heldout_ds = lm_dataset(data_dir, split, vocab, config, heldout=True, shuffle=False)
    model = BiLM(config, len(vocab), name="bilm")
    optimizer = keras.optimizers.Adam(config.learning_rate)

    def step(batch):
        with tf.GradientTape() as tape:
            loss = model.lm_loss(
                batch["word"], batch["length"], batch["next_id"], batch["previous_id"]
            )
        grads = tape.gradient(loss, model.trainable_variables)
        grads, norm = tf.clip_by_global_norm(grads, config.clip_norm)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss, norm

    def summed_loss(batch):
        loss = model.lm_loss(
            batch["word"], batch["length"], batch["next_id"], batch["previous_id"], training=False
        )
        return loss * tf.cast(tf.reduce_sum(batch["length"]), tf.float32)

    # The model's variables, then the optimizer's, before the first step: a step that creates
    # variables is traced twice.
    model(tf.constant([["."]]), tf.constant([1]))
    optimizer.build(model.trainable_variables)
    train_step = data.batch_function(step, train_ds)
    heldout_loss = data.batch_function(summed_loss, heldout_ds)

    history, best = [], math.inf
    for epoch in range(1, config.epochs + 1):
        _, tokens, seconds = train_epoch(train_step, train_ds, progress)
        perplexity = _perplexity(heldout_ds, heldout_loss)
        row = {
            "epoch": epoch,
            "heldout_perplexity": round(perplexity, 2),
            "train_seconds": round(seconds, 1),
            "tokens_per_second": round(tokens / seconds),
            "best": perplexity < best,
        }
        if perplexity < best:
            best = perplexity
            model.save_weights(str(out_dir / "best" / "weights"))
        history.append(row)
        if progress:  # one line per epoch, also where stdout is not a terminal (no bar there)
            print(json.dumps(row), flush=True)
        with fsutil.atomic_write(out_dir / "history.json") as f:
            json.dump(history, f, indent=1)
    export_best(out_dir)
    return {"module": str(out_dir / "module"), "vocab_size": len(vocab), "history": history}


def _perplexity(heldout_ds: tf.data.Dataset, summed_loss) -> float:
    """exp of the mean per-token loss over ``heldout_ds``, from per-batch summed losses."""
    total, count = 0.0, 0
    for batch in heldout_ds:
        total += float(summed_loss(batch))
        count += int(tf.reduce_sum(batch["length"]))
    return math.exp(total / count)


def export_best(out_dir: str | Path) -> Path:
    """Exports OUT/module from OUT/best/weights, OUT/bilm_config.json and OUT/lm_vocab.txt
    (``pretrain`` ends with this; ``cli.py pretrain-bilm --export-only`` reruns it)."""
    out_dir = Path(out_dir)
    config = BiLMConfig.from_dict(json.loads((out_dir / "bilm_config.json").read_text()))
    vocab_size = len((out_dir / "lm_vocab.txt").read_text(encoding="utf-8").split("\n")) - 1
    model = BiLM(config, vocab_size, name="bilm")
    model(tf.constant([["a"]]), tf.constant([1]))  # builds the variables
    model.load_weights(str(out_dir / "best" / "weights"))
    return export_hub_module(model, out_dir / "module")


class ElmoModule(tf.Module):
    """What ``export_hub_module`` saves: the biLM's variables and the "tokens" signature."""

    # A SavedModel keeps attributes, not tf.Module's computed properties, and hub.KerasLayer
    # reads these from the restored object: plain lists make it see the weights.
    variables: list[tf.Variable] | None = None
    trainable_variables: list[tf.Variable] | None = None

    def __init__(self, bilm: BiLM):
        super().__init__(name="elmo")
        # Track the variables, not the Keras model (which would save every layer's traces).
        object.__setattr__(self, "bilm", bilm)
        self.variables = [v for v in bilm.variables if "softmax" not in v.name]
        self.trainable_variables = []  # frozen: ELMo trains only its scalar mix downstream
        self.regularization_losses: list[tf.Tensor] = []

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="tokens"),
            tf.TensorSpec([None], tf.int32, name="sequence_len"),
        ]
    )
    def tokens(self, tokens, sequence_len):
        token, *layers = self.bilm(tokens, sequence_len, training=False)
        word_emb = tf.concat([token, token], axis=-1)  # ELMo repeats the token layer to 2U
        elmo = tf.add_n([word_emb] + layers) / float(1 + len(layers))
        mask = tf.cast(tf.sequence_mask(sequence_len, tf.shape(tokens)[1]), tf.float32)[..., None]
        default = tf.reduce_sum(elmo * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)
        outputs = {
            "word_emb": token,
            "elmo": elmo,
            "default": default,
            "sequence_len": sequence_len,
        }
        outputs.update({f"lstm_outputs{i}": layer for i, layer in enumerate(layers, start=1)})
        return outputs


def export_hub_module(model: BiLM, out: str | Path) -> Path:
    """Saves ``model`` as a TF-Hub-format SavedModel with the "tokens" signature, written to
    a temporary folder and renamed into place."""
    module = ElmoModule(model)
    return fsutil.atomic_folder(
        lambda d: tf.saved_model.save(module, str(d), signatures={"tokens": module.tokens}), out
    )
