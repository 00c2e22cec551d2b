"""Options declared once as dataclass fields: click's parse, the dataclass, and Beam's rest."""

from __future__ import annotations

import dataclasses
import io as pyio
import threading
import time

import click
import pytest

from etagger import clioptions, fsutil, ranges
from etagger.clioptions import option
from pipelines import io
from pipelines.options import FeatureConfig, PreprocessOptions, PreprocessRun, TagOptions


@dataclasses.dataclass(frozen=True)
class Inner:
    flag: bool = option(True, help="on unless --no-flag")


@dataclasses.dataclass(frozen=True)
class Example:
    name: str = option(help="required")
    count: int = option(3, minimum=1, aliases=("-n",), help="an int")
    kind: str = option("a", choices=("a", "b"), help="a choice")
    paths: tuple[str, ...] = option((), help="repeatable")
    columns: tuple[str, ...] = option(("x", "y"), separator=",", help="comma-separated")
    maybe: str | None = option(None, help="optional")
    inner: Inner = Inner()
    derived: int = 0  # not an option


def test_parse_builds_the_dataclass_and_leaves_the_rest_for_beam():
    [found], rest = clioptions.parse(
        [
            "--name",
            "x",
            "-n",
            "5",
            "--paths",
            "p",
            "--runner",
            "DirectRunner",
            "--paths",
            "q",
            "--columns",
            "a,b",
            "--no-flag",
            "--direct_num_workers=2",
        ],
        Example,
    )
    assert found == Example(
        name="x", count=5, paths=("p", "q"), columns=("a", "b"), inner=Inner(flag=False)
    )
    assert rest == ["--runner", "DirectRunner", "--direct_num_workers=2"]
    [defaults], _ = clioptions.parse(["--name", "x"], Example)
    assert defaults == Example(name="x")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "name"),
        (["--name", "x", "--count", "0"], "0 is not in the range x>=1"),
        (["--name", "x", "--kind", "c"], "'c' is not one of 'a', 'b'"),
    ],
)
def test_bad_values_are_click_usage_errors(argv, message):
    with pytest.raises(click.UsageError, match=message):
        clioptions.parse(argv, Example)


def test_the_pipelines_options_round_trip_through_the_command_line():
    tag = TagOptions(
        model="m",
        input=("a", "b"),
        output="o",
        format="jsonl",
        columns=("word", "tag"),
        lenient=True,
        batch_sentences=8,
        range_bytes=100,
    )
    argv = [
        "--model",
        "m",
        "--input",
        "a",
        "--input",
        "b",
        "--output",
        "o",
        "--format",
        "jsonl",
        "--columns",
        "word,tag",
        "--lenient",
        "--batch-size",
        "8",
        "--range-bytes",
        "100",
    ]
    assert clioptions.parse(argv, TagOptions)[0] == [tag]
    [where, options], _ = clioptions.parse(
        [
            "--out",
            "o",
            "--raw",
            "r*.txt",
            "--no-lowercase",
            "--zero-digits",
            "--gazetteer",
            "train",
            "--min-count",
            "2",
        ],
        PreprocessRun,
        PreprocessOptions,
    )
    assert where == PreprocessRun(out="o", raw=("r*.txt",))
    assert options == PreprocessOptions(
        features=FeatureConfig(lowercase=False, zero_digits=True), gazetteer=("train",), min_count=2
    )


def test_progress_bar_reads_the_receipts(tmp_path):
    planned = [ranges.FileRange("f.txt", "raw", i * 100, (i + 1) * 100, 0, i, 3) for i in range(3)]
    receipts = str(tmp_path / "receipts")
    stream = pyio.StringIO()

    def finish_ranges():
        for r in planned:
            time.sleep(0.15)
            io.write_receipt(receipts, r.name, {"tokens": 1000})

    worker = threading.Thread(target=finish_ranges)
    with io.Progress("tag-corpus", planned, receipts, stream=stream, every=0.05):
        worker.start()
        worker.join()
    text = stream.getvalue()
    assert (
        "tag-corpus" in text and "300/300" in text and "3,000 tokens" in text and "tokens/s" in text
    )
    quiet = pyio.StringIO()
    with io.Progress("tag-corpus", planned, receipts, quiet=True, stream=quiet, every=0.05):
        time.sleep(0.1)
    assert quiet.getvalue() == "" and fsutil.exists(receipts)
