"""The public Python API: what `import tfbind_dist as tb` gives a notebook, and what `tfbind ...` calls.

Models are loaded from run directories (local or object storage) into one `Model` that carries its
variables, sequence length, N policy and TF. Every function that takes sequences takes them as a
string or a list of strings, an (N, L) array of base codes or an (N, L, 4) one-hot array, and gives
the same numbers for each; a bad character or code, a wrong length or no sequences at all raise
`SequenceError` (a `TfbindError`) naming the sequence and position. Results are named tuples of
numpy arrays or pandas DataFrames. Functions that write files (a run, a sweep, a scores folder) do
so only where told; plots draw inline in a notebook, or on the `ax` they are given.

Heavy modules (JAX, Flax, Ray) are imported inside the functions, so `import tfbind_dist` stays
fast and the command line reports argument mistakes before they load.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import numpy as np

from tfbind_dist import config as config_lib
from tfbind_dist.data.readers import Sequences, read_sequences
from tfbind_dist.errors import ConfigError, DataError, SequenceError, TfbindError
from tfbind_dist.registry import JASPAR_IDS, TFS
from tfbind_dist.storage import check_access, writes_to

if TYPE_CHECKING:
    import pandas as pd

    from tfbind_dist.training.restore import Model

__all__ = [
    "Model", "load_model", "load_models", "Sequences", "read_sequences", "choose_sequences", "sequence_codes",
    "Predictions", "predict", "predictions_table", "evaluate", "sanity", "ism", "gradients", "deeplift_shap",
    "Explanation", "explain", "VariantEffects", "variant_effects", "score_variants", "discover_motifs", "recipe",
    "train", "train_pack", "DistributedSpec", "baseline", "sweep", "tune", "report",  # noqa: F822 (DistributedSpec: lazy)
    "synthesize", "import_data", "dataset_from_peaks", "shard", "score", "tracks", "plot_locus",
    "plot_ism", "plot_attribution_logo", "plot_gradient_grid", "plot_gradient_zoom",  # noqa: F822 (lazy)
    "plot_learning_curve",
    "TfbindError", "ConfigError", "DataError", "SequenceError", "TFS",
]

GRADIENT_METHODS = ("grad", "grad-corrected", "grad-x-input", "ig")


# ----------------------------------------------------------------------------------------- models


def load_model(run, which: str = "best") -> Model:
    """A trained run's best (or `which="latest"`) model, from its run directory or URL; a `Model` is returned
    as it is. The run is checked (config, sequence length, checkpoint) before JAX is imported."""
    if not isinstance(run, (str, Path)):
        return run
    from tfbind_dist.rundir import RunDir

    RunDir(run).load_config()
    from tfbind_dist.training.restore import load_model as restore

    return restore(run, which)


def load_models(runs) -> list[Model]:
    """Several runs' models for multi-model calls: paths, URLs or patterns (`'gs://b/sweep/*'`), or Models."""
    from tfbind_dist.rundir import expand_runs

    out = []
    for run in [runs] if isinstance(runs, (str, Path)) else runs:
        out += [load_model(r) for r in expand_runs([str(run)])] if isinstance(run, (str, Path)) else [run]
    return out


def _models(models) -> tuple[list[Model], bool]:
    """(models, whether one was given rather than a list)."""
    if isinstance(models, (str, Path)) and not any(c in str(models) for c in "*?["):
        return [load_model(models)], True
    if not isinstance(models, (list, tuple, str, Path)):
        return [models], True
    return load_models(models), False


def model_keys(models: list[Model]) -> list[str]:
    """Each model's name in multi-model outputs: its TF, or its run directory's name where two share a TF."""
    from tfbind_dist.rundir import column_keys

    return column_keys([m.tf for m in models], [m.run or m.tf for m in models])


# -------------------------------------------------------------------------------------- sequences


def choose_sequences(model, *, sequence: str | None = None, input=None, split: str | None = None,
                     label: int | None = None, index=None) -> Sequences:
    """Sequences with names, from exactly one source: one `sequence`, an `input` file, or rows of the run's
    data `split` (`label` 0/1 to filter, `index` a row, "A:B", a slice or None for all)."""
    from tfbind_dist.data.selection import choose_sequences as choose
    from tfbind_dist.rundir import RunDir

    data = RunDir(model).load_config().data if isinstance(model, (str, Path)) else model.config.data
    return choose(data, sequence=sequence, input=input, split=split, label=label, index=index)


