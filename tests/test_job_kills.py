"""`run-job` killed with SIGKILL at random points, on disk events or at a random time, then
resumed: every kill leaves the job's output folder with no half-written output (each output
is the finished file byte for byte or absent) and a manifest that lists only files whose
outputs are all in place, and the last rerun ends with exactly the tree of a job never
killed: nothing lost, nothing duplicated, no temporary file left (a kill inside the
manifest's own atomic write leaves one, which the rerun removes).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from etagger import jobs
from tests.fixtures import MODEL, ROOT
from tests.fixtures import RAW_NEWS as RAW

SEED = 20240611
STAGING = jobs.STAGING
MANIFEST = jobs.MANIFEST
# fsutil._temporary_name: ".<final name>.<uuid4 hex>.tmp", next to the final name.
TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{32}\.tmp$")
# Timing figures that are the same in every run of one input (the rest are wall times).
STABLE_TIMING = ("inputs", "files", "format", "sentences", "tokens", "entities", "ranges")
DEADLINE = 300  # seconds; only reached when something hangs

# Runs cli.py with a SIGKILL of its whole process group injected at one exact point, named
# by ETAGGER_TEST_KILL: "moved:<input>" right after that input's outputs were moved into
# place (before the manifest records them), "manifest:<n>" during the n-th manifest write,
# its temporary file written but not yet renamed.
KILLING_CLI = """\
import os, runpy, signal, sys

sys.path.insert(0, {root!r})
from etagger import fsutil, jobs

where, _, what = os.environ["ETAGGER_TEST_KILL"].partition(":")


def kill():
    os.killpg(os.getpgid(0), signal.SIGKILL)


move_outputs = jobs._move_outputs


def move_then_kill(staging, output, source):
    names = move_outputs(staging, output, source)
    if where == "moved" and source == what:
        kill()
    return names


manifest_writes = 0
write_bytes = fsutil.write_bytes


def write_bytes_or_kill(path, data):
    global manifest_writes
    if path.endswith("/" + jobs.MANIFEST):
        manifest_writes += 1
        if where == "manifest" and manifest_writes == int(what):
            with fsutil.atomic_write(path, "wb") as f:
                f.write(data)
                f.flush()
                kill()
    write_bytes(path, data)


