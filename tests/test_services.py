"""Smoke tests of the local test services, recording what Beam really does on them.

Each test names the fact it checks. DoFns live at module level so that remote workers (Dask
workers, SDK harnesses) import them from ``tests.test_services`` by reference.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options
from apache_beam.runners.runner import PipelineResult
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from tests.services import DaskCluster, PortableRunner, S3Server

pytestmark = pytest.mark.services


# --------------------------------------------------------------------------- DoFns


def _job_name() -> str | None:
    """The --job_name of the options Beam's FileSystems hold in this process, if any."""
    options = FileSystems._pipeline_options
    return options.get_all_options().get("job_name") if options else None


class WriteOnePerElement(beam.DoFn):
    """Writes <folder>/<element>.<pid>.<uuid> holding the job name FileSystems sees; yields
    the pid. The uuid makes a re-run of an element visible as a second file."""

    def __init__(self, folder: str, seconds: float = 0.0, options: list[str] | None = None):
        self.folder = folder
        self.seconds = seconds
        self.options = options

    def setup(self) -> None:
        if self.options is not None:
            # Workers that do not receive the pipeline options (Dask) need them for s3://.
            FileSystems.set_options(PipelineOptions(self.options))

    def process(self, element: Any) -> Iterator[int]:
        path = FileSystems.join(self.folder, f"{element}.{os.getpid()}.{uuid.uuid4().hex}")
        with FileSystems.create(path) as f:
            f.write(str(_job_name()).encode())
        time.sleep(self.seconds)
        yield os.getpid()


class RecordLifecycle(beam.DoFn):
    """Passes elements through, marks each lifecycle call with a file, and emits one extra
    element from finish_bundle."""

    def __init__(self, folder: str):
        self.folder = folder

    def _mark(self, call: str) -> None:
        Path(self.folder, f"{call}.{os.getpid()}.{uuid.uuid4().hex}").touch()

    def setup(self) -> None:
        self._mark("setup")

    def start_bundle(self) -> None:
        self._mark("start_bundle")

    def process(self, element: Any) -> Iterator[Any]:
        yield element

    def finish_bundle(self) -> Iterator[WindowedValue]:
        self._mark("finish_bundle")
        yield WindowedValue("from_finish_bundle", 0, [GlobalWindow()])

    def teardown(self) -> None:
        self._mark("teardown")


def written(folder: str) -> list[tuple[str, int]]:
    """(element, pid) of every file WriteOnePerElement wrote into folder, local or s3://."""
    records = []
    for meta in FileSystems.match([FileSystems.join(folder, "*")])[0].metadata_list:
        element, pid, _ = FileSystems.split(meta.path)[1].rsplit(".", 2)
        records.append((element, int(pid)))
    return sorted(records)


def calls(folder: Path) -> Counter[str]:
    """How many times each DoFn method marked by RecordLifecycle ran."""
    return Counter(p.name.split(".")[0] for p in folder.iterdir())


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def keep_filesystems_options() -> Iterator[None]:
    """Restores the process-wide FileSystems options, which tests and Pipeline() change."""
    saved = FileSystems._pipeline_options
    yield
    FileSystems._pipeline_options = saved


# --------------------------------------------------------------------------- Dask


def dask_pipeline(cluster: DaskCluster, *flags: str) -> beam.Pipeline:
    from apache_beam.runners.dask.dask_runner import DaskRunner

    return beam.Pipeline(
        runner=DaskRunner(),
        options=PipelineOptions(["--dask_client_address", cluster.address, *flags]),
    )


def finish(result: PipelineResult) -> str:
    """Waits for a DaskRunner result and closes the Client the runner opened (it never does;
    left open, it outlives the scheduler and logs reconnection errors)."""
    try:
        return result.wait_until_finish()
    finally:
        result.client.close()