def sequence_codes(model: Model, sequences, names=None) -> np.ndarray:
    """(N, L) uint8 codes of `sequences` in any accepted form, checked against the model's length and N policy."""
    from tfbind_dist.data.encoding import as_codes

    return as_codes(sequences, length=model.length, n_policy=model.n_policy, names=names,
                    trained_on=f"the model of {model.run}" if model.run else "the model")


def _names(sequences, count: int) -> list[str]:
    names = getattr(sequences, "names", None)
    return list(names) if names is not None else [f"sequence {i}" for i in range(count)]


def _strings(sequences, codes: np.ndarray) -> list[str]:
    """The sequences as text (for outputs that carry them)."""
    from tfbind_dist.data.encoding import decode

    given = getattr(sequences, "sequences", sequences)
    if isinstance(given, str):
        return [given.upper()]
    if isinstance(given, (list, tuple)) and given and isinstance(given[0], str):
        return [s.upper() for s in given]
    return decode(codes)


# -------------------------------------------------------------------------------------- inference


class Predictions(NamedTuple):
    """Binding probability and logit per sequence: (N,) for one model, (N, M) for M models (`models` names
    the columns)."""

    probability: np.ndarray
    logit: np.ndarray
    models: list[str]


def predict(models, sequences, *, batch_size: int = 1024) -> Predictions:
    """Predictions of one model (or run) or several for `sequences`."""
    from tfbind_dist.data.batching import apply_in_batches
    from tfbind_dist.interpret.outputs import predict as forward
    from tfbind_dist.training.metrics import sigmoid

    models, single = _models(models)
    logits = []
    for model in models:
        codes = sequence_codes(model, sequences)
        logits.append(apply_in_batches(lambda chunk, m=model: forward(m.module, m.variables, chunk,
                                                                      n_policy=m.n_policy, output="logit"),
                                       codes, batch_size).astype(np.float32))
    logit = logits[0] if single else np.stack(logits, axis=1)
    return Predictions(sigmoid(logit.astype(np.float64)).astype(np.float32), logit, model_keys(models))


def predictions_table(model, sequences, *, out=None) -> pd.DataFrame:
    """`tfbind predict`'s table (sequence, probability, logit), written to `out` (.csv or .parquet) when given."""
    import pandas as pd

    if out is not None and not str(out).endswith((".csv", ".parquet")):
        raise DataError(f"--output {out}: name a .csv or .parquet file")
    model = load_model(model)
    codes = sequence_codes(model, sequences)
    result = predict(model, codes)
    table = pd.DataFrame({"sequence": _strings(sequences, codes), "probability": result.probability,
                          "logit": result.logit})
    if out is not None:
        from tfbind_dist.storage import write_csv_atomic, write_table_atomic

        if str(out).endswith(".parquet"):
            import pyarrow as pa

            write_table_atomic(pa.Table.from_pandas(table, preserve_index=False), out)
        else:
            write_csv_atomic(table, out)
    return table


def evaluate(model, split: str = "test") -> dict[str, Any]:
    """Loss, accuracy, auROC and auPRC of the model on a split of its run's data."""
    from tfbind_dist.data.sources import load_splits
    from tfbind_dist.training.evaluate import evaluate_model

    model = load_model(model)
    data = load_splits(model.config.data, splits=(split,))[split]
    return {"run": model.run, "split": split, "step": model.step, "rows": len(data), **evaluate_model(model, data)}


def sanity(model) -> pd.DataFrame:
    """The chapter's check: the TF's motif tiled (expect high) against homopolymers and repeats (expect low)."""
    import pandas as pd

    from tfbind_dist.interpret.sanity import sanity_sequences

    model = load_model(model)
    rows = sanity_sequences(model.tf, model.length)
    result = predict(model, [seq for _, _, seq in rows])
    return pd.DataFrame({"check": [name for name, _, _ in rows], "expected": [exp for _, exp, _ in rows],
                         "probability": result.probability.round(6)})


# ------------------------------------------------------------------------------------ attribution


