"""Throw-away local services for tests: a Dask cluster, an S3 server and a Beam job service.

Every service runs as child processes bound to 127.0.0.1 on free ports, is started and
stopped by a context manager, and leaves no process behind: each child is the leader of its
own process group, and teardown signals whole groups (SIGTERM, then SIGKILL).

Children run with the current interpreter's bin directory first on PATH and the repository
root first on PYTHONPATH, with cwd at the repository root, so that they import the same
packages as the tests, including classes defined in ``tests.*`` (cloudpickle pickles those by
reference, so remote workers must be able to import them).

Run as ``python -m tests.services --loopback MODULE ARGS...`` it executes ``python -m MODULE
ARGS...`` with gRPC servers that would bind every interface ("[::]") bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
# Credentials the S3 server accepts (moto accepts any); also exported to os.environ.
S3_KEY = "testing"
S3_REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """os.environ with the venv's bin first on PATH and the repo root first on PYTHONPATH."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def port_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


class ProcessGroup:
    """Child processes, each leading its own process group, with their logs in one folder."""

    def __init__(self, name: str) -> None:
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"etagger-{name}-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, label: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Starts argv in a new session, stdout and stderr going to <log_dir>/<label>.log."""
        with open(self.log_dir / f"{label}.log", "wb") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO_ROOT,
                env=dict(env or child_env()),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def logs(self, tail: int = 3000) -> str:
        """The end of every child's log, for error messages."""
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )

    def check_alive(self) -> None:
        """Raises if any child has exited."""
        dead = [p.args for p in self.procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"service process exited early: {dead}\n{self.logs()}")

    def wait_for_ports(self, ports: Sequence[int], timeout: float = 60.0) -> None:
        """Waits until every port accepts connections, failing fast if a child dies."""
        deadline = time.monotonic() + timeout
        while not all(port_open(p) for p in ports):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"ports {list(ports)} not open after {timeout}s\n{self.logs()}")
            time.sleep(0.1)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERMs every group, waits up to `grace` seconds, SIGKILLs what is left."""
        for proc in reversed(self.procs):
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        # Always, even when the leaders exited: their children (dask's spawned worker, Beam's
        # SDK harnesses) share the group. Linux never reuses a pid still in use as a pgid.
        for proc in self.procs:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(self.log_dir, ignore_errors=True)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --------------------------------------------------------------------------- Dask


@dataclass
class DaskCluster:
    """A running scheduler with `workers` single-threaded worker processes under nannies."""

    address: str
    workers: int
    client: Any  # distributed.Client, kept for inspecting the cluster
    processes: ProcessGroup

    def _pids_by_name(self) -> dict[str, int]:
        names = {
            addr: str(info["name"])
            for addr, info in self.client.scheduler_info(n_workers=-1)["workers"].items()
        }
        # A worker that just died may still be listed; skip it rather than fail.
        pids = self.client.run(os.getpid, on_error="ignore")
        return {names[addr]: pid for addr, pid in pids.items() if addr in names}

    @property
    def worker_pids(self) -> list[int]:
        """OS pids of the task-running worker processes (not their nannies), by index.

        Missing workers (e.g. just killed, not yet restarted) are left out.
        """
        pids = self._pids_by_name()
        return [pids[f"worker-{i}"] for i in range(self.workers) if f"worker-{i}" in pids]

    def kill_worker(self, i: int, wait: bool = True) -> int:
        """SIGKILLs worker i; returns its pid. With `wait`, returns once the nanny's restarted
        worker-i (a new pid) has rejoined the scheduler."""
        pid = self._pids_by_name()[f"worker-{i}"]
        os.kill(pid, signal.SIGKILL)
        if wait:
            self.wait_for_workers(exclude_pids={pid})
        return pid

    def wait_for_workers(
        self, timeout: float = 60.0, exclude_pids: frozenset[int] | set[int] = frozenset()
    ) -> None:
        """Waits until worker-0 … worker-(N-1) all answer, none with a pid in exclude_pids."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self._pids_by_name()
            names = {f"worker-{i}" for i in range(self.workers)}
            if names <= pids.keys() and not exclude_pids & {pids[n] for n in names}:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.workers} workers not back after {timeout}s: {pids}")
            time.sleep(0.2)


