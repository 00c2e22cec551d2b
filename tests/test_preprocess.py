"""pipelines/preprocess.py: the composite transforms under TestPipeline, whole runs on tiny
fixtures (counts, byte-exact round trips, determinism, atomic output, lenient mode, raw
text), and, marked ``conll``, one run on the real CoNLL-2003 files."""

from __future__ import annotations

import dataclasses
import filecmp
import json
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import (
    TestPipeline as BeamTestPipeline,
)  # not collected by pytest
from apache_beam.testing.util import assert_that, equal_to

from etagger import conll, features, packing, ranges, records, schema, tagschemes
from etagger.conll import ConllFormatError, Sentence
from etagger.errors import UsageError
from etagger.tokenize import detokenize_wikitext
from pipelines import io, preprocess
from pipelines.preprocess import ComputeVocabs, PreprocessOptions
from tests import fixtures
from tests.conftest import CONLL_DIR

SPLITS = ("train", "dev", "test")
GLOVE_WORDS = ("john", "smith", "paris", "berlin", "visited", "left", ".", "reuters", "the")


def _glove(tmp_path: Path) -> str:
    return str(fixtures.write_glove(tmp_path / "glove.txt"))


def _options(tmp_path: Path, **changes) -> PreprocessOptions:
    return dataclasses.replace(
        PreprocessOptions(glove=_glove(tmp_path), input_scheme="IOB2", num_shards=2), **changes
    )


def _sentence(rows: str, index: int = 0, source: str = "train.txt", leading: str = "") -> Sentence:
    fields = [line.split() for line in rows.strip().split("\n")]
    names = conll.CONLL2003_COLUMNS if len(fields[0]) == 4 else conll.WORD_TAG_COLUMNS
    return Sentence(
        columns={n: tuple(f[i] for f in fields) for i, n in enumerate(names)},
        index=index,
        source=source,
        line=1,
        leading=leading,
    )


def _run(*args: str) -> dict:
    return preprocess.run([str(a) for a in args])


def _round_trip(out: Path, split: str, target: Path) -> None:
    conll.write_conll(
        target, records.to_sentences(records.read_records(out, split), conll.CONLL2003_COLUMNS)
    )