def ism(model, sequences, *, output: str = "prob", kernel: str = "auto", batch_size: int = 64):
    """In-silico saturation mutagenesis: `ISMResult(delta (N, L, 4), importance (N, L), reference (N,))`.

    `kernel`: "auto" (the exact fast kernel where the model family declares its split, else the
    reference kernel), "fast" or "reference" (every mutant through the whole model; same numbers).
    """
    from tfbind_dist.data.batching import apply_in_batches
    from tfbind_dist.interpret.ism import ISMResult, ism as auto, ism_fast, ism_reference

    run = {"auto": auto, "fast": ism_fast, "reference": ism_reference}.get(kernel)
    if run is None:
        raise ConfigError(f"kernel must be auto, fast or reference, got {kernel!r}")
    model = load_model(model)
    codes = sequence_codes(model, sequences)
    result = apply_in_batches(lambda chunk: run(model.module, model.variables, chunk, n_policy=model.n_policy,
                                                output=output)._asdict(), codes, batch_size)
    return ISMResult(**result)


def gradients(model, sequences, *, method: str = "grad-corrected", output: str = "logit",
              batch_size: int = 64) -> np.ndarray:
    """(N, L, 4) input gradients of the logit (or `output="prob"`): `method` grad (raw), grad-corrected
    (minus the mean over bases, Majdandzic et al. 2023), grad-x-input, or ig (integrated gradients)."""
    from tfbind_dist.interpret import ARRAY_NAMES, explain as explain_codes, normalize_methods

    (method,) = normalize_methods([method])
    if method not in GRADIENT_METHODS:
        raise ConfigError(f"method must be one of {', '.join(GRADIENT_METHODS)}, got {method!r}")
    model = load_model(model)
    arrays = explain_codes(model.module, model.variables, sequence_codes(model, sequences), [method],
                           n_policy=model.n_policy, batch_size=batch_size, grad_output=output)
    return arrays[ARRAY_NAMES[method]]


def deeplift_shap(model, sequences, *, references: int = 20, seed: int = 0, hypothetical: bool = False) -> np.ndarray:
    """(N, L, 4) DeepLIFT/SHAP of the logit against `references` dinucleotide shuffles of each sequence
    (drawn from `seed` and the sequence): each position's contribution on its observed base, or with
    `hypothetical` what each of the four bases would contribute (TF-MoDISco's input)."""
    from tfbind_dist.interpret.deeplift import deeplift_shap as kernel

    model = load_model(model)
    return kernel(model.module, model.variables, sequence_codes(model, sequences), n_references=references,
                  seed=seed, n_policy=model.n_policy, hypothetical=hypothetical)


class Explanation(NamedTuple):
    """What `explain` found: per sequence its prediction and one (N, L, 4) array per method, and where the
    TF's JASPAR motif matches against where the first method's importance is highest."""

    sequences: list[str]
    names: list[str]
    prediction: np.ndarray  # (N,) probabilities
    attributions: dict[str, np.ndarray]  # method (ism, grad, grad_corrected, grad_x_input, ig, deeplift_shap) -> array
    motifs: pd.DataFrame | None  # best JASPAR match of the TF vs the attribution hot window (None: TF unknown)
    tf: str

    def describe(self, count: int = 3) -> list[str]:
        """Lines as `tfbind explain` prints them: the strongest substitutions of the first `count` sequences
        (with ISM) and how often the hot window overlaps a significant motif match."""
        from tfbind_dist.interpret.report import describe_top

        lines = []
        for i, name in enumerate(self.names[:count]):
            lines.append(f"{name}: prediction {self.prediction[i]:.4f}")
            if "ism" in self.attributions:
                lines += [f"  {line}" for line in describe_top(self.attributions["ism"][i], self.sequences[i],
                                                               float(self.prediction[i]))]
        if self.motifs is not None:
            significant = self.motifs[self.motifs.significant]
            lines.append(f"{self.tf} motif: {len(significant)}/{len(self.motifs)} sequences with a significant match "
                         f"(p < 1e-4); hot window of {next(iter(self.attributions))} overlaps it in "
                         f"{int(significant.overlap.sum())}/{len(significant)}")
        return lines

    def plot(self, index: int = 0, method: str | None = None, *, ax=None):
        """Sequence `index`'s ISM map (with the motif match highlighted), or its attribution logo for
        another method (default: the first method explained)."""
        from tfbind_dist.interpret import plots

        method = (method or next(iter(self.attributions))).replace("-", "_")
        values = self.attributions[method][index]
        title = f"{self.tf} {method}, {self.names[index]} (p={self.prediction[index]:.3f})"
        if method == "ism":
            highlight = None
            if self.motifs is not None and self.motifs.significant[index]:
                highlight = (int(self.motifs.motif_start[index]), int(self.motifs.motif_end[index]))
            return plots.plot_ism(values, self.sequences[index], ax=ax, title=title, highlight=highlight)
        return plots.plot_attribution_logo(values, self.sequences[index], ax=ax, title=title)


