"""etagger.conll: byte-exact read/format round trips, tag-scheme conversions, chunk
reading (checked against etagger.metrics), and errors that name file and line."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etagger import conll, fsutil, packing, tagschemes
from etagger.conll import ConllFormatError, ReadStats, Sentence

TYPES = ("PER", "LOC", "ORG", "MISC")
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A token is any non-empty run of characters that str.split() keeps whole: no spaces,
# separators or control/format characters (and no surrogates, which UTF-8 cannot hold).
tokens = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=8).filter(
    lambda t: len(t.split()) == 1 and t.split()[0] == t and t != conll.DOCSTART
)


@st.composite
def spans(draw, max_len: int = 20):
    """(length, [(type, start, end), ...]): sorted, non-overlapping chunks over ``length``
    tokens; adjacent chunks of the same type are allowed (IOB1's B- case)."""
    out, position = [], 0
    for _ in range(draw(st.integers(0, 8))):
        gap = draw(st.integers(0, 2))
        width = draw(st.integers(1, 4))
        if position + gap + width > max_len:
            break
        out.append((draw(st.sampled_from(TYPES)), position + gap, position + gap + width))
        position += gap + width
    length = position + draw(st.integers(0 if out else 1, 3))
    return length, out


# Any sequence over the BIES/O tag alphabet, valid in some scheme or not.
any_tags = st.lists(
    st.one_of(
        st.just("O"),
        st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BIES"), st.sampled_from(TYPES)),
    ),
    max_size=15,
)

LEADINGS = (
    "",
    "",
    "\n",
    " \n",
    "-DOCSTART- -X- -X- O\n\n",
    "\n-DOCSTART- -X- -X- O\n\n",
    "-DOCSTART- -X- -X- O\n",
)


@st.composite
def sentences(draw, index: int = 0):
    length, chunk_spans = draw(spans(max_len=12))
    words = draw(st.lists(tokens, min_size=length, max_size=length))
    pos = draw(
        st.lists(
            st.sampled_from(["NNP", "VBD", ".", "CD", ":", "``"]), min_size=length, max_size=length
        )
    )
    chunk = draw(
        st.lists(st.sampled_from(["B-NP", "I-NP", "O", "B-VP"]), min_size=length, max_size=length)
    )
    tag = tagschemes.from_chunks(length, chunk_spans, "IOB2")
    return Sentence(
        columns={"word": tuple(words), "pos": tuple(pos), "chunk": tuple(chunk), "tag": tuple(tag)},
        index=index,
        leading=draw(st.sampled_from(LEADINGS)),
    )


def _write(folder: Path, name: str, data: bytes | str) -> str:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return str(path)


# ----------------------------------------------------------------------- round trips


@PROPERTY
@given(st.lists(sentences(), max_size=6))
def test_format_then_read_gives_the_same_sentences(drawn):
    text = "".join(conll.format_sentence(s) for s in drawn)
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), "in.txt", text)
        read = list(conll.read_conll(path))
        assert [s.columns for s in read] == [s.columns for s in drawn]
        assert [s.leading for s in read] == [s.leading for s in drawn]
        assert [s.index for s in read] == list(range(len(drawn)))
        # line: 1-based line of the first token, counted in the text written.
        first_lines, lines_before = [], 0
        for s in drawn:
            first_lines.append(lines_before + s.leading.count("\n") + 1)
            lines_before += conll.format_sentence(s).count("\n")
        assert [s.line for s in read] == first_lines
        assert all(s.source == path for s in read)
        out = Path(tmp) / "out.txt"
        conll.write_conll(out, read)
        assert out.read_bytes() == text.encode("utf-8")


