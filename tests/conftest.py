"""Test session setup: 8 host CPU devices for real multi-device sharding, and a private data cache."""
import atexit
import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent XLA compilation cache for the session, shared by the CLI subprocesses and the Ray workers the
# tests start (they inherit this environment): the same small train and eval steps compile once, not per process.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="tfbind-test-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KOO = SHARED_DATA / "koo_chipseq_200bp"


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    os.environ["TFBIND_CACHE"] = str(tmp_path_factory.mktemp("cache"))


def shared_dir(tmp_path_factory, name: str, make) -> Path:
    """A folder made once for the whole test run by `make(folder)`, also when pytest-xdist runs the tests in
    several processes: the first to ask makes it (under a file lock), the others wait for it and reuse it.
    A `make` that failed leaves no folder, so the next to ask tries again (and fails with its own error)."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's base folder, above each worker's own
    folder, done = root / "shared" / name, root / "shared" / f"{name}.done"
    folder.parent.mkdir(exist_ok=True)
    with FileLock(str(root / "shared" / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                make(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Small synthetic dataset for CTCF and ZNF24, made once per test run."""
    from tfbind_dist.data.synthetic import synthesize

    return shared_dir(tmp_path_factory, "synth", lambda out: synthesize(out, tfs=["CTCF", "ZNF24"], n_train=1200,
                                                                           seed=0))


def presets_transformers_slow() -> list:
    """Every model preset as a test parameter, the transformer presets (the slowest to compile) in the slow
    tier only: `make test-fast` keeps the convolutional ones."""
    from tfbind_dist.models import PRESETS

    return [pytest.param(name, marks=pytest.mark.slow) if "transformer" in name else name for name in sorted(PRESETS)]


def train_ctcf(synth_dir, out, steps: int, eval_every: int, **overrides):
    """A small CTCF run (chapter recipe) on the session's synthetic data; returns its directory."""
    from tfbind_dist import config as C
    from tfbind_dist.training.loop import train_and_evaluate

    cfg = C.with_overrides(C.RunConfig(), {"data.tf": "CTCF", "data.path": str(synth_dir), "train.steps": steps,
                                           "train.eval_every": eval_every, **overrides})
    train_and_evaluate(cfg, out, progress=False)
    return out


@pytest.fixture(scope="session")
def ctcf_run(synth_dir, tmp_path_factory):
    """A CTCF run (chapter recipe, 150 steps): every test that needs "a trained model" (explain, API, user
    errors, tracks, variants) shares it."""
    return shared_dir(tmp_path_factory, "ctcf_run", lambda out: train_ctcf(synth_dir, out, steps=150, eval_every=50))


@pytest.fixture(scope="session")
def small_run(synth_dir, tmp_path_factory):
    """A small, quickly scored CTCF run (fewer_conv_channels, 40 steps) for the scoring tests."""
    return shared_dir(tmp_path_factory, "small_run", lambda out: train_ctcf(
        synth_dir, out, steps=40, eval_every=20, **{"model.name": "fewer_conv_channels"}))


NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
# Appended to the notebook when the tests run it: what its in-memory motif discovery found, for
# test_discovery to compare `tfbind motifs` against (the same model, sequences and settings).
RECORD_DISCOVERY = """import json
found.table.to_pickle("discovery_table.pkl")
json.dump({"own_motif_rank": found.own_motif_rank, "motifs": len(found.motifs),
           "first_q": float(found.matches[0][0].q_value)}, open("discovery.json", "w"))"""


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory):
    """examples/quickstart.ipynb run top to bottom in a real Jupyter kernel in a fresh folder, as a user runs
    it (one CPU device, the default matplotlib backend); a cell's error is kept as its output (for the test to
    name it) instead of stopping the run. Returns (the executed notebook, the folder)."""
    import nbformat
    from nbclient import NotebookClient

    def execute(home):
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell(RECORD_DISCOVERY))
        with pytest.MonkeyPatch.context() as env:  # the kernel inherits this process's environment
            env.setenv("XLA_FLAGS", "")  # a user's notebook: one CPU device, not the tests' eight
            env.delenv("MPLBACKEND", raising=False)
            NotebookClient(notebook, timeout=1200, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(home)}}).execute()
        nbformat.write(notebook, home / "executed.ipynb")  # also to look at when a test fails

    home = shared_dir(tmp_path_factory, "quickstart", execute)
    return nbformat.read(home / "executed.ipynb", as_version=4), home