def explain(model, sequences, methods: Iterable[str] | str = ("ism",), *, references: int = 20, seed: int = 0,
            out=None, plots: int = 3, progress: bool = False) -> Explanation:
    """Attributions of `sequences` by each method (ism, grad, grad-corrected, grad-x-input, ig, deeplift-shap),
    the prediction, and the TF's motif check; with `out`, also `tfbind explain`'s files there:
    attributions.npz, motifs.csv and figures of the first `plots` sequences."""
    from tfbind_dist.interpret import ARRAY_NAMES, explain as explain_codes, normalize_methods
    from tfbind_dist.interpret.report import motif_table

    methods = normalize_methods([methods] if isinstance(methods, str) else methods)
    model = load_model(model)
    codes = sequence_codes(model, sequences, names=getattr(sequences, "names", None))
    names = _names(sequences, len(codes))
    arrays = explain_codes(model.module, model.variables, codes, methods, n_policy=model.n_policy,
                           references=references, seed=seed, progress=progress)
    prediction = arrays.pop("prediction")
    strings = _strings(sequences, codes)
    table = None
    if model.tf in JASPAR_IDS:
        table = motif_table(strings, np.abs(arrays[ARRAY_NAMES[methods[0]]]).sum(-1), model.tf, model.n_policy)
        table.insert(0, "name", names)
        table.insert(1, "prediction", prediction.round(6))
    result = Explanation(strings, names, prediction, arrays, table, model.tf)
    if out is not None:
        _write_explanation(out, result, plots)
    return result


def _write_explanation(out, result: Explanation, plots: int) -> None:
    from tfbind_dist.interpret.report import explanation_figures
    from tfbind_dist.storage import as_path, save_figure, write_csv_atomic, write_npz_atomic

    out = as_path(out)
    write_npz_atomic(out / "attributions.npz", sequences=np.array(result.sequences), names=np.array(result.names),
                     prediction=result.prediction, **result.attributions)
    if result.motifs is not None:
        write_csv_atomic(result.motifs, out / "motifs.csv")
    arrays = {"prediction": result.prediction, **result.attributions}
    for name, figure in explanation_figures(result.sequences, arrays, result.motifs, result.tf, plots).items():
        save_figure(figure, out / name, dpi=110)


# --------------------------------------------------------------------------------------- variants


class VariantEffects(NamedTuple):
    """Per scorable ALT allele and model: ref and alt probability and logit and their differences (the
    columns `tfbind variants` writes); and the alleles that could not be scored, with a reason."""

    scores: pd.DataFrame
    errors: pd.DataFrame


def variant_effects(models, variants, fasta, *, attribution: str = "none", chrom_map: str = "none",
                    on_mismatch: str = "error", batch_size: int = 512) -> VariantEffects:
    """Effects of a few variants held in memory (a DataFrame, or a list of mappings or (chrom, pos, ref, alt[, id])
    tuples; `pos` 1-based as in a VCF) on one model or several, windows read from an indexed `fasta`."""
    import pyarrow as pa

    from tfbind_dist.data.shard import codes_column
    from tfbind_dist.data.genome import Genome
    from tfbind_dist.data.variants import VariantWindows, errors_table, variant_table, \
        variants_from_table
    from tfbind_dist.scoring.scorer import ScoringModel, score_table
    from tfbind_dist.scoring.variants import ATTRIBUTIONS

    if attribution not in ATTRIBUTIONS:
        raise ConfigError(f"attribution must be one of {', '.join(ATTRIBUTIONS)}, got {attribution!r}")
    models, _ = _models(models)
    lengths = {m.length for m in models}
    if len(lengths) > 1:
        raise DataError(f"the models were trained on different sequence lengths {sorted(lengths)}; score them apart")
    windows = VariantWindows(Genome.open(fasta), lengths.pop(), chrom_map=chrom_map, on_mismatch=on_mismatch)
    rows, errors = [], []
    for variant in variants_from_table(variants):
        made, failed = windows.of(variant)
        rows += made
        errors += failed
    scoring = [ScoringModel(key, m) for key, m in zip(model_keys(models), models)]
    outputs = ("variant_effect", *ATTRIBUTIONS[attribution])
    codes, extra = variant_table(rows, windows.window)
    table = pa.table({"id": pa.array(np.arange(len(rows)), pa.int64()), "codes": codes_column(codes),
                      **{name: extra.column(name) for name in extra.column_names}})
    parts = [score_table(table.slice(start, batch_size), scoring, outputs, pad_to=batch_size).table
             for start in range(0, max(len(rows), 1), batch_size)]
    return VariantEffects(pa.concat_tables(parts).to_pandas(), errors_table(errors).to_pandas())


