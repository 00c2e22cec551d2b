"""tag-corpus: the Beam RunInference pipeline with the bundled model, its output formats,
bad input, the `tag` and `run-job` commands, and a job killed mid-way then resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from etagger import conll, metrics, outputs, packing, ranges
from etagger.predictor import Predictor, Tagged, read_meta
from pipelines import io, tag_corpus
from tests.fixtures import BF16_KERNELS, MODEL, ROOT, write_conll_split
from tests.fixtures import RAW_NEWS as RAW


@pytest.fixture(scope="module")
def predictor():
    return Predictor(MODEL, with_confidence=True)


def run(tmp_path: Path, inputs: list[Path], fmt: str = "conll", *extra: str) -> dict:
    argv = ["--model", MODEL, "--output", str(tmp_path / "out"), "--format", fmt, *extra]
    for path in inputs:
        argv += ["--input", str(path)]
    return tag_corpus.run(argv)


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("inflight_calls", [1, 3])
def test_tag_ranges_transform_matches_the_predictor(predictor, inflight_calls):
    sentences = [
        conll.Sentence(columns={"word": tuple(words.split())}, index=i, source="s.txt")
        for i, words in enumerate(
            ["John Smith visited Paris .", "Reuters", "He left Berlin on Monday .", "Bonn"]
        )
    ]
    expected = [tuple(t.tags) for t in predictor([s.columns for s in sentences])]
    read = io.RangeSentences(
        ranges.FileRange("s.txt", "conll", 0, 9, 0, 0, 1), tuple(sentences), io.ReadCounts()
    )
    # Calls of at most 2 sentences, shortest first: with several in flight, each sentence's
    # tags still come back to it, in the range's order.
    options = tag_corpus.TagOptions(
        model=MODEL, format="jsonl", batch_sentences=2, inflight_calls=inflight_calls
    )
    with TestPipeline() as p:
        tagged = (
            p
            | beam.Create([read])
            | tag_corpus.TagRanges(options)
            | beam.Map(
                lambda result: (
                    [tuple(t.tags) for t in result.inference.per_sentence],
                    [call[1:] for call in result.inference.calls],
                )
            )
        )
        assert_that(tagged, equal_to([(expected, [(2, 2), (2, 11)])]))


def test_read_ranges_reads_conll_and_raw_cut_into_ranges(tmp_path):
    write_conll_split(tmp_path / "gold.txt", 3, seed=1)
    (tmp_path / "raw.txt").write_text(RAW * 3)
    paths = tag_corpus.resolve_inputs([str(tmp_path / "*.txt")], "auto", conll.CONLL2003_COLUMNS)
    assert paths == {str(tmp_path / "gold.txt"): "conll", str(tmp_path / "raw.txt"): "raw"}
    from etagger.tokenize import Tokenizer

    expected = [("gold.txt", s.line, s.words) for s in conll.read_conll(tmp_path / "gold.txt")]
    expected += [
        ("raw.txt", n, s.tokens)
        for n, line in enumerate((RAW * 3).splitlines(), start=1)
        for s in Tokenizer().tokenize_line(line)
    ]
    assert len(expected) == 12
    options = tag_corpus.TagOptions(model=MODEL, range_bytes=64)
    planned = io.take_census(
        tag_corpus.plan(paths, options), options, io.pipeline_options([]), str(tmp_path / "w")
    )
    assert len(planned) > 4
    # A census pipeline (driver_bytes=0) numbers the ranges as the driver's own count does.
    by_pipeline = io.take_census(
        tag_corpus.plan(paths, options), options, io.pipeline_options([]), str(tmp_path / "w"), 0
    )
    assert by_pipeline == planned
    with TestPipeline() as p:
        read = (
            p
            | io.ReadRanges(planned, options)
            | beam.FlatMap(
                lambda rs: [(Path(s.source).name, s.line, s.words) for s in rs.sentences]
            )
        )
        assert_that(read, equal_to(expected))


BEAM_TF_HANDLER = """
import apache_beam as beam, tensorflow as tf, tensorflow_text  # noqa: F401
from apache_beam.ml.inference.base import RunInference
from etagger import ops
ops.load()  # the bundled model runs etagger's ops (export --fused-lstm --fused-crf)
from apache_beam.ml.inference.tensorflow_inference import TFModelHandlerTensor
from apache_beam.testing.util import assert_that, equal_to
with beam.Pipeline() as p:
    tags = (p | beam.Create([tf.constant(["John", "Smith", "visited", "Paris"])])
            | RunInference(TFModelHandlerTensor(model_uri={model!r}))
            | beam.Map(lambda r: [t.decode() for t in r.inference["tags"].numpy()]))
    assert_that(tags, equal_to([["B-PER", "I-PER", "O", "B-LOC"]]))