def test_real_layout_round_trip(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
        "-DOCSTART- -X- -X- O\n\nBRUSSELS NNP B-NP B-LOC\n\n"
    )
    path = _write(tmp_path, "train.txt", text)
    read = list(conll.read_conll(path))
    assert [s.words for s in read] == [("EU", "rejects"), ("Peter", "Blackburn"), ("BRUSSELS",)]
    assert [s.doc_start for s in read] == [True, False, True]
    assert [s.line for s in read] == [3, 6, 11]
    conll.write_conll(tmp_path / "out.txt", read)
    assert (tmp_path / "out.txt").read_text() == text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_word_tag_columns(tmp_path):
    path = _write(tmp_path, "wt.txt", "John B-PER\nran O\n\n")
    (s,) = conll.read_conll(path, conll.WORD_TAG_COLUMNS)
    assert s.columns == {"word": ("John", "ran"), "tag": ("B-PER", "O")}


# ----------------------------------------------------------------------- tag schemes


@PROPERTY
@given(spans())
def test_from_chunks_then_chunks_is_identity(drawn):
    length, chunk_spans = drawn
    for scheme in tagschemes.SCHEMES:
        tags = tagschemes.from_chunks(length, chunk_spans, scheme)
        assert len(tags) == length
        assert tagschemes.chunks(tags) == chunk_spans, scheme


@PROPERTY
@given(spans())
def test_scheme_conversions_round_trip(drawn):
    length, chunk_spans = drawn
    encoded = {
        scheme: tagschemes.from_chunks(length, chunk_spans, scheme) for scheme in tagschemes.SCHEMES
    }
    for source in tagschemes.SCHEMES:
        for target in tagschemes.SCHEMES:
            converted = tagschemes.convert_tags(encoded[source], source, target)
            assert converted == encoded[target], (source, target)
            assert tagschemes.convert_tags(converted, target, source) == encoded[source]


def test_scheme_examples():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    assert tagschemes.convert_tags(iob1, "IOB1", "IOB2") == [
        "B-PER",
        "I-PER",
        "B-PER",
        "O",
        "B-LOC",
        "B-ORG",
    ]
    assert tagschemes.convert_tags(iob1, "IOB1", "IOBES") == [
        "B-PER",
        "E-PER",
        "S-PER",
        "O",
        "S-LOC",
        "S-ORG",
    ]
    with pytest.raises(ValueError, match="unknown tag scheme"):
        tagschemes.convert_tags(iob1, "IOB1", "BILOU")
    with pytest.raises(ValueError, match="malformed tag"):
        tagschemes.chunks(["B-PER", "X-PER"])


@PROPERTY
@given(any_tags)
def test_conversion_keeps_the_chunks_of_any_sequence(tags):
    """Even an invalid sequence (I- after O in IOB2, E- without B-) keeps its chunks, read
    the conlleval way, through every conversion."""
    for target in tagschemes.SCHEMES:
        assert tagschemes.chunks(
            tagschemes.convert_tags(tags, "IOB2", target)
        ) == tagschemes.chunks(tags)


@PROPERTY
@given(st.lists(spans(), min_size=1, max_size=4))
def test_detect_scheme(drawn):
    has_chunks = any(chunk_spans for _, chunk_spans in drawn)
    for scheme in tagschemes.SCHEMES:
        sequences = [tagschemes.from_chunks(n, s, scheme) for n, s in drawn]
        # A file without any chunk is all "O": nothing tells the schemes apart.
        assert tagschemes.detect_scheme(sequences) == (scheme if has_chunks else "IOB2")


def test_detect_scheme_examples():
    assert tagschemes.detect_scheme([["O", "I-PER"], ["B-LOC"]]) == "IOB1"
    assert tagschemes.detect_scheme([["B-PER", "I-PER", "B-LOC"]]) == "IOB2"
    assert tagschemes.detect_scheme([["B-PER", "I-PER"], ["S-LOC"]]) == "IOBES"
    assert tagschemes.detect_scheme([]) == "IOB2"


# ----------------------------------------------------------------------- chunks vs metrics


