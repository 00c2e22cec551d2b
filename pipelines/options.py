"""The typed options of the two pipelines: one definition each, which the command line
(``cli.py``, through ``etagger.clioptions``) and Python callers share. Light to import, so
that ``--help`` does not load Beam or TensorFlow."""

from __future__ import annotations

import dataclasses

from etagger.clioptions import option
from etagger.config import FeatureConfig
from etagger.conll import CONLL2003_COLUMNS, WORD_TAG_COLUMNS
from etagger.glove import EMBEDDED as EMBEDDED_GLOVE
from etagger.tagschemes import SCHEMES

FORMATS = ("conll", "jsonl", "parquet")
DEFAULT_RANGE_BYTES = 1 << 20

_COLUMNS_HELP = (
    "CoNLL input columns, comma-separated; 'word' is required, 'tag' marks the gold tags"
)
_RANGE_HELP = "input bytes per range: the unit of parallel work, of memory and of output shards"
_LENIENT_HELP = (
    "skip malformed sentences and lines (counted and logged) instead of stopping at the first"
)
_QUIET_HELP = "no progress bar (there is none when stderr is not a terminal either)"
_WIKITEXT_HELP = "raw text is wikitext-2/-103 style (@-@ markers, <unk>)"


def _max_tokens(help: str) -> int:
    """The --max-sentence-tokens option (alias --max-tokens) of every pipeline."""
    return option(1000, minimum=1, aliases=("--max-tokens",), help=help)


@dataclasses.dataclass(frozen=True)
class TagOptions:
    """What tag-corpus tags, with which model, and how it writes the result."""

    model: str = option(
        help="exported SavedModel folder (`etagger export`); local, gs:// or s3://",
        envvar="ETAGGER_MODEL",
    )
    input: tuple[str, ...] = option(
        (), required=True, help="input file or glob (local, gs://, s3://); repeatable"
    )
    output: str = option("", required=True, help="output folder")
    format: str = option(
        "conll",
        choices=FORMATS,
        help="conll: conlleval input, one file per input; "
        "jsonl/parquet: entity spans and confidences, sharded",
    )
    input_format: str = option(
        "auto",
        choices=("auto", "conll", "raw"),
        help="auto: CoNLL when the first lines have one field per column, else raw text",
    )
    columns: tuple[str, ...] = option(CONLL2003_COLUMNS, separator=",", help=_COLUMNS_HELP)
    lenient: bool = option(False, help=_LENIENT_HELP)
    wikitext: bool = option(False, help=_WIKITEXT_HELP)
    max_sentence_tokens: int = _max_tokens("raw text: longer sentences are cut into several")
    batch_sentences: int = option(
        64, minimum=1, aliases=("--batch-size",), help="most sentences per model call"
    )
    batch_tokens: int = option(4096, minimum=1, help="most tokens per model call")
    inflight_calls: int = option(
        2,
        minimum=1,
        help="model calls a worker runs at once, on threads (TensorFlow releases the GIL "
        "in a call, so one call's Python and light ops overlap another's LSTM)",
    )
    range_bytes: int = option(DEFAULT_RANGE_BYTES, minimum=1, help=_RANGE_HELP)
    quiet: bool = option(False, help=_QUIET_HELP)
    # From the model, not the command line. gold_scheme: the tag scheme of the model's
    # training data, in which CoNLL output spells its predictions.
    gold_scheme: str = "IOB2"
    document_context: int = 0  # tokens of neighbouring sentences the model reads together

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {self.format!r}")


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """Everything that determines preprocess's output; saved as OUT/preprocess.json."""

    columns: tuple[str, ...] = option(CONLL2003_COLUMNS, separator=",", help=_COLUMNS_HELP)
    input_scheme: str = option(
        "auto",
        choices=("auto",) + SCHEMES,
        help="tag scheme of the CoNLL files; auto: detected from train",
    )
    tag_scheme: str = option("IOBES", choices=SCHEMES, help="tag scheme the model trains in")
    min_count: int = option(
        1, minimum=1, help="training words seen fewer times (and not in GloVe) map to UNK"
    )
    glove: str = option(
        EMBEDDED_GLOVE, help="GloVe text file (.txt or .txt.gz); the default is embedded"
    )
    raw_vocab: bool = option(
        False,
        help="with --data-dir and --raw: the raw text's words that GloVe has join the word "
        "vocabulary, as dev and test words do (for a model meant to tag that text)",
    )
    num_shards: int = option(1, minimum=1, help="at least this many shards per input file")
    range_bytes: int = option(DEFAULT_RANGE_BYTES, minimum=1, help=_RANGE_HELP)
    max_sentence_tokens: int = _max_tokens(
        "CoNLL: a longer sentence is an error (with --lenient: a counted skip); raw text: "
        "longer sentences are cut into several"
    )
    lenient: bool = option(False, help=_LENIENT_HELP)
    wikitext: bool = option(False, help=_WIKITEXT_HELP)
    features: FeatureConfig = FeatureConfig()
    bert_handle: str | None = option(
        None,
        help="local BERT encoder folder (`etagger convert-bert` output): "
        "also store each token's wordpiece ids",
    )
    gazetteer: tuple[str, ...] = option(
        (),
        help="'train' (the training split's entities) or a file of TYPE<TAB>name lines; repeatable",
    )
    contextual: str | None = option(
        None,
        help="local BERT encoder folder (`etagger convert-bert` output): run it on every "
        "sentence once (RunInference) and store each token's vector (float16) for training",
    )
    contextual_pooling: str = option(
        "first", choices=("first", "mean"), help="--contextual: a word's first piece, or the mean"
    )
    contextual_layers: int = option(
        1, minimum=1, help="--contextual: the mean of the encoder's last this many layers"
    )
    contextual_max_pieces: int = option(
        256, minimum=3, help="--contextual: [CLS] pieces [SEP] per sentence, at most"
    )
    contextual_pack_tokens: int = option(
        0,
        minimum=0,
        help="--contextual: run the encoder on packs of consecutive sentences of one document "
        "of at most this many tokens, so each vector sees the sentences around its word "
        "(the model's bert_pack_tokens); 0: each sentence alone",
    )
    soft_targets: str | None = option(
        None,
        help="exported teacher model: store its CRF marginals of every token of the train and "
        "raw splits (RunInference), the silver labels of `etagger train --silver`",
    )
    held_out: tuple[str, ...] = option(
        (),
        help="--soft-targets: CoNLL files whose sentences never get soft targets; repeatable "
        "(default: dev.txt and test.txt of --data-dir)",
    )


