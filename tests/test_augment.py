"""Mention replacement (etagger/mentions.py) against a brute-force reading of what it must
keep, and the `augment` pipeline (pipelines/augment.py): its transforms under TestPipeline,
whole runs on a tiny fixture, split reads, determinism and its errors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from etagger import conll, mentions, tagschemes
from pipelines import augment, io
from pipelines.options import AugmentOptions
from tests.fixtures import write_conll_split
from tests.test_cli_errors import assert_one_line, invoke

KINDS = ("PER", "LOC", "ORG")


def _random_sentence(rng: random.Random, scheme: str, index: int = 0) -> conll.Sentence:
    """Words w0, w1, ... with random chunks (adjacent ones of one type too) in ``scheme``."""
    length = rng.randint(0, 9)
    spans, i = [], 0
    while i < length:
        if rng.random() < 0.5:
            end = min(length, i + rng.randint(1, 3))
            spans.append((rng.choice(KINDS), i, end))
            i = end
        else:
            i += 1
    words = tuple(f"w{index}_{k}" for k in range(length))
    return conll.Sentence(
        columns={
            "word": words,
            "pos": tuple(f"P{k}" for k in range(length)),
            "tag": tuple(tagschemes.from_chunks(length, spans, scheme)),
        },
        index=index,
    )


def _pool(rng: random.Random) -> dict[str, tuple[mentions.Mention, ...]]:
    found = [
        mentions.Mention(kind, tuple((f"{kind}{n}_{k}", "NNP") for k in range(rng.randint(1, 3))))
        for kind in KINDS[:2]  # no ORG mentions: those must stay
        for n in range(3)
    ]
    return mentions.pool_of(found)


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "IOBES"])
def test_replacement_keeps_everything_but_the_swapped_mentions(scheme):
    """Brute force: cut input and output at their chunks; the text between chunks, the
    chunks' types and order and the sentence's other fields are the same, and every output
    chunk is its input chunk or a different pool mention of the same type (one replaced)."""
    rng = random.Random(0)
    for trial in range(300):
        sentence = _random_sentence(rng, scheme, trial)
        pool = _pool(rng)
        probability = rng.choice([0.0, 0.5, 1.0])
        out, replaced = mentions.replace_mentions(
            sentence, pool, probability, mentions.copy_rng(3, 1, sentence)
        )
        assert list(out.columns) == list(sentence.columns)
        assert (out.index, out.leading) == (sentence.index, sentence.leading)
        assert tagschemes.detect_scheme([out.columns["tag"]]) == tagschemes.detect_scheme(
            [sentence.columns["tag"]]
        )

        def pieces(s: conll.Sentence):
            rows = list(zip(s.columns["word"], s.columns["pos"]))
            chunks = tagschemes.chunks(s.columns["tag"])
            edges = [0] + [e for _, start, end in chunks for e in (start, end)] + [len(rows)]
            between = [rows[a:b] for a, b in zip(edges[::2], edges[1::2])]
            return between, [(kind, tuple(rows[a:b])) for kind, a, b in chunks]

        between_in, chunks_in = pieces(sentence)
        between_out, chunks_out = pieces(out)
        assert between_out == between_in
        assert [k for k, _ in chunks_out] == [k for k, _ in chunks_in]
        changed = 0
        for (kind, before), (_, after) in zip(chunks_in, chunks_out):
            if after != before:
                assert mentions.Mention(kind, after) in pool.get(kind, ())
                changed += 1
        assert replaced == changed
        if probability == 0.0:
            assert out == sentence
        if probability == 1.0:  # ORG has no pool, so only PER and LOC can change
            assert changed == sum(
                kind != "ORG" and rows not in [m.rows for m in pool[kind]]
                for kind, rows in chunks_in
            )


def test_draws_depend_on_seed_copy_and_index_only():
    sentence = _random_sentence(random.Random(1), "IOB2", 7)
    a = mentions.copy_rng(5, 1, sentence).random()
    assert (
        a == mentions.copy_rng(5, 1, conll.Sentence(sentence.columns, index=7, source="x")).random()
    )
    assert a != mentions.copy_rng(5, 2, sentence).random()
    assert a != mentions.copy_rng(6, 1, sentence).random()


def _options(tmp_path: Path, **changes) -> AugmentOptions:
    values = dict(input=str(tmp_path / "train.txt"), output=str(tmp_path / "out" / "train.txt"))
    return AugmentOptions(**{**values, **changes})


@pytest.fixture
def train(tmp_path) -> str:
    return write_conll_split(tmp_path / "train.txt", 60, seed=4, docs=3)


def test_gather_mentions_writes_the_distinct_mentions_of_every_range(tmp_path, train):
    options = _options(tmp_path, range_bytes=400)
    planned = io.take_census(
        io.plan_ranges({options.input: "conll"}, options.range_bytes), options, None, str(tmp_path)
    )
    assert len(planned) > 3
    everything = [
        m for s in conll.read_conll(options.input, options.columns) for m in mentions.mentions(s)
    ]
    expected = mentions.pool_of(everything)
    with BeamTestPipeline() as p:
        sizes = (
            p
            | io.ReadRanges(planned, options)
            | augment.GatherMentions(
                str(tmp_path / "pool.json"), {}, mentions.untagged_names(options.columns)
            )
        )
        assert_that(sizes, equal_to([{kind: len(ms) for kind, ms in expected.items()}]))
    assert augment.load_pool(str(tmp_path / "pool.json")) == expected


def test_augment_writes_the_input_then_rewritten_copies(tmp_path, train):
    stats = augment.augment(_options(tmp_path, copies=2, probability=1.0))
    out = tmp_path / "out" / "train.txt"
    text = out.read_text()
    assert text.startswith(train)  # copy 0: the input as read, byte for byte
    copies = [text[i * len(train) : (i + 1) * len(train)] for i in range(3)]
    originals = list(conll.read_conll(str(tmp_path / "train.txt"), conll.CONLL2003_COLUMNS))
    written = list(conll.read_conll(str(out), conll.CONLL2003_COLUMNS))
    assert len(written) == 3 * len(originals) == stats["sentences_written"]
    pool = mentions.pool_of(m for s in originals for m in mentions.mentions(s))
    for copy in (1, 2):
        rewritten = written[copy * len(originals) : (copy + 1) * len(originals)]
        # Each copy is the whole input rewritten: the same documents, the same sentence
        # for sentence, each mention either kept or another of its type.
        assert [s.doc_start for s in rewritten] == [s.doc_start for s in originals]
        for before, after in zip(originals, rewritten):
            expected, _ = mentions.replace_mentions(
                before, pool, 1.0, mentions.copy_rng(0, copy, before)
            )
            assert after.columns == expected.columns
    assert copies[1] != copies[0] and copies[2] != copies[1]
    assert stats["mentions"] == sum(len(mentions.mentions(s)) for s in originals)
    assert 0 < stats["replaced"] <= 2 * stats["mentions"]
    assert stats["pool"] == {kind: len(ms) for kind, ms in pool.items()}
    assert sorted(p.name for p in out.parent.iterdir()) == ["train.txt"]  # no work left


def test_conform_moves_a_mention_into_the_input_columns():
    mention = mentions.Mention("ORG", (("Thyssen", "B-NP"), ("AG", "I-NP")))
    assert mentions.conform(mention, ("word", "chunk"), ("word", "pos", "chunk")) == (
        mentions.Mention("ORG", (("Thyssen", "-X-", "B-NP"), ("AG", "-X-", "I-NP")))
    )
    assert mentions.conform(mention, ("word", "chunk"), ("word", "chunk")) == mention


def test_mentions_from_other_files_join_the_pool(tmp_path, train):
    """A model's tags of raw text (`word tag` lines, as tag-corpus writes them) add their
    mentions to the pool, in the input's columns; the copies draw from both."""
    tagged = tmp_path / "tagged" / "raw.txt.conll"
    tagged.parent.mkdir()
    tagged.write_text(
        "Unseen B-ORG\nHoldings I-ORG\nsaid O\n\nin O\nZyxville B-LOC\n\n"
        "Wu B-PER\n\n"  # in the fixture's pool too: one entry
        "Robert B-PER\n<unk> I-PER\nsaid O\n\n"  # --wikitext: a hidden rare word
    )
    stats = augment.augment(
        _options(
            tmp_path,
            copies=3,
            probability=1.0,
            mentions_from=(str(tmp_path / "tagged/*"),),
            wikitext=True,
        )
    )
    originals = list(conll.read_conll(str(tmp_path / "train.txt"), conll.CONLL2003_COLUMNS))
    own = mentions.pool_of(m for s in originals for m in mentions.mentions(s))
    extra = [
        mentions.Mention("ORG", (("Unseen", "-X-", "-X-"), ("Holdings", "-X-", "-X-"))),
        mentions.Mention("LOC", (("Zyxville", "-X-", "-X-"),)),
        mentions.Mention("PER", (("Wu", "-X-", "-X-"),)),
    ]
    expected = mentions.pool_of([m for ms in own.values() for m in ms] + extra)
    assert stats["pool"] == {kind: len(ms) for kind, ms in expected.items()}
    assert stats["mentions_from"] == [str(tagged)]
    written = list(conll.read_conll(str(tmp_path / "out" / "train.txt"), conll.CONLL2003_COLUMNS))
    assert [s.columns for s in written[: len(originals)]] == [s.columns for s in originals]
    words = [w for s in written[len(originals) :] for w in s.columns["word"]]
    assert {"Unseen", "Zyxville"} <= set(words) and "<unk>" not in words
    assert "-X-" in {p for s in written for p in s.columns["pos"]}