def _metrics_chunk_reader():
    """etagger.metrics' own chunk reading: an extraction function when it exposes one, else
    built from its conlleval start/end rules; None when the module is not there."""
    metrics = pytest.importorskip("etagger.metrics")
    for name in ("get_entities", "extract_chunks", "get_chunks", "chunks", "chunk_spans"):
        if callable(getattr(metrics, name, None)):
            return getattr(metrics, name)
    if not all(hasattr(metrics, n) for n in ("split_tag", "start_of_chunk", "end_of_chunk")):
        return None

    def read(tags):
        out, start, kind = [], None, ""
        prev_prefix, prev_type = "O", ""
        for i, tag in enumerate(list(tags) + ["O"]):
            prefix, chunk_type = metrics.split_tag(tag)
            if start is not None and metrics.end_of_chunk(
                prev_prefix, prefix, prev_type, chunk_type
            ):
                out.append((kind, start, i))
                start = None
            if metrics.start_of_chunk(prev_prefix, prefix, prev_type, chunk_type):
                start, kind = i, chunk_type
            prev_prefix, prev_type = prefix, chunk_type
        return out

    return read


@PROPERTY
@given(any_tags)
def test_chunks_agree_with_metrics(tags):
    read = _metrics_chunk_reader()
    if read is None:
        pytest.skip("etagger.metrics exposes no chunk extraction")
    assert tagschemes.chunks(tags) == [tuple(c) for c in read(tags)]


@PROPERTY
@given(any_tags)
def test_chunks_agree_with_metrics_evaluate(tags):
    """conlleval (metrics.evaluate) scores gold = ``tags`` against pred = the IOB2 encoding
    of tagschemes.chunks(tags) as perfect, with as many phrases as tagschemes.chunks finds."""
    metrics = pytest.importorskip("etagger.metrics")
    found = tagschemes.chunks(tags)
    report = metrics.evaluate([tags], [tagschemes.from_chunks(len(tags), found, "IOB2")])
    assert (report.phrases_gold, report.phrases_pred, report.correct_chunks) == (len(found),) * 3


# ----------------------------------------------------------------------- bad input