"""


def test_beams_own_tensorflow_handler_serves_the_export():
    # Beam's handler loads through tf.keras.models.load_model, which reads SavedModels only
    # in tf-keras (Keras 2): hence TF_USE_LEGACY_KERAS=1.
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    subprocess.run(
        [sys.executable, "-c", BEAM_TF_HANDLER.format(model=MODEL)],
        env=env,
        check=True,
        capture_output=True,
    )


# ----------------------------------------------------------------------------- formats


def test_conll_input_gives_conlleval_columns_and_the_predictor_tags(tmp_path, predictor):
    gold = tmp_path / "gold.txt"
    write_conll_split(gold, 12, seed=4)
    timing = run(tmp_path, [gold])
    lines = (tmp_path / "out" / "gold.txt.conll").read_text().split("\n\n")[:-1]
    sentences = list(conll.read_conll(gold))
    assert len(lines) == len(sentences) == timing["sentences"]
    expected = predictor([s.columns for s in sentences])
    for block, s, t in zip(lines, sentences, expected):
        rows = [line.split() for line in block.split("\n")]
        assert [r[:4] for r in rows] == [
            list(x) for x in zip(*s.columns.values())
        ]  # word POS chunk gold
        assert [r[4] for r in rows] == t.tags
    report = metrics.evaluate(*metrics.read_conlleval_file(tmp_path / "out" / "gold.txt.conll"))
    assert report.tokens == timing["tokens"] == sum(map(len, sentences))


def test_raw_input_jsonl_spans_point_into_the_line(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW)
    timing = run(tmp_path, [raw], "jsonl")
    records = [
        json.loads(line)
        for line in (tmp_path / "out" / "raw.txt-00000-of-00001.jsonl").read_text().splitlines()
    ]
    assert [(r["line"], r["sentence"]) for r in records] == [(1, 0), (1, 1), (3, 0)]
    assert timing["sentences"] == 3 and timing["bad_records"] == {"empty_lines": 1}
    lines = RAW.split("\n")
    spans = [(e["text"], e["type"]) for r in records for e in r["entities"]]
    assert ("Angela Merkel", "PER") in spans and ("Paris", "LOC") in spans
    for r in records:
        assert len(r["tags"]) == len(r["tokens"]) == len(r["token_confidence"])
        for e in r["entities"]:
            assert lines[r["line"] - 1][e["start"] : e["end"]] == e["text"]
            assert 0.0 < e["confidence"] <= 1.0


def test_parquet_output_has_the_schema_of_schemas_dir(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW)
    run(tmp_path, [raw], "parquet")
    table = pq.read_table(tmp_path / "out" / "raw.txt-00000-of-00001.parquet")
    assert table.schema.equals(outputs.parquet_schema())
    assert table.num_rows == 3
    run(tmp_path, [raw], "jsonl")
    jsonl = [
        json.loads(line)
        for line in (tmp_path / "out" / "raw.txt-00000-of-00001.jsonl").read_text().splitlines()
    ]
    rows = table.to_pylist()
    assert [r["tags"] for r in rows] == [r["tags"] for r in jsonl]

    def span(e):
        return e["type"], e["start"], e["end"], e["text"]

    assert [[span(e) for e in r["entities"]] for r in rows] == [
        [span(e) for e in r["entities"]] for r in jsonl
    ]
    assert rows[0]["token_confidence"] == pytest.approx(jsonl[0]["token_confidence"], abs=1e-6)


def test_timing_json_and_table(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text(RAW)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".raw.txt.conll.0123.tmp").write_text("half a file from a killed run")
    timing = run(tmp_path, [raw])
    assert json.loads((tmp_path / "out" / "timing.json").read_text()) == timing
    assert timing["model_load_ms"] > 0 and timing["batches"] >= 1
    assert 0 < timing["inference_seconds"] <= timing["wall_seconds"]
    assert set(timing["sentence_latency"]) == {"mean_ms", "p50_ms", "p95_ms", "p99_ms"}
    table = tag_corpus.format_table(timing)
    assert "sentence latency" in table and "tokens/s" in table
    slow = {**timing, "sentences_per_second": 0.391, "tokens_per_second": 7.04}
    assert "  0.391, 7.04\n" in tag_corpus.format_table(slow)
    assert not [
        p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")
    ]  # no temp files left


# ----------------------------------------------------------------------------- bad input


def test_bad_input_is_counted_and_no_good_record_is_lost(tmp_path):
    from etagger.tokenize import Tokenizer

    good = ["Angela Merkel visited Paris .", "Siemens rose 3 percent in Frankfurt ."]
    long_line = " ".join(f"w{i}" for i in range(10_000))
    data = (
        good[0].encode()
        + b"\n\n   \n\xff\xfe not utf-8\nBad \xe9 latin-1\n"
        + long_line.encode()
        + b"\n"
        + b"ctrl\x07char\x1b[0m text\n"
        + good[1].encode()
        + b"\n"
    )
    (tmp_path / "bad.txt").write_bytes(data)
    (tmp_path / "empty.txt").write_bytes(b"")
    timing = run(tmp_path, [tmp_path / "bad.txt", tmp_path / "empty.txt"], "conll", "--lenient")
    bad = timing["bad_records"]
    assert bad["bad_lines"] == 2 and bad["empty_lines"] == 2 and bad["empty_files"] == 1
    assert bad["control_char_lines"] == 1 and bad["max_length_sentences"] == 10
    assert (tmp_path / "out" / "empty.txt.conll").read_text() == ""
    words = [
        line.split()[0]
        for line in (tmp_path / "out" / "bad.txt.conll").read_text().splitlines()
        if line
    ]
    tokenizer = Tokenizer()
    expected = [
        t
        for line in (good[0], long_line, "ctrl\x07char\x1b[0m text", good[1])
        for s in tokenizer.tokenize_line(line)
        for t in s.tokens
    ]
    assert words == expected  # every token of every good line, in order
    assert timing["tokens"] == len(expected)


def test_strict_mode_names_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine line\n\xff broken\n")
    with pytest.raises(conll.ConllFormatError, match=r"bad\.txt:2: not valid UTF-8"):
        run(tmp_path, [tmp_path / "bad.txt"])


def test_malformed_conll_names_file_and_line(tmp_path):
    (tmp_path / "gold.txt").write_text("EU NNP I-NP B-ORG\nrejects VBZ I-VP O\n\nGerman JJ I-NP\n")
    with pytest.raises(conll.ConllFormatError, match=r"gold\.txt:4"):
        run(tmp_path, [tmp_path / "gold.txt"], "conll", "--input-format", "conll")


# ----------------------------------------------------------------------------- tag, run-job


def cli(*args: str, stdin: str | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        **kwargs,
    )


def test_tag_reads_stdin_lines():
    out = cli("tag", "--model", MODEL, stdin="John Smith visited Paris.\nNothing here.\n").stdout
    assert out.split("\n\n")[0].split("\n") == [
        "John B-PER",
        "Smith I-PER",
        "visited O",
        "Paris B-LOC",
        ". O",
    ]
    line = "John Smith visited Paris. Then John left."
    spans = [
        json.loads(row)
        for row in cli("tag", "--model", MODEL, "--spans", stdin=line + "\n").stdout.splitlines()
    ]
    entities = spans[0]["entities"]
    assert [(e["text"], e["type"]) for e in entities] == [
        ("John Smith", "PER"),
        ("Paris", "LOC"),
        ("John", "PER"),
    ]
    # Token and character spans both count from the start of the line, across its sentences.
    tokens = line.replace(".", " .").split()
    for e in entities:
        assert " ".join(tokens[e["token_start"] : e["token_end"]]) == e["text"]
        assert line[e["start"] : e["end"]] == e["text"]


def test_tag_skips_bad_lines_and_tags_the_rest():
    data = (
        b"Angela Merkel visited Paris .\n\xff\xfe bad\nA bell \x07 rang .\n"
        + b"word " * 100_000
        + b"\n"
        b"John Smith left Berlin .\n"
    )
    problems = [
        "stdin:2: not valid UTF-8 (invalid start byte at byte 0)",
        "stdin:3: control character U+0007 at column 8",
        "stdin:4: 100,000 tokens, more than --max-line-tokens 10,000",
    ]
    run = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "tag", "--model", MODEL],
        input=data,
        capture_output=True,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert run.stderr.decode().splitlines()[-3:] == [f"error: {p}; line skipped" for p in problems]
    blocks = run.stdout.decode().split("\n\n")[:-1]
    assert [[row.split()[0] for row in b.split("\n")] for b in blocks] == [
        ["Angela", "Merkel", "visited", "Paris", "."],
        ["John", "Smith", "left", "Berlin", "."],
    ]
    spans = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "tag", "--model", MODEL, "--spans"],
        input=data,
        capture_output=True,
        cwd=ROOT,
    )
    assert spans.returncode == 2
    assert [json.loads(line).get("error") for line in spans.stdout.decode().splitlines()] == [
        None,
        *problems,
        None,
    ]
    strict = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "tag", "--model", MODEL, "--strict"],
        input=data,
        capture_output=True,
        cwd=ROOT,
    )
    assert strict.returncode == 2 and "Traceback" not in strict.stderr.decode()
    assert strict.stderr.decode().splitlines()[-1] == f"error: {problems[0]}"
    assert strict.stdout.decode().split("\n\n")[:-1] == blocks[:1]


def test_invalid_job_spec_is_refused(tmp_path):
    from etagger.jobs import load_job

    (tmp_path / "bad.yaml").write_text("name: x\nmodel: m\ninputs: []\noutput: o\nformat: xml\n")
    with pytest.raises(ValueError, match="invalid job spec"):
        load_job(tmp_path / "bad.yaml")


# ----------------------------------------------------------------------------- real data


@pytest.mark.conll
def test_real_test_set_f1_equals_the_model_card(conll_dir, tmp_path):
    timing = run(tmp_path, [conll_dir / "test.txt"])
    report = metrics.evaluate(*metrics.read_conlleval_file(tmp_path / "out" / "test.txt.conll"))
    card = json.loads(Path(MODEL, "assets.extra", "evaluation.json").read_text())
    assert timing["sentences"] == 3453 and report.tokens == 46435
    bf16 = read_meta(MODEL)["lstm_products"] == "bfloat16"
    if bf16 and BF16_KERNELS:
        # bfloat16 products (`export --bf16`) may move a few tags: F1 within 0.05 points.
        assert abs(report.f1 - card["entity_f1"]) <= 0.0005
    else:
        assert round(report.f1, 6) == card["entity_f1"]  # what `cli.py evaluate` printed


def test_pack_sentences_packs_each_documents_sentences_in_order(tmp_path):
    path = tmp_path / "docs.txt"
    write_conll_split(path, 12, seed=5, docs=3)
    sentences = list(conll.read_conll(path))
    expected = [
        tuple(s.index for s in pack)
        for pack in packing.pack_documents(
            sentences, 20, len, lambda s: packing.starts_pack(s.index, s.leading)
        )
    ]
    assert max(map(len, expected)) > 1 and len(expected) < len(sentences)
    assert [
        tuple(s.index for s in pack) for pack in packing.pack_sentences(sentences, 20)
    ] == expected
    assert packing.pack_sentences(sentences, 0) == [(s,) for s in sentences]
    # With document context a CoNLL file is one range, so no range boundary cuts a pack.
    paths = {str(path): "conll"}
    options = tag_corpus.TagOptions(model=MODEL, range_bytes=64, document_context=20)
    assert [(r.start, r.end, r.ranges_in_file) for r in tag_corpus.plan(paths, options)] == [
        (0, path.stat().st_size, 1)
    ]


def test_a_packs_sentences_get_tags_valid_on_their_own():
    class TwoSentencePack(Predictor):
        def __init__(self):  # no SavedModel: the model call is stubbed below
            self.takes_pack_ids = False  # the whole model reads each pack (document_context)

        def __call__(self, sentences):
            assert sentences == [{"word": ["English", "Challenge", "Cup", "."]}]  # one sequence
            return [Tagged(["B-MISC", "I-MISC", "I-MISC", "O"])]

    # The model ran the entity across the sentence boundary; each sentence gets a whole entity.
    parts = TwoSentencePack().tag_packs(
        [[{"word": ["English", "Challenge"]}, {"word": ["Cup", "."]}]]
    )
    assert [p.tags for p in parts[0]] == [["B-MISC", "I-MISC"], ["B-MISC", "O"]]