jobs._move_outputs = move_then_kill
fsutil.write_bytes = write_bytes_or_kill
sys.argv = [{cli!r}, *sys.argv[1:]]
runpy.run_path({cli!r}, run_name="__main__")
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    """``cli.py ARGS``, which must succeed; its error output is in the failure's message."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT
    )
    if run.returncode:
        pytest.fail(f"cli.py {' '.join(args)} exited {run.returncode}:\n{run.stderr[-4000:]}")
    return run


def write_job(tmp_path: Path, name: str) -> Path:
    """A job over four small raw-text files (the same corpus for every job name)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for i in range(4):
        (corpus / f"part-{i}.txt").write_text(RAW * (i + 1))
    job = tmp_path / f"{name}.yaml"
    job.write_text(
        f"name: {name}\nmodel: {MODEL}\ninputs: [corpus/*.txt]\noutput: {name}-out\nformat: jsonl\n"
    )
    return job


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` but the per-file timing figures (wall times differ)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.parent.name != "timing"
    }


def timing(path: Path) -> dict:
    """The figures of a timing file that do not depend on the run's speed."""
    figures = json.loads(path.read_text())
    return {k: figures[k] for k in STABLE_TIMING}


def manifest_files(out: Path) -> dict:
    """The manifest's "files" (input -> sha256 and outputs), {} when there is none yet."""
    path = out / MANIFEST
    return json.loads(path.read_text())["files"] if path.exists() else {}


def snapshot(out: Path) -> dict[str, int]:
    """Each file of the output folder outside the staging folder, with its inode: a file
    moved into place over an older one gets a new inode."""
    found = {}
    for p in out.rglob("*") if out.exists() else ():
        rel = str(p.relative_to(out))
        if not rel.startswith(STAGING) and p.is_file():
            found[rel] = p.stat().st_ino
    return found


@dataclass
class Expected:
    """The output of a job never killed."""

    files: dict[str, bytes]  # but the manifest and timing/*
    timing: dict[str, dict]  # timing/<input>.json -> its stable figures
    manifest: dict[str, dict]  # the manifest's "files"
    seconds: float  # the whole run, start-up to exit
    active: tuple[float, float]  # when it tagged: first staging folder, last manifest write

    def source_of(self, name: str) -> str | None:
        return next((s for s, e in self.manifest.items() if name in e["outputs"]), None)

    def output_of(self, source: str) -> str:
        """The input's first output that is not its timing file."""
        return next(n for n in self.manifest[source]["outputs"] if not n.startswith("timing/"))


def launch(job: Path, env: dict | None = None, script: Path | None = None) -> subprocess.Popen:
    """``run-job`` (through ``script`` when given) as the leader of its own process group,
    so that a kill takes Beam's and TensorFlow's threads and any child with it."""
    return subprocess.Popen(
        [sys.executable, str(script or ROOT / "cli.py"), "run-job", str(job)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def wait_until(proc: subprocess.Popen, condition, pause: float = 0.001) -> bool:
    """Polls ``condition`` (``pause`` 0: without sleeping) until it holds (True) or the
    process has exited (False)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if proc.poll() is not None:
            return False
        assert time.monotonic() < deadline, "run-job hangs"
        if pause:
            time.sleep(pause)
    return True


def run_whole(tmp_path: Path) -> Expected:
    """Runs the job once, unkilled, watching when it starts and stops tagging."""
    job = write_job(tmp_path, "whole")
    out = tmp_path / "whole-out"
    start = time.monotonic()
    proc = launch(job)
    first_staging = last_manifest = None
    manifest_mtime = None
    while proc.poll() is None:
        now = time.monotonic() - start
        if first_staging is None and (out / STAGING).exists():
            first_staging = now
        try:
            mtime = (out / MANIFEST).stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != manifest_mtime:
            manifest_mtime, last_manifest = mtime, now
        assert now < DEADLINE, "run-job hangs"
        time.sleep(0.002)
    seconds = time.monotonic() - start
    assert proc.returncode == 0
    files = tree(out)
    manifest = json.loads(files.pop(MANIFEST))["files"]
    assert len(manifest) == 4
    rerun = json.loads(cli("run-job", str(job)).stdout)  # idempotent: a finished job skips all
    assert rerun["tagged"] == [] and len(rerun["skipped"]) == 4
    assert tree(out) == {**files, MANIFEST: (out / MANIFEST).read_bytes()}
    return Expected(
        files=files,
        timing={
            str(p.relative_to(out)): timing(p) for p in sorted((out / "timing").glob("*.json"))
        },
        manifest=manifest,
        seconds=seconds,
        active=(first_staging or 0.0, last_manifest or seconds),
    )


def check_on_disk(out: Path, expected: Expected) -> dict:
    """The invariants a kill must keep; returns the manifest's "files"."""
    for path in sorted(out.rglob("*")) if out.exists() else ():
        rel = str(path.relative_to(out))
        if rel.startswith(STAGING) or not path.is_file() or rel == MANIFEST:
            continue  # the staging folder is scratch: the next run deletes it first
        temporary = TEMPORARY.match(path.name)
        if temporary:
            # Outputs are only renamed into place; the manifest alone is written here, and a
            # kill may catch its temporary file before the rename.
            assert path.parent == out and temporary["name"] == MANIFEST, f"stray temporary {rel}"
        elif rel.startswith("timing/"):
            assert rel in expected.timing, f"unexpected {rel}"
            assert timing(path) == expected.timing[rel], f"{rel} is not the finished figures"
        else:
            assert rel in expected.files, f"unexpected file {rel}"
            assert path.read_bytes() == expected.files[rel], f"{rel} is half-written"
    recorded = manifest_files(out)  # parses: it is never seen half-written
    for source, entry in recorded.items():
        assert entry == expected.manifest[source], f"manifest entry for {source} is wrong"
        missing = [n for n in entry["outputs"] if not (out / n).is_file()]
        assert not missing, f"manifest records {source}, but {missing} are not there"
    return recorded


def phase_of(out: Path, before: dict[str, int], manifest_before: dict, expected: Expected) -> str:
    """Where the kill landed, read from the disk: ``before`` is the folder at launch."""
    after = snapshot(out)
    recorded = manifest_files(out)
    if any(TEMPORARY.match(rel) and rel not in before for rel in after):
        return "manifest write (temporary written, not renamed)"
    moved = [
        rel
        for rel, inode in after.items()
        if before.get(rel) != inode
        and rel != MANIFEST
        and not TEMPORARY.match(rel)
        and expected.source_of(rel) not in recorded
    ]
    staging = out / STAGING
    staged = [p for p in staging.glob("*") if p.is_file()] if staging.exists() else []
    if moved:
        if staged:
            return "moving outputs into place"
        return "outputs moved, not yet in the manifest"
    if staged:  # its work folder may still be there: it is deleted after the publish
        return "tag-corpus published into staging, not yet moved"
    from pipelines.tag_corpus import WORK_DIR  # lazily: it loads TensorFlow

    if (staging / WORK_DIR).exists():
        return "tag-corpus writing parts"
    if len(recorded) == len(expected.manifest):
        return "after the last file (exit)"
    # tag-corpus makes no file before its first part: reading and tagging leave no trace.
    if recorded != manifest_before:
        return "no staging folder: tagging a later input, or between inputs"
    return "no staging folder: start-up, or tagging the first input"


def kill_when(kind: str, proc, out: Path, target: str, expected: Expected, rng) -> str:
    """Waits for the moment ``kind`` names, then SIGKILLs the process group; says what it
    aimed at. ``target`` is an input not yet recorded: the disk triggers wait until every
    input before it is recorded, so that the staging folder they watch is ``target``'s."""
    start = time.monotonic()
    pending = sorted(set(expected.manifest) - set(manifest_files(out)))
    earlier = pending[: pending.index(target)]

    def target_is_next() -> bool:
        return all(s in manifest_files(out) for s in earlier)

    def staging_is_targets() -> bool:
        return target_is_next() and (out / STAGING).exists()

    if kind == "time":  # anywhere from start-up to exit
        delay = rng.uniform(0, expected.seconds)
        aim = f"at {delay:.2f} s of {expected.seconds:.1f}"
        reached = wait_until(proc, lambda: time.monotonic() - start >= delay, 0.005)
    elif kind == "active":  # while tagging: from the first staging folder, as long as the
        # whole run tagged for, cut to the inputs left (start-up time varies with the load)
        first, last = expected.active
        delay = rng.uniform(0, (last - first) * len(pending) / len(expected.manifest))
        aim = f"{delay:.3f} s after the first staging folder appeared"
        reached = wait_until(proc, (out / STAGING).exists) and sleep_while_alive(proc, delay)
    elif kind == "parts":  # tag-corpus writing its parts (the first one makes the staging
        # folder), publishing, or the move
        delay = rng.uniform(0, 0.004)
        aim = f"{delay * 1000:.1f} ms after {target}'s staging folder appeared"
        reached = wait_until(proc, staging_is_targets) and sleep_while_alive(proc, delay)
    elif kind == "staged":  # publish done in staging: writing timing.json, moving out
        delay = rng.uniform(0, 0.002)
        name = expected.output_of(target)
        aim = f"{delay * 1000:.1f} ms after {name} was published into staging"
        reached = wait_until(proc, staging_is_targets) and wait_until(
            proc, lambda: (out / STAGING / name).exists(), 0
        )
        reached = reached and sleep_while_alive(proc, delay)
    else:  # "moved": the window between moving outputs into place and the manifest
        delay = rng.uniform(0, 0.0004)  # the window lasts well under a millisecond
        name = expected.output_of(target)
        aim = f"{delay * 1000:.2f} ms after {name} was moved into place"
        old = inode(out / name)
        reached = wait_until(proc, staging_is_targets) and wait_until(
            proc, lambda: inode(out / name) not in (None, old), 0
        )
        reached = reached and sleep_while_alive(proc, delay)
    if reached:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return aim if reached else f"{aim}: missed, the job had finished"


def sleep_while_alive(proc: subprocess.Popen, seconds: float) -> bool:
    """Waits without sleeping (sleep() oversleeps by more than these windows last); False
    when the process exits first."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
    return proc.poll() is None


def inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def killing_cli(tmp_path: Path) -> Path:
    script = tmp_path / "killing_cli.py"
    script.write_text(KILLING_CLI.format(root=str(ROOT), cli=str(ROOT / "cli.py")))
    return script


def finish(job: Path, out: Path, expected: Expected) -> None:
    """Reruns the killed job to the end: it tags exactly what the manifest lacks, and ends
    with the unkilled job's tree."""
    recorded = check_on_disk(out, expected)
    result = json.loads(cli("run-job", str(job)).stdout)
    assert sorted(result["skipped"]) == sorted(recorded)
    assert sorted(result["tagged"]) == sorted(set(expected.manifest) - set(recorded))
    files = tree(out)
    assert json.loads(files.pop(MANIFEST))["files"] == expected.manifest
    assert files == expected.files  # nothing lost, nothing duplicated, no staging left
    timings = {str(p.relative_to(out)): timing(p) for p in (out / "timing").glob("*.json")}
    assert timings == expected.timing


# Kill points, in this order: any moment from start-up to exit on a fresh folder, then,
# resuming it, a random moment of the tagging, disk-driven ones (tag-corpus writing parts,
# its publish into staging, the move out of staging and the manifest write after it), and
# an exact kill injected right after a move (the window the random ones may miss). A folder
# a kill left complete is checked and replaced by a fresh one.
SCHEDULE = ("time", "active", "parts", "staged", "moved", "moved", "injected")


def test_job_killed_at_random_points_resumes_to_the_same_output(tmp_path):
    rng = random.Random(SEED)
    expected = run_whole(tmp_path)
    script = killing_cli(tmp_path)
    landed = []
    jobs_run: list[tuple[Path, Path]] = []
    for n, kind in enumerate(SCHEDULE):
        job, out = jobs_run[-1] if jobs_run else (None, None)
        if out is None or len(manifest_files(out)) == len(expected.manifest):
            if out is not None:
                finish(job, out, expected)  # a kill after the last file: already complete
            name = f"killed{len(jobs_run)}"
            job, out = write_job(tmp_path, name), tmp_path / f"{name}-out"
            jobs_run.append((job, out))
        recorded = manifest_files(out)
        pending = sorted(set(expected.manifest) - set(recorded))
        target = rng.choice(pending)
        before = snapshot(out)
        if kind == "injected":
            proc = launch(job, {"ETAGGER_TEST_KILL": f"moved:{target}"}, script)
            proc.wait()
            aim = f"in-process, right after moving {target}'s outputs"
            assert proc.returncode == -signal.SIGKILL
        else:
            proc = launch(job)
            aim = kill_when(kind, proc, out, target, expected, rng)
        phase = phase_of(out, before, recorded, expected)
        landed.append(f"kill {n} ({kind}, {aim}): {phase}")
        print(landed[-1])  # shown with -s, and on a failure
        check_on_disk(out, expected)
    finish(*jobs_run[-1], expected)
    # The injected kill at least lands in the window between the move and the manifest.
    assert "outputs moved, not yet in the manifest" in landed[-1], landed


def test_manifest_temporary_of_a_killed_run_is_removed(tmp_path):
    job = write_job(tmp_path, "killed")
    out = tmp_path / "killed-out"
    proc = launch(job, {"ETAGGER_TEST_KILL": "manifest:1"}, killing_cli(tmp_path))
    proc.wait()
    temporaries = [p.name for p in out.iterdir() if TEMPORARY.match(p.name)]
    if proc.returncode != -signal.SIGKILL or len(temporaries) != 1:
        pytest.fail(f"the kill during the manifest write misfired: {temporaries}")
    result = json.loads(cli("run-job", str(job)).stdout)
    if len(result["tagged"]) != 4 or len(manifest_files(out)) != 4:
        pytest.fail(f"the rerun did not finish the job: {result}")
    left = [p.name for p in out.iterdir() if TEMPORARY.match(p.name)]
    assert left == [], f"a rerun to completion leaves {left} in {out}"
