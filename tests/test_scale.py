"""The pipelines at scale, on tiny inputs cut into many byte ranges: the same bytes on every
runner (DirectRunner in memory and with 2 processes, the Dask runner on a 2-worker cluster
started by the test, Beam's portable job service with an external worker pool), on S3
(moto), and after a Dask worker is killed mid-run."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from etagger import conll, fsutil, metrics
from pipelines import augment, io, preprocess, tag_corpus
from tests import fixtures
from tests.fixtures import MODEL, write_conll_split

pytestmark = pytest.mark.services
RAW = (
    "Angela Merkel met Emmanuel Macron in Paris on Monday. Shares of Siemens rose.\n"
    "\n"
    "The United Nations said so in New York. Reuters reported it from London.\n"
)
RANGE_BYTES = "400"  # several ranges per file, so that the ranges are what is tested
DASK = ["--runner", "DaskRunner"]
TAGGED = "Angela B-PER\nMerkel I-PER\nmet O\nZyx B-ORG\nHoldings I-ORG\n\nin O\nParis B-LOC\n\n"


@pytest.fixture(autouse=True)
def census_by_pipeline(monkeypatch):
    """Every run here counts its ranges in a census pipeline on its runner, as large inputs
    do (the tiny fixtures would otherwise be counted by the driver)."""
    monkeypatch.setattr(io, "CENSUS_IN_DRIVER_BYTES", 0)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_conll_split(folder / "gold.txt", 30, seed=3, docs=2)
    (folder / "raw.txt").write_text(RAW * 12)
    # A model's tags of raw text, as `tag-corpus --format conll` writes them: augment's
    # --mentions-from source, cut into several ranges too.
    (folder / "tagged.conll").write_text(TAGGED * 12)
    return folder


def tag(inputs: Path | str, out: Path | str, fmt: str, *beam_args: str) -> dict:
    return tag_corpus.run(
        [
            "--model",
            MODEL,
            "--input",
            f"{inputs}/*.txt",
            "--output",
            str(out),
            "--format",
            fmt,
            "--range-bytes",
            RANGE_BYTES,
            *beam_args,
        ]
    )


def files(folder: Path) -> dict[str, bytes]:
    """The outputs under ``folder`` but timing.json (its wall times differ)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != "timing.json"
    }


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The DirectRunner's outputs, per format."""
    out = {}
    for fmt in ("conll", "jsonl"):
        folder = tmp_path_factory.mktemp(f"reference-{fmt}")
        timing = tag(inputs, folder, fmt)
        assert timing["ranges"] > 6
        out[fmt] = files(folder)
    shards = {
        name: -(-(inputs / name).stat().st_size // int(RANGE_BYTES))
        for name in ("gold.txt", "raw.txt")
    }
    assert sorted(out["jsonl"]) == [
        f"{name}-{i:05d}-of-{n:05d}.jsonl" for name, n in shards.items() for i in range(n)
    ]
    return out


def test_ranges_change_no_byte_of_the_output(inputs, reference, tmp_path):
    """One range per file gives the same CoNLL as many; conlleval reads the whole test set."""
    tag_corpus.run(
        [
            "--model",
            MODEL,
            "--input",
            f"{inputs}/*.txt",
            "--output",
            str(tmp_path),
            "--format",
            "conll",
        ]
    )
    assert files(tmp_path) == reference["conll"]
    sentences = list(conll.read_conll(inputs / "gold.txt"))
    report = metrics.evaluate(*metrics.read_conlleval_file(tmp_path / "gold.txt.conll"))
    assert report.tokens == sum(map(len, sentences))


@pytest.mark.parametrize("fmt", ["conll", "jsonl"])
def test_direct_runner_with_two_processes(inputs, reference, tmp_path, fmt):
    timing = tag(
        inputs, tmp_path, fmt, "--direct_num_workers=2", "--direct_running_mode=multi_processing"
    )
    assert files(tmp_path) == reference[fmt]
    assert len(timing["workers"]) == 2


@pytest.mark.parametrize("fmt", ["conll", "jsonl"])
def test_dask_runner_on_a_two_worker_cluster(inputs, reference, tmp_path, dask_cluster, fmt):
    timing = tag(inputs, tmp_path, fmt, *DASK, f"--dask_client_address={dask_cluster.address}")
    assert files(tmp_path) == reference[fmt]
    # Both workers read ranges of the same files: the per-worker counts add up to the whole.
    assert len(timing["workers"]) == 2
    assert sum(w["tokens"] for w in timing["workers"].values()) == timing["tokens"]
    assert (
        json.loads((tmp_path / "timing.json").read_text())["sentences"] == timing["sentences"] > 0
    )


@pytest.mark.parametrize("fmt", ["conll", "jsonl"])
def test_portable_runner_with_an_external_worker_pool(
    inputs, reference, tmp_path, portable_runner, fmt
):
    tag(inputs, tmp_path, fmt, *portable_runner.beam_args)
    assert files(tmp_path) == reference[fmt]


def test_killed_dask_worker_still_gives_the_whole_output(inputs, tmp_path, dask_cluster):
    big = tmp_path / "big"
    big.mkdir()
    (big / "raw.txt").write_text(RAW * 400)
    expected = tmp_path / "expected"
    tag(big, expected, "conll", "--range-bytes=2000")
    out = tmp_path / "out"
    receipts = out / tag_corpus.WORK_DIR / "receipts"
    killed = []

    def kill_when_half_done():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(list(receipts.glob("*.json"))) < 5:
            time.sleep(0.02)
        killed.append(dask_cluster.kill_worker(0, wait=False))

    killer = threading.Thread(target=kill_when_half_done)
    killer.start()
    timing = tag(
        big,
        out,
        "conll",
        "--range-bytes=2000",
        *DASK,
        f"--dask_client_address={dask_cluster.address}",
    )
    killer.join()
    dask_cluster.wait_for_workers()
    assert killed and timing["ranges"] == -(-(big / "raw.txt").stat().st_size // 2000)
    assert files(out) == files(expected)


def _upload(server, local: Path, target: str) -> None:
    bucket, _, prefix = target[len("s3://") :].partition("/")
    client = server.client()
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local)}")