@pytest.fixture(scope="session")
def ctcf_motif_run(quickstart):
    """The quickstart notebook's CTCF run (default recipe, 600 steps): long enough to learn the motif (motif
    discovery, predicted sites)."""
    run = quickstart[1] / "quickstart" / "runs" / "ctcf"
    assert (run / "summary.json").exists(), f"the quickstart notebook did not train {run}: see test_notebook"
    return run


RAY_GROUP = "ray_cluster"


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`--dist loadgroup`) every test on the session's Ray cluster runs in one worker: the
    cluster has fixed ports and addresses (one cluster per run).

    pytest-xdist 3.8 groups a test by an `@group` suffix of its node id, which it sets through `item._nodeid`;
    pytest 9 keeps node ids in `item._id`, so that suffix (and every `xdist_group` mark) is lost. The suffix
    is added here the way pytest 9 reads it, for the tests that use the cluster."""
    if not (config.getoption("dist", "no") == "loadgroup" or getattr(config.option, "loadgroup", False)):
        return
    import dataclasses

    for item in items:
        node_id = getattr(item, "_id", None)
        if RAY_GROUP in item.fixturenames and node_id is not None and node_id.names and node_id.params is None:
            item._id = dataclasses.replace(node_id, names=(*node_id.names[:-1], f"{node_id.names[-1]}@{RAY_GROUP}"))


RAY_PORT = "6390"




@pytest.fixture(scope="session")
def _ray_cluster_env(tmp_path_factory):
    """One real two-node Ray cluster (cluster/local.sh) for the whole session; yields local.sh's environment.

    Each node declares one GPU to Ray (there is none: Ray's GPUs are a scheduling count), so that sweeps
    can ask for fractions of one and a test can see what each worker process was given."""
    ray_tmp = tempfile.mkdtemp(prefix="tfr-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "TFBIND_RAY_PORT": RAY_PORT, "TFBIND_DASHBOARD_PORT": "8275", "TFBIND_CLIENT_PORT": "10091",
           "TFBIND_CPUS_PER_NODE": "2", "TFBIND_GPUS_PER_NODE": "1", "TFBIND_RAY_TMP": ray_tmp, "XLA_FLAGS": ""}
    up = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "up"], env=env, capture_output=True, text=True)
    if up.returncode:  # stop what did start (a head without its worker holds the ports), then fail
        subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "down"], env=env, capture_output=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert up.returncode == 0, up.stderr
    yield env
    subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "down"], env=env, capture_output=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def ray_cluster(_ray_cluster_env):
    """The session's two-node cluster, its worker node restarted if a node-loss test killed it; its address."""
    if raylet_pid("127.0.0.3") is None:
        worker = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "worker"], env=_ray_cluster_env,
                                capture_output=True, text=True)
        assert worker.returncode == 0, worker.stderr
    return f"127.0.0.2:{RAY_PORT}"


def raylet_pid(node_ip):
    out = subprocess.run(["pgrep", "-f", f"raylet.*--node_ip_address={node_ip}"], capture_output=True, text=True)
    pids = [int(p) for p in out.stdout.split()]
    return pids[0] if pids else None


def latest_checkpoint_step(run) -> int:
    """The step of a run directory's latest checkpoint (0 if none)."""
    latest = run / "checkpoints" / "latest"
    steps = [int(p.name) for p in latest.glob("[0-9]*") if p.name.isdigit()] if latest.exists() else []
    return max(steps, default=0)


def checkpointed_on(attempt_logs, node_ip):
    """A run (from its attempts.jsonl) running on node_ip with a saved checkpoint (step > 0) and no summary yet."""
    import json

    for log in attempt_logs:
        lines = log.read_text().strip().splitlines()
        if lines and json.loads(lines[-1])["node"] == node_ip and latest_checkpoint_step(log.parent) > 0 \
                and not (log.parent / "summary.json").exists():
            return log.parent
    return None