def test_dask_partition_size_1_spreads_elements_over_both_worker_processes(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    p = dask_pipeline(dask_cluster, "--dask_partition_size=1")
    _ = (
        p
        | beam.Create(list(range(8)))
        | beam.Reshuffle()
        | beam.ParDo(WriteOnePerElement(str(tmp_path)))
    )
    assert finish(p.run()) == "DONE"

    records = written(str(tmp_path))
    assert [e for e, _ in records] == [str(i) for i in range(8)]
    assert {pid for _, pid in records} == set(dask_cluster.worker_pids)


def test_dask_default_partitioning_and_reshuffle_keep_a_small_input_on_one_worker(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    # Create makes partitions of >= 128 elements by default; Reshuffle is replaced by a no-op.
    p = dask_pipeline(dask_cluster)
    _ = (
        p
        | beam.Create(list(range(8)))
        | beam.Reshuffle()
        | beam.ParDo(WriteOnePerElement(str(tmp_path)))
    )
    assert finish(p.run()) == "DONE"

    records = written(str(tmp_path))
    assert len(records) == 8
    assert len({pid for _, pid in records}) == 1


def test_dask_drops_finish_bundle_outputs_and_runs_the_lifecycle_once_per_partition(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    marks, out = tmp_path / "marks", tmp_path / "out"
    marks.mkdir()
    out.mkdir()
    p = dask_pipeline(dask_cluster, "--dask_partition_size=2")
    _ = (
        p
        | beam.Create(list(range(6)))
        | beam.ParDo(RecordLifecycle(str(marks)))
        | beam.ParDo(WriteOnePerElement(str(out)))
    )
    assert finish(p.run()) == "DONE"

    # 3 partitions: setup/start_bundle/finish_bundle/teardown once each per partition, and
    # finish_bundle runs, but what it emits never reaches the next step.
    assert calls(marks) == {"setup": 3, "start_bundle": 3, "finish_bundle": 3, "teardown": 3}
    assert [e for e, _ in written(str(out))] == [str(i) for i in range(6)]


def test_dask_runs_only_the_last_leaf_and_silently_drops_other_branches(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    first, last = tmp_path / "first", tmp_path / "last"
    first.mkdir()
    last.mkdir()
    p = dask_pipeline(dask_cluster)
    numbers = p | beam.Create(list(range(4)))
    _ = numbers | "First" >> beam.ParDo(WriteOnePerElement(str(first)))
    _ = numbers | "Last" >> beam.ParDo(WriteOnePerElement(str(last)))
    assert finish(p.run()) == "DONE"

    assert written(str(first)) == []
    assert len(written(str(last))) == 4


def test_dask_workers_do_not_receive_the_pipeline_options_for_filesystems(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    job = f"job-{uuid.uuid4().hex[:8]}"
    p = dask_pipeline(dask_cluster, "--dask_partition_size=1", f"--job_name={job}")
    _ = p | beam.Create(list(range(4))) | beam.ParDo(WriteOnePerElement(str(tmp_path)))
    assert finish(p.run()) == "DONE"

    seen = {path.read_text() for path in tmp_path.iterdir()}
    assert len(seen) >= 1 and job not in seen


def test_dask_workers_write_s3_once_setup_sets_filesystems_options(
    dask_cluster: DaskCluster, s3_server: S3Server
) -> None:
    bucket = s3_server.make_bucket(f"dask-{uuid.uuid4().hex[:12]}")
    p = dask_pipeline(dask_cluster, "--dask_partition_size=1", *s3_server.beam_args)
    _ = (
        p
        | beam.Create(list(range(4)))
        | beam.ParDo(WriteOnePerElement(f"{bucket}/out", options=s3_server.beam_args))
    )
    assert finish(p.run()) == "DONE"

    FileSystems.set_options(PipelineOptions(s3_server.beam_args))
    assert [e for e, _ in written(f"{bucket}/out")] == ["0", "1", "2", "3"]


def test_dask_survives_sigkill_of_a_worker_by_rerunning_its_tasks(
    dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    victim = dask_cluster.worker_pids[0]
    p = dask_pipeline(dask_cluster, "--dask_partition_size=1")
    _ = p | beam.Create(list(range(8))) | beam.ParDo(WriteOnePerElement(str(tmp_path), seconds=1.0))
    result = p.run()
    try:
        wait_until(lambda: any(pid == victim for _, pid in written(str(tmp_path))))
        dask_cluster.kill_worker(0)  # Returns once the nanny's replacement has joined.
        assert result.wait_until_finish() == "DONE"
    finally:
        result.client.close()

    records = written(str(tmp_path))
    runs = Counter(e for e, _ in records)
    assert set(runs) == {str(i) for i in range(8)}
    # At-least-once: what the victim had started (or finished; its results died with it)
    # ran again elsewhere, side effects included.
    assert all(runs[e] >= 2 for e, pid in records if pid == victim)
    assert victim not in dask_cluster.worker_pids


# --------------------------------------------------------------------------- S3


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket, with Beam's FileSystems in this process pointed at the server."""
    FileSystems.set_options(PipelineOptions(s3_server.beam_args))
    return s3_server.make_bucket(f"test-{uuid.uuid4().hex[:12]}")


def put(path: str, data: bytes) -> None:
    with FileSystems.create(path) as f:
        f.write(data)


def test_s3_create_open_seek_exists_and_errors(bucket: str) -> None:
    put(f"{bucket}/dir/a.txt", b"0123456789")
    put(f"{bucket}/big.bin", big := os.urandom(9 << 20))  # Several multipart-upload parts.

    with FileSystems.open(f"{bucket}/dir/a.txt") as f:
        f.seek(3)
        assert (f.read(4), f.tell()) == (b"3456", 7)
    with FileSystems.open(f"{bucket}/big.bin") as f:
        assert f.read() == big
    assert FileSystems.exists(f"{bucket}/dir/a.txt")
    # A "folder" is only a key prefix: it does not exist as such.
    assert not FileSystems.exists(f"{bucket}/dir/")
    assert not FileSystems.exists(f"{bucket}/dir")
    assert not FileSystems.exists("s3://no-such-bucket-here/a.txt")
    with pytest.raises(FileNotFoundError):
        FileSystems.open(f"{bucket}/missing.txt")
    with pytest.raises(Exception, match="NoSuchBucket"):
        put("s3://no-such-bucket-here/a.txt", b"x")


def test_s3_match_star_stays_in_one_level_and_double_star_recurses(bucket: str) -> None:
    put(f"{bucket}/dir/a.txt", b"0123456789")
    put(f"{bucket}/dir/b.txt", b"abc")
    put(f"{bucket}/dir/sub/c.txt", b"nested")
    put(f"{bucket}/dir.txt", b"x")
    put(f"{bucket}/d.gz", b"compressed by extension")

    def match(pattern: str) -> list[tuple[str, int]]:
        found = FileSystems.match([f"{bucket}/{pattern}"])[0].metadata_list
        return sorted((m.path[len(bucket) + 1 :], m.size_in_bytes) for m in found)

    assert match("dir/*") == [("dir/a.txt", 10), ("dir/b.txt", 3)]
    assert match("dir/**") == [("dir/a.txt", 10), ("dir/b.txt", 3), ("dir/sub/c.txt", 6)]
    # Without a glob: a trailing slash lists one level, no slash matches only that key.
    assert match("dir/") == [("dir/a.txt", 10), ("dir/b.txt", 3)]
    assert match("dir") == []
    assert match("nothing/*") == []
    # A .gz name is gzipped on create and gunzipped on open; sizes are the stored bytes.
    assert dict(match("*"))["d.gz"] != len(b"compressed by extension")
    with FileSystems.open(f"{bucket}/d.gz") as f:
        assert f.read() == b"compressed by extension"


def test_s3_rename_moves_files_but_not_folders_and_delete_needs_a_slash(bucket: str) -> None:
    put(f"{bucket}/dir/a.txt", b"a")
    put(f"{bucket}/dir/sub/b.txt", b"b")

    FileSystems.rename([f"{bucket}/dir/a.txt"], [f"{bucket}/moved/a.txt"])
    assert not FileSystems.exists(f"{bucket}/dir/a.txt")
    assert FileSystems.exists(f"{bucket}/moved/a.txt")
    with pytest.raises(ValueError, match="Cannot rename a directory"):
        FileSystems.rename([f"{bucket}/dir/"], [f"{bucket}/elsewhere/"])
    with pytest.raises(BeamIOError):  # No object "dir": a 404.
        FileSystems.rename([f"{bucket}/dir"], [f"{bucket}/elsewhere"])

    # copy, unlike rename, takes a folder/ and copies the whole tree.
    FileSystems.copy([f"{bucket}/dir/"], [f"{bucket}/copy/"])
    assert FileSystems.exists(f"{bucket}/copy/sub/b.txt")

    FileSystems.delete([f"{bucket}/missing.txt"])  # Silently nothing.
    FileSystems.delete([f"{bucket}/dir"])  # No slash: silently nothing either.
    assert FileSystems.exists(f"{bucket}/dir/sub/b.txt")
    FileSystems.delete([f"{bucket}/dir/"])  # Trailing slash: everything under the prefix.
    assert not FileSystems.exists(f"{bucket}/dir/sub/b.txt")


def test_constructing_any_pipeline_replaces_the_process_wide_filesystems_options(
    s3_server: S3Server,
) -> None:
    FileSystems.set_options(PipelineOptions(s3_server.beam_args))
    beam.Pipeline(options=PipelineOptions([]))
    assert FileSystems._pipeline_options.view_as(S3Options).s3_endpoint_url is None


@pytest.mark.parametrize(
    "mode",
    [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]],
    ids=["in_memory", "multi_processing"],
)
def test_direct_runner_workers_use_s3_through_the_beam_args(
    s3_server: S3Server, bucket: str, mode: list[str]
) -> None:
    FileSystems._pipeline_options = None  # Workers must get the options from the pipeline.
    job = f"job-{uuid.uuid4().hex[:8]}"
    args = [*s3_server.beam_args, "--runner=DirectRunner", f"--job_name={job}", *mode]
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        numbers = p | beam.Create(list(range(4)))
        _ = numbers | beam.ParDo(WriteOnePerElement(f"{bucket}/out"))
        _ = numbers | beam.Map(str) | beam.io.WriteToText(f"{bucket}/text/part", ".txt")

    FileSystems.set_options(PipelineOptions(s3_server.beam_args))
    assert [e for e, _ in written(f"{bucket}/out")] == ["0", "1", "2", "3"]
    for meta in FileSystems.match([f"{bucket}/out/*"])[0].metadata_list:
        with FileSystems.open(meta.path) as f:
            assert f.read().decode() == job
    lines = []
    for meta in FileSystems.match([f"{bucket}/text/*.txt"])[0].metadata_list:
        with FileSystems.open(meta.path) as f:
            lines += f.read().decode().split()
    assert sorted(lines) == ["0", "1", "2", "3"]
    # WriteToText's temporary folder is gone.
    assert [
        m.path for m in FileSystems.match([f"{bucket}/**"])[0].metadata_list if "temp" in m.path
    ] == []


# --------------------------------------------------------------------------- Portable


def test_portable_runner_runs_on_the_external_worker_pool_without_filesystems_options(
    portable_runner: PortableRunner, tmp_path: Path
) -> None:
    job = f"job-{uuid.uuid4().hex[:8]}"
    with beam.Pipeline(
        options=PipelineOptions([*portable_runner.beam_args, f"--job_name={job}"])
    ) as p:
        _ = p | beam.Create(list(range(4))) | beam.ParDo(WriteOnePerElement(str(tmp_path)))

    records = written(str(tmp_path))
    assert [e for e, _ in records] == ["0", "1", "2", "3"]
    # Run by an SDK harness subprocess of the pool, not by this process or the services.
    service_pids = {proc.pid for proc in portable_runner.processes.procs}
    assert not {pid for _, pid in records} & {os.getpid(), *service_pids}
    # The pool starts SdkHarness directly (not sdk_worker_main): no options for s3:// etc.
    assert {path.read_text() for path in tmp_path.iterdir()} == {"None"}
