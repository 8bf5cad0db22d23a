"""Where the jobs of a comparison run: `local` (one after another on this machine, the default) or
`ray` (a Ray cluster: a local instance, or one joined with --ray-address).

On Ray every job is a task that trains in its own process with exactly the command the local engine
runs (harness.command). Nodes need not share a filesystem with the driver: the data travels through
Ray's object store, and a "sink" actor pinned to the driver's node receives each run directory after
every epoch and writes it into the comparison directory. A killed task or lost node is retried by
Ray from the last run directory the sink holds (its newest checkpoint), else from scratch; a rerun
of the same command skips finished jobs and resumes partial ones, as the local engine does.

Timing stays honest: a timed job reserves a whole node (the node's `fmnist_parity_slot` resource
where the cluster declares one, else all CPUs of the smallest node); `pack=True` lets jobs share
nodes (one CPU each) and the report says the timings are not comparable."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
from pathlib import Path

from compare import harness
from shared import config as cfg
from shared import data as fdata
from shared.atomic import atomic_write

ENGINES = ("local", "ray")
SLOT = "fmnist_parity_slot"  # custom resource: one per node = one timed job per node
ENGINE_FILE = "engine.json"  # in a run directory: where and how it ran
RETRIES = 3


class HarnessSignal(Exception):
    """A task whose training process was killed: Ray retries it (from the newest checkpoint)."""


def run_jobs(
    work: list[tuple[harness.Job, cfg.RunConfig]],
    data_dir: str,
    log,
    engine: str = "local",
    ray_address: str | None = None,
    pack: bool = False,
) -> None:
    if engine == "local":
        harness.run_local(work, data_dir, log)
    elif engine == "ray":
        run_ray(work, data_dir, log, ray_address, pack)
    else:
        raise harness.HarnessError(f"--engine {engine!r}: choose from {', '.join(ENGINES)}")


# ---------------------------------------------------------------- run directories as bytes


def pack_dir(d: Path) -> bytes:
    """A run directory as a tar (without its lock and temp files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(Path(d).rglob("*")):
            if p.is_file() and p.name != ".lock" and not p.name.endswith(".tmp"):
                tar.add(p, arcname=str(p.relative_to(d)))
    return buf.getvalue()


def unpack_dir(blob: bytes, d: Path) -> None:
    """Replace directory d by the tar's content: unpacked beside it, then swapped in by renames."""
    d = Path(d)
    incoming, old = d.with_name(f".{d.name}.incoming"), d.with_name(f".{d.name}.old")
    shutil.rmtree(incoming, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(incoming, filter="data")
    if d.exists():
        shutil.rmtree(old, ignore_errors=True)
        d.rename(old)
    incoming.rename(d)
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- the Ray side


def _sink_class():
    import ray

    @ray.remote(num_cpus=0)
    class Sink:
        """Lives on the driver's node: hands out and receives run directories of the comparison."""

        def fetch(self, run_dir: str) -> bytes | None:
            d = Path(run_dir)
            if not d.is_dir() and Path(d.with_name(f".{d.name}.old")).is_dir():
                d = d.with_name(f".{d.name}.old")  # the driver's node died mid-swap
            return pack_dir(d) if (d / "status.json").exists() else None

        def store(self, run_dir: str, blob: bytes, where: dict) -> None:
            unpack_dir(blob, Path(run_dir))
            atomic_write(Path(run_dir) / ENGINE_FILE, lambda f: f.write(json.dumps(where, indent=1).encode()))

    return Sink


def train_on_node(run_dir: str, contestant: str, seed: int, config_json: str, files: dict, sink, pack: bool) -> dict:
    """The Ray task: fetch the newest state of this job from the driver, train (resuming it), send
    the run directory back after every epoch and at the end."""
    import ray

    ctx = ray.get_runtime_context()
    where = {
        "engine": "ray",
        "node_id": ctx.get_node_id(),
        "host": socket.gethostname(),
        "worker_pid": os.getpid(),
        "packed": pack,
    }
    # One working folder per job, named after it: a retry after a killed worker (whose `finally`
    # never ran) clears the folder the killed attempt left, instead of leaving a copy per kill.
    work = Path(tempfile.gettempdir()) / f"fmnist-parity-{hashlib.sha1(run_dir.encode()).hexdigest()[:16]}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        data = work / "data"
        data.mkdir()
        for name, blob in files.items():
            (data / name).write_bytes(blob)
        run = work / "run"
        blob = ray.get(sink.fetch.remote(run_dir))
        if blob:
            unpack_dir(blob, run)
        (work / "config.json").write_text(config_json)
        resume = (run / "status.json").exists()
        cmd = harness.command(contestant, work / "config.json", seed, run, str(data), resume)
        print(
            f"{Path(run_dir).name}: {'resuming' if resume else 'starting'} on {where['host']} "
            f"(node {where['node_id'][:8]}, worker pid {os.getpid()})",
            flush=True,
        )
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=harness.die_with_parent,
        )
        tail, sent = [], _epochs(run)
        for line in proc.stdout:
            if line.strip():
                tail = (tail + [line.rstrip()])[-20:]
            if _epochs(run) > sent:  # a new epoch is on disk: its checkpoint goes home now
                sent = _epochs(run)
                ray.get(sink.store.remote(run_dir, pack_dir(run), where))
        rc = proc.wait()
        if rc < 0:  # the training process was killed (not a bad config): let Ray retry the task
            raise HarnessSignal(f"{Path(run_dir).name}: training process killed by signal {-rc}")
        if (run / "status.json").exists():
            ray.get(sink.store.remote(run_dir, pack_dir(run), where))
        return {"rc": rc, "tail": tail, **where}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _epochs(run: Path) -> int:
    try:
        return len((run / "metrics.jsonl").read_text().splitlines())
    except OSError:
        return 0


def _resources(ray, pack: bool) -> dict:
    if pack:
        return {"num_cpus": 1}
    total = ray.cluster_resources()
    if total.get(SLOT):
        return {"num_cpus": 0, "resources": {SLOT: 1}}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return {"num_cpus": min(n["Resources"].get("CPU", 1) for n in nodes)}


def _check_address(address: str) -> None:
    """Refuse in one line an address nothing listens on (ray.init would retry for ever); for a
    cluster bound to loopback, stop Ray from swapping 127.0.0.1 for this host's network address."""
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise harness.HarnessError(
            f"--ray-address {address!r}: give HOST:PORT of the head node (e.g. 10.0.0.5:6379) or auto"
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise harness.HarnessError(
            f"--ray-address {address}: no Ray head node reachable there ({e.strerror or e}); "
            f"start one with `ray start --head` or fix the address"
        ) from None
    if host in ("127.0.0.1", "localhost", "::1"):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported: keep loopback


def run_ray(work: list[tuple[harness.Job, cfg.RunConfig]], data_dir: str, log, address: str | None, pack: bool) -> None:
    if address:
        _check_address(address)
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise harness.HarnessError(
            "--engine ray needs the ray package (pinned in requirements.txt); "
            "run ./run.sh or scripts/venv.sh to install it"
        ) from None
    repo = Path(__file__).resolve().parent.parent
    os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # plain text in logs
    if address:  # a cluster: ship this checkout to the nodes (they need the same pinned packages)
        ray.init(
            address=address,
            log_to_driver=True,
            logging_level="ERROR",
            runtime_env={"working_dir": str(repo), "excludes": [".venv", "comparisons", ".git", "data"]},
        )
    else:  # a local instance with one timing slot
        ray.init(resources={SLOT: 1}, include_dashboard=False, log_to_driver=True, logging_level="ERROR")
    pending = {}
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log(
            f"ray: {len(nodes)} node(s), {ray.cluster_resources().get('CPU', 0):.0f} CPUs; "
            + ("packed: jobs share nodes, timings are NOT comparable" if pack else "one timed job per node")
        )
        sink = (
            _sink_class()
            .options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    node_id=ray.get_runtime_context().get_node_id(), soft=False
                )
            )
            .remote()
        )
        files = ray.put({p.name: p.read_bytes() for p in fdata.find_files(Path(data_dir)).values()})
        task = ray.remote(train_on_node).options(
            max_retries=RETRIES, retry_exceptions=[HarnessSignal], **_resources(ray, pack)
        )
        for i, (job, config) in enumerate(work, 1):
            if harness.job_state(job) == "done":
                log(f"[{i}/{len(work)}] {job.name}: already finished, kept")
                continue
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            ref = task.remote(str(job.run_dir.resolve()), job.contestant, job.seed, config.to_json(), files, sink, pack)
            pending[ref] = (i, job)
        log(f"ray: {len(pending)} job(s) submitted")
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i, job = pending.pop(ref)
            try:
                res = ray.get(ref)
                log(f"[{i}/{len(work)}] {job.name}: exit {res['rc']} on {res['host']} (node {res['node_id'][:8]})")
                if res["rc"] not in (0, 3):
                    harness.ensure_failed_status(job, res["rc"], res["tail"])
            except Exception as e:  # retries used up, a lost driver node...
                msg = str(e).strip().splitlines()[-1][:300] if str(e).strip() else type(e).__name__
                log(f"[{i}/{len(work)}] {job.name}: failed on Ray after {RETRIES} retries: {msg}")
                harness.ensure_failed_status(job, 1, [msg])
    finally:
        for ref in pending:  # interrupted: stop what still runs on the cluster
            ray.cancel(ref, force=True)
        ray.shutdown()