def _leftovers(folder: Path) -> list[str]:
    """Hidden staging/old/temp entries in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ transforms


def _range(split: str, source: str = "train.txt") -> ranges.FileRange:
    return ranges.FileRange(source, "conll", 0, 0, SPLITS.index(split), 0, 1, split)


def test_read_ranges_transform_reads_a_file_cut_into_ranges(tmp_path):
    path = tmp_path / "train.txt"
    fixtures.write_conll_split(path, 6, seed=5)
    expected = list(conll.read_conll(path))
    options = _options(tmp_path)
    planned = ranges.plan([(str(path), path.stat().st_size)], {str(path): "conll"}, range_bytes=100)
    numbered = ranges.numbered(planned, [ranges.census(r, options) for r in planned])
    assert len(numbered) > 3
    with BeamTestPipeline() as p:
        read = (
            p
            | io.ReadRanges(numbered, options)
            | beam.FlatMap(lambda rs: [(rs.range.number, s) for s in rs.sentences])
        )
        assert_that(read | beam.Map(lambda kv: kv[1]), equal_to(expected))


TRAIN = [
    _sentence(
        "John NNP B-NP B-PER\nSmith NNP I-NP I-PER\nvisited VBD B-VP O\nParis NNP B-NP B-LOC\n. . O O",
        0,
    ),
    _sentence("Mary NNP B-NP B-PER\nvisited VBD B-VP O\nBerlin NNP B-NP B-LOC\n. . O O", 1),
]
DEV = [
    _sentence(
        "Reuters NNP B-NP B-ORG\nleft VBD B-VP O\nTokyo NNP B-NP B-LOC\n. . O O", 0, "dev.txt"
    )
]


def test_compute_vocabs(tmp_path):
    """Training words by falling count then alphabetically, plus dev/test words found in
    GloVe; other vocabularies from train only; "O" is tag 0; files match the output."""
    expected_vocabs = {
        "word": [
            "<pad>",
            "<unk>",
            ".",
            "visited",
            "berlin",
            "john",
            "mary",
            "paris",
            "smith",
            "left",
            "reuters",
        ],
        "char": [
            "<pad>",
            "<unk>",
            "i",
            "e",
            "r",
            "s",
            "t",
            ".",
            "a",
            "d",
            "h",
            "n",
            "v",
            "B",
            "J",
            "M",
            "P",
            "S",
            "l",
            "m",
            "o",
            "y",
        ],
        "shape": ["<pad>", "<unk>", "Xx", ".", "x"],
        "pos": ["<pad>", "<unk>", "NNP", ".", "VBD"],
        "chunk": ["<pad>", "<unk>", "B-NP", "B-VP", "O", "I-NP"],
        "tag": ["O", "S-LOC", "B-PER", "E-PER", "S-PER"],
    }
    expected_glove = [".", "berlin", "john", "left", "paris", "reuters", "smith", "visited"]
    out = tmp_path / "out"
    read = [
        io.RangeSentences(_range("train"), (TRAIN[0],), io.ReadCounts()),
        io.RangeSentences(_range("train")._replace(number=1), (TRAIN[1],), io.ReadCounts()),
        io.RangeSentences(_range("dev", "dev.txt"), tuple(DEV), io.ReadCounts()),
    ]
    with BeamTestPipeline() as p:
        assert_that(
            p | beam.Create(read) | ComputeVocabs(_options(tmp_path), str(out)),
            equal_to([expected_vocabs]),
        )
    assert features.load_vocabs(out / "vocab") == expected_vocabs
    assert (
        out / preprocess.WORK_DIR / preprocess.GLOVE_WORDS
    ).read_text().split() == expected_glove
    matrix = np.load(out / "glove_filtered.npy")
    assert matrix.shape == (len(expected_vocabs["word"]), 8)
    assert not matrix[:2].any()  # PAD, UNK
    lines = {line.split(" ")[0]: line for line in (tmp_path / "glove.txt").read_text().splitlines()}
    john = np.array(lines["john"].split(" ")[1:], np.float32)
    np.testing.assert_array_equal(matrix[expected_vocabs["word"].index("john")], john)


VOCABS = {
    "word": ["<pad>", "<unk>", "john", "visited", "."],
    "char": ["<pad>", "<unk>", "J", "o", "h", "n", "i", "s"],
    "shape": ["<pad>", "<unk>", "Xx", "x"],
    "tag": ["O", "S-PER", "S-LOC"],
}


def _char_ids(word: str) -> list[int]:
    return [VOCABS["char"].index(c) if c in VOCABS["char"] else features.UNK_ID for c in word[:30]]


def _decoded(record: bytes, counts):
    r = {
        k: (v.to_list() if hasattr(v, "to_list") else np.asarray(v.numpy()).tolist())
        for k, v in schema.decode(record).items()
    }
    return (
        r["word"],
        r["word_id"],
        r["char_ids"],
        r["shape_id"],
        r["tag"],
        r["tag_id"],
        r["leading"],
        r["index"],
        r["source"],
        counts,
    )


def test_encoder(tmp_path):
    sentences = [
        _sentence(
            "John B-PER\nvisited O\nParis B-LOC\n. O",
            3,
            "/data/train.txt",
            "-DOCSTART- -X- -X- O\n\n",
        ),
        _sentence("John B-PER\njohn O", 0, "/data/dev.txt"),
    ]
    expected = [
        (
            [b"John", b"visited", b"Paris", b"."],
            [2, 3, 1, 4],
            [_char_ids(w) for w in ("John", "visited", "Paris", ".")],
            [2, 3, 2, 1],
            [b"B-PER", b"O", b"B-LOC", b"O"],
            [1, 0, 2, 0],  # tags as written; ids in IOBES
            b"-DOCSTART- -X- -X- O\n\n",
            3,
            b"train.txt",
            (4, 2, 1),
        ),
        (
            [b"John", b"john"],
            [2, 2],
            [_char_ids("John"), _char_ids("john")],
            [2, 3],
            [b"B-PER", b"O"],
            [1, 0],
            b"",
            0,
            b"dev.txt",
            (2, 2, 0),
        ),
    ]
    options = _options(tmp_path, tag_scheme="IOBES", columns=conll.WORD_TAG_COLUMNS)
    encoder = preprocess.Encoder(options, VOCABS, ["john", "visited"])
    assert [_decoded(e.record, e[1:]) for e in encoder(sentences)] == expected


def test_encoder_rejects_a_tag_unseen_in_training(tmp_path):
    bad = _sentence("John B-PER\nvisited O\nEurope B-MISC", 0, "/data/dev.txt")
    bad = dataclasses.replace(bad, line=40)
    with pytest.raises(ConllFormatError, match=r"dev\.txt:42: tag not seen in the training split"):
        list(preprocess.Encoder(_options(tmp_path), VOCABS, [])([bad]))


def test_a_malformed_gold_tag_stops_preprocess_with_its_file_and_line(tmp_path):
    inputs = _write_inputs(tmp_path / "in")
    train = inputs / "train.txt"
    train.write_text(train.read_text() + "Mary NNP B-NP X-FOO\n\n")
    line = train.read_text().count("\n") - 1
    with pytest.raises(ConllFormatError, match=rf"train\.txt:{line}: malformed tag 'X-FOO'"):
        _run("--data-dir", inputs, "--out", tmp_path / "out", "--glove", _glove(tmp_path))


def test_split_stats(tmp_path):
    planned = [_range("train"), _range("train")._replace(number=1), _range("dev", "dev.txt")]
    three, twelve, five = (
        _sentence(" O\n".join("abc") + " O"),
        _sentence(" O\n".join("abcdefghijkl") + " O"),
        _sentence(" O\n".join("abcde") + " O"),
    )
    receipts = {
        planned[0].name: preprocess.range_stats([preprocess.Encoded(b"", 3, 3, 0)], [three]),
        planned[1].name: preprocess.range_stats([preprocess.Encoded(b"", 12, 6, 3)], [twelve]),
        planned[2].name: preprocess.range_stats([preprocess.Encoded(b"", 5, 0, 5)], [five]),
    }
    for receipt in receipts.values():
        receipt["read"] = io.ReadCounts()._asdict()
    expected = {
        "dev": {
            "sentences": 1,
            "tokens": 5,
            "glove_token_coverage": 0.0,
            "unknown_token_rate": 1.0,
            "length_histogram": [[0, 9, 1]],
            "skipped_sentences": 0,
            "skipped_lines": 0,
            "tag_counts": {"O": 5},
        },
        "train": {
            "sentences": 2,
            "tokens": 15,
            "glove_token_coverage": 0.6,
            "unknown_token_rate": 0.2,
            "length_histogram": [[0, 9, 1], [10, 19, 1]],
            "skipped_sentences": 0,
            "skipped_lines": 0,
            "tag_counts": {"O": 15},
        },
    }
    assert preprocess.split_stats(receipts, planned, _options(tmp_path)) == expected


# ------------------------------------------------------------------ whole runs, tiny fixtures


def _write_inputs(folder: Path) -> Path:
    fixtures.write_conll_dir(folder, (14, 5, 5))
    # Layout the byte-exact round trip has to keep: an extra blank line, a later document.
    train = folder / "train.txt"
    train.write_text(
        train.read_text()
        + "\n-DOCSTART- -X- -X- O\n\nAna NNP I-NP B-PER\nleft VBD B-VP O\n. . O O\n\n"
    )
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One preprocess run on a tiny CoNLL folder: (inputs, output, stats, glove path)."""
    root = tmp_path_factory.mktemp("tiny")
    inputs = _write_inputs(root / "in")
    glove_path = _glove(root)
    out = root / "out"
    stats = _run("--data-dir", inputs, "--out", out, "--glove", glove_path, "--num-shards", 3)
    return inputs, out, stats, glove_path


