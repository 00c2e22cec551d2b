"""Tests for etagger.metrics: conlleval semantics, checked against the Python port of
conlleval.pl on PyPI (``conlleval``) and against output captured from conlleval.pl itself."""

import conlleval
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etagger.metrics import Report, evaluate, format_report, read_conlleval_file, split_tag


def reference_counts(gold, pred):
    """Chunk and tag counts from the reference port, shaped like ours: ((gold phrases, pred
    phrases, correct chunks), (tokens, correct tags), {type: (pred, gold, correct)})."""
    lines = []
    for gold_tags, pred_tags in zip(gold, pred, strict=True):
        # The port reads a blank first line as a line of no columns, so "-X-" marks boundaries.
        lines += [f"w {g} {p}" for g, p in zip(gold_tags, pred_tags, strict=True)] + ["-X- O O"]
    summary = conlleval.evaluate(lines)
    chunks, tags = summary["overall"]["chunks"]["stats"], summary["overall"]["tags"]["stats"]
    per_type = {
        chunk_type: (row["stats"]["pred"], row["stats"]["gold"], row["stats"]["correct"])
        for chunk_type, row in sorted(summary["slots"]["chunks"].items())
        if row["stats"]["pred"] or row["stats"]["gold"]
    }
    overall = (chunks["gold"], chunks["pred"], chunks["correct"])
    return overall, (tags["gold"], tags["correct"]), per_type


def scores(correct, n_pred, n_gold):
    """conlleval.pl's precision, recall and F1 as fractions (0 where undefined)."""
    precision = correct / n_pred if n_pred else 0.0
    recall = correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def assert_matches_reference(gold, pred) -> Report:
    report = evaluate(gold, pred)
    overall, tags, per_type = reference_counts(gold, pred)
    assert (report.phrases_gold, report.phrases_pred, report.correct_chunks) == overall
    assert (report.tokens, report.correct_tags) == tags
    assert (report.precision, report.recall, report.f1) == pytest.approx(
        scores(overall[2], overall[1], overall[0]), abs=1e-12
    )
    assert list(report.per_type) == list(per_type)
    for chunk_type, (n_pred, n_gold, correct) in per_type.items():
        expected = (*scores(correct, n_pred, n_gold), n_pred, n_gold)
        assert report.per_type[chunk_type] == pytest.approx(expected, abs=1e-12), chunk_type
        assert report.correct_per_type[chunk_type] == correct, chunk_type
    return report


