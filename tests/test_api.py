"""The Python API as a notebook uses it: one result whatever form the sequences take, the same numbers as the
command line, one clear error type naming sequence and position, and the CLI a thin shell over it."""
import ast
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

import tfbind_dist as tb
from conftest import REPO, run_cli
from tfbind_dist.data.encoding import one_hot


@pytest.fixture(scope="module")
def model(ctcf_run):
    return tb.load_model(ctcf_run)


@pytest.fixture(scope="module")
def forms(model):
    """Six validation positives (one with an N) as strings, as codes and as one-hot: the three forms users hold."""
    chosen = tb.choose_sequences(model, split="valid", label=1, index="0:6")
    strings = list(chosen.sequences)
    strings[2] = strings[2][:50] + "N" + strings[2][51:]
    codes = tb.sequence_codes(model, strings)
    return {"strings": strings, "codes": codes, "one_hot": one_hot(codes, model.n_policy)}


def test_every_call_gives_the_same_on_strings_codes_and_one_hot(model, forms):
    calls = {
        "predict": lambda x: tb.predict(model, x).logit,
        "ism": lambda x: tb.ism(model, x).delta,
        "ism_reference": lambda x: tb.ism(model, x, kernel="reference").delta,
        **{f"gradients {m}": (lambda x, m=m: tb.gradients(model, x, method=m))
           for m in ("grad", "grad-corrected", "grad-x-input", "ig")},
        "deeplift_shap": lambda x: tb.deeplift_shap(model, x, references=4),
        "explain": lambda x: tb.explain(model, x, ["ism", "grad"]).attributions["grad"],
    }
    for name, call in calls.items():
        results = {form: np.asarray(call(x)) for form, x in forms.items()}
        assert results["strings"].shape[0] == 6 and np.abs(results["strings"]).sum() > 0, name
        np.testing.assert_array_equal(results["codes"], results["strings"], err_msg=name)
        np.testing.assert_array_equal(results["one_hot"], results["strings"], err_msg=name)
    np.testing.assert_allclose(tb.ism(model, forms["codes"]).delta, calls["ism_reference"](forms["codes"]), atol=1e-5)
    assert tb.predict(model, forms["strings"][0]).probability.shape == (1,)  # one string is one sequence