def _download(server, source: str) -> dict[str, bytes]:
    bucket, _, prefix = source[len("s3://") :].partition("/")
    client = server.client()
    found = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/").get("Contents", [])
    return {
        o["Key"][len(prefix) + 1 :]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in found
    }


@pytest.mark.parametrize("fmt", ["conll", "jsonl"])
def test_inputs_model_and_outputs_on_s3(inputs, reference, s3_server, fmt):
    bucket = s3_server.make_bucket(f"etagger-{fmt}")
    _upload(s3_server, inputs, f"{bucket}/inputs")
    _upload(s3_server, Path(MODEL), f"{bucket}/model")
    timing = tag_corpus.run(
        [
            "--model",
            f"{bucket}/model",
            "--input",
            f"{bucket}/inputs/*.txt",
            "--output",
            f"{bucket}/out",
            "--format",
            fmt,
            "--range-bytes",
            RANGE_BYTES,
            *s3_server.beam_args,
        ]
    )
    found = _download(s3_server, f"{bucket}/out")
    assert json.loads(found.pop("timing.json"))["sentences"] == timing["sentences"]
    assert found == reference[fmt]


# ----------------------------------------------------------------------------- preprocess


def _preprocess(data: Path | str, out: Path | str, *beam_args: str) -> dict:
    return preprocess.run(
        [
            "--data-dir",
            str(data),
            "--raw",
            f"{data}/raw/*.txt",
            "--out",
            str(out),
            "--glove",
            f"{data}/glove.txt",
            "--range-bytes",
            RANGE_BYTES,
            *beam_args,
        ]
    )


@pytest.fixture(scope="module")
def conll_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("conll")
    fixtures.write_conll_dir(folder, (30, 8, 8))
    fixtures.write_glove(folder / "glove.txt")
    (folder / "raw").mkdir()
    (folder / "raw" / "news.txt").write_text(RAW * 6)
    return folder