# (gold, pred, expected (gold phrases, pred phrases, correct)) for sentence lists.
FIXTURES = {
    "iob1_i_starts_chunk": (
        [["I-PER", "I-PER", "O", "I-LOC"]],
        [["I-PER", "I-PER", "O", "I-ORG"]],
        (2, 2, 1),
    ),
    "iob1_b_between_same_type": (
        [["I-PER", "I-PER", "B-PER", "I-PER"]],
        [["I-PER", "I-PER", "I-PER", "I-PER"]],
        (2, 1, 0),
    ),
    "iob1_vs_iob2_same_chunks": (
        [["I-LOC", "O", "I-PER", "B-PER"]],
        [["B-LOC", "O", "B-PER", "B-PER"]],
        (3, 3, 3),
    ),
    "iob2": (
        [["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]],
        [["B-PER", "O", "O", "B-LOC", "I-LOC"]],
        (3, 2, 0),
    ),
    "iobes": (
        [["S-PER", "S-PER", "B-LOC", "E-LOC", "B-LOC", "I-LOC", "E-LOC"]],
        [["S-PER", "B-PER", "E-PER", "E-LOC", "B-LOC", "I-LOC", "E-LOC"]],
        (4, 4, 2),
    ),
    "type_change_splits": ([["I-PER", "I-LOC", "B-LOC"]], [["B-PER", "B-LOC", "I-LOC"]], (3, 2, 1)),
    "chunk_at_sentence_end": (
        [["O", "I-PER"], ["I-PER", "O"]],
        [["O", "I-PER"], ["I-PER", "O"]],
        (2, 2, 2),
    ),
    "boundary_splits_pred": ([["O", "B-PER"], ["I-PER"]], [["O", "B-PER"], ["B-PER"]], (2, 2, 2)),
    "empty_sentences": ([[], ["B-MISC"], []], [[], ["B-MISC"], []], (1, 1, 1)),
    "all_o": ([["O", "O"], ["O"]], [["O", "O"], ["O"]], (0, 0, 0)),
    "nothing_predicted": ([["B-ORG", "I-ORG"]], [["O", "O"]], (1, 0, 0)),
    "longer_pred_chunk": ([["B-ORG", "O"]], [["B-ORG", "I-ORG"]], (1, 1, 0)),
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixtures_match_reference(name):
    gold, pred, counts = FIXTURES[name]
    report = assert_matches_reference(gold, pred)
    assert (report.phrases_gold, report.phrases_pred, report.correct_chunks) == counts


def test_split_tag_like_conlleval():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-A-B") == ("I", "A-B")  # types may contain hyphens
    assert split_tag("PER") == ("PER", "")  # no prefix: not read as I-PER
    assert split_tag("O") == ("O", "")


def test_format_report_matches_conlleval_output():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["I-ORG", "I-LOC", "I-MISC"]]
    # Printed by conlleval.pl (2004-01-26) for the same input.
    assert format_report(evaluate(gold, pred)) == (
        "processed 7 tokens with 4 phrases; found: 5 phrases; correct: 3.\n"
        "accuracy:  57.14%; precision:  60.00%; recall:  75.00%; FB1:  66.67\n"
        "              LOC: precision: 100.00%; recall:  50.00%; FB1:  66.67  1\n"
        "             MISC: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
        "              ORG: precision:  50.00%; recall: 100.00%; FB1:  66.67  2\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )


def test_format_report_without_tokens():
    assert (
        format_report(evaluate([], []))
        == "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"
    )


def test_report_fields():
    report = evaluate([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "B-PER", "B-LOC", "I-ORG"]])
    assert (report.tokens, report.correct_tags, report.accuracy) == (4, 1, 0.25)
    assert report.per_type["PER"] == (0.0, 0.0, 0.0, 2, 1)
    # Token level: positives are non-O tags; a hit needs the same type, prefix ignored.
    assert (report.token_precision, report.token_recall) == (0.5, pytest.approx(2 / 3))
    assert report.token_f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_length_mismatch_names_sentence():
    with pytest.raises(ValueError, match="sentence 1"):
        evaluate([["O"], ["O", "B-PER"]], [["O"], ["O"]])
    with pytest.raises(ValueError):
        evaluate([["O"]], [])


def test_read_conlleval_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP B-ORG B-ORG\nrejects VBZ O O\n\n\n"
        "German JJ B-MISC B-LOC\n-X- -X- O O\ncall NN O O\n"
    )
    gold, pred = read_conlleval_file(path)
    # -DOCSTART- is a token (as in conlleval); blank runs and -X- lines are boundaries.
    assert gold == [["O"], ["B-ORG", "O"], ["B-MISC"], ["O"]]
    assert pred == [["O"], ["B-ORG", "O"], ["B-LOC"], ["O"]]
    assert evaluate(gold, pred).tokens == 5


@pytest.mark.parametrize(
    "text, line", [("a O O\nb O\n", 2), ("a O\n", 1), ("a b O O\n\nc O O\n", 3)]
)
def test_read_conlleval_file_rejects_malformed(tmp_path, text, line):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad\.txt:{line}:"):
        read_conlleval_file(path)


# --- random sequences -------------------------------------------------------------------
TYPES = ("PER", "LOC")


def encode(labels, scheme):
    """Tags for per-token labels: None (outside) or (type, starts_new_chunk)."""
    tags = []
    for i, label in enumerate(labels):
        if label is None:
            tags.append("O")
            continue
        chunk_type, new = label
        prev = labels[i - 1] if i else None
        nxt = labels[i + 1] if i + 1 < len(labels) else None
        begins = new or prev is None or prev[0] != chunk_type
        ends = nxt is None or nxt[1] or nxt[0] != chunk_type
        if scheme == "iob2":
            prefix = "B" if begins else "I"
        elif scheme == "iob1":  # B only where a chunk directly follows one of the same type
            prefix = "B" if begins and prev is not None and prev[0] == chunk_type else "I"
        else:
            prefix = {
                (True, True): "S",
                (True, False): "B",
                (False, True): "E",
                (False, False): "I",
            }[begins, ends]
        tags.append(f"{prefix}-{chunk_type}")
    return tags


labels = st.lists(st.none() | st.tuples(st.sampled_from(TYPES), st.booleans()), max_size=8)
raw_tags = {
    "iob": st.sampled_from(["O"] + [f"{p}-{t}" for p in "BI" for t in TYPES]),
    "iobes": st.sampled_from(["O"] + [f"{p}-{t}" for p in "BIES" for t in TYPES]),
}


@st.composite
def well_formed_pair(draw):
    scheme = draw(st.sampled_from(["iob1", "iob2", "iobes"]))
    gold_labels = draw(st.lists(labels, min_size=1, max_size=5))
    # Predictions: the gold labels with some tokens replaced, so that many chunks match.
    pred_labels = [
        [
            draw(st.sampled_from([lab, lab, None, (TYPES[0], True), (TYPES[1], False)]))
            for lab in sentence
        ]
        for sentence in gold_labels
    ]
    return ([encode(s, scheme) for s in gold_labels], [encode(s, scheme) for s in pred_labels])


@st.composite
def raw_pair(draw):
    tag = raw_tags[draw(st.sampled_from(sorted(raw_tags)))]
    gold = draw(st.lists(st.lists(tag, max_size=8), min_size=1, max_size=5))
    pred = [[draw(st.one_of(st.just(t), tag)) for t in sentence] for sentence in gold]
    return gold, pred


@settings(max_examples=150, deadline=None)
@given(well_formed_pair())
def test_well_formed_sequences_match_reference(pair):
    assert_matches_reference(*pair)


@settings(max_examples=150, deadline=None)
@given(raw_pair())
def test_arbitrary_sequences_match_reference(pair):
    assert_matches_reference(*pair)


# --- the real CoNLL-2003 test set -------------------------------------------------------
def corrupt(tags):
    """A deterministic, varied corruption of a flat tag list (types, prefixes, misses, spurious)."""
    cycle = {"PER": "LOC", "LOC": "ORG", "ORG": "MISC", "MISC": "PER"}
    out = []
    for i, tag in enumerate(tags):
        prefix, _, chunk_type = tag.partition("-")
        if tag != "O" and i % 7 == 3:
            tag = f"{prefix}-{cycle[chunk_type]}"
        elif tag != "O" and i % 11 == 5:
            tag = f"{'I' if prefix == 'B' else 'B'}-{chunk_type}"
        elif tag != "O" and i % 17 == 2:
            tag = "O"
        elif tag == "O" and i % 31 == 0:
            tag = "I-MISC"
        out.append(tag)
    return out


@pytest.mark.conll
def test_conll2003_test_set(conll_dir, tmp_path):
    lines = (conll_dir / "test.txt").read_text(encoding="utf-8").splitlines()
    ner = [line.split()[-1] if line.strip() else None for line in lines]
    flat_pred = corrupt([tag for tag in ner if tag is not None])
    pred = iter(flat_pred)
    path = tmp_path / "conlleval.txt"
    path.write_text(
        "".join(
            f"{line.split()[0]} {tag} {next(pred)}\n" if tag else "\n"
            for line, tag in zip(lines, ner)
        ),
        encoding="utf-8",
    )
    gold_sentences, pred_sentences = read_conlleval_file(path)

    perfect = evaluate(gold_sentences, gold_sentences)
    assert (perfect.precision, perfect.recall, perfect.f1, perfect.accuracy) == (1.0, 1.0, 1.0, 1.0)
    # 5,648 phrases and 46,666 tokens (46,435 words + 231 -DOCSTART- lines), as conlleval.pl reports.
    assert (perfect.phrases_gold, perfect.tokens) == (5648, 46666)

    report = assert_matches_reference(gold_sentences, pred_sentences)
    assert 0.5 < report.f1 < 0.95
    assert format_report(report) == CORRUPTED_TEST_SET_REPORT


# Printed by conlleval.pl (2004-01-26) for the file written above.
CORRUPTED_TEST_SET_REPORT = (
    "processed 46666 tokens with 5648 phrases; found: 7515 phrases; correct: 3973.\n"
    "accuracy:  92.68%; precision:  52.87%; recall:  70.34%; FB1:  60.37\n"
    "              LOC: precision:  70.89%; recall:  76.80%; FB1:  73.73  1807\n"
    "             MISC: precision:  23.04%; recall:  71.65%; FB1:  34.87  2183\n"
    "              ORG: precision:  61.98%; recall:  68.21%; FB1:  64.95  1828\n"
    "              PER: precision:  62.23%; recall:  65.31%; FB1:  63.73  1697\n"
)
