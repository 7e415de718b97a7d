"""Test session setup: 8 host CPU devices for real multi-device sharding, and a private data cache."""
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KOO = SHARED_DATA / "koo_chipseq_200bp"


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    os.environ["TFBIND_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """Small synthetic dataset for CTCF and ZNF24, made once per session."""
    from tfbind_dist.data.synthetic import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, tfs=["CTCF", "ZNF24"], n_train=1200, seed=0)
    return out


RAY_PORT = "6390"


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One real two-node Ray cluster (cluster/local.sh) for the whole session; yields its address."""
    env = {**os.environ, "TFBIND_RAY_PORT": RAY_PORT, "TFBIND_DASHBOARD_PORT": "8275", "TFBIND_CLIENT_PORT": "10091",
           "TFBIND_CPUS_PER_NODE": "2", "TFBIND_RAY_TMP": str(tmp_path_factory.mktemp("ray")), "XLA_FLAGS": ""}
    up = subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "up"], env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    yield f"127.0.0.2:{RAY_PORT}"
    subprocess.run(["bash", str(REPO / "cluster" / "local.sh"), "down"], env=env, capture_output=True)


def run_cli(*args, env_extra=None, check=False, timeout=600):
    """Run `tfbind ...` as a user would, in a fresh process; returns CompletedProcess."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "tfbind_dist.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"tfbind {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc
