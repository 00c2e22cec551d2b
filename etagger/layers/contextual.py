"""Contextual word features from a BERT encoder in TF-Hub format, read from a LOCAL folder.

Everything runs in-graph from the word strings, so training, evaluation and the exported
SavedModel share one definition (no train/serve skew):

1. each real word is wordpiece-tokenized on its own with tensorflow_text.BertTokenizer (the
   encoder's vocabulary; lower-casing as the checkpoint says), so a word never merges with
   its neighbours; a word that gives no piece at all (a control or format character, a lone
   combining accent) becomes [UNK], so every word owns at least one piece
   (``etagger.bert.word_pieces``). ``WordPieces`` is that step; ``cli.py preprocess
   --bert-handle`` runs the same one and stores the pieces, which training then reads
   instead of tokenizing again;
2. per sentence the pieces are packed ``[CLS] pieces... [SEP]`` and cut to ``max_pieces``
   in all (so at most ``max_pieces - 2`` word pieces), padded to the longest sentence of the
   batch with [PAD] and input_mask 0, type ids all 0;
3. the encoder runs; its ``sequence_output`` (``layers=1``) or the mean of the last
   ``layers`` entries of ``encoder_outputs`` is the piece representation;
4. each word takes its first piece (``pooling="first"``) or the mean of its pieces
   (``"mean"``). A word cut off by ``max_pieces`` (no piece left) gets ZEROS, like padding:
   with no context vector it falls back on its other features; a word cut in the middle
   averages the pieces that survive.

Padding positions (mask False, or "" words when no mask is given) are never tokenized and
return zeros, so padding can only change the real positions' vectors through the padded
length of the encoder batch, which the attention mask cancels (up to float rounding).

The handle is a folder written by ``etagger.bert.convert`` (``OUT`` or ``OUT/encoder``) or
any TF-Hub BERT encoder folder with ``assets/vocab.txt``. A relative handle is resolved
against the current working directory when the layer is built. Lower-casing comes from
``bert_config.json`` beside or inside the encoder folder (``do_lower_case``), else from the
SavedModel's own ``do_lower_case`` variable (as TF-Hub's BERT encoders carry).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import tensorflow as tf
import tensorflow_hub as hub
import tensorflow_text as text
import tf_keras as keras

from etagger.bert import read_vocab, word_pieces

POOLINGS = ("first", "mean")


def resolve_handle(
    handle: str | os.PathLike,
    inner: str = "encoder",
    field: str = "bert_handle",
    maker: str = "convert-bert --out DIR",
) -> Path:
    """The absolute SavedModel folder of ``handle`` (relative: against the current working
    directory): ``handle`` itself, or ``handle/inner`` when that is where the SavedModel is
    (``OUT`` of ``cli.py convert-bert`` resolves to ``OUT/encoder``, of ``cli.py
    pretrain-bilm`` to ``OUT/module``). ``field`` and ``maker`` word the error."""
    path = Path(os.path.abspath(os.path.expanduser(str(handle))))
    if not (path / "saved_model.pb").exists() and (path / inner / "saved_model.pb").exists():
        path = path / inner
    if not (path / "saved_model.pb").exists():
        raise FileNotFoundError(
            f"{field} {str(handle)!r}: no SavedModel at {path} (make one with `cli.py {maker}`)"
        )
    return path


def read_bert_config(encoder_dir: Path) -> dict:
    """bert_config.json inside or beside the encoder folder, or {} when there is none."""
    for candidate in (encoder_dir / "bert_config.json", encoder_dir.parent / "bert_config.json"):
        if candidate.exists():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return {}


def vocab_sha256(handle: str | os.PathLike) -> str:
    """SHA-256 of the encoder's vocab.txt: preprocess records it beside stored wordpieces, and
    a tagger uses those only when its own encoder has the same vocabulary."""
    return hashlib.sha256(
        (resolve_handle(handle) / "assets" / "vocab.txt").read_bytes()
    ).hexdigest()


class WordPieces(tf.Module):
    """Each word on its own -> its wordpiece ids, with the encoder's vocabulary and casing:
    ``__call__(words [N] string) -> int32 [N, (pieces)]``. A word that gives no piece (a
    control or format character, a lone combining accent) becomes [UNK], so every word owns
    at least one piece. Preprocessing (``--bert-handle``) and the tagger share this.

    ``encoder``: the loaded encoder object, to read its ``do_lower_case`` variable when the
    folder has no bert_config.json (loaded here when not given)."""

    def __init__(self, handle: str | os.PathLike, encoder=None):
        super().__init__(name="wordpieces")
        self.handle = resolve_handle(handle)
        bert_config = read_bert_config(self.handle)
        vocab_path = self.handle / "assets" / "vocab.txt"
        if not vocab_path.exists():
            raise FileNotFoundError(
                f"{vocab_path} is missing: the encoder must carry its vocabulary"
            )
        if "do_lower_case" in bert_config:
            lower_case = bool(bert_config["do_lower_case"])
        else:
            encoder = encoder if encoder is not None else tf.saved_model.load(str(self.handle))
            if not hasattr(encoder, "do_lower_case"):
                raise ValueError(
                    f"{self.handle}: cannot tell whether the vocabulary is lower-cased "
                    "(no bert_config.json with do_lower_case, no do_lower_case variable)"
                )
            lower_case = bool(encoder.do_lower_case.numpy())
        self.lower_case = lower_case
        self.vocab = read_vocab(vocab_path)
        self.unk_id = self.vocab["[UNK]"]
        # A tf.Module: its vocabulary table tracks vocab.txt as a SavedModel asset.
        self.tokenizer = text.BertTokenizer(
            str(vocab_path), lower_case=lower_case, token_out_type=tf.int32
        )

    def __call__(self, words):
        return word_pieces(self.tokenizer, words, self.unk_id)


class BertWordEmbedding(keras.layers.Layer):
    """Contextual vectors of pre-tokenized words from a local TF-Hub BERT encoder.

    Args:
      handle: local folder of the encoder (see the module docstring).
      pooling: "first" (the word's first wordpiece) or "mean" (mean of its wordpieces).
      layers: 1 uses ``sequence_output``; n > 1 the mean of the last n ``encoder_outputs``.
      trainable: fine-tune the encoder (its weights become trainable variables).
      max_pieces: packed length cap per sentence, [CLS] and [SEP] included.

    Call:
      words: string [B, T], "" at padding.
      mask: optional bool [B, T], True at real words (default: words != "").
      pieces: optional int [B, T, P] wordpiece ids per word from preprocessing (``--bert-handle``),
        0 at padding; when given, the words are not tokenized again.
      pack_ids: optional int [B]: the encoder reads the rows of each pack (runs of equal ids,
        numbered 0, 1, ... in row order) joined as one sequence, so each sentence's vectors
        see its neighbours; ``max_pieces`` then caps each pack.

    Returns:
      float32 [B, T, H]; zeros at padding and for words cut off by ``max_pieces``.
    """

    def __init__(
        self,
        handle: str | os.PathLike,
        pooling: str = "first",
        layers: int = 1,
        trainable: bool = False,
        max_pieces: int = 256,
        **kwargs,
    ):
        super().__init__(trainable=trainable, **kwargs)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, not {layers}")
        if max_pieces < 3:
            raise ValueError(f"max_pieces must be >= 3 ([CLS], a piece, [SEP]), not {max_pieces}")
        self.handle = resolve_handle(handle)
        self.pooling, self.num_layers, self.max_pieces = pooling, int(layers), int(max_pieces)
        bert_config = read_bert_config(self.handle)
        self.encoder = hub.KerasLayer(str(self.handle), trainable=trainable, name="encoder")
        positions = bert_config.get("max_position_embeddings")
        if positions is not None and self.max_pieces > positions:
            raise ValueError(
                f"max_pieces {self.max_pieces} exceeds the encoder's {positions} positions"
            )
        hidden_layers = bert_config.get("num_hidden_layers")
        if hidden_layers is not None and self.num_layers > hidden_layers:
            raise ValueError(
                f"layers {self.num_layers} exceeds the encoder's {hidden_layers} layers"
            )
        self.hidden_size = bert_config.get("hidden_size")
        self.tokenizer = WordPieces(self.handle, self.encoder.resolved_object)
        self.lower_case = self.tokenizer.lower_case
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = (
            self.tokenizer.vocab[t] for t in ("[CLS]", "[SEP]", "[PAD]", "[UNK]")
        )

    def pack(self, words, mask, pieces=None):
        """For words [B, T] and mask [B, T]: (the packed int32 [B, P] input_word_ids /
        input_mask / input_type_ids, the [N, (pieces)] ragged piece ids of the N real words in
        row-major order, the sentence of each word [N], the piece count of each sentence [B]).
        ``pieces``: the words' wordpiece ids [B, T, (P)] as preprocessing stored them (0 =
        padding), instead of tokenizing here."""
        batch = tf.shape(words, out_type=tf.int64)[0]
        if pieces is None:
            pieces = self.tokenizer(tf.boolean_mask(words, mask))  # [N, (pieces)]
        else:
            pieces = tf.RaggedTensor.from_tensor(
                tf.cast(tf.boolean_mask(pieces, mask), tf.int32), padding=0
            )

        words_per_sentence = tf.reduce_sum(tf.cast(mask, tf.int64), axis=1)  # [B]
        sentence_of_word = tf.repeat(tf.range(batch), words_per_sentence)
        pieces_per_sentence = tf.math.unsorted_segment_sum(
            pieces.row_lengths(), sentence_of_word, batch
        )
        sentences = tf.RaggedTensor.from_row_lengths(pieces.values, pieces_per_sentence)[
            :, : self.max_pieces - 2
        ]
        kept = sentences.row_lengths()  # [B]
        column = tf.ones([batch, 1], tf.int32)
        ids = tf.concat(
            [
                column * self.cls_id,
                sentences.to_tensor(default_value=self.pad_id),
                column * self.pad_id,
            ],
            axis=1,
        )  # [B, 2 + longest]
        ids = tf.tensor_scatter_nd_update(  # [SEP] right after each sentence's last piece
            ids,
            tf.stack([tf.range(batch), kept + 1], axis=1),
            tf.fill([batch], tf.constant(self.sep_id, tf.int32)),
        )
        input_mask = tf.sequence_mask(kept + 2, tf.shape(ids, out_type=tf.int64)[1], dtype=tf.int32)
        inputs = {
            "input_word_ids": ids,
            "input_mask": input_mask,
            "input_type_ids": tf.zeros_like(ids),
        }
        return inputs, pieces, sentence_of_word, pieces_per_sentence

    def call(self, words, mask=None, pieces=None, training=None, pack_ids=None):
        words = tf.convert_to_tensor(words, tf.string)
        mask = tf.not_equal(words, "") if mask is None else tf.cast(mask, tf.bool)
        if pack_ids is not None:
            return self._of_packs(words, mask, pieces, pack_ids, training)
        inputs, pieces, sentence_of_word, pieces_per_sentence = self.pack(words, mask, pieces)
        outputs = self.encoder(inputs, training=training)
        if self.num_layers == 1:
            hidden = outputs["sequence_output"]
        else:
            layers = list(outputs["encoder_outputs"])
            if self.num_layers > len(layers):
                raise ValueError(
                    f"layers {self.num_layers} exceeds the encoder's {len(layers)} layers"
                )
            hidden = tf.add_n(layers[-self.num_layers :]) / float(self.num_layers)
        if not self.trainable:
            hidden = tf.stop_gradient(hidden)
        size = hidden.shape[-1] if hidden.shape[-1] is not None else tf.shape(hidden)[-1]

        # Where each piece sits in its packed sentence: 1 ([CLS]) + pieces of the sentence's
        # earlier words + its index within the word.
        counts = pieces.row_lengths()  # [N]
        word_start = tf.cumsum(counts, exclusive=True)  # within the flat piece list
        sentence_start = tf.gather(tf.cumsum(pieces_per_sentence, exclusive=True), sentence_of_word)
        word_of_piece = pieces.value_rowids()  # [pieces]
        index_in_word = tf.range(tf.size(pieces.values, out_type=tf.int64)) - tf.gather(
            word_start, word_of_piece
        )
        position = 1 + tf.gather(word_start - sentence_start, word_of_piece) + index_in_word
        keep = position <= self.max_pieces - 2  # survived truncation
        if self.pooling == "first":
            keep &= tf.equal(index_in_word, 0)
        word_of_piece = tf.boolean_mask(word_of_piece, keep)
        where = tf.stack(
            [tf.gather(sentence_of_word, word_of_piece), tf.boolean_mask(position, keep)], axis=1
        )
        vectors = tf.gather_nd(hidden, where)  # [kept pieces, H]
        num_words = tf.shape(counts, out_type=tf.int64)[0]
        total = tf.math.unsorted_segment_sum(vectors, word_of_piece, num_words)
        kept = tf.math.unsorted_segment_sum(
            tf.ones_like(word_of_piece, hidden.dtype), word_of_piece, num_words
        )
        word_vectors = total / tf.maximum(kept, 1.0)[:, None]  # [N, H]; zeros for cut-off words

        shape = tf.concat(
            [tf.shape(words, out_type=tf.int64), tf.reshape(tf.cast(size, tf.int64), [1])], axis=0
        )
        out = tf.scatter_nd(tf.where(mask), word_vectors, shape)
        out.set_shape(words.shape.concatenate([hidden.shape[-1]]))
        return out

    def _of_packs(self, words, mask, pieces, pack_ids, training):
        """The vectors of the sentences (rows) of ``words`` when the encoder reads each run of
        rows with the same ``pack_ids`` [B] (0, 1, ... in row order) as one sequence: the
        sentences of a pack joined in row order (``bert_pack_tokens``)."""
        lengths = tf.reduce_sum(tf.cast(mask, tf.int64), axis=1)  # [B]
        pack_ids = tf.cast(pack_ids, tf.int64)
        num_packs = tf.reduce_max(tf.concat([pack_ids, [-1]], axis=0)) + 1
        pack_lengths = tf.math.unsorted_segment_sum(lengths, pack_ids, num_packs)

        def joined(values, default):
            flat = tf.boolean_mask(values, mask)  # row-major: each pack's rows, in order
            return tf.RaggedTensor.from_row_lengths(flat, pack_lengths).to_tensor(default)

        packed_pieces = None if pieces is None else joined(pieces, 0)
        vectors = self.call(joined(words, ""), pieces=packed_pieces, training=training)
        flat = tf.boolean_mask(vectors, tf.sequence_mask(pack_lengths, tf.shape(vectors)[1]))
        shape = tf.concat(
            [tf.shape(words, out_type=tf.int64), tf.shape(flat, out_type=tf.int64)[1:]], axis=0
        )
        out = tf.scatter_nd(tf.where(mask), flat, shape)
        out.set_shape(words.shape.concatenate([vectors.shape[-1]]))
        return out

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape[:2]).concatenate([self.hidden_size])

    def serving_resources(self) -> list:
        """What an exported graph that calls this layer must track besides its variables:
        the tokenizer (its vocabulary table and vocab.txt asset)."""
        return [self.tokenizer.tokenizer]

    def get_config(self):
        config = super().get_config()
        config.update(
            handle=str(self.handle),
            pooling=self.pooling,
            layers=self.num_layers,
            max_pieces=self.max_pieces,
        )
        return config


class ElmoWordEmbedding(keras.layers.Layer):
    """ELMo vectors of pre-tokenized words from a LOCAL TF-Hub module with ELMo's "tokens"
    signature (tokens [B,T] string, sequence_len [B] int32 -> word_emb, lstm_outputs1,
    lstm_outputs2, elmo, ...): the original ELMo modules, or ``cli.py pretrain-bilm``'s.

    The biLM stays frozen; what trains is ELMo's task-specific scalar mix
    ``gamma * sum_j softmax(s)_j * layer_j`` over word_emb (repeated to the LSTM width when
    it is half of it, as ELMo does) and the lstm_outputs layers. A module without those
    outputs contributes its "elmo" output instead.

    Call:
      words: string [B, T], "" at padding.
      mask: optional bool [B, T], True at real words, right-padded (default: words != "").

    Returns:
      float32 [B, T, D]; zeros at padding.
    """

    def __init__(self, handle: str | os.PathLike, **kwargs):
        super().__init__(**kwargs)
        # TF1 Hub modules (the original ELMo ones) hold a saved_model.pb too.
        self.handle = resolve_handle(handle, "module", "elmo_handle", "pretrain-bilm")
        self.module = hub.KerasLayer(
            str(self.handle),
            signature="tokens",
            signature_outputs_as_dict=True,
            trainable=False,
            name="elmo_module",
        )

    def build(self, input_shape):
        self.mix_weights = self.add_weight(name="mix_weights", shape=[3], initializer="zeros")
        self.gamma = self.add_weight(name="gamma", shape=[], initializer="ones")
        super().build(input_shape)

    def call(self, words, mask=None, training=None):
        words = tf.convert_to_tensor(words, tf.string)
        mask = tf.not_equal(words, "") if mask is None else tf.cast(mask, tf.bool)
        lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
        outputs = self.module({"tokens": tf.where(mask, words, ""), "sequence_len": lengths})
        names = ("word_emb", "lstm_outputs1", "lstm_outputs2")
        if all(name in outputs for name in names):
            layers = [tf.stop_gradient(outputs[name]) for name in names]
            width = layers[1].shape[-1]
            if (
                layers[0].shape[-1] is not None
                and width is not None
                and 2 * layers[0].shape[-1] == width
            ):
                layers[0] = tf.concat([layers[0], layers[0]], axis=-1)
            weights = tf.nn.softmax(self.mix_weights)
            vectors = self.gamma * tf.add_n([weights[i] * layer for i, layer in enumerate(layers)])
        else:
            vectors = self.gamma * tf.stop_gradient(outputs["elmo"])
        return vectors * tf.cast(mask, vectors.dtype)[..., None]

    def get_config(self):
        config = super().get_config()
        config.update(handle=str(self.handle))
        return config