GOOD = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"  # lines 1-5
AFTER = "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
LONG = "".join(f"w{i} NN I-NP O\n" for i in range(5000)) + "\n"
# name -> (bad sentence placed at line 6, 1-based line of the error, message fragment)
BAD = {
    "wrong_column_count": (
        b"German JJ B-NP B-MISC extra\ncall NN I-NP O\n\n",
        6,
        "expected 4 columns",
    ),
    "missing_tag_column": (b"German JJ B-NP B-MISC\ncall NN I-NP\n\n", 7, "found 3"),
    "non_utf8": (b"German JJ B-NP B-MISC\nca\xffll NN I-NP O\n\n", 7, "not valid UTF-8"),
    "long_sentence": (LONG.encode(), 6 + 1000, "longer than 1000 tokens"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_names_file_and_line(tmp_path, kind):
    bad, line, fragment = BAD[kind]
    path = _write(tmp_path, "bad.txt", GOOD.encode() + bad + AFTER.encode())
    with pytest.raises(ConllFormatError) as raised:
        list(conll.read_conll(path, max_sentence_tokens=1000))
    assert f"bad.txt:{line}: " in str(raised.value)
    assert fragment in str(raised.value)
    assert (raised.value.path, raised.value.line) == (path, line)


@pytest.mark.parametrize("kind", sorted(BAD))
def test_lenient_skips_and_counts_the_bad_sentence(tmp_path, kind):
    bad, line, _ = BAD[kind]
    path = _write(tmp_path, "bad.txt", (GOOD * 2).encode() + bad + (AFTER * 3).encode())
    stats = ReadStats()
    read = list(conll.read_conll(path, lenient=True, max_sentence_tokens=1000, stats=stats))
    assert [s.words for s in read] == [("EU", "rejects")] * 2 + [("Peter", "Blackburn")] * 3
    assert [s.index for s in read] == list(range(5))
    assert stats.sentences == 5 and stats.skipped_sentences == 1
    assert len(stats.errors) == 1 and f"bad.txt:{line + 5}: " in stats.errors[0]
    assert stats.skipped_lines == (0 if kind == "long_sentence" else 1)


def test_bad_line_in_the_first_sentence(tmp_path):
    path = _write(tmp_path, "first.txt", b"\xfe\xff x y z\n\n" + AFTER.encode())
    with pytest.raises(ConllFormatError, match=r"first\.txt:1: not valid UTF-8"):
        list(conll.read_conll(path))
    stats = ReadStats()
    assert [s.line for s in conll.read_conll(path, lenient=True, stats=stats)] == [3]
    assert stats.skipped_sentences == 1


def test_a_malformed_tag_names_file_and_line(tmp_path):
    path = _write(tmp_path, "wt.txt", "John B-PER\nran O\n\nMary X-FOO\nleft O\n\nAnn S-PER\n\n")
    with pytest.raises(ConllFormatError, match=r"wt\.txt:4: malformed tag 'X-FOO'"):
        list(conll.read_conll(path, conll.WORD_TAG_COLUMNS))
    stats = ReadStats()
    kept = list(conll.read_conll(path, conll.WORD_TAG_COLUMNS, lenient=True, stats=stats))
    assert [s.words for s in kept] == [("John", "ran"), ("Ann",)]
    assert (stats.skipped_sentences, stats.skipped_lines) == (1, 1)


def test_word_tag_file_with_a_missing_tag(tmp_path):
    path = _write(tmp_path, "wt.txt", "John B-PER\nran O\n\nMary\nleft O\n\n")
    with pytest.raises(ConllFormatError, match=r"wt\.txt:4: expected 2 columns"):
        list(conll.read_conll(path, conll.WORD_TAG_COLUMNS))


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- -X- O\n\n"])
def test_empty_file_has_no_sentences(tmp_path, text):
    """read_conll itself yields nothing for an empty file; the pipeline's ReadConll turns
    that into a ConllFormatError (tests/test_preprocess.py)."""
    stats = ReadStats()
    assert list(conll.read_conll(_write(tmp_path, "empty.txt", text), stats=stats)) == []
    assert (stats.sentences, stats.skipped_sentences) == (0, 0)


def test_error_survives_beam_style_reraise_and_pickle():
    import pickle

    error = ConllFormatError("/data/train.txt", 12, "expected 4 columns: found 3")
    again = type(error)(error.args[0] + " [while running 'Read_train']")
    assert (again.path, again.line) == ("/data/train.txt", 12)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.line, str(copy)) == (error.path, error.line, str(error))


def test_atomic_folder_keeps_the_old_folder_on_failure(tmp_path):
    target = tmp_path / "encoder"

    def write(text):
        return lambda folder: (folder / "saved_model.pb").write_text(text)

    fsutil.atomic_folder(write("one"), target)
    fsutil.atomic_folder(write("two"), target)
    assert (target / "saved_model.pb").read_text() == "two"

    def fail(folder):
        (folder / "saved_model.pb").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fsutil.atomic_folder(fail, target)
    assert (target / "saved_model.pb").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["encoder"]  # no staging folders left behind


def test_pack_documents_keeps_order_size_and_document_boundaries():
    # (tokens, starts a document) per sentence.
    sentences = [(3, True), (4, False), (2, False), (9, False), (1, False), (2, True), (2, False)]
    packs = packing.pack_documents(sentences, 8, lambda s: s[0], lambda s: s[1])
    assert [[n for n, _ in pack] for pack in packs] == [[3, 4], [2], [9], [1], [2, 2]]
    assert [s for pack in packs for s in pack] == sentences  # nothing lost, nothing reordered
    # Without context every sentence is a pack of its own.
    assert packing.pack_documents(sentences, 0, lambda s: s[0], lambda s: False) == [
        [s] for s in sentences
    ]
    assert packing.pack_documents([], 8, len, bool) == []


def test_packs_start_at_documents_and_blocks():
    assert packing.starts_pack(5, "-DOCSTART- -X- -X- O\n\n")
    assert not packing.starts_pack(5, "")
    assert packing.starts_pack(packing.PACK_BLOCK, "") and packing.starts_pack(0, "")
    assert packing.starts_pack(7 * packing.RAW_LINE_STRIDE, "")  # the first sentence of raw line 7
