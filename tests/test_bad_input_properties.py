"""Whatever bytes the readers get, they either parse or raise the project's own error type
(etagger.errors.InputError) with a position: file and line for CoNLL and raw text, file
and line or the place in the spec for a job spec. Never another exception."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etagger import conll, jobs, ranges, tagschemes
from etagger.errors import InputError
from pipelines import io, tag_corpus

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FIELD = st.one_of(
    st.sampled_from(
        [
            "John",
            "-DOCSTART-",
            "O",
            "B-PER",
            "I-ORG",
            "E-LOC",
            "S-MISC",
            "X-FOO",
            "B-",
            "I-",
            "NNP",
            "B-NP",
            "é",
            "\u200b",
            "\x07",
            "@-@",
            "<unk>",
            "-",
        ]
    ),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"),
        max_size=6,
    ),
)
CONLL_LINE = st.one_of(
    st.lists(FIELD, min_size=0, max_size=6).map(lambda fields: " ".join(fields).encode("utf-8")),
    st.binary(max_size=12),
).map(lambda line: line.replace(b"\n", b" ") + b"\n")
CONLL_FILE = st.lists(CONLL_LINE, max_size=25).map(b"".join)
RAW_FILE = st.one_of(st.binary(max_size=300), st.lists(CONLL_LINE, max_size=15).map(b"".join))
COLUMNS = st.sampled_from(
    [conll.CONLL2003_COLUMNS, conll.WORD_TAG_COLUMNS, ("word",), ("word", "pos")]
)


@dataclasses.dataclass(frozen=True)
class Options:
    columns: tuple[str, ...] = conll.CONLL2003_COLUMNS
    lenient: bool = False
    max_sentence_tokens: int = 5
    wikitext: bool = False


def _assert_positioned(error: InputError, path: Path, lines: int) -> None:
    found = re.match(r"(.+?):(\d+): \S", str(error))
    assert found and found[1] == str(path), str(error)
    assert 1 <= int(found[2]) <= max(lines, 1), str(error)


@SETTINGS
@given(data=CONLL_FILE, columns=COLUMNS, lenient=st.booleans())
def test_conll_reader_parses_or_names_file_and_line(tmp_path, data, columns, lenient):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    try:
        sentences = list(conll.read_conll(path, columns, lenient=lenient, max_sentence_tokens=5))
    except InputError as error:
        assert not lenient
        _assert_positioned(error, path, data.count(b"\n"))
        return
    for s in sentences:
        assert set(s.columns) == set(columns) and 1 <= len(s) <= 5
        if "tag" in columns:
            tagschemes.convert_tags(list(s.columns["tag"]), "IOB2", "IOB2")  # well-formed tags only


@SETTINGS
@given(data=RAW_FILE, lenient=st.booleans(), wikitext=st.booleans())
def test_raw_reader_parses_or_names_file_and_line(tmp_path, data, lenient, wikitext):
    path = tmp_path / "raw.txt"
    path.write_bytes(data)
    whole = ranges.FileRange(str(path), "raw", 0, len(data), 0, 0, 1)
    reader = io._ReadRange(Options(lenient=lenient, wikitext=wikitext), {})  # the DoFn itself
    try:
        [read] = list(reader.process(whole))
    except InputError as error:
        assert not lenient
        _assert_positioned(error, path, data.count(b"\n") + 1)
        return
    good = [line for line in data.split(b"\n") if _utf8(line)]
    assert read.counts.bad_lines == len(data.split(b"\n")) - len(good)
    assert all(1 <= len(s) <= 5 and all(s.words) for s in read.sentences)


@SETTINGS
@given(data=st.one_of(CONLL_FILE, RAW_FILE), columns=COLUMNS)
def test_format_sniffing_never_fails(tmp_path, data, columns):
    path = tmp_path / "in.txt"
    path.write_bytes(data)
    assert tag_corpus.sniff_format(str(path), columns) in ("conll", "raw")


def _utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


SPEC_VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.text(max_size=8),
        st.sampled_from(["x.txt", "*.txt"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
SPEC_KEYS = st.sampled_from(
    [
        "name",
        "model",
        "inputs",
        "output",
        "format",
        "input_format",
        "runner",
        "wikitext",
        "lenient",
        "pipeline_options",
        "other",
    ]
)
SPEC = st.one_of(
    st.dictionaries(SPEC_KEYS, SPEC_VALUE, max_size=8).map(
        lambda d: yaml.safe_dump(d).encode("utf-8")
    ),
    st.binary(max_size=80),
    st.text(alphabet="{}[]:,-'\" \nab#&*!|>%@`", max_size=40).map(str.encode),
)


@SETTINGS
@given(data=SPEC)
def test_job_spec_loads_or_names_the_problem(tmp_path, data):
    path = tmp_path / "job.yaml"
    path.write_bytes(data)
    try:
        spec = jobs.load_job(path)
    except InputError as error:
        assert str(error).startswith(f"{path}"), str(error)
        assert re.match(
            rf"{re.escape(str(path))}(:\d+)?: (not valid YAML|not UTF-8|invalid job spec at \S)",
            str(error),
        ), str(error)
        return
    assert isinstance(spec["name"], str) and isinstance(spec["inputs"], list)
    assert Path(spec["model"]).is_absolute()
