"""Raw English text -> sentences of CoNLL-2003 / Penn-Treebank-style tokens, on tensorflow-text.

Each input line (a document, paragraph or sentence) becomes a list of ``TokenSpans``, one per
sentence. A sentence carries its tokens and their character offsets in the line, so that
``line[start:end] == token`` for every token (in wikitext mode the offsets refer to
``detokenize_wikitext(line)`` instead; see ``Tokenizer``).

Tokenization rules, in order of precedence at each token start:

* URLs (``http://…``, ``www.…``) and e-mail addresses stay whole, minus trailing punctuation.
* ``<unk>`` stays whole (wikitext mode only).
* A short list of abbreviations keep their period: ``Mr.``, ``Dr.``, ``St.``, ``Jan.``,
  ``Inc.``, ``vs.``, ``No.`` …; so do acronyms with internal periods (``U.S.``, ``e.g.``,
  ``Ph.D.``) and single-capital initials (``J.``).
* Words and numbers joined by ``- . / : &`` stay whole (``well-known``, ``1996-08-22``,
  ``3.5``, ``10:30``, ``AT&T``, ``and/or``), as do digit groups with commas (``1,000``)
  and words with inner apostrophes (``O'Neill``).
* Clitics are split off the end of a word: ``John's`` -> ``John 's``, ``don't`` -> ``do n't``,
  ``we're`` -> ``we 're``, and stay whole on their own (wikitext's ``don 't`` -> ``don 't``);
  an opening apostrophe is split off the start (``'Hi`` -> ``' Hi``).
* ``...`` and ``--`` are one token each; every other character is a token on its own
  (punctuation, quotes, brackets, symbols).
* Separators are never part of a token: Unicode spaces (``\\p{Z}``), control characters
  (``\\p{Cc}``, which includes tab, newline and NUL), zero-width space and the byte-order
  mark. Every other character of the line ends up in exactly one token.

Sentences end after ``.``, ``!`` or ``?`` (plus any further terminators and closing
quotes/brackets) when the next token starts with an upper-case or uncased letter, a digit,
or an opening quote/bracket, or is ``<unk>``; and at the end of the line. Sentences longer
than ``max_sentence_tokens`` are cut into chunks. Abbreviations and acronyms keep
their period inside the token, so ``Mr. Smith`` and ``the U.S. Army`` are never split; the
price is that a sentence ending in an abbreviation (``… in the U.S. The …``) runs on into
the next one, except at the end of the line.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
import tensorflow as tf

from etagger import textops
from etagger.conll import WIKITEXT_UNKNOWN

__all__ = ["TokenSpans", "Tokenizer", "detokenize_wikitext"]

# RE2 syntax throughout (tensorflow-text's regex ops use RE2): no look-arounds, no
# back-references. RE2 alternation is leftmost-first like Perl's, so the order of the
# alternatives below is their precedence.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # Cc without tab, LF, CR
_SEPARATOR_CHARS = r"\p{Z}\p{Cc}\x{200B}\x{FEFF}"  # spaces, controls, zero-width space, BOM
_WORD_CHAR = r"[\p{L}\p{M}\p{N}_\x{00AD}\x{200C}\x{200D}]"  # soft hyphen, ZWNJ, ZWJ: inside words
_APOSTROPHE = "['\u2019]"
_ABBREVIATIONS = (
    "Mr",
    "Mrs",
    "Ms",
    "Dr",
    "Prof",
    "Rev",
    "St",
    "Mt",
    "Ft",
    "Jr",
    "Sr",
    "Gen",
    "Gov",
    "Sen",
    "Rep",
    "Capt",
    "Col",
    "Lt",
    "Sgt",
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Sept",
    "Oct",
    "Nov",
    "Dec",
    "Inc",
    "Corp",
    "Ltd",
    "Co",
    "Bros",
    "No",
    "vs",
    "etc",
)
_URL_CHAR = rf"""[^{_SEPARATOR_CHARS}<>"(){{}}\[\]]"""
_URL_LAST_CHAR = rf"""[^{_SEPARATOR_CHARS}<>"(){{}}\[\].,;:!?'\x{{2019}}]"""
_WORD = rf"{_WORD_CHAR}+(?:{_APOSTROPHE}{_WORD_CHAR}+)*"
_COMPOUND_PART = rf"\p{{N}}+(?:,\p{{N}}+)+|{_WORD}"
_TOKEN_ALTERNATIVES = (
    rf"(?i:(?:https?|ftp)://|www\.){_URL_CHAR}*{_URL_LAST_CHAR}",
    # E-mail: the local part is bounded (64 is its RFC 5321 limit) because this
    # alternative stays alive over text like "a+a+a+…", and scanning to the end of such a
    # chunk for every one-letter token would be quadratic.
    r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}@[\p{L}\p{N}_-]+(?:\.[\p{L}\p{N}_-]+)+",
    rf"(?:{'|'.join(_ABBREVIATIONS)})\.",
    r"\p{L}{1,2}(?:\.\p{L}{1,2})+\.",  # acronyms: U.S. e.g. Ph.D.
    r"\p{Lu}\.",  # initials: J.
    # The optional leading apostrophe keeps a stand-alone "'s" (wikitext writes "John 's")
    # whole; _CLITIC splits an apostrophe that opens a longer word back off.
    rf"{_APOSTROPHE}?(?:{_COMPOUND_PART})(?:[-./:&](?:{_COMPOUND_PART}))*",
    r"\.\.+|--+",
    rf"[^{_SEPARATOR_CHARS}]",  # anything else: one character
)
# Second pass, applied to each first-pass token: a clitic at its end or an apostrophe at
# its start becomes a token of its own. This needs its own pass because RE2 has no
# look-ahead: a single pattern cannot stop the word "do" before "n't".
_CLITIC = rf"(?i:n{_APOSTROPHE}t|{_APOSTROPHE}(?:s|m|d|ll|re|ve|t))$|^{_APOSTROPHE}"