def score_variants(vcf, fasta, runs, out, **options):
    """`tfbind variants`: every ALT allele of a VCF scored on the scoring service into `out` (resumable);
    (alleles not scorable, the scoring summary). `options`: those of `scoring.variants.score_variants`."""
    from tfbind_dist.scoring.variants import score_variants as run

    _reach(reads=list(runs), writes=[out])
    with writes_to(out, resumes="the variants already scored are kept, the rest are scored"):
        return run(vcf, fasta, list(runs), out, **options)


# ----------------------------------------------------------------------------------------- motifs


def discover_motifs(model, sequences=None, *, method: str = "deeplift-shap", split: str = "valid", label: int | None = 1,
                    from_scores=None, max_sequences: int = 20_000, references: int = 20, seed: int = 0,
                    max_seqlets: int = 2000, leiden_runs: int = 2, tax_group: str = "vertebrates", out=None,
                    progress: bool = True):
    """De-novo motifs the model learned: TF-MoDISco on hypothetical contributions (`method` ism,
    grad-corrected or deeplift-shap), each motif named by TOMTOM against JASPAR CORE `tax_group`.

    The contributions are of `sequences` (any accepted form), else of the run's `split` (positives by
    default; `label=None` for all), or read from a scores folder `tfbind score` wrote (`from_scores`),
    keeping the `max_sequences` windows with the most contribution. Returns a `Discovery` (table,
    motifs, matches; `.plot(i)` draws motif i); with `out`, also writes motifs.csv,
    modisco_results.h5 and figures/ there.
    """
    from tfbind_dist.data import jaspar
    from tfbind_dist.discovery import ModiscoSettings, discover_motifs as discover, inputs
    from tfbind_dist.interpret import DISCOVERY_METHODS
    from tfbind_dist.rundir import RunDir

    method = method.replace("_", "-")
    if method not in DISCOVERY_METHODS:
        raise ConfigError(f"method must be one of {', '.join(DISCOVERY_METHODS)}, got {method!r}")
    settings = ModiscoSettings(max_seqlets_per_metacluster=max_seqlets, n_leiden_runs=leiden_runs)
    jaspar.collection(tax_group)  # a wrong group is reported before any attribution is computed
    if from_scores is not None:
        run = model if isinstance(model, (str, Path)) else model.run
        tf = RunDir(run).load_config().data.tf
        contributions = inputs.from_scores(from_scores, str(run), method, keep=max_sequences, progress=progress)
    else:
        chosen = sequences if sequences is not None else choose_sequences(model, split=split, label=label)
        model = load_model(model)
        codes = sequence_codes(model, chosen, names=getattr(chosen, "names", None))
        names = _names(chosen, len(codes))
        if len(codes) > max_sequences:
            print(f"motifs: using the first {max_sequences:,} of {len(codes):,} sequences (max_sequences)", flush=True)
            codes, names = codes[:max_sequences], names[:max_sequences]
        tf = model.tf
        contributions = inputs.from_model(model, codes, names, method, references=references, seed=seed,
                                          progress=progress)
    if out is None:
        return discover(contributions, tf, out, settings=settings, tax_group=tax_group, progress=progress)
    _reach(writes=[out])
    with writes_to(out, resumes="nothing of this run is kept; the motifs are found again"):
        return discover(contributions, tf, out, settings=settings, tax_group=tax_group, progress=progress)


# --------------------------------------------------------------------------------------- training


def recipe(name_or_path: str | Path | None = None, overrides: dict[str, Any] | None = None, **fields):
    """A run config: a named recipe ("default", "chapter") or a recipe/config YAML (none: the default
    recipe), with overrides by dotted key (`{"train.steps": 300}`) or bare field name (`steps=300, tf="CTCF"`;
    `model="conv_v2"` names the preset)."""
    config = config_lib.load_recipe(name_or_path)
    if "model" in fields:  # the preset's name: model="conv_v2"
        fields["model.name"] = fields.pop("model")
    changes = {**(overrides or {}), **fields}
    return config_lib.with_overrides(config, changes) if changes else config