def test_run_counts_and_stats(tiny):
    inputs, out, stats, _ = tiny
    assert set(stats) == set(SPLITS)
    for split in SPLITS:
        sentences = list(conll.read_conll(inputs / f"{split}.txt"))
        tokens = [w for s in sentences for w in s.words]
        assert (
            stats[split]["sentences"]
            == len(sentences)
            == len(list(records.read_records(out, split)))
        )
        assert stats[split]["tokens"] == len(tokens)
        assert stats[split]["skipped_sentences"] == 0
        coverage = sum(w.lower() in GLOVE_WORDS for w in tokens) / len(tokens)
        assert stats[split]["glove_token_coverage"] == pytest.approx(coverage, abs=1e-6)
        tags = [t for s in sentences for t in s.columns["tag"]]
        assert stats[split]["tag_counts"] == {t: tags.count(t) for t in set(tags)}
        assert sum(n for _, _, n in stats[split]["length_histogram"]) == len(sentences)
    assert json.loads((out / "stats.json").read_text()) == stats
    info = json.loads((out / "preprocess.json").read_text())
    assert info["input_scheme"] == "IOB2" and info["tag_scheme"] == "IOBES"


def test_run_output_layout(tiny):
    _, out, _, _ = tiny
    names = sorted(p.name for p in out.iterdir())
    shards = [f"{s}-{i:05d}-of-00003.tfrecord" for s in SPLITS for i in range(3)]
    assert names == sorted(
        shards + ["glove_filtered.npy", "preprocess.json", "stats.json", "vocab"]
    )
    # Every vocabulary but the gazetteer, which only --gazetteer writes (tests/test_gazetteer.py).
    assert sorted(p.name for p in (out / "vocab").iterdir()) == sorted(
        f for name, f in features.VOCAB_FILES.items() if name != "gazetteer"
    )
    assert _leftovers(out.parent) == [] and _leftovers(out) == []  # no staging, .old or temp files


