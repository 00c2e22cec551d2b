"""The command line's one error path: bad input ends a command with one line on stderr,
"error: FILE:LINE: what is wrong" where there is a file and line, exit status 2, and no
traceback unless -v; an unexpected error ends with exit status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from tests.fixtures import MODEL, ROOT, write_conll_split


def invoke(*args: str):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def tag_corpus(source: Path, output: Path, *extra: str):
    return invoke("tag-corpus", "--model", MODEL, "--input", source, "--output", output, *extra)


def assert_one_line(result, message: str, status: int = 2) -> None:
    assert result.exit_code == status
    assert result.stderr == f"error: {message}\n"


def test_raw_file_that_is_not_utf8(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine line\n\xff broken\n")
    result = tag_corpus(tmp_path / "bad.txt", tmp_path / "out")
    assert_one_line(result, f"{tmp_path}/bad.txt:2: not valid UTF-8 (invalid start byte)")


def test_conll_file_with_a_missing_column(tmp_path):
    (tmp_path / "gold.txt").write_text("EU NNP B-NP B-ORG\nrejects VBZ\n\n")
    result = tag_corpus(tmp_path / "gold.txt", tmp_path / "out", "--input-format", "conll")
    assert_one_line(
        result, f"{tmp_path}/gold.txt:2: expected 4 columns (word pos chunk tag), found 2"
    )


def test_a_malformed_gold_tag_in_tag_corpus_input(tmp_path):
    (tmp_path / "gold.txt").write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP X-FOO\n\n")
    result = tag_corpus(tmp_path / "gold.txt", tmp_path / "out", "--input-format", "conll")
    assert_one_line(result, f"{tmp_path}/gold.txt:2: malformed tag 'X-FOO'")


def test_a_malformed_tag_in_preprocess_input(tmp_path):
    (tmp_path / "in").mkdir()
    train = tmp_path / "in" / "train.txt"
    write_conll_split(train, 3, seed=1)
    train.write_text(train.read_text() + "Mary NNP B-NP X-FOO\n\n")
    line = train.read_text().count("\n") - 1
    result = invoke("preprocess", "--data-dir", tmp_path / "in", "--out", tmp_path / "out")
    assert_one_line(result, f"{train}:{line}: malformed tag 'X-FOO'")


def test_a_model_folder_that_is_not_an_export(tmp_path):
    (tmp_path / "raw.txt").write_text("John left .\n")
    result = invoke(
        "tag-corpus",
        "--model",
        tmp_path,
        "--input",
        tmp_path / "raw.txt",
        "--output",
        tmp_path / "out",
    )
    assert_one_line(
        result,
        f"{tmp_path}: not an exported etagger model (no assets.extra/etagger.json; "
        "make one with `cli.py export`)",
    )


def test_an_output_path_that_is_a_file(tmp_path):
    (tmp_path / "raw.txt").write_text("John left .\n")
    (tmp_path / "out").write_text("a file")
    assert_one_line(
        tag_corpus(tmp_path / "raw.txt", tmp_path / "out"),
        f"{tmp_path}/out: the output folder is a file",
    )


def test_a_glob_that_matches_nothing(tmp_path):
    assert_one_line(
        tag_corpus(tmp_path / "none*.txt", tmp_path / "out"), f"no files match {tmp_path}/none*.txt"
    )


def test_a_job_spec_that_is_not_yaml(tmp_path):
    (tmp_path / "job.yaml").write_text("name: x\ninputs: [\n")
    result = invoke("run-job", tmp_path / "job.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path}/job.yaml:3: not valid YAML (")


def test_a_job_spec_without_a_name(tmp_path):
    (tmp_path / "job.yaml").write_text("model: m\ninputs: [x]\noutput: o\n")
    assert_one_line(
        invoke("run-job", tmp_path / "job.yaml"),
        f"{tmp_path}/job.yaml: invalid job spec at top level: 'name' is a required property",
    )


def test_verbose_shows_the_traceback_then_the_line(tmp_path):
    result = invoke(
        "-v",
        "tag-corpus",
        "--model",
        MODEL,
        "--input",
        tmp_path / "none*.txt",
        "--output",
        tmp_path,
    )
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.endswith(f"error: no files match {tmp_path}/none*.txt\n")


def test_an_unexpected_error_exits_1_with_a_hint(tmp_path, monkeypatch):
    from pipelines import tag_corpus as pipeline

    def broken(options, beam_args):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(pipeline, "tag_corpus", broken)
    result = invoke("tag-corpus", "--model", MODEL, "--input", "x", "--output", tmp_path)
    assert_one_line(result, "something inside broke (run with -v for the traceback)", status=1)


@pytest.mark.parametrize(
    "error, line",
    [
        (ValueError("a.txt:3: bad [while running 'Read/Read']"), "a.txt:3: bad"),
        (FileNotFoundError(2, "No such file or directory"), "[Errno 2] No such file or directory"),
        (RuntimeError(""), "RuntimeError"),
    ],
)
def test_one_line(error, line):
    assert cli.one_line(error) == line


# ----------------------------------------------------------------------------- options and usage


def test_an_option_neither_etagger_nor_beam_knows(tmp_path):
    (tmp_path / "raw.txt").write_text("John left .\n")
    result = tag_corpus(tmp_path / "raw.txt", tmp_path / "out", "--direct_num_worker=2")
    assert_one_line(
        result,
        "no such option: --direct_num_worker (neither etagger's nor Beam's; "
        "did you mean --direct_num_workers?)",
    )
    result = invoke(
        "preprocess", "--out", tmp_path / "o", "--data-dir", tmp_path, "--min-cont", "2"
    )
    assert_one_line(result, "no such option: --min-cont (neither etagger's nor Beam's; see --help)")


def test_a_bad_option_value_is_a_usage_error(tmp_path):
    result = invoke(
        "tag-corpus", "--model", MODEL, "--input", "x", "--output", tmp_path, "--format", "xml"
    )
    assert result.exit_code == 2
    assert (
        "Invalid value for '--format': 'xml' is not one of 'conll', 'jsonl', 'parquet'."
        in result.stderr
    )


@pytest.mark.parametrize(
    "command, classes",
    [("tag-corpus", ["TagOptions"]), ("preprocess", ["PreprocessRun", "PreprocessOptions"])],
)
def test_help_lists_every_option_with_its_default(command, classes):
    import dataclasses

    from pipelines import options

    text = invoke(command, "--help").output
    fields = [f for name in classes for f in dataclasses.fields(getattr(options, name))]
    fields += (
        [f for f in dataclasses.fields(options.FeatureConfig)] if command == "preprocess" else []
    )
    declared = [f for f in fields if f.metadata]
    assert len(declared) >= 10
    for field in declared:
        assert "--" + field.name.replace("_", "-") in text
    assert "[default: 1048576; x>=1]" in " ".join(text.split())  # --range-bytes
    assert "Every other option goes to Beam" in text and "Examples:" in text
    assert "python -m" not in text


def test_the_entry_point_is_the_same_command():
    import shutil
    import subprocess
    import sys

    etagger = shutil.which("etagger", path=str(Path(sys.executable).parent))
    assert etagger, "pip install -e . puts the `etagger` script beside python"
    for args in (["--version"], ["tag-corpus", "--model", "m"], ["tag-corpus", "--help"]):
        script = subprocess.run([etagger, *args], capture_output=True, text=True, cwd=ROOT)
        module = subprocess.run(
            [sys.executable, "cli.py", *args], capture_output=True, text=True, cwd=ROOT
        )
        assert (script.returncode, script.stdout, script.stderr) == (
            module.returncode,
            module.stdout,
            module.stderr,
        )
    assert script.returncode == 0 and module.stdout.startswith(
        "Usage: etagger tag-corpus [OPTIONS]"
    )
    version = subprocess.run([etagger, "--version"], capture_output=True, text=True)
    assert version.stdout == "etagger, version 0.1.0\n"


def test_the_model_may_come_from_etagger_model(tmp_path):
    (tmp_path / "raw.txt").write_text("John left .\n")
    result = CliRunner(env={"ETAGGER_MODEL": str(tmp_path)}).invoke(
        cli.main,
        ["tag-corpus", "--input", str(tmp_path / "raw.txt"), "--output", str(tmp_path / "out")],
    )
    assert_one_line(
        result,
        f"{tmp_path}: not an exported etagger model (no assets.extra/etagger.json; "
        "make one with `cli.py export`)",
    )


def test_pack_tokens_without_an_encoder(tmp_path):
    write_conll_split(tmp_path / "train.txt", 4, seed=1)
    result = invoke(
        "preprocess",
        "--data-dir",
        tmp_path,
        "--contextual-pack-tokens",
        "96",
        "--out",
        tmp_path / "o",
    )
    assert_one_line(result, "--contextual-pack-tokens needs --contextual ENCODER")
    assert not (tmp_path / "o").exists()


def test_vocab_from_a_folder_that_is_not_a_preprocess_output(tmp_path):
    (tmp_path / "raw.txt").write_text("John left .\n")
    result = invoke(
        "preprocess",
        "--raw",
        tmp_path / "raw.txt",
        "--vocab-from",
        tmp_path,
        "--out",
        tmp_path / "out",
    )
    assert_one_line(
        result, f"{tmp_path}: not a preprocess output (no vocab/words.txt) for --vocab-from"
    )


@pytest.mark.parametrize(
    "meta, message",
    [
        ({}, "exported without its tag list (export it again)"),
        (
            {"tags": ["O", "S-PER"]},
            "its tags ['O', 'S-PER'] are not the data's "
            "['B-LOC', 'B-ORG', 'B-PER', 'E-LOC', 'E-ORG', 'E-PER', 'O', 'S-LOC', 'S-ORG', "
            "'S-PER']",
        ),
    ],
)
def test_a_teacher_whose_tags_are_not_the_datas(tmp_path, meta, message):
    (tmp_path / "in").mkdir()
    write_conll_split(tmp_path / "in" / "train.txt", 20, seed=1)
    (tmp_path / "teacher" / "assets.extra").mkdir(parents=True)
    (tmp_path / "teacher" / "assets.extra" / "etagger.json").write_text(json.dumps(meta))
    result = invoke(
        "preprocess",
        "--data-dir",
        tmp_path / "in",
        "--soft-targets",
        tmp_path / "teacher",
        "--out",
        tmp_path / "out",
    )
    assert_one_line(result, f"--soft-targets {tmp_path / 'teacher'}: {message}")
    assert not (tmp_path / "out").exists()