def _run_config(config) -> config_lib.RunConfig:
    if isinstance(config, config_lib.RunConfig):
        return config.validate()
    if isinstance(config, dict):
        return config_lib.from_dict(config)
    return recipe(config)


def train(config, workdir, *, progress: bool = True, distributed=None, preemptible: bool = False) -> dict[str, Any]:
    """Train one TF model (data-parallel over every local device) into `workdir` and return its summary.

    `config`: a RunConfig (e.g. from `recipe`), a dict of sections, a recipe name or YAML path, or None
    (the default recipe). Re-running with the same `workdir` resumes; a finished run is not retrained.
    `distributed`: a `DistributedSpec` for one process of a multi-host job (default: from the
    TFBIND_* environment variables, if set). `preemptible`: SIGTERM (a spot VM's or pod's stop) or SIGINT
    finishes the step in flight, checkpoints that step within `train.preempt_grace` seconds and returns
    a summary with status "preempted"; training the same `workdir` again resumes from it.
    """
    from tfbind_dist.data.sources import check_data

    config = _run_config(config)
    check_data(config.data)  # a wrong path or TF is reported before JAX is imported
    check_access(str(workdir), write=True)
    from tfbind_dist.training.distributed import DistributedSpec, initialize
    from tfbind_dist.training.loop import train_and_evaluate

    initialize(distributed if distributed is not None and distributed.enabled else DistributedSpec.from_env())
    with writes_to(workdir, resumes="it resumes from the run's last checkpoint"):
        return train_and_evaluate(config, workdir, progress=progress, preemptible=preemptible)


def train_pack(configs, workdirs, *, progress: bool = True) -> list[dict[str, Any]]:
    """Train several runs of one architecture and batch shape as one vmapped program (e.g. one recipe on
    every TF), each into its own run directory; their summaries, in order. On an accelerator this fills
    the device that one small run leaves mostly idle. Members may differ in TF and data, seed, learning
    rate, weight decay, dropout rate, patience and evaluation cadence (`experiment.MEMBER_KEYS`).
    Re-running resumes every unfinished member; finished members are not retrained.
    """
    from tfbind_dist.data.sources import check_data
    from tfbind_dist.training.loop import train_pack as train_packed

    configs = [_run_config(c) for c in configs]
    workdirs = list(workdirs)
    if len(configs) != len(workdirs):
        raise ConfigError(f"train_pack: {len(configs)} configs but {len(workdirs)} run directories")
    for config, workdir in zip(configs, workdirs):
        check_data(config.data)
        check_access(str(workdir), write=True)
    with writes_to(workdirs[0], resumes="its members resume from their last checkpoints"):
        return train_packed(configs, workdirs, progress=progress)


def baseline(tf: str, data, *, k: int = 6, seed: int = 0):
    """The k-mer logistic-regression baseline of a TF's data: `BaselineResult` (valid and test auROC). `k=2` is
    the dinucleotide composition baseline."""
    from tfbind_dist.data.sources import load_splits
    from tfbind_dist.training.kmer_baseline import fit_kmer_baseline

    return fit_kmer_baseline(load_splits(config_lib.DataConfig(tf=tf, path=str(data))), k=k, seed=seed)


def _spec_overrides(data, overrides) -> dict[str, Any]:
    changes = dict(overrides or {})
    if data is not None:
        changes["data.path"] = config_lib.absolute_data_path(str(data))  # jobs may start in another directory
    return changes


