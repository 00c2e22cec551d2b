"""The tagger network: embeddings -> contextual encoder -> CRF (or softmax) over tags.

Inputs are the id features of etagger.data / etagger.features (B = batch, T = tokens,
C = characters): word_id [B,T], char_ids [B,T,C], shape_id [B,T], pos_id / chunk_id [B,T]
when configured, and length [B]; with ``bert_handle`` or ``elmo_handle`` also the word
strings "word" [B,T] ("" at padding), from which etagger.layers.contextual computes BERT or
ELMo word vectors in-graph (BERT: from "wordpiece_ids" [B,T,P] when preprocessing stored them,
or read whole from "contextual" [B,T,H] when preprocessing stored the vectors themselves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
import tf_keras as keras

from etagger import crf as crf_lib
from etagger import ops
from etagger.config import ModelConfig
from etagger.features import UNK_ID
from etagger.layers.bilstm import BiLSTMEncoder
from etagger.layers.char_cnn import CharCNN
from etagger.layers.dropout import sequence_dropout
from etagger.layers.highway import Highway
from etagger.layers.neighbour_lm import NeighbourWordLM

if TYPE_CHECKING:  # imported at run time only when used: they load tensorflow_hub
    from etagger.layers.contextual import BertWordEmbedding, ElmoWordEmbedding
from etagger.layers.qrnn import BiQRNN
from etagger.layers.transformer import MultiHeadAttentionBlock, TransformerEncoder


def build_encoder(config: ModelConfig) -> list[keras.layers.Layer]:
    """The encoder layers in order, each called as layer(x, mask=mask, training=training)."""
    dropout = config.encoder_dropout

    def bilstm():
        return BiLSTMEncoder(
            config.lstm_units,
            config.lstm_layers,
            dropout=dropout,
            variational=config.variational_dropout,
        )

    def transformer():
        return TransformerEncoder(
            config.transformer_layers,
            config.num_heads,
            config.model_dim,
            config.ff_dim,
            dropout=dropout,
            relative_positions=config.relative_positions,
            scale_attention=config.scale_attention,
        )

    return {
        "bilstm": lambda: [bilstm()],
        "transformer": lambda: [transformer()],
        "qrnn": lambda: [BiQRNN(config.qrnn_units, config.qrnn_layers, dropout=dropout)],
        "bilstm_transformer": lambda: [bilstm(), transformer()],
        "bilstm_mha": lambda: [
            bilstm(),
            MultiHeadAttentionBlock(config.num_heads, 2 * config.lstm_units, dropout=dropout),
        ],
    }[config.encoder]()


def _drop_ids(ids: tf.Tensor, rate: float, replacement: int, mask: tf.Tensor) -> tf.Tensor:
    """``ids`` with a ``rate`` fraction of the real (``mask``) positions set to ``replacement``."""
    if rate <= 0:
        return ids
    dropped = (tf.random.uniform(tf.shape(ids)) < rate) & mask
    return tf.where(dropped, tf.constant(replacement, ids.dtype), ids)


class Tagger(keras.Model):
    """Scores tags for every token and decodes them.

    Args:
      config: the network's ModelConfig.
      vocab_sizes: vocabulary name -> id-space size ("word", "char", "shape", "pos", "chunk",
        "gazetteer"), as etagger.features.vocab_sizes gives.
      tags: the tag vocabulary (training scheme), index = tag id.
      tag_scheme: scheme of ``tags``; the CRF forbids transitions it does not allow.
      word_vectors: [vocab_sizes["word"], dim] initial word embeddings (filtered GloVe), or
        just their shape when the weights will be restored from a checkpoint (this keeps
        the matrix out of exported graphs).
    """

    def __init__(
        self,
        config: ModelConfig,
        vocab_sizes: Mapping[str, int],
        tags: Sequence[str],
        tag_scheme: str,
        word_vectors: np.ndarray | tuple[int, int],
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.config = config
        self.num_tags = len(tags)
        shape = word_vectors.shape if isinstance(word_vectors, np.ndarray) else tuple(word_vectors)
        initializer = (
            keras.initializers.Constant(word_vectors)
            if isinstance(word_vectors, np.ndarray)
            else "zeros"
        )
        self.word_embedding = keras.layers.Embedding(
            shape[0],
            shape[1],
            trainable=config.train_word_embeddings,
            embeddings_initializer=initializer,
            name="word_embedding",
        )
        self.char_cnn = CharCNN(
            vocab_sizes["char"], config.char_dim, config.char_filters, name="char_cnn"
        )
        if config.use_gazetteer and "gazetteer" not in vocab_sizes:
            raise ValueError("use_gazetteer needs data preprocessed with --gazetteer")
        self.side_embeddings = {
            name: keras.layers.Embedding(vocab_sizes[name], dim, name=f"{name}_embedding")
            for name, use, dim in (
                ("shape", config.use_shape, config.shape_dim),
                ("pos", config.use_pos, config.pos_dim),
                ("chunk", config.use_chunk, config.chunk_dim),
                ("gazetteer", config.use_gazetteer, config.gazetteer_dim),
            )
            if use
        }
        self.bert: BertWordEmbedding | None = None
        self.elmo: ElmoWordEmbedding | None = None
        if config.bert_handle is not None:  # imported only when used: it loads tensorflow_hub
            from etagger.layers.contextual import BertWordEmbedding

            self.bert = BertWordEmbedding(
                config.bert_handle,
                config.bert_pooling,
                config.bert_layers,
                config.bert_trainable,
                config.bert_max_pieces,
                name="bert",
            )
        if config.elmo_handle is not None:
            from etagger.layers.contextual import ElmoWordEmbedding

            self.elmo = ElmoWordEmbedding(config.elmo_handle, name="elmo")
        self.highway = Highway(config.highway_layers) if config.highway_layers else None
        self.embedding_dropout = sequence_dropout(
            config.embedding_dropout, config.variational_dropout
        )
        self.encoder = build_encoder(config)
        self.output_dropout = sequence_dropout(config.encoder_dropout, config.variational_dropout)
        self.lm = (
            NeighbourWordLM(
                config.lm_vocab, config.lm_hidden, config.lstm_units, name="neighbour_lm"
            )
            if config.lm_weight
            else None
        )
        self.projection = keras.layers.Dense(self.num_tags, name="tag_scores")
        allowed = crf_lib.allowed_transitions(list(tags), tag_scheme)
        self.crf = (
            crf_lib.CRF(self.num_tags, allowed=allowed, name="crf")
            if config.decoder == "crf"
            else None
        )

    def call(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        """Features -> tag potentials [B, T, K] (zeros at padding)."""
        return self._encode(features, training)[0]

    def serving_potentials(
        self, features: Mapping[str, tf.Tensor], fused_lstm: ops.LstmProducts | None = None
    ) -> tf.Tensor:
        """``call`` at inference through the encoders' inference paths where they have one
        (``BiLSTMEncoder.serve``, with etagger's fused LSTM op and products in that precision
        if ``fused_lstm``): what exported models compute."""
        return self._encode(features, training=False, serving=True, fused_lstm=fused_lstm)[0]

    def _encode(
        self,
        features: Mapping[str, tf.Tensor],
        training: bool,
        serving: bool = False,
        fused_lstm: ops.LstmProducts | None = None,
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(tag potentials [B, T, K], the first BiLSTM layer's states when the LM objective
        needs them, else None). ``serving``: through the encoders' ``serve``."""
        word_ids = features["word_id"]
        mask = tf.sequence_mask(features["length"], tf.shape(word_ids)[1])
        if training:
            word_ids = _drop_ids(word_ids, self.config.word_dropout, UNK_ID, mask)
        parts = [
            self.word_embedding(word_ids),
            self.char_cnn(features["char_ids"], mask=mask, training=training),
        ]
        for name, layer in self.side_embeddings.items():
            ids = features[f"{name}_id"]
            if name == "gazetteer" and training:
                ids = _drop_ids(ids, self.config.gazetteer_dropout, 0, mask)  # id 0: no match
            parts.append(layer(ids))
        if self.bert is not None:  # contextual word vectors, concatenated before embedding dropout
            if "contextual" in features:  # stored by preprocess, from this very encoder
                stored = tf.cast(features["contextual"], tf.float32)
                parts.append(tf.ensure_shape(stored, [None, None, self.bert.hidden_size]))
            else:
                parts.append(
                    self.bert(
                        features["word"],
                        mask=mask,
                        pieces=features.get("wordpiece_ids"),
                        training=training,
                        pack_ids=features.get("pack_id"),
                    )
                )
        if self.elmo is not None:
            parts.append(self.elmo(features["word"], mask=mask, training=training))
        x = tf.concat(parts, axis=-1)
        if self.highway is not None:
            x = self.highway(x, mask=mask)
        x = self.embedding_dropout(x, training=training)
        states = None
        for i, layer in enumerate(self.encoder):
            if serving and hasattr(layer, "serve"):
                x = layer.serve(x, features["length"], fused=fused_lstm)
            elif i == 0 and self.lm is not None:
                x, states = layer(x, mask=mask, training=training, return_first=True)
            else:
                x = layer(x, mask=mask, training=training)
        x = self.output_dropout(x, training=training)
        potentials = self.projection(x)
        return tf.where(mask[..., None], potentials, tf.zeros_like(potentials)), states

    @property
    def reads_words(self) -> bool:
        """Whether the model reads the word strings (feature "word"): BERT or ELMo features."""
        return self.config.reads_words

    def serving_resources(self) -> list:
        """Trackables besides the variables that a graph calling this model must save (the
        BERT tokenizer and its vocabulary asset); empty without BERT features (an ELMo
        module needs none: its character ids are computed without tables)."""
        return self.bert.serving_resources() if self.bert is not None else []

    def serving_variables(self) -> list:
        """The variables a graph that tags needs: all but the LM objective's (training only)."""
        unused = {id(v) for v in self.lm.variables} if self.lm is not None else set()
        return [v for v in self.variables if id(v) not in unused]

    def loss(
        self, features: Mapping[str, tf.Tensor], tags: tf.Tensor, training: bool = True
    ) -> tf.Tensor:
        """Mean negative log-likelihood per sentence (CRF) or per token (softmax), plus
        ``lm_weight`` times the neighbour-word loss when that objective is on."""
        potentials, states = self._encode(features, training)
        lengths = features["length"]
        tags = tf.cast(tags, tf.int32)
        mask = tf.sequence_mask(lengths, tf.shape(tags)[1])
        if self.crf is not None:
            loss = -tf.reduce_mean(self.crf.log_likelihood(potentials, tags, lengths))
        else:
            real = tf.cast(mask, potentials.dtype)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(tags, potentials)
            loss = tf.reduce_sum(losses * real) / tf.reduce_sum(real)
        if self.lm is not None:
            loss += self.config.lm_weight * self.lm(states, word_ids=features["word_id"], mask=mask)
        return loss

    def distillation_loss(
        self, features: Mapping[str, tf.Tensor], targets: tf.Tensor, training: bool = True
    ) -> tf.Tensor:
        """Mean over sentences of the summed token KL divergence of this model's marginals
        (CRF marginals, or softmax) from ``targets`` [B, T, K], a teacher's marginals over the
        same tags (``crf.marginal_kl``)."""
        potentials, _ = self._encode(features, training)
        lengths = features["length"]
        marginals = self.marginals(potentials, lengths)
        return tf.reduce_mean(crf_lib.marginal_kl(targets, marginals, lengths))

    def decode(self, features: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Best tag ids [B, T] int32 (0 at padding); the CRF never emits a forbidden path."""
        return self.decode_potentials(self(features, training=False), features["length"])

    def decode_potentials(self, potentials: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """potentials [B, T, K], lengths [B] -> best tag ids [B, T] int32 (0 at padding)."""
        if self.crf is not None:
            return self.crf.decode(potentials, lengths)
        mask = tf.sequence_mask(lengths, tf.shape(potentials)[1])
        return tf.where(mask, tf.argmax(potentials, axis=-1, output_type=tf.int32), 0)

    def marginals(
        self, potentials: tf.Tensor, lengths: tf.Tensor, fused: bool = False
    ) -> tf.Tensor:
        """potentials [B, T, K], lengths [B] -> posterior tag probabilities [B, T, K]
        (CRF marginals, or softmax); ``fused``: the CRF's through etagger's op."""
        if self.crf is not None:
            return self.crf.marginals(potentials, lengths, fused)
        return tf.nn.softmax(potentials)