# A chunk (run of non-separators) that both passes keep as one token: a plain word, or
# a single character.
_ONE_TOKEN = rf"{_WORD_CHAR}+|(?s:.)"

_TERMINATORS = frozenset(".!?")
_CLOSERS = frozenset(")]}\u201d\u2019\u00bb")  # ” ’ »
_OPENERS = frozenset("\"'`([{\u201c\u2018\u00ab")  # “ ‘ «
_SURROGATE = re.compile("[\ud800-\udfff]")
_WIKITEXT_JOINERS = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


@dataclasses.dataclass(frozen=True)
class TokenSpans:
    """One sentence found in a line of text: its tokens and their [start, end) character
    offsets in the line. (A sentence read from CoNLL, with its columns, is conll.Sentence.)"""

    tokens: tuple[str, ...]
    starts: tuple[int, ...]
    ends: tuple[int, ...]


def detokenize_wikitext(line: str) -> str:
    """Undoes wikitext's split of joined numbers and words: ``3 @,@ 000`` -> ``3,000``,
    ``well @-@ known`` -> ``well-known``, ``1 @.@ 5`` -> ``1.5``."""
    for marker, joiner in _WIKITEXT_JOINERS:
        line = line.replace(marker, joiner)
    return line


class Tokenizer:
    """Splits lines of raw English text into sentences of tokens.

    Construct once and reuse (e.g. in a Beam ``DoFn.setup``): construction builds and warms
    up the tensorflow-text graph (about 0.3 s). ``tokenize_lines`` runs it once per
    batch, which is where the speed comes from; ``tokenize_line`` is a batch of one.

    Args:
      wikitext: the input is wikitext-2/-103 style (pre-tokenized, ``@-@``/``@,@``/``@.@``
        markers, ``<unk>``). The markers are undone with ``detokenize_wikitext`` first and
        offsets refer to that detokenized line, so ``line[start:end] == token`` still holds
        for it; ``<unk>`` is one token. Heading lines (`` = = Career = = ``) are kept: they
        give one sentence whose first and last tokens are ``=``, which lets a caller tell
        them apart without losing their text.
      max_sentence_tokens: sentences longer than this are cut into consecutive chunks of
        at most this many tokens (no token is dropped), so a line without punctuation
        never becomes one huge sentence.
    """

    def __init__(self, *, wikitext: bool = False, max_sentence_tokens: int = 512):
        if max_sentence_tokens < 1:
            raise ValueError(f"max_sentence_tokens must be >= 1, got {max_sentence_tokens}")
        self.wikitext = wikitext
        self.max_sentence_tokens = max_sentence_tokens
        alternatives = ((WIKITEXT_UNKNOWN,) if wikitext else ()) + _TOKEN_ALTERNATIVES
        self._split = _make_splitter("|".join(alternatives))

    def tokenize_line(self, text: str) -> list[TokenSpans]:
        """Sentences of one line; [] for a line with no tokens."""
        return self.tokenize_lines([text])[0]

    def tokenize_lines(self, lines: list[str]) -> list[list[TokenSpans]]:
        """Sentences of each line, in order, with one run of the tensorflow-text ops."""
        if not lines:
            return []
        texts = [detokenize_wikitext(line) for line in lines] if self.wikitext else list(lines)
        encoded = [_encode(text) for text in texts]
        starts, ends, row_splits = (t.numpy() for t in self._split(tf.constant(encoded)))
        starts, ends = _char_offsets(texts, encoded, row_splits, starts, ends)
        return [
            self._sentences(text, starts[first:last], ends[first:last])
            for text, first, last in zip(texts, row_splits[:-1].tolist(), row_splits[1:].tolist())
        ]

    def _sentences(self, text: str, starts: list[int], ends: list[int]) -> list[TokenSpans]:
        tokens = [text[start:end] for start, end in zip(starts, ends)]
        sentences, first = [], 0
        for last in _sentence_ends(tokens, starts, ends):
            for chunk in range(first, last, self.max_sentence_tokens):
                stop = min(chunk + self.max_sentence_tokens, last)
                sentences.append(
                    TokenSpans(
                        tuple(tokens[chunk:stop]),
                        tuple(starts[chunk:stop]),
                        tuple(ends[chunk:stop]),
                    )
                )
            first = last
        return sentences