def sweep(spec, out, *, address: str = "local", data=None, overrides: dict[str, Any] | None = None,
          only: dict[str, str] | None = None, cpus_per_job: float | None = None, gpus_per_job: float | None = None,
          tpus_per_job: float | None = None, hosts_per_job: int | None = None, max_retries: int = 2,
          pack: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Run a sweep spec's jobs (a YAML path, or a `SweepSpec`) as Ray tasks into `out`; the final job table.

    `data` and `overrides` apply to every job; `only` keeps jobs by field ({"data.tf": "GABPA,REST"});
    the `*_per_job` resources replace the spec's; `pack` (K) replaces the spec's `pack:` (jobs of one
    architecture trained K at a time as one vmapped program). Re-running skips finished jobs and resumes
    the rest.
    """
    from tfbind_dist.sweeps.runner import run_sweep
    from tfbind_dist.sweeps.spec import load_spec, select_jobs

    if isinstance(spec, (str, Path)):
        spec = load_spec(spec, _spec_overrides(data, overrides))
    if only:
        spec = select_jobs(spec, only)
    _reach(writes=[out])
    return run_sweep(spec, out, address=address, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job,
                     tpus_per_job=tpus_per_job, hosts_per_job=hosts_per_job, max_retries=max_retries,
                     pack=pack, progress=progress)


def tune(spec, out, *, address: str = "local", data=None, overrides: dict[str, Any] | None = None,
         num_samples: int | None = None, max_failures: int = 2, progress: bool = True) -> pd.DataFrame:
    """A hyperparameter search (a search spec YAML, or a `SearchSpec`) on Ray Tune into `out`; its leaderboard.
    Re-running the same call continues an interrupted search."""
    from tfbind_dist.data.sources import check_data
    from tfbind_dist.tuning.search import run_search
    from tfbind_dist.tuning.spec import load_search, with_samples

    if isinstance(spec, (str, Path)):
        spec = load_search(spec, _spec_overrides(data, overrides))
    spec = with_samples(spec, num_samples)
    for tf in spec.tfs:  # a wrong data path or TF is reported before Ray starts
        check_data(spec.trial_config({}, tf).data)
    _reach(writes=[out])
    return run_search(spec, out, address=address, progress=progress, max_failures=max_failures)


def report(root) -> pd.DataFrame:
    """Leaderboard (and learning-curve figures) over every finished run under `root`, written there."""
    from tfbind_dist.sweeps.report import write_report

    return write_report(root)


# ------------------------------------------------------------------------------------------- data


def _reach(*, reads=(), writes=()) -> None:
    """The object-store buckets a command reads and writes, reached before any work starts (a missing bucket
    or refused credentials is one StorageError naming it; local paths are not checked)."""
    for path in reads:
        check_access(str(path).split("*")[0].rstrip("/") or str(path), write=False)
    for path in writes:
        check_access(str(path), write=True)


def synthesize(out, *, tfs: Iterable[str] | None = None, n_train: int = 6000, seed: int = 0) -> list[Path]:
    """The embedded default data: per TF, splits planted with its real JASPAR motif, into `out`."""
    from tfbind_dist.data.synthetic import synthesize as make

    tfs = list(tfs or TFS)
    unknown = [tf for tf in tfs if tf not in TFS]
    if unknown:
        raise DataError(f"--tfs: unknown TF {unknown[0]!r}; choose from {', '.join(TFS)}")
    with writes_to(out, resumes="the data is made again"):
        return make(out, tfs=tfs, n_train=n_train, seed=seed)


def import_data(src, out, **options) -> list[Path]:
    """The chapter's CSVs (a folder or one file) or a FASTA as a Parquet dataset folder (`data.io.import_dataset`)."""
    from tfbind_dist.data.io import import_dataset

    with writes_to(out, resumes="the files are written again"):
        return import_dataset(src, out, **options)


def dataset_from_peaks(peaks, fasta, out, *, tfs=None, window: int = 200, flank: int = 0, center: str = "summit",
                       valid_chroms=None, test_chroms=None, negative_ratio: float = 1.0, shuffled_ratio: float = 0.0,
                       gc_bin_width: float = 0.02, margin: int = 0, exclude=None, max_n_fraction: float = 0.01,
                       chrom_map: str = "none", seed: int = 0, multilabel: bool = False, progress: bool = True):
    """Per-TF training sets from peak calls (BED/narrowPeak, one file per TF) and the genome FASTA, into the
    dataset folder `out` that `train` reads: positives at the summits, GC-matched background from the same
    chromosome split, validation and test on held-out chromosomes (`data.peaks`). Returns a `PeakDatasets`.
    `valid_chroms` / `test_chroms`: lists of contigs (default: chosen to hold about 10% of the peaks each)."""
    from tfbind_dist.data.peaks import PeakSettings, build_peak_datasets

    peaks = [peaks] if isinstance(peaks, (str, Path)) else list(peaks)
    settings = PeakSettings(window=window, flank=flank, center=center,
                            valid_chroms=None if valid_chroms is None else tuple(valid_chroms),
                            test_chroms=None if test_chroms is None else tuple(test_chroms),
                            negative_ratio=negative_ratio, shuffled_ratio=shuffled_ratio, gc_bin_width=gc_bin_width,
                            margin=margin, exclude=None if exclude is None else str(Path(exclude).resolve()),
                            max_n_fraction=max_n_fraction, chrom_map=chrom_map, seed=seed, multilabel=multilabel)
    with writes_to(out, resumes="the training sets are built again"):
        return build_peak_datasets(peaks, fasta, out, tfs=tfs, settings=settings, progress=progress)


def shard(src, out, **options):
    """A FASTA genome, CSV/TSV or Parquet streamed into Parquet shards for scoring (`data.shard.shard_input`)."""
    from tfbind_dist.data.shard import shard_input

    _reach(writes=[out])
    with writes_to(out, resumes="the shards are written again from the start"):
        return shard_input(src, out, **options)


def score(runs, input_dir, out, outputs, **options):
    """Score a shard folder with one run or several on the Ray scoring service, into `out` (resumable):
    `outputs` among prob, logit, grad, grad_corrected, ism, ism_summary, deeplift_shap. `options`:
    address, actors, cpus_per_actor, gpus_per_actor, batch_size, ism_dtype, on_bad_rows, progress."""
    from tfbind_dist.scoring.service import score_shards

    if isinstance(outputs, str):
        outputs = outputs.split(",")
    runs = [str(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)]
    _reach(reads=[*runs, input_dir], writes=[out])
    with writes_to(out, resumes="the shards already scored are kept, the rest are scored"):
        return score_shards(runs, input_dir, out, tuple(outputs), **options)


def tracks(scores_dir, out, *, combine: str = "center", threshold: float = 0.5, models: list[str] | None = None,
           plot: str | None = None, progress: bool = True):
    """Genome-browser tracks of a finished scoring run into `out`: per model bigWigs of the predictions (and of
    the attributions scored) and a BED of predicted sites (`scoring.tracks`); with `plot` ("chr1:1,000-2,000"),
    also the locus figure `out/locus_<chrom>_<start>_<end>.png`. Returns a `TracksSummary`."""
    from tfbind_dist.scoring.tracks import parse_locus, write_tracks

    if plot is not None:
        parse_locus(plot)  # a malformed locus is reported before the tracks are written
    _reach(reads=[scores_dir], writes=[out])
    with writes_to(out, resumes="the tracks are written again"):
        summary = write_tracks(scores_dir, out, combine=combine, threshold=threshold, models=models,
                               progress=progress)
    if plot is not None:
        from tfbind_dist.plotting import detached
        from tfbind_dist.scoring.tracks import plot_locus as draw, read_locus
        from tfbind_dist.storage import as_path, save_figure

        locus = read_locus(scores_dir, plot, models=models, combine=combine)
        figure, axes = detached((12.0, 4.8 * len(locus.probability)), 2 * len(locus.probability), 1)
        draw(locus, axes=axes[:, 0])
        name = f"locus_{locus.chrom}_{locus.start + 1}_{locus.end}.png"
        save_figure(figure, as_path(out) / name, dpi=100)
        summary.files.append(name)
    return summary


# ------------------------------------------------------------------------------------------ plots


def plot_locus(scores_dir, locus: str, *, models: list[str] | None = None, combine: str = "center", axes=None):
    """Each model's probability over a locus ("chr1:1,000-2,000", 1-based as IGV shows it) above the attribution
    logo of its best window there, read from a scores folder; returns the axes (two per model)."""
    from tfbind_dist.scoring.tracks import plot_locus as draw, read_locus

    return draw(read_locus(scores_dir, locus, models=models, combine=combine), axes=axes)



def plot_learning_curve(run, *, axes=None):
    """A run's loss and validation metrics against step (two axes; default a new figure)."""
    from tfbind_dist.rundir import RunDir
    from tfbind_dist.training.plots import plot_learning_curve as plot

    run_dir = RunDir(run if isinstance(run, (str, Path)) else run.run)
    config = run_dir.load_config()
    return plot(run_dir.metrics(), f"{config.data.tf} {config.model.name}", axes=axes)


def __getattr__(name: str):
    """`Model`, `DistributedSpec` and the attribution plots, imported on first use (they bring JAX)."""
    if name == "Model":
        from tfbind_dist.training.restore import Model

        return Model
    if name == "DistributedSpec":
        from tfbind_dist.training.distributed import DistributedSpec

        return DistributedSpec
    if name in ("plot_ism", "plot_attribution_logo", "plot_gradient_grid", "plot_gradient_zoom"):
        from tfbind_dist.interpret import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