def test_round_trip_is_byte_identical(tiny, tmp_path):
    inputs, out, _, _ = tiny
    for split in SPLITS:
        _round_trip(out, split, tmp_path / f"{split}.txt")
        assert (tmp_path / f"{split}.txt").read_bytes() == (inputs / f"{split}.txt").read_bytes(), (
            split
        )


def test_records_decode_to_vocabulary_ids(tiny):
    _, out, _, _ = tiny
    vocabs = features.load_vocabs(out / "vocab")
    for record in records.read_records(out, "dev"):
        words = [vocabs["word"][i] for i in record["word_id"]]
        assert words == [
            w.lower() if w.lower() in vocabs["word"] else "<unk>" for w in record["word"]
        ]
        assert [vocabs["tag"][i] for i in record["tag_id"]] == tagschemes.convert_tags(
            record["tag"], "IOB2", "IOBES"
        )
        known = set(vocabs["char"][2:])
        assert [[vocabs["char"][c] for c in chars] for chars in record["char_ids"]] == [
            [ch if ch in known else "<unk>" for ch in w] for w in record["word"]
        ]


def test_second_run_is_byte_identical_and_overwrite_replaces(tiny, tmp_path):
    inputs, out, _, glove_path = tiny
    again = tmp_path / "again"
    again.mkdir()
    (again / "stale.tfrecord").write_text("from an older run")
    _run(
        "--data-dir",
        inputs,
        "--out",
        again,
        "--glove",
        glove_path,
        "--num-shards",
        3,
        "--overwrite",
    )
    assert not (again / "stale.tfrecord").exists()
    first = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second and any(p.suffix == ".tfrecord" for p in first)
    for name in first:
        assert filecmp.cmp(out / name, again / name, shallow=False), name
    assert _leftovers(tmp_path) == []


def test_existing_output_is_refused_without_overwrite(tiny):
    inputs, out, _, glove_path = tiny
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(FileExistsError, match="--overwrite"):
        _run("--data-dir", inputs, "--out", out, "--glove", glove_path)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_cli_passes_arguments_through(tiny):
    from click.testing import CliRunner

    import cli

    inputs, out, _, _ = tiny
    result = CliRunner().invoke(
        cli.main, ["preprocess", "--data-dir", str(inputs), "--out", str(out)]
    )
    assert result.exit_code == 2  # an input error, in one line
    assert result.stderr == f"error: {out} exists; pass --overwrite to replace it\n"


BAD_LINE = "Berlin NNP B-NP\n"  # tag column missing


def _bad_inputs(folder: Path) -> tuple[Path, int, int]:
    """A tiny folder whose train.txt has one sentence with a 3-column line: (folder, line
    number of that line, number of good train sentences)."""
    _write_inputs(folder)
    train = folder / "train.txt"
    good = train.read_text()
    n_good = len(list(conll.read_conll(train)))
    train.write_text(good + "Mary NNP B-NP B-PER\n" + BAD_LINE + "\n" + good)
    return folder, good.count("\n") + 2, 2 * n_good


def test_failing_run_leaves_nothing(tmp_path):
    inputs, line, _ = _bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(ConllFormatError, match=rf"train\.txt:{line}: expected 4 columns"):
        _run("--data-dir", inputs, "--out", out, "--glove", _glove(tmp_path))
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_failing_overwrite_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stats.json").write_text("{}")
    (tmp_path / "in").mkdir()
    _write_inputs(tmp_path / "in")
    (tmp_path / "in" / "dev.txt").write_text("")
    with pytest.raises(ConllFormatError, match=r"dev\.txt:1: no sentences in file"):
        _run(
            "--data-dir", tmp_path / "in", "--out", out, "--glove", _glove(tmp_path), "--overwrite"
        )
    assert sorted(p.name for p in out.iterdir()) == ["stats.json"]
    assert _leftovers(tmp_path) == []