@functools.cache  # tokenizers with the same pattern share the graph (and its build)
def _make_splitter(token_pattern: str):
    """A warmed-up graph function: UTF-8 lines -> flat token byte starts and ends, and
    per-line row splits."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def split(lines):
        # Chunks: runs of non-separators, found with a cheap pattern.
        chunks, chunk_starts, chunk_ends, chunks_by_line = textops.regex_split_with_offsets(
            lines, rf"[{_SEPARATOR_CHARS}]+"
        )
        # regex_split costs mostly per match (RE2 extracts the capture group that its
        # wrapper adds, running the large Unicode token program), so chunks that are one
        # token anyway skip it: most words, and every single character. An empty string
        # yields no pieces.
        whole = tf.strings.regex_full_match(chunks, _ONE_TOKEN)
        # Text between two matches would come back as a piece too, but the last token
        # alternative matches any character of a chunk, so every piece is a match.
        words, word_starts, _, words_by_chunk = textops.regex_split_with_offsets(
            tf.where(whole, "", chunks), token_pattern, token_pattern
        )
        _, piece_starts, piece_ends, pieces_by_word = textops.regex_split_with_offsets(
            words, _CLITIC, _CLITIC
        )
        # Line offsets of the pieces, grouped by chunk.
        word_offsets = tf.repeat(chunk_starts, _lengths(words_by_chunk)) + word_starts
        piece_offsets = tf.repeat(word_offsets, _lengths(pieces_by_word))
        pieces_by_chunk = tf.gather(pieces_by_word, words_by_chunk)
        piece_starts = _rows(piece_starts + piece_offsets, pieces_by_chunk)
        piece_ends = _rows(piece_ends + piece_offsets, pieces_by_chunk)
        whole_by_chunk = tf.concat([[0], tf.cumsum(tf.cast(whole, tf.int64))], axis=0)
        whole_starts = _rows(tf.boolean_mask(chunk_starts, whole), whole_by_chunk)
        whole_ends = _rows(tf.boolean_mask(chunk_ends, whole), whole_by_chunk)
        # Per chunk, one of the two is empty; then regroup the tokens by line.
        starts = tf.concat([whole_starts, piece_starts], axis=1)
        ends = tf.concat([whole_ends, piece_ends], axis=1)
        return starts.flat_values, ends.flat_values, tf.gather(starts.row_splits, chunks_by_line)

    # The first run optimizes the graph and compiles the regular expressions: better done
    # here than on the first batch.
    split(tf.constant(["warm up"]))
    # Its one concrete function: calling it skips tf.function's per-call signature matching
    # (~0.1 ms, a sixth of tokenizing one line in `tag`).
    return split.get_concrete_function()


def _rows(values, row_splits) -> tf.RaggedTensor:
    # Unvalidated: the splits come from the ops, and validation would put assertion
    # branches into the graph (tracing several times slower).
    return tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)


def _lengths(row_splits):
    return row_splits[1:] - row_splits[:-1]


def _encode(text: str) -> bytes:
    # The regex kernel reads its input as a C string, so a NUL would silently end the line
    # there; NUL is a separator, and a space keeps every offset the same.
    text = text.replace("\x00", " ")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: one character each, like U+FFFD
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _char_offsets(
    texts: list[str],
    encoded: list[bytes],
    row_splits: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
) -> tuple[list[int], list[int]]:
    """Converts line-relative UTF-8 byte offsets of all tokens of a batch to character offsets."""
    data = b"".join(encoded)
    if len(data) != sum(map(len, texts)):  # some non-ASCII text: bytes and characters differ
        line_starts = np.cumsum([0] + [len(line) for line in encoded])
        base = np.repeat(line_starts[:-1], np.diff(row_splits))
        # chars_before[b] = number of characters in data[:b]; continuation bytes are 10xxxxxx.
        chars_before = np.concatenate(
            ([0], np.cumsum((np.frombuffer(data, np.uint8) & 0xC0) != 0x80))
        )
        starts = chars_before[base + starts] - chars_before[base]
        ends = chars_before[base + ends] - chars_before[base]
    return starts.tolist(), ends.tolist()


def _sentence_ends(tokens: list[str], starts: list[int], ends: list[int]) -> list[int]:
    """Exclusive end indices of the sentences of one line's tokens; the last is len(tokens).

    Done on the token sequence rather than with tf_text.StateBasedSentenceBreaker: that
    breaker knows no abbreviations, ignores the case of the next word (its own example
    breaks "the U.S. don't"), and its byte ranges need not agree with our token boundaries.
    Here only the few terminator tokens are inspected, so this is linear and cheap.
    """
    n = len(tokens)
    boundaries = []
    scanned = 0  # tokens[:scanned] have been looked at
    quotes = 0  # double quotes in tokens[:scanned]
    for i in [i for i, token in enumerate(tokens) if token in _TERMINATORS]:
        if i < scanned:  # already absorbed into the run after an earlier terminator
            continue
        quotes += tokens[scanned:i].count('"')
        # Absorb further terminators and closing quotes/brackets. A straight double quote
        # closes when one is open in the line, which may have been opened sentences ago
        # (pre-tokenized text such as wikitext has a space before every closing quote),
        # when it is glued to the terminator, or when it ends the line.
        j = i + 1
        while j < n:
            glued = starts[j] == ends[j - 1]
            if tokens[j] == '"' and (quotes % 2 or glued or j == n - 1):
                quotes += 1
            elif not (
                tokens[j] in _TERMINATORS or tokens[j] in _CLOSERS or (tokens[j] == "'" and glued)
            ):
                break
            j += 1
        scanned = j
        if j < n and _starts_sentence(tokens[j]):
            boundaries.append(j)
    if n:
        boundaries.append(n)
    return boundaries


def _starts_sentence(token: str) -> bool:
    first = token[0]
    return (
        first.isdigit()
        or first in _OPENERS
        or (first.isalpha() and not first.islower())  # upper-case, title-case or uncased
        or token == WIKITEXT_UNKNOWN  # wikitext hides mostly rare names behind it
    )