def test_several_models_at_once(ctcf_run, model, forms, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(ctcf_run, twin)
    both = tb.predict([ctcf_run, twin], forms["codes"])
    assert both.probability.shape == (6, 2) and both.models == [ctcf_run.name, "twin"]
    np.testing.assert_array_equal(both.probability[:, 0], both.probability[:, 1])
    np.testing.assert_array_equal(both.logit[:, 0], tb.predict(model, forms["codes"]).logit)
    assert tb.predict(model, forms["codes"]).models == ["CTCF"]


def _smudged(codes):
    x = one_hot(codes, "uniform")
    x[1, 5] = [0.5, 0.5, 0.0, 0.0]
    return x


@pytest.mark.parametrize("bad, message", [
    (lambda s, c: [s[0], s[1][:5] + "Q" + s[1][6:]], "sequence 1: invalid base 'Q' at position 5"),
    (lambda s, c: [s[0], s[1][:-1]], "sequence 1: length 199, but the model of"),
    (lambda s, c: [], "no sequences given"),
    (lambda s, c: [s[0], ""], "sequence 1: empty sequence"),
    (lambda s, c: np.where(np.arange(200) == 5, 7, c[:2]), "sequence 0: invalid base code 7 at position 5"),
    (lambda s, c: _smudged(c[:2]), "sequence 1: position 5 is neither a base nor N"),
    (lambda s, c: np.zeros((0, 200, 4)), "no sequences given"),
])
def test_bad_input_raises_one_error_naming_sequence_and_position(model, forms, bad, message):
    given = bad(forms["strings"], forms["codes"])
    for call in (lambda x: tb.predict(model, x), lambda x: tb.ism(model, x), lambda x: tb.gradients(model, x),
                 lambda x: tb.deeplift_shap(model, x), lambda x: tb.explain(model, x)):
        with pytest.raises(tb.SequenceError, match=message.replace("(", r"\(")):
            call(given)
    assert issubclass(tb.SequenceError, tb.TfbindError)


@pytest.mark.slow
def test_api_equals_the_cli_for_predict_and_explain(ctcf_run, forms, tmp_path):
    sequences = tmp_path / "seqs.txt"
    sequences.write_text("\n".join(forms["strings"]) + "\n")
    run_cli("predict", "--run", ctcf_run, "--input", sequences, "--output", tmp_path / "p.csv", check=True)
    cli = pd.read_csv(tmp_path / "p.csv")
    api = tb.predictions_table(ctcf_run, forms["strings"])
    assert list(cli.sequence) == list(api.sequence)
    np.testing.assert_allclose(cli.probability, api.probability, rtol=1e-6)
    np.testing.assert_allclose(cli.logit, api.logit, rtol=1e-5, atol=1e-6)

    run_cli("explain", "--run", ctcf_run, "--input", sequences, "--method", "ism,grad-corrected,deeplift-shap",
            "--references", "5", "--out", tmp_path / "explain", "--plots", "1", check=True)
    saved = np.load(tmp_path / "explain" / "attributions.npz")
    result = tb.explain(ctcf_run, forms["strings"], ["ism", "grad-corrected", "deeplift-shap"], references=5,
                        out=tmp_path / "api", plots=1)
    np.testing.assert_array_equal(saved["prediction"], result.prediction)
    for name, values in result.attributions.items():
        np.testing.assert_allclose(saved[name], values, atol=1e-6, err_msg=name)
    assert sorted(p.name for p in (tmp_path / "api").iterdir()) == sorted(p.name for p in (tmp_path / "explain")
                                                                         .iterdir())
    table = pd.read_csv(tmp_path / "explain" / "motifs.csv")
    np.testing.assert_array_equal(table.motif_start, result.motifs.motif_start)


def test_plots_draw_on_a_given_axes_or_a_new_figure(ctcf_run, forms):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    result = tb.explain(ctcf_run, forms["strings"][:2], ["ism", "grad-corrected"])
    heat = result.plot(0)
    assert heat.figure.axes[0].get_ylabel() == "Importance" and heat.get_ylabel() == "Substituted base"
    figure = Figure()
    logo = result.plot(1, "grad-corrected", ax=figure.add_subplot())
    assert logo.figure is figure and logo.get_ylabel() == "Attribution"
    left, right = tb.plot_learning_curve(ctcf_run)
    assert left.get_ylabel() == "Loss" and right.get_title().endswith("validation")


def test_importing_the_package_leaves_the_matplotlib_backend_alone():
    code = ("import importlib, pkgutil, matplotlib; matplotlib.use('svg'); import tfbind_dist\n"
            "names = [m.name for m in pkgutil.walk_packages(tfbind_dist.__path__, 'tfbind_dist.')]\n"
            "for name in names: importlib.import_module(name)\n"
            "import matplotlib.pyplot as plt; import tfbind_dist.api as api; api.plot_ism\n"
            "print(len(names), matplotlib.get_backend())")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    count, backend = proc.stdout.split()[-2:]
    assert int(count) > 60 and backend == "svg"


def _other(base: str, k: int = 1) -> str:
    return "ACGT"[("ACGT".index(base) + k) % 4]


def test_variant_effects_in_memory_equal_ism_at_the_centre(model, tmp_path):
    genome = "".join(np.random.default_rng(3).choice(list("ACGT"), 1000))
    (tmp_path / "g.fa").write_text(">chr1\n" + genome + "\n")
    variants = pd.DataFrame({"chrom": ["chr1", "chr1", "chr2", "chr1"], "pos": [300, 500, 10, 600],
                             "ref": [genome[299], genome[499], "A", _other(genome[599])],
                             "alt": [_other(genome[299]), f"{_other(genome[499])},TT", "C", "A"],
                             "id": ["a", "b", "c", "d"]})
    effects = tb.variant_effects(model, variants, tmp_path / "g.fa", attribution="ism_center")
    assert list(effects.scores.alt) == [_other(genome[299]), _other(genome[499]), "TT"]
    assert list(effects.scores.id) == ["a", "b", "b"]
    assert sorted(effects.errors.reason.str.split().str[0]) == ["REF", "chromosome"]
    ism = tb.ism(model, genome[299 - 100:299 + 100]).delta[0, 100, "ACGT".index(_other(genome[299]))]
    assert effects.scores.CTCF_delta_prob[0] == pytest.approx(ism, abs=1e-5)
    with pytest.raises(tb.DataError, match=r"variants: missing column\(s\) \['ref'\]"):
        tb.variant_effects(model, variants.drop(columns=["ref"]), tmp_path / "g.fa")


def test_variant_effects_equal_tfbind_variants(ctcf_run, model, tmp_path):
    rng = np.random.default_rng(4)
    genome = "".join(rng.choice(list("ACGT"), 2000))
    (tmp_path / "g.fa").write_text(">chr1\n" + genome + "\n")
    rows = [("chr1", p, genome[p - 1], _other(genome[p - 1])) for p in (150, 700, 1990)]
    rows.append(("chr1", 900, genome[899:902], genome[899]))  # a deletion
    (tmp_path / "v.vcf").write_text("##fileformat=VCFv4.2\n##contig=<ID=chr1,length=2000>\n"
                                    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n" +
                                    "".join(f"{c}\t{p}\tv{i}\t{r}\t{a}\t.\t.\t.\n" for i, (c, p, r, a) in enumerate(rows)))
    from tfbind_dist.cli import main  # in this process and without Ray: the command's output is what is compared

    assert main(["variants", "--vcf", str(tmp_path / "v.vcf"), "--fasta", str(tmp_path / "g.fa"), "--runs",
                 str(ctcf_run), "--out", str(tmp_path / "out"), "--address", "inline", "--quiet"]) == 0
    cli = pd.read_parquet(tmp_path / "out").sort_values("variant", ignore_index=True)
    api = tb.variant_effects(model, [(*r, f"v{i}") for i, r in enumerate(rows)], tmp_path / "g.fa").scores
    assert list(cli.columns) == list(api.columns) and len(api) == 4
    pd.testing.assert_frame_equal(cli, api, check_dtype=False, atol=1e-6)


def test_training_and_specs_start_from_one_recipe_rule(synth_dir, tmp_path):
    from tfbind_dist import config as C
    from tfbind_dist.sweeps.spec import load_spec
    from tfbind_dist.tuning.spec import load_search

    default = C.load_recipe("default")
    assert tb.recipe() == default and tb.recipe("chapter") == C.RunConfig()
    assert tb.recipe(tf="REST", steps=5) == C.with_overrides(default, {"data.tf": "REST", "train.steps": 5})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"matrix": {"data.tf": ["REST"]}}))
    (job,) = load_spec(spec).jobs
    assert job.config == C.with_overrides(default, {"data.tf": "REST"})
    search = tmp_path / "search.yaml"
    search.write_text(yaml.safe_dump({"tfs": ["REST"], "space": {"train.learning_rate": {"choice": [0.001]}}}))
    assert load_search(search).base == default
    run_cli("train", "--tf", "CTCF", "--data", synth_dir, "--steps", "1", "--set", "eval_every=1", "--out",
            tmp_path / "run", "--quiet", env_extra={"XLA_FLAGS": ""}, check=True)
    trained = C.load(tmp_path / "run" / "config.yaml")
    assert trained.identity() == C.with_overrides(default, {"data.tf": "CTCF", "data.path": str(synth_dir),
                                                            "train.steps": 1, "train.eval_every": 1}).identity()