def test_lenient_run_counts_skips(tmp_path):
    inputs, _, n_good = _bad_inputs(tmp_path / "in")
    out = tmp_path / "out"
    stats = _run("--data-dir", inputs, "--out", out, "--glove", _glove(tmp_path), "--lenient")
    assert stats["train"]["skipped_sentences"] == 1 and stats["train"]["skipped_lines"] == 1
    assert stats["train"]["sentences"] == n_good == len(list(records.read_records(out, "train")))
    assert stats["dev"]["skipped_sentences"] == 0
    # Every good sentence is kept, in order (the skipped one's index is not reused).
    kept = [tuple(r["word"]) for r in records.read_records(out, "train")]
    assert kept == [s.words for s in conll.read_conll(inputs / "train.txt", lenient=True)]


RAW = {
    "a.txt": "John Smith visited Paris. Mary left Berlin!\n\nDr. Jones met the U.S. team in Tokyo.\n",
    "b.txt": "Reuters reported that John Smith\u2019s visit ended. It was 3,000 km.\n",
}
WIKITEXT = (
    " = Paris = \n \n Paris is a well @-@ known city of 2 @,@ 100 @,@ 000 people . John left .\n"
)


@pytest.mark.parametrize("wikitext", [False, True], ids=["plain", "wikitext"])
def test_raw_text_with_vocab_from(tiny, tmp_path, wikitext):
    _, vocab_out, _, _ = tiny
    raw = tmp_path / "raw"
    raw.mkdir()
    texts = {"w.txt": WIKITEXT} if wikitext else RAW
    for name, text in texts.items():
        (raw / name).write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    stats = _run(
        "--raw",
        raw / "*.txt",
        "--vocab-from",
        vocab_out,
        "--out",
        out,
        "--num-shards",
        2,
        *(["--wikitext"] if wikitext else []),
    )
    got = list(records.read_records(out, "raw"))
    assert (
        got
        and stats["raw"]["sentences"] == len(got)
        and stats["raw"]["tokens"] == sum(r["length"] for r in got)
    )
    assert stats["raw"]["glove_token_coverage"] > 0 and stats["raw"]["skipped_lines"] == 0
    vocabs = features.load_vocabs(out / "vocab")
    assert vocabs == features.load_vocabs(vocab_out / "vocab")
    # The same vocabulary's GloVe rows, so that `train --data OUT` finds them.
    matrix = "glove_filtered.npy"
    assert (out / matrix).read_bytes() == (vocab_out / matrix).read_bytes()
    lines = {name: text.split("\n") for name, text in texts.items()}
    for r in got:
        assert "tag" not in r and "pos" not in r and r["leading"] == ""
        line = lines[r["source"]][r["index"] // packing.RAW_LINE_STRIDE - 1]
        line = detokenize_wikitext(line) if wikitext else line
        assert [line[a:b] for a, b in zip(r["start"], r["end"])] == r["word"]
        assert len(r["word_id"]) == len(r["char_ids"]) == r["length"]
    if wikitext:
        assert ["well-known", "2,100,000"] == [
            w for r in got for w in r["word"] if w in ("well-known", "2,100,000")
        ]
    # Sentences come back in file order, as the tokenizer cut them.
    assert [r["word"] for r in got][:2] == (
        [
            ["=", "Paris", "="],
            ["Paris", "is", "a", "well-known", "city", "of", "2,100,000", "people", "."],
        ]
        if wikitext
        else [["John", "Smith", "visited", "Paris", "."], ["Mary", "left", "Berlin", "!"]]
    )


def test_raw_vocab_adds_the_raw_words_that_glove_has(tmp_path):
    """--raw-vocab: raw words with a GloVe vector join the word vocabulary (and get their
    ids in the raw records); raw words without one do not; the other vocabularies and the
    labelled splits' words are those of the run without it."""
    inputs = fixtures.write_conll_dir(tmp_path / "in", (14, 5, 5))
    glove_path = tmp_path / "glove.txt"
    glove_path.write_text(Path(_glove(tmp_path)).read_text() + "tokyo" + " 0.5" * 8 + "\n")
    raw = tmp_path / "raw.txt"
    raw.write_text("Mary met the team in Tokyo. Qwertz left.\n", encoding="utf-8")
    common = ["--data-dir", inputs, "--raw", raw, "--glove", glove_path]
    _run(*common, "--out", tmp_path / "plain")
    _run(*common, "--raw-vocab", "--out", tmp_path / "wide")
    plain = features.load_vocabs(tmp_path / "plain" / "vocab")
    wide = features.load_vocabs(tmp_path / "wide" / "vocab")
    assert set(plain["word"]) <= set(wide["word"])
    assert set(wide["word"]) - set(plain["word"]) == {"tokyo", "the"} - set(plain["word"])
    assert "tokyo" in wide["word"] and "qwertz" not in wide["word"]
    assert {k: v for k, v in wide.items() if k != "word"} == {
        k: v for k, v in plain.items() if k != "word"
    }
    matrix = np.load(tmp_path / "wide" / "glove_filtered.npy")
    assert matrix.shape[0] == len(wide["word"])
    assert np.allclose(matrix[wide["word"].index("tokyo")], 0.5)
    ids = {
        w: i
        for r in records.read_records(tmp_path / "wide", "raw")
        for w, i in zip(r["word"], r["word_id"])
    }
    assert ids["Tokyo"] == wide["word"].index("tokyo")
    assert ids["Qwertz"] == wide["word"].index(features.UNK)


def test_raw_vocab_needs_raw_text_and_its_own_vocabularies(tiny, tmp_path):
    inputs, vocab_out, _, glove_path = tiny
    with pytest.raises(UsageError, match="--raw-vocab"):
        _run("--data-dir", inputs, "--raw-vocab", "--glove", glove_path, "--out", tmp_path / "a")
    raw = tmp_path / "raw.txt"
    raw.write_text("John left.\n", encoding="utf-8")
    with pytest.raises(UsageError, match="--raw-vocab"):
        _run("--raw", raw, "--vocab-from", vocab_out, "--raw-vocab", "--out", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ------------------------------------------------------------------ the real CoNLL-2003 files

REAL = {"train": (14041, 203621), "dev": (3250, 51362), "test": (3453, 46435)}


@pytest.fixture(scope="module")
def real_output(tmp_path_factory):
    """One preprocess run on ../shared/data/conll2003 (embedded GloVe), shared by the tests below."""
    if not (CONLL_DIR / "train.txt").exists():
        pytest.skip("../shared/data/conll2003 is absent")
    out = tmp_path_factory.mktemp("conll03") / "out"
    stats = _run("--data-dir", CONLL_DIR, "--out", out)
    return out, stats


@pytest.fixture(scope="module")
def real_records(real_output):
    out, _ = real_output
    return {split: list(records.read_records(out, split)) for split in SPLITS}


@pytest.mark.conll
def test_real_counts(conll_dir, real_output, real_records):
    _, stats = real_output
    for split, (sentences, tokens) in REAL.items():
        assert len(real_records[split]) == sentences, split
        assert sum(r["length"] for r in real_records[split]) == tokens, split
        assert sum(len(r["word"]) for r in real_records[split]) == tokens, split
        assert (stats[split]["sentences"], stats[split]["tokens"]) == (sentences, tokens)
        assert stats[split]["skipped_sentences"] == 0


@pytest.mark.conll
def test_real_round_trip_is_byte_identical(conll_dir, real_records, tmp_path):
    for split in SPLITS:
        target = tmp_path / f"{split}.txt"
        conll.write_conll(
            target, records.to_sentences(real_records[split], conll.CONLL2003_COLUMNS)
        )
        assert filecmp.cmp(target, conll_dir / f"{split}.txt", shallow=False), split


@pytest.mark.conll
def test_real_glove_coverage_and_scheme(conll_dir, real_output):
    out, stats = real_output
    for split in SPLITS:
        # GloVe 6B covers ~98% of CoNLL-2003 running tokens once lowercased.
        assert 0.9 < stats[split]["glove_token_coverage"] <= 1.0, split
        assert 0.0 <= stats[split]["unknown_token_rate"] < 0.05, split
    info = json.loads((out / "preprocess.json").read_text())
    assert info["input_scheme"] == "IOB2"  # the files are IOB2, whatever some docs say
    tags = features.load_vocabs(out / "vocab")["tag"]
    assert tags[0] == "O" and len(tags) == 17  # O + {B,I,E,S} x {PER,LOC,ORG,MISC}
    assert np.load(out / "glove_filtered.npy").shape == (
        len(features.load_vocabs(out / "vocab")["word"]),
        50,
    )