def start_cli(*args, env_extra=None) -> subprocess.Popen:
    """Start `tfbind ...` in the background (pipes for its output), as a user's driver."""
    return subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], cwd=REPO, text=True,
                            env={**os.environ, **(env_extra or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_node_under_a_checkpointed_run(driver, attempt_logs, node_ip="127.0.0.3", timeout=600):
    """Once a run (`attempt_logs()`: its attempts.jsonl files) has a checkpoint and trains on `node_ip`,
    SIGKILL that node's raylet and every process under it at once (the node is lost with all it runs);
    returns the run directory."""
    import signal
    import time

    victim, deadline = None, time.time() + timeout
    while victim is None and time.time() < deadline and driver.poll() is None:
        victim = checkpointed_on(attempt_logs(), node_ip)
        time.sleep(0.2)
    assert victim is not None, f"no run checkpointed on {node_ip}"
    raylet = raylet_pid(node_ip)
    os.kill(raylet, signal.SIGSTOP)  # frozen first: no process of the node may finish its run in the meantime
    processes = [raylet, *descendants(raylet)]
    for pid in processes:
        _signal_if_alive(pid, signal.SIGSTOP)
    for pid in processes:
        _signal_if_alive(pid, signal.SIGKILL)
    return victim


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (its workers, for a raylet)."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [grandchild for child in map(int, children) for grandchild in (child, *descendants(child))]


def _signal_if_alive(pid: int, signum) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def gcs_bucket(tmp_path_factory):
    """A Google Cloud Storage emulator (`tfbind_dist.testing.gcs_emulator`) with bucket `runs`."""
    from tfbind_dist.testing import gcs_emulator

    with gcs_emulator("runs", tmp_path_factory.mktemp("gcs") / "emulator.log") as bucket:
        yield bucket


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory):
    """A local S3 server (`tfbind_dist.testing.s3_server`: moto, IAM on) with bucket `runs`; its s3:// URL."""
    from tfbind_dist.testing import s3_server

    with s3_server("runs", tmp_path_factory.mktemp("s3") / "server.log") as bucket:
        yield bucket


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs mounted for the test (real ENOSPC when full); yields (its path, fill(), free()): fill()
    writes a file that takes all the space left, free() removes it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    filler = disk / ".filler"

    def fill():
        try:  # the disk may be full already (then even the open fails): that is what fill() is for
            with open(filler, "ab") as handle:
                while True:
                    handle.write(b"\0" * (1 << 16))
                    handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC, error

    try:
        yield disk, fill, lambda: filler.unlink(missing_ok=True)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def kill_driver_after(args, done, markers, total, env_extra=None, timeout=1200):
    """Start `tfbind ARGS`, SIGKILL it once `done()` lists `markers` finished units (of `total`); those then."""
    import signal
    import time

    env = {**os.environ, "XLA_FLAGS": "", **(env_extra or {})}
    driver = subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + timeout  # generous: the CI box may be loaded
    while len(done()) < markers and time.time() < deadline:
        assert driver.poll() is None, driver.communicate()
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    finished = done()
    assert markers <= len(finished) < total, f"kill must land mid-run ({len(finished)} of {total} done)"
    return finished


def run_cli(*args, env_extra=None, check=False, timeout=600):
    """Run `tfbind ...` as a user would, in a fresh process; returns CompletedProcess."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"tfbind {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def cli_fails(capsys, *argv) -> str:
    """Run `tfbind argv` in this process (a user error needs no process of its own to be checked); assert exit
    status 2 and one stderr line, `tfbind: error: ...`; return that line."""
    from tfbind_dist.cli import main

    status = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("tfbind: error: "), err
    return err[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_two_processes(config_path, out, *extra_args, port=None):
    """`tfbind train` as one job of 2 processes x 4 CPU devices (gloo), as users start it on two hosts."""
    port = port or free_port()
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_NUM_CPU_DEVICES": "4",
           "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
    return [subprocess.Popen([sys.executable, "-m", "tfbind_dist.cli", "train", "--config", str(config_path),
                              "--out", str(out), "--quiet", "--coordinator", f"127.0.0.1:{port}",
                              "--num-processes", "2", "--process-id", str(i), *map(str, extra_args)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)]


def wait_all(procs, timeout=600):
    """Wait for every process; assert each exited 0 (its stderr tail in the message otherwise)."""
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err[-3000:]


@contextlib.contextmanager
def busy_loops(count: int = 2):
    """Busy-looping processes beside the test while the block runs: the loaded box on which collectives
    used to deadlock."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.fixture
def cpu_hog():
    """Two busy-looping processes beside the whole test."""
    with busy_loops(2):
        yield