def test_the_cli_is_a_shell_over_the_api(ctcf_run, monkeypatch, capsys):
    from tfbind_dist import api, cli

    source = (REPO / "tfbind_dist" / "cli.py").read_text()
    tree = ast.parse(source)
    commands = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name.startswith("cmd_")]
    assert len(commands) >= 15
    long = {f.name: f.end_lineno - f.lineno + 1 for f in commands if f.end_lineno - f.lineno + 1 > 30}
    assert not long, long
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {m for m in imported if m.startswith("tfbind_dist.")} <= {"tfbind_dist.errors", "tfbind_dist.experiment"}

    def internal_error(*args, **kwargs):
        raise ZeroDivisionError("a bug, not a user error")

    assert cli.main(["sanity", "--run", str(ctcf_run / "missing")]) == 2  # a user error is one line
    assert capsys.readouterr().err.strip().count("\n") == 0
    monkeypatch.setattr(api, "sanity", internal_error)
    with pytest.raises(ZeroDivisionError):  # an internal error keeps its traceback
        cli.main(["sanity", "--run", str(ctcf_run)])


def test_train_from_python_resumes_and_a_finished_run_is_kept(synth_dir, tmp_path):
    config = tb.recipe("chapter", tf="CTCF", path=str(synth_dir), steps=20, eval_every=10, halt_after=10)
    halted = tb.train(config, tmp_path / "run", progress=False)
    assert halted["status"] == "halted" and halted["step"] == 10
    finished = tb.train(tb.recipe("chapter", tf="CTCF", path=str(synth_dir), steps=20, eval_every=10),
                        tmp_path / "run", progress=False)
    assert finished["status"] == "finished" and finished["resumed_from"] == [10]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best_step"] == finished["best_step"]