def test_augment_is_the_same_in_ranges_and_for_a_seed(tmp_path, train):
    whole = augment.augment(_options(tmp_path, copies=1))
    text = (tmp_path / "out" / "train.txt").read_text()
    split = augment.augment(_options(tmp_path, copies=1, range_bytes=300, overwrite=True))
    assert (tmp_path / "out" / "train.txt").read_text() == text
    assert whole["replaced"] == split["replaced"]
    augment.augment(_options(tmp_path, copies=1, seed=1, overwrite=True))
    assert (tmp_path / "out" / "train.txt").read_text() != text


def test_cli_augment_prints_its_counts(tmp_path, train):
    result = invoke(
        "augment",
        "--input",
        tmp_path / "train.txt",
        "--output",
        tmp_path / "aug.txt",
        "--copies",
        "1",
        "--probability",
        "0.25",
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert (stats["copies"], stats["probability"], stats["sentences"]) == (1, 0.25, 60)


def test_cli_augment_errors(tmp_path, train):
    source = tmp_path / "train.txt"
    args = ("augment", "--input", source, "--output", tmp_path / "aug.txt")
    assert_one_line(
        invoke(*args, "--probability", "1.5"), "--probability must be in [0, 1], not 1.5"
    )
    assert_one_line(
        invoke(*args, "--columns", "word,pos,chunk"),
        "augment needs gold tags: --columns must name a 'tag' column",
    )
    assert_one_line(
        invoke(*args, "--mentions-from", source, "--mentions-columns", "word,pos"),
        "--mentions-columns must name a 'tag' column",
    )
    assert_one_line(
        invoke(*args, "--mentions-from", tmp_path / "nowhere*.conll"),
        f"no files match {tmp_path}/nowhere*.conll",
    )
    (tmp_path / "aug.txt").write_text("kept\n")
    assert_one_line(invoke(*args), f"{tmp_path}/aug.txt exists; pass --overwrite to replace it")
    assert (tmp_path / "aug.txt").read_text() == "kept\n"
    source.write_text(train + "EU NNP B-NP X-FOO\n\n")
    lines = train.count("\n") + 1
    result = invoke(*args, "--overwrite")
    assert_one_line(result, f"{source}:{lines}: malformed tag 'X-FOO'")
    assert (tmp_path / "aug.txt").read_text() == "kept\n"  # a failed run writes nothing


def test_lenient_augment_counts_the_sentences_it_skips(tmp_path, train):
    source = tmp_path / "train.txt"
    source.write_text(train + "EU NNP B-NP X-FOO\n\n")
    stats = augment.augment(_options(tmp_path, lenient=True))
    assert (stats["sentences"], stats["skipped_sentences"]) == (60, 1)
    assert (tmp_path / "out" / "train.txt").read_text().startswith(train)
    assert "X-FOO" not in (tmp_path / "out" / "train.txt").read_text()