@dataclasses.dataclass(frozen=True)
class PreprocessRun:
    """Where preprocess reads and writes, and how it runs; not part of the output's identity."""

    out: str = option(help="output folder; it appears whole or not at all")
    data_dir: str | None = option(None, help="folder with train.txt, dev.txt, test.txt (CoNLL)")
    raw: tuple[str, ...] = option(
        (), help="raw text file or glob, one document per line; repeatable"
    )
    vocab_from: str | None = option(
        None, help="reuse the vocabularies of an earlier preprocess output"
    )
    overwrite: bool = option(False, help="replace an existing output folder")
    quiet: bool = option(False, help=_QUIET_HELP)


@dataclasses.dataclass(frozen=True)
class AugmentOptions:
    """What `augment` reads and writes, and how it draws the new sentences."""

    input: str = option(help="CoNLL file with gold tags (local, gs://, s3://)", required=True)
    output: str = option(
        help="the CoNLL file to write: the input's sentences, then COPIES rewritten copies",
        required=True,
    )
    copies: int = option(1, minimum=0, help="rewritten copies of every sentence")
    probability: float = option(
        0.5, help="chance that a mention is swapped for another of its type (0 to 1)"
    )
    seed: int = option(0, help="seed of the draws; the same seed writes the same file")
    columns: tuple[str, ...] = option(CONLL2003_COLUMNS, separator=",", help=_COLUMNS_HELP)
    mentions_from: tuple[str, ...] = option(
        (),
        help="CoNLL file or glob whose mentions join the pool, such as a model's tags of raw "
        "text (`tag-corpus --format conll`); repeatable",
    )
    mentions_columns: tuple[str, ...] = option(
        WORD_TAG_COLUMNS,
        separator=",",
        help="the columns of the --mentions-from files; an input column they lack is "
        "written '-X-' in the mentions they give",
    )
    wikitext: bool = option(
        False,
        help="the --mentions-from files are tags of wikitext-2/-103 text: their mentions "
        "that hold its <unk> (a hidden rare word) are left out",
    )
    lenient: bool = option(False, help=_LENIENT_HELP)
    max_sentence_tokens: int = _max_tokens(
        "a longer sentence is an error (with --lenient: a counted skip)"
    )
    range_bytes: int = option(DEFAULT_RANGE_BYTES, minimum=1, help=_RANGE_HELP)
    overwrite: bool = option(False, help="replace an existing output file")
    quiet: bool = option(False, help=_QUIET_HELP)
