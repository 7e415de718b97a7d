"""The mistakes a new user makes: each exits 2 with one line naming the file/row/field, leaves nothing
behind, and the corrected command then succeeds in the same --out."""
import gzip
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from conftest import REPO, cli_fails as _fails, run_cli
from tfbind_dist import config as C
from tfbind_dist.cli import main


@pytest.fixture
def run(ctcf_run):
    """The session's trained CTCF run: these tests only need "a trained model"."""
    return ctcf_run


def test_train_mistakes_leave_nothing_and_the_corrected_command_runs(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    shutil.copy(synth_dir / "CTCF_train.parquet", only_train)
    good = ["train", "--recipe", "chapter", "--tf", "CTCF", "--data", synth_dir, "--out", out, "--steps", "20",
            "--quiet", "--set", "train.eval_every=10"]
    mistakes = {
        "no data for TF 'CTFC' (data.tf); found CTCF, ZNF24": ["--tf", "CTFC"],
        "data path": ["--data", tmp_path / "missing"],
        "no valid split for CTCF": ["--data", only_train],
        "not divisible by the 8 devices": ["--batch-size", "12"],
        "larger than the 1200 rows": ["--batch-size", "4096"],
        "model.overrides: model 'conv_v2' has no field(s) ['dropout_rat']": ["--set", "model.overrides.dropout_rat=0"],
    }
    for expected, change in mistakes.items():
        line = _fails(capsys, *good, *change)
        assert expected in line, line
        assert not out.exists(), f"{change} left {sorted(p.name for p in out.iterdir())}"
    assert main([str(a) for a in good]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 20


@pytest.mark.slow
def test_run_works_from_any_directory_and_loads_without_its_data(synth_dir, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(synth_dir, work / "data_synth")
    env = {**os.environ, "XLA_FLAGS": ""}
    subprocess.run([sys.executable, "-m", "tfbind_dist.cli", "train", "--recipe", "chapter", "--tf", "CTCF",
                    "--data", "data_synth", "--out", "runs/x", "--steps", "10", "--quiet"],
                   cwd=work, env=env, check=True, capture_output=True)
    run_dir = work / "runs" / "x"
    assert C.load(run_dir / "config.yaml").data.path == str(work / "data_synth")
    assert json.loads((run_dir / "run.json").read_text())["sequence_length"] == 200
    elsewhere = run_cli("explain", "--run", run_dir, "--split", "valid", "--index", "0", "--method", "grad_corrected",
                        "--out", tmp_path / "explain", "--plots", "0", check=True)
    assert "grad_corrected" in np.load(tmp_path / "explain" / "attributions.npz").files, elsewhere.stdout
    shutil.move(work / "data_synth", tmp_path / "moved")  # loading a model needs only its run directory
    from tfbind_dist.training.restore import load_model

    assert load_model(run_dir).length == 200


def test_predict_and_explain_mistakes(run, tmp_path, capsys):
    seq = "ACGT" * 50
    assert "--sequence: empty sequence" in _fails(capsys, "predict", "--run", run, "--sequence", "")
    assert "trained on 200-bp sequences" in _fails(capsys, "explain", "--run", run, "--sequence", seq[:-1],
                                                   "--method", "ism", "--out", tmp_path / "e")
    assert "--index 5:5: selects no rows" in _fails(capsys, "explain", "--run", run, "--split", "valid",
                                                    "--index", "5:5", "--method", "ism", "--out", tmp_path / "e")
    assert not (tmp_path / "e").exists()
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert f"{empty}: empty file" in _fails(capsys, "predict", "--run", run, "--input", empty)
    short = tmp_path / "short.csv"
    short.write_text(f"sequence\n{seq}\n{seq[:-1]}\n")
    line = _fails(capsys, "predict", "--run", run, "--input", short)
    assert "short.csv row 1: length 199" in line, line
    # a missing output folder is created; the file appears whole
    assert main(["predict", "--run", str(run), "--sequence", seq, "--output", str(tmp_path / "new" / "p.csv")]) == 0
    assert (tmp_path / "new" / "p.csv").read_text().startswith("sequence,probability,logit")
    # IUPAC ambiguity codes are N at every entry point
    capsys.readouterr()
    assert main(["predict", "--run", str(run), "--sequence", "R" + seq[1:], "--output", str(tmp_path / "r.csv")]) == 0
    assert main(["predict", "--run", str(run), "--sequence", "N" + seq[1:], "--output", str(tmp_path / "n.csv")]) == 0
    assert (tmp_path / "r.csv").read_text().split("\n")[1].split(",")[1:] == \
        (tmp_path / "n.csv").read_text().split("\n")[1].split(",")[1:]


def test_motifs_mistakes_are_one_line_before_any_attribution(run, tmp_path, capsys):
    out = tmp_path / "m"
    common = ["motifs", "--run", run, "--method", "grad-corrected", "--out", out]
    assert "no 'vertebrate' matrices" in _fails(capsys, *common, "--jaspar-tax-group", "vertebrate")
    short = tmp_path / "short.txt"
    short.write_text("ACGT" * 49 + "\n")
    assert "trained on 200-bp sequences" in _fails(capsys, *common, "--input", short)
    assert "not a `tfbind score` output" in _fails(capsys, *common, "--from-scores", tmp_path)
    assert not out.exists()


def test_truncated_checkpoint_is_named(run, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    metadata = sorted((broken / "checkpoints" / "best").glob("*/state/_METADATA"))
    assert metadata
    metadata[0].write_text(metadata[0].read_text()[:30])
    line = _fails(capsys, "predict", "--run", broken, "--sequence", "ACGT" * 50)
    assert f"{broken / 'checkpoints'}: cannot restore the best checkpoint" in line, line


def test_shard_mistakes(tmp_path, capsys):
    genome = "".join(np.random.default_rng(0).choice(list("ACGT"), 1000))
    fasta = tmp_path / "g.fa.gz"
    with gzip.open(fasta, "wt") as handle:
        handle.write(">chr1\n" + genome + "\n")
    truncated = tmp_path / "truncated.fa.gz"
    truncated.write_bytes(fasta.read_bytes()[:-20])
    fake = tmp_path / "plain.fa.gz"
    fake.write_text(">chr1\n" + genome + "\n")
    twice = tmp_path / "twice.fa"
    twice.write_text(f">chr1\n{genome}\n>chr1 again\n{genome}\n")
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    out = tmp_path / "s"
    for source, expected in [(truncated, "truncated gzip file"), (fake, "named .gz but not gzip-compressed"),
                             (twice, "record name 'chr1' appears twice"), (empty, "no FASTA records")]:
        # one row a shard: a mistake found mid-stream comes after shards were written, which must go again
        assert expected in _fails(capsys, "data", "shard", source, "--out", out, "--rows-per-shard", "1", "--quiet")
        left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) if out.exists() else []
        assert left == [], f"{source.name} left {left} in --out"  # nothing that would block the corrected command
    assert main(["data", "shard", str(fasta), "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "_SHARDS.json").read_text())["rows"] == 5


def test_binary_sweep_spec_and_config(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(bytes(range(256)))
    assert f"{spec}: not a text file" in _fails(capsys, "sweep", spec, "--out", tmp_path / "sw")
    assert f"{spec}: not a text file" in _fails(capsys, "train", "--config", spec, "--out", tmp_path / "r")
    assert not (tmp_path / "sw").exists() and not (tmp_path / "r").exists()


def test_score_checks_inputs_before_ray_and_writes_nothing(run, tmp_path, capsys):
    from tfbind_dist.data.shard import shard_input

    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "".join(np.random.default_rng(1).choice(list("ACGT"), 2000)) + "\n")
    shard_input(fasta, tmp_path / "shards", window=200, rows_per_shard=4)
    shard_input(fasta, tmp_path / "shards100", window=100, rows_per_shard=4)
    out = tmp_path / "scores"
    base = ["score", "--input", tmp_path / "shards", "--out", out, "--outputs", "prob", "--quiet"]
    assert "is not a run directory" in _fails(capsys, *base, "--runs", tmp_path / "no_such_run")
    assert "unknown or missing output(s) ['shap']" in _fails(capsys, *base[:-2], "shap", "--quiet", "--runs", run)
    line = _fails(capsys, "score", "--runs", run, "--input", tmp_path / "shards100", "--out", out,
                  "--outputs", "prob", "--quiet")
    assert "windows of 100 bp, but the runs were trained on 200-bp sequences" in line
    assert not out.exists()
    # a foreign Parquet file beside the listed shards is not scored
    pa.parquet.write_table(pa.table({"x": [1]}), tmp_path / "shards" / "notes.parquet")
    from tfbind_dist.data.shard import list_shards
    from tfbind_dist.storage import as_path

    assert sorted(os.path.basename(p) for p in list_shards(as_path(tmp_path / "shards"), 200)) == \
        [f"part-{i:05d}.parquet" for i in range(3)]
    # the corrected command scores (in this process: what is checked here is the inputs, not Ray)
    assert main(["score", "--runs", str(run), "--input", str(tmp_path / "shards"), "--out", str(out), "--outputs",
                 "prob,grad-corrected", "--quiet", "--address", "inline"]) == 0
    scored = pa.parquet.read_table(out, columns=["id", "CTCF_prob", "CTCF_grad_corrected"])
    assert sorted(scored.column("id").to_pylist()) == list(range(10))


@pytest.mark.slow
def test_local_address_starts_a_private_instance(ray_cluster):
    code = ("from tfbind_dist.ray_utils import connect; connect('local'); import ray; "
            "print(ray.get_runtime_context().gcs_address)")
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "XLA_FLAGS": ""}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] != ray_cluster


@pytest.mark.slow
def test_cluster_down_stops_only_its_own_nodes():
    import tempfile

    ray_tmp = tempfile.mkdtemp(prefix="tfr-", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    private = subprocess.Popen([sys.executable, "-c", "import ray, time; ray.init(address='local', "
                                "include_dashboard=False); print('up', flush=True); time.sleep(600)"],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "XLA_FLAGS": ""})
    try:
        assert private.stdout.readline().strip() == "up"
        env = {**os.environ, "TFBIND_RAY_PORT": "6398", "TFBIND_DASHBOARD_PORT": "8298", "TFBIND_CLIENT_PORT": "10098",
               "TFBIND_CPUS_PER_NODE": "1", "TFBIND_RAY_TMP": ray_tmp}
        script = str(REPO / "cluster" / "local.sh")
        assert subprocess.run(["bash", script, "up"], env=env, capture_output=True).returncode == 0
        assert subprocess.run(["bash", script, "down"], env=env, capture_output=True).returncode == 0
        left = subprocess.run(["pgrep", "-f", ray_tmp], capture_output=True, text=True).stdout.split()
        assert left == [], left
        assert private.poll() is None, "down stopped another Ray instance of the user"
    finally:
        private.kill()
        private.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