@pytest.fixture(scope="module")
def preprocessed(conll_folder, tmp_path_factory) -> tuple[dict, dict[str, bytes]]:
    out = tmp_path_factory.mktemp("pre") / "out"
    stats = _preprocess(conll_folder, out)
    assert len(list(out.glob("train-*-of-*.tfrecord"))) > 3
    return stats, {
        str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_preprocess_gives_the_same_bytes_on_dask(
    conll_folder, preprocessed, tmp_path, dask_cluster
):
    stats, expected = preprocessed
    again = _preprocess(
        conll_folder, tmp_path / "out", *DASK, f"--dask_client_address={dask_cluster.address}"
    )
    assert again == stats
    found = _tree(tmp_path / "out")
    info = [json.loads(found.pop("preprocess.json")), json.loads(expected["preprocess.json"])]
    assert found == {k: v for k, v in expected.items() if k != "preprocess.json"}
    assert info[0] == info[1]


def test_preprocess_on_s3(conll_folder, preprocessed, s3_server):
    stats, expected = preprocessed
    bucket = s3_server.make_bucket("etagger-preprocess")
    _upload(s3_server, conll_folder, f"{bucket}/data")
    again = _preprocess(f"{bucket}/data", f"{bucket}/out", *s3_server.beam_args)
    assert again == stats
    found = _download(s3_server, f"{bucket}/out")
    assert {k: v for k, v in found.items() if k != "preprocess.json"} == {
        k: v for k, v in expected.items() if k != "preprocess.json"
    }
    assert not fsutil.match(f"{bucket}/.out.staging/*", allow_empty=True)


def test_run_job_on_s3_tags_only_what_is_missing(inputs, s3_server, tmp_path):
    from etagger.jobs import run_job

    bucket = s3_server.make_bucket("etagger-job")
    _upload(s3_server, inputs, f"{bucket}/corpus")
    job = tmp_path / "job.yaml"
    job.write_text(
        json.dumps(
            {
                "name": "s3job",
                "model": MODEL,
                "inputs": [f"{bucket}/corpus/*.txt"],
                "output": f"{bucket}/out",
                "format": "jsonl",
                "pipeline_options": s3_server.beam_args,
            }
        )
    )
    sources = [f"{bucket}/corpus/gold.txt", f"{bucket}/corpus/raw.txt"]
    assert run_job(job) == {"tagged": sources, "skipped": []}
    first = _download(s3_server, f"{bucket}/out")
    assert run_job(job) == {"tagged": [], "skipped": sources}
    # As if killed after moving raw.txt's outputs, before recording them, with staging left over.
    manifest = json.loads(first["manifest.json"])
    del manifest["files"][sources[1]]
    client = s3_server.client()
    client.put_object(
        Bucket="etagger-job", Key="out/manifest.json", Body=json.dumps(manifest).encode()
    )
    client.put_object(
        Bucket="etagger-job", Key="out/.staging/raw.txt-00000-of-00002.jsonl", Body=b"half"
    )
    assert run_job(job) == {"tagged": sources[1:], "skipped": sources[:1]}
    again = _download(s3_server, f"{bucket}/out")

    def timing(tree):  # the per-file timing figures: wall times differ
        return {k for k in tree if k.startswith("timing/")}

    assert {k: v for k, v in again.items() if k not in timing(again)} == {
        k: v for k, v in first.items() if k not in timing(first)
    }
    assert timing(again) == timing(first)


def _augment(inputs: Path | str, output: Path | str, *beam_args: str) -> dict:
    args = ["--input", f"{inputs}/gold.txt", "--output", str(output), "--copies", "2"]
    args += ["--mentions-from", f"{inputs}/tagged.conll"]
    return augment.run([*args, "--range-bytes", RANGE_BYTES, *beam_args])


@pytest.fixture(scope="module")
def augmented(inputs, tmp_path_factory) -> tuple[dict, bytes]:
    out = tmp_path_factory.mktemp("augment") / "train.txt"
    stats = _augment(inputs, out)
    assert len(stats["mentions_from"]) == 1
    return stats, out.read_bytes()


def test_augment_gives_the_same_bytes_on_dask(inputs, augmented, tmp_path, dask_cluster):
    stats, expected = augmented
    out = tmp_path / "train.txt"
    again = _augment(inputs, out, *DASK, f"--dask_client_address={dask_cluster.address}")
    assert {**again, "output": None} == {**stats, "output": None}
    assert out.read_bytes() == expected


def test_augment_on_s3(inputs, augmented, s3_server):
    stats, expected = augmented
    bucket = s3_server.make_bucket("etagger-augment")
    _upload(s3_server, inputs, f"{bucket}/in")
    again = _augment(f"{bucket}/in", f"{bucket}/out/train.txt", *s3_server.beam_args)
    assert again["replaced"] == stats["replaced"] and again["sentences"] == stats["sentences"]
    assert again["pool"] == stats["pool"]
    assert _download(s3_server, f"{bucket}/out") == {"train.txt": expected}