@contextlib.contextmanager
def dask_cluster(
    workers: int = 2, memory_limit: str = "auto", timeout: float = 90.0
) -> Iterator[DaskCluster]:
    """Starts `dask scheduler` and `workers` × `dask worker --nthreads 1 --nworkers 1`.

    Workers run under a nanny so that a SIGKILLed worker is restarted (with a new pid) and the
    scheduler reschedules its tasks; `worker_pids` are the task-running processes, asked of the
    workers themselves. Worker i is named "worker-i". No dashboards.
    """
    from distributed import Client

    port = free_port()
    address = f"tcp://{HOST}:{port}"
    group = ProcessGroup("dask")
    client = None
    try:
        dask = str(VENV_BIN / "dask")
        group.start(
            "scheduler", [dask, "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"]
        )
        group.wait_for_ports([port], timeout)
        for i in range(workers):
            group.start(
                f"worker-{i}",
                [
                    dask,
                    "worker",
                    address,
                    "--host",
                    HOST,
                    "--name",
                    f"worker-{i}",
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--nanny",
                    "--no-dashboard",
                    "--memory-limit",
                    memory_limit,
                    "--death-timeout",
                    "60",
                    "--local-directory",
                    str(group.log_dir / f"worker-{i}"),
                ],
            )
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
            client.wait_for_workers(workers, timeout=timeout)
        except (OSError, TimeoutError) as error:
            raise RuntimeError(f"dask cluster did not start: {error}\n{group.logs()}") from error
        yield DaskCluster(address, workers, client, group)
    finally:
        if client is not None:
            client.close(timeout=10)
        group.stop()


# --------------------------------------------------------------------------- S3


@dataclass
class S3Server:
    """A moto S3 server and the Beam flags that point Beam's S3 filesystem at it."""

    endpoint_url: str
    beam_args: list[str] = field(default_factory=list)

    def client(self) -> Any:
        """A boto3 S3 client for the server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=S3_REGION,
            aws_access_key_id=S3_KEY,
            aws_secret_access_key=S3_KEY,
        )

    def make_bucket(self, name: str) -> str:
        """Creates bucket `name` (if missing); returns "s3://name"."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def reset(self) -> None:
        """Forgets every bucket and object."""
        urllib.request.urlopen(
            urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"), timeout=10
        ).close()


@contextlib.contextmanager
def s3_server(timeout: float = 60.0) -> Iterator[S3Server]:
    """Starts moto's standalone server and exports fake AWS credentials while it runs.

    AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY ("testing") and AWS_DEFAULT_REGION (us-east-1) are
    set in os.environ and restored on exit. The endpoint is deliberately not exported
    (AWS_ENDPOINT_URL_S3) so that code reaches the server only through `beam_args`.
    """
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    group = ProcessGroup("moto")
    exported = {
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_KEY,
        "AWS_DEFAULT_REGION": S3_REGION,
    }
    saved = {k: os.environ.get(k) for k in exported}
    try:
        group.start("moto", [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)])
        _wait_for_http(endpoint, group, timeout)
        os.environ.update(exported)
        yield S3Server(
            endpoint,
            [
                f"--s3_endpoint_url={endpoint}",
                f"--s3_access_key_id={S3_KEY}",
                f"--s3_secret_access_key={S3_KEY}",
                f"--s3_region_name={S3_REGION}",
            ],
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        group.stop()


def _wait_for_http(url: str, group: ProcessGroup, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # It answered, if only with an error status.
        except OSError:
            group.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{url} not answering after {timeout}s\n{group.logs()}"
                ) from None
            time.sleep(0.1)


# --------------------------------------------------------------------------- Beam portable


@dataclass
class PortableRunner:
    """A local Beam job service plus an external worker pool, and the flags to use them."""

    job_port: int
    pool_port: int
    processes: ProcessGroup
    beam_args: list[str] = field(default_factory=list)


@contextlib.contextmanager
def portable_runner(timeout: float = 60.0) -> Iterator[PortableRunner]:
    """Starts Beam's local job service and worker pool (SDK workers as `python` subprocesses).

    Both run through this module's --loopback launcher, because Beam binds the pool and the
    job service's control/data/state/logging servers to "[::]" (every interface).
    """
    job_port, pool_port = free_port(), free_port()
    group = ProcessGroup("beam")
    loopback = [sys.executable, "-m", "tests.services", "--loopback"]
    try:
        group.start(
            "job_service",
            [
                *loopback,
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(job_port),
                "--staging_dir",
                str(group.log_dir / "staging"),
            ],
        )
        group.start(
            "worker_pool",
            [
                *loopback,
                "apache_beam.runners.worker.worker_pool_main",
                "--service_port",
                str(pool_port),
            ],
        )
        group.wait_for_ports([job_port, pool_port], timeout)
        yield PortableRunner(
            job_port,
            pool_port,
            group,
            [
                "--runner=PortableRunner",
                f"--job_endpoint=localhost:{job_port}",
                "--environment_type=EXTERNAL",
                f"--environment_config=localhost:{pool_port}",
            ],
        )
    finally:
        group.stop()


def _run_on_loopback(argv: list[str]) -> None:
    """Runs module argv[0] as __main__ with argv[1:], its "[::]" gRPC binds on 127.0.0.1."""
    import runpy

    import grpc

    make_server = grpc.server

    def loopback_server(*args: Any, **kwargs: Any) -> Any:
        server = make_server(*args, **kwargs)
        bind = server.add_insecure_port
        server.add_insecure_port = lambda address: bind(address.replace("[::]", HOST, 1))
        return server

    grpc.server = loopback_server
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--loopback"] or len(sys.argv) < 3:
        sys.exit("usage: python -m tests.services --loopback MODULE [ARGS...]")
    _run_on_loopback(sys.argv[2:])
