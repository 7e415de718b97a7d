"""`tfbind`: the command line, a shell over the Python API (`tfbind_dist.api`).

Each command parses its flags, calls one API function and prints. The project's own user errors
(`TfbindError`: a bad file, row, field or flag value) become one line `tfbind: error: ...` and exit
status 2; any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from tfbind_dist import api
from tfbind_dist import config as C
from tfbind_dist.errors import PREEMPTED_EXIT_CODE, TfbindError

EPILOG = "Docs: README.md. Every command exits non-zero with one line naming the bad file/row/field on bad input."
SPLITS = ["train", "valid", "test"]


# ------------------------------------------------------------------------------------------ commands


def cmd_train(args) -> int:
    flags = {"data.tf": args.tf, "model.name": args.model, "data.path": args.data, "train.steps": args.steps,
             "train.batch_size": args.batch_size, "train.seed": args.seed, "data.loader": args.loader,
             "train.halt_after": args.halt_after, "train.with_baseline": args.with_baseline,
             "train.stall_timeout": args.stall_timeout}
    overrides = {**{k: v for k, v in flags.items() if v is not None}, **C.parse_set_args(args.set)}
    config = api.recipe(args.config or args.recipe, overrides)
    spec = api.DistributedSpec(args.coordinator, args.num_processes, args.process_id, args.distributed_auto)
    summary = api.train(config, args.out, progress=not args.quiet, distributed=spec, preemptible=True)
    print(json.dumps(summary, indent=2))
    if summary["status"] == "preempted":
        print(f"tfbind: {summary['tf']}/{summary['model']} stopped by {summary['signal']} at step {summary['step']}, "
              "its checkpoint saved: the same command resumes from that step", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0


def cmd_baseline(args) -> int:
    result = api.baseline(args.tf, args.data, k=args.k, seed=args.seed)
    composition = api.baseline(args.tf, args.data, k=2, seed=args.seed)
    print(json.dumps({"tf": args.tf, "data": str(args.data), "baseline": result.description,
                      "valid_auroc": result.valid_auroc, "test_auroc": result.test_auroc,
                      "composition": composition.description, "composition_valid_auroc": composition.valid_auroc,
                      "composition_test_auroc": composition.test_auroc}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    print(json.dumps(api.evaluate(args.run, args.split), indent=2))
    return 0


def cmd_predict(args) -> int:
    chosen = api.choose_sequences(args.run, sequence=args.sequence, input=args.input)
    table = api.predictions_table(args.run, chosen, out=args.output)
    if args.output:
        print(f"wrote {len(table)} predictions to {args.output}")
    else:
        with __import__("pandas").option_context("display.max_colwidth", 40, "display.width", 120):
            print(table.to_string(index=False))
    return 0


def cmd_sanity(args) -> int:
    print(api.sanity(args.run).to_string(index=False))
    return 0


def cmd_explain(args) -> int:
    chosen = api.choose_sequences(args.run, sequence=args.sequence, input=args.input, split=args.split,
                                  label=args.label, index=args.index)
    methods = [m for group in args.method for m in group.split(",")]
    result = api.explain(args.run, chosen, methods, references=args.references, seed=args.seed, out=args.out,
                         plots=args.plots, progress=len(chosen.sequences) > 64)
    print("\n".join(result.describe(args.plots)))
    print(f"wrote {args.out}/attributions.npz ({', '.join(['prediction', *result.attributions])}) and figures of "
          f"{min(args.plots, len(result.names))} sequences to {args.out}")
    return 0


def cmd_motifs(args) -> int:
    found = api.discover_motifs(
        args.run, api.read_sequences(args.input) if args.input else None, method=args.method, split=args.split,
        label=None if args.label == "all" else int(args.label), from_scores=args.from_scores,
        max_sequences=args.max_sequences, references=args.references, seed=args.seed, max_seqlets=args.max_seqlets,
        leiden_runs=args.leiden_runs, tax_group=args.jaspar_tax_group, out=args.out, progress=not args.quiet)
    print("\n".join(found.describe()))
    print(f"motifs: wrote {args.out}/motifs.csv, modisco_results.h5, figures/")
    return 0


def cmd_sweep(args) -> int:
    final = api.sweep(args.spec, args.out, address=args.address, data=args.data, overrides=C.parse_set_args(args.set),
                      only=C.parse_set_args(args.only), cpus_per_job=args.cpus_per_job, gpus_per_job=args.gpus_per_job,
                      tpus_per_job=args.tpus_per_job, hosts_per_job=args.hosts_per_job, max_retries=args.max_retries,
                      pack=args.pack, progress=not args.quiet)
    failed = int((final.state == "failed").sum())
    print(f"{int((final.state == 'finished').sum())}/{len(final)} jobs finished"
          + (f", {failed} failed" if failed else "") + f"; leaderboard: {args.out}/leaderboard.md")
    return 1 if failed else 0


def cmd_tune(args) -> int:
    table = api.tune(args.spec, args.out, address=args.address, data=args.data, overrides=C.parse_set_args(args.set),
                     num_samples=args.num_samples, max_failures=args.max_failures, progress=not args.quiet)
    errors = int((table.state == "error").sum()) if len(table) else 0
    print(f"leaderboard: {args.out}/leaderboard.md" + (f"; {errors} trials failed" if errors else ""))
    return 1 if errors else 0


def cmd_score(args) -> int:
    summary = api.score(args.runs, args.input, args.out, [o for group in args.outputs for o in group.split(",")],
                        address=args.address, actors=args.actors, cpus_per_actor=args.cpus_per_actor,
                        gpus_per_actor=args.gpus_per_actor, batch_size=args.batch_size, ism_dtype=args.ism_dtype,
                        on_bad_rows=args.on_bad_rows, progress=not args.quiet)
    return _print_score_summary(summary)


def _print_score_summary(summary) -> int:
    """The final line of a scoring run (rows/s overall and per actor), failed shards on stderr; the exit status."""
    print(summary.describe())
    for message in summary.shards_failed:
        print(f"tfbind: error: {message}", file=sys.stderr)
    return 1 if summary.shards_failed else 0


def cmd_variants(args) -> int:
    errors, summary = api.score_variants(
        args.vcf, args.fasta, args.runs, args.out, attribution=args.attribution, address=args.address,
        actors=args.actors, cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
        batch_size=args.batch_size, rows_per_shard=args.rows_per_shard, on_mismatch=args.on_mismatch,
        chrom_map=args.chrom_map, progress=not args.quiet)
    status = _print_score_summary(summary)
    print(f"variants: scores in {args.out} (pyarrow.parquet.read_table reads them as one table); "
          f"{errors:,} variants not scorable, with reasons in {args.out}/errors/_input.parquet")
    return status


def cmd_report(args) -> int:
    from tfbind_dist.experiment import to_markdown

    table = api.report(args.root)
    print(to_markdown(table.drop(columns=["node"])))
    print(f"wrote {args.root}/leaderboard.parquet, leaderboard.md, learning_curves.png")
    return 0


def cmd_data_import(args) -> int:
    written = api.import_data(args.src, args.out, tf=args.tf, split=args.split, label=args.label,
                              label_field=args.label_field, n_policy=args.n_policy)
    print("\n".join(str(path) for path in written))
    return 0


def cmd_data_synth(args) -> int:
    written = api.synthesize(args.out, tfs=args.tfs, n_train=args.n_train, seed=args.seed)
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def cmd_data_peaks(args) -> int:
    built = api.dataset_from_peaks(args.peaks, args.fasta, args.out, tfs=args.tf, window=args.window, flank=args.flank,
                                   center=args.center, valid_chroms=_chroms(args.valid_chroms),
                                   test_chroms=_chroms(args.test_chroms), negative_ratio=args.negatives,
                                   shuffled_ratio=args.shuffled, gc_bin_width=args.gc_bin_width, margin=args.margin,
                                   exclude=args.exclude, max_n_fraction=args.max_n, chrom_map=args.chrom_map,
                                   seed=args.seed, multilabel=args.multilabel, progress=not args.quiet)
    print("\n".join(built.describe() + [f"wrote {built.out} ({', '.join(d.tf for d in built.tfs)}): train with "
                                        f"tfbind train --data {built.out} --tf {built.tfs[0].tf}"]))
    return 0


def _chroms(text):
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def cmd_data_shard(args) -> int:
    summary = api.shard(args.src, args.out, window=args.window, stride=args.stride, rows_per_shard=args.rows_per_shard,
                        n_policy=args.n_policy, fasta=args.fasta, center=args.center, off_end=args.off_end,
                        chrom_map=args.chrom_map, chroms=_chroms(args.chroms), progress=not args.quiet)
    print(f"wrote {summary.rows:,} rows in {summary.shards} shards to {summary.out_dir}"
          + (f"; skipped {summary.skipped_n:,} windows containing N" if summary.skipped_n else "")
          + (f"; dropped {summary.dropped:,} regions (listed in {summary.out_dir}/_dropped.parquet)"
             if summary.dropped else ""))
    return 0


def cmd_tracks(args) -> int:
    summary = api.tracks(args.scores, args.out, combine=args.combine, threshold=args.threshold, models=args.models,
                         plot=args.plot, progress=not args.quiet)
    print(summary.describe())
    return 0


# ------------------------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_sequence_sources(p: argparse.ArgumentParser):
    """The --sequence / --input choice shared by predict and explain; returns the group for more sources."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sequence", help="one DNA sequence")
    src.add_argument("--input", help="CSV/TSV/Parquet with a 'sequence' column, FASTA, or one sequence per line")
    return src


def _add_spec_flags(p: argparse.ArgumentParser, spec_help: str, out_help: str, unit: str) -> None:
    """SPEC, --out, --address, --data and --set of the commands that run a spec's trainings on Ray."""
    p.add_argument("spec", help=spec_help)
    p.add_argument("--out", required=True, help=f"{out_help} (on storage every node can reach)")
    p.add_argument("--address", default="local",
                   help="'local' (start Ray here), 'auto' (the cluster this machine belongs to) or HOST:PORT")
    p.add_argument("--data", help=f"override data.path for every {unit} (a dataset dir or 'synthetic')")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help=f"override a field for every {unit}, e.g. --set train.steps=100 (repeatable)")


def _add_actor_flags(p: argparse.ArgumentParser) -> None:
    """--address, --actors, --cpus/--gpus-per-actor, --batch-size of the commands on the scoring service."""
    p.add_argument("--address", default="local",
                   help="'local' (a private Ray instance), 'auto' or HOST:PORT (a cluster), or 'inline' (this process, "
                        "no Ray: small jobs)")
    p.add_argument("--actors", type=int, default=1, help="scoring actors (each loads every model once)")
    p.add_argument("--cpus-per-actor", type=float, default=0.5)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _parser_train(sub) -> None:
    p = sub.add_parser("train", help="train one TF model on every local device (resumes an existing --out)",
                       description="Train one TF model with the default recipe (or --recipe chapter, --config, --set "
                                   "overrides), data-parallel over every local device. Writes RUN_DIR/{config.yaml, "
                                   "metrics.parquet, checkpoints/, summary.json, learning_curve.png, tb/}. Re-running "
                                   "with the same --out resumes from the latest checkpoint. SIGTERM (a spot VM's or pod's "
                                   "stop) or Ctrl-C: the step in flight finishes, a checkpoint of that step is written "
                                   "within train.preempt_grace seconds (default 20; --set train.preempt_grace=S) and the "
                                   "command exits with status 143; the same command resumes from that step. A second "
                                   "signal stops at once.")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--recipe", help="named recipe (default: 'default', the strong general recipe; 'evoaug', the "
                                       "default's model trained on evolution-inspired augmentations, a little "
                                       "stronger at about 1.8x the time; 'chapter' reproduces chapter 3) or a "
                                       "recipe YAML path; flags below override it")
    base.add_argument("--config", help="YAML run config (data/model/train sections), e.g. a run's config.yaml")
    p.add_argument("--tf", help="transcription factor, e.g. CTCF (data.tf)")
    p.add_argument("--model", help="model preset: motif_pool (default recipe), conv, conv_v2, baseline, "
                                   "single_conv_only, fewer_conv_channels, remove_MLP, add_one_transformer_block, "
                                   "add_two_transformer_block")
    p.add_argument("--data", help="dataset dir (Parquet from `tfbind data import`, or chapter CSVs) or 'synthetic'")
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's, 3000 in default, 1000 in chapter)")
    p.add_argument("--batch-size", type=int,
                   help="global batch size, split over all devices (default: the recipe's, 64 / chapter 32)")
    p.add_argument("--seed", type=int, help="PRNG seed for init, dropout, augmentation and shuffling (default 42)")
    p.add_argument("--loader", choices=["grain", "tfdata"], help="input pipeline (tfdata needs the [tf] extra)")
    p.add_argument("--halt-after", type=int, help="stop after N steps with a resumable checkpoint (preemption drill)")
    p.add_argument("--stall-timeout", type=float, metavar="SECONDS",
                   help="exit with status 75 when a step, evaluation or checkpoint makes no progress for this long, "
                        "e.g. a collective whose peer died (default 600; 0 = wait forever); a retry resumes")
    p.add_argument("--with-baseline", action="store_true", default=None,
                   help="also fit the 6-mer logistic-regression baseline; summary.json gets baseline_valid_auroc")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="override any config field, e.g. --set train.learning_rate=3e-4 (repeatable)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    multi = p.add_argument_group("multi-host (one job over several processes/hosts; every process runs the "
                                 "same command with its own --process-id)")
    multi.add_argument("--coordinator", help="HOST:PORT of process 0 (env TFBIND_COORDINATOR)")
    multi.add_argument("--num-processes", type=int, help="processes in the job (env TFBIND_NUM_PROCESSES)")
    multi.add_argument("--process-id", type=int, help="this process, 0..N-1 (env TFBIND_PROCESS_ID)")
    multi.add_argument("--distributed-auto", action="store_true",
                       help="let JAX detect the cluster: Cloud TPU pod slices, SLURM (env TFBIND_DISTRIBUTED=auto)")
    p.set_defaults(func=cmd_train)


def _parser_model_commands(sub) -> None:
    p = sub.add_parser("baseline", help="k-mer logistic-regression baseline auROC for one TF (how far above it a model "
                                        "is)",
                       description="Fit logistic regression (scikit-learn) on strand-merged k-mer frequencies of the "
                                   "train split, choose the L2 strength on valid, and print valid and test auROC.")
    p.add_argument("--tf", required=True, help="transcription factor, e.g. REST")
    p.add_argument("--data", required=True, help="dataset dir (Parquet or chapter CSVs) or 'synthetic'")
    p.add_argument("-k", type=int, default=6, help="k-mer length (default 6: 2,080 strand-merged features)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser("evaluate", help="metrics of a run's best checkpoint on one split")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--split", default="test", choices=SPLITS)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="binding probabilities for sequences")
    p.add_argument("--run", required=True, help="run directory")
    _add_sequence_sources(p)
    p.add_argument("--output", help="OUT.csv or OUT.parquet (columns sequence, probability, logit); printed if omitted")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("sanity", help="the chapter's motif-filled vs low-complexity sequence check")
    p.add_argument("--run", required=True, help="run directory")
    p.set_defaults(func=cmd_sanity)


def _parser_explain(sub) -> None:
    p = sub.add_parser("explain", help="ISM, gradient and DeepLIFT/SHAP attributions of a run's model, with motif "
                                       "checks and plots",
                       description="Attributions of the run's best model for chosen sequences. Writes "
                                   "OUT/attributions.npz (sequences, prediction, one (N, L, 4) array per method: ism, "
                                   "grad, grad_corrected, grad_x_input, ig, deeplift_shap), motifs.csv (JASPAR best "
                                   "match vs the attribution hot window) and PNG figures.")
    p.add_argument("--run", required=True, help="run directory")
    src = _add_sequence_sources(p)
    src.add_argument("--split", choices=SPLITS, help="take sequences from the run's data split")
    p.add_argument("--index", default="0", help="with --split: row I or rows A:B (after --label filtering)")
    p.add_argument("--label", type=int, choices=[0, 1], help="with --split: only positives (1) or negatives (0)")
    p.add_argument("--method", action="append", required=True,
                   help="ism, grad, grad-corrected, grad-x-input, ig or deeplift-shap; repeat or comma-separate for "
                        "several")
    p.add_argument("--references", type=_positive_int, default=20,
                   help="deeplift-shap: dinucleotide shuffles of each sequence to average over (default 20)")
    p.add_argument("--seed", type=int, default=0,
                   help="deeplift-shap: seed of the shuffles (with each sequence's bases: the same sequence gets the "
                        "same references in any run)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--plots", type=int, default=3, help="per-sequence figures for the first N sequences")
    p.set_defaults(func=cmd_explain)


def _parser_motifs(sub) -> None:
    p = sub.add_parser("motifs", help="de-novo motif discovery: TF-MoDISco on attributions, motifs named by JASPAR",
                       description="What did the model learn: hypothetical contributions (ISM, corrected gradients or "
                                   "DeepLIFT/SHAP) of the run's best model on its positives (or --input, or what "
                                   "`tfbind score` wrote: --from-scores), TF-MoDISco (modisco-lite) to find seqlets "
                                   "and cluster them into motifs, TOMTOM (memelite) against the offline JASPAR CORE "
                                   "collection. Writes OUT/motifs.csv (motif, sign, seqlets, consensus, best three "
                                   "matches with q-values, the TF's own best-matching matrix and whether it is "
                                   "significant), OUT/modisco_results.h5 (modisco-lite's format) and "
                                   "OUT/figures/<motif>.png (contribution logo above its best match).")
    p.add_argument("--run", required=True, help="run directory (its model, and its TF for naming the own motif)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--split", choices=SPLITS, default="valid", help="sequences from the run's data split (default: "
                                                                      "valid)")
    src.add_argument("--input", help="sequences instead: CSV/TSV/Parquet with a 'sequence' column, FASTA or lines")
    src.add_argument("--from-scores", metavar="SCORES_DIR",
                     help="read the contributions `tfbind score` wrote (outputs ism, grad_corrected or "
                          "deeplift_shap of this run) instead of computing them; keeps the --max-sequences windows "
                          "with the largest total contribution")
    p.add_argument("--label", choices=["1", "0", "all"], default="1",
                   help="with --split: positives (default), negatives or all")
    p.add_argument("--method", required=True, choices=["ism", "grad-corrected", "deeplift-shap"],
                   help="attribution method (ISM of the probability; corrected gradients and DeepLIFT/SHAP of the "
                        "logit)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--max-sequences", type=_positive_int, default=20000,
                   help="at most this many sequences (default 20,000; TF-MoDISco's time grows with them)")
    p.add_argument("--references", type=_positive_int, default=20,
                   help="deeplift-shap: dinucleotide shuffles per sequence (default 20)")
    p.add_argument("--seed", type=int, default=0, help="deeplift-shap: seed of the shuffles")
    p.add_argument("--max-seqlets", type=_positive_int, default=2000,
                   help="TF-MoDISco: at most this many seqlets per sign (default 2,000, as modisco's command line)")
    p.add_argument("--leiden-runs", type=_positive_int, default=2,
                   help="TF-MoDISco: Leiden clustering runs (default 2, as modisco's command line; more is steadier)")
    p.add_argument("--jaspar-tax-group", default="vertebrates",
                   help="JASPAR CORE taxonomic group to match against (default vertebrates)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_motifs)


def _parser_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a sweep spec (jobs/*.yaml) as Ray tasks across a cluster",
                       description="Submit one Ray task per job of SPEC (resources per job as given), spread over "
                                   "the cluster's nodes. Each job trains into SWEEP_DIR/JOB_ID; a job whose worker "
                                   "or node dies is retried and resumes from its latest checkpoint; finished jobs are "
                                   "skipped on a re-run. Writes leaderboard.{md,parquet} and learning curves.")
    _add_spec_flags(p, "sweep spec YAML, e.g. jobs/per_tf.yaml", "sweep directory", "job")
    p.add_argument("--only", action="append", metavar="KEY=V1,V2", default=[],
                   help="run only jobs whose field has one of these values, e.g. --only data.tf=GABPA,REST")
    p.add_argument("--cpus-per-job", type=float, help="CPUs per job (default: the spec's resources, else 1)")
    p.add_argument("--gpus-per-job", type=float,
                   help="GPUs per job (or per pack); the job's mesh uses all it gets. A fraction (e.g. 0.25) "
                        "shares a GPU: each process's XLA memory fraction is set to 90%% of its share")
    p.add_argument("--tpus-per-job", type=float, help="TPU chips per job (Ray resource 'TPU')")
    p.add_argument("--hosts-per-job", type=int,
                   help="nodes per job (multi-host: one process per node via jax.distributed; a spec's "
                        "`resources: {hosts: N}` sets it); resources above are per node")
    p.add_argument("--pack", type=_positive_int,
                   help="train up to K jobs that share an architecture, batch shape and resources as one "
                        "vmapped program (overrides the spec's `pack:`; 1 = one process per job, the default)")
    p.add_argument("--max-retries", type=int, default=2, help="retries of a job whose worker or node died")
    p.add_argument("--quiet", action="store_true", help="no live table")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("tune", help="hyperparameter search on Ray Tune (random or Optuna TPE, ASHA early stopping)",
                       description="Search the space of SPEC (jobs/tune_*.yaml): Ray Tune samples trials, each trains "
                                   "one run per TF of the spec into OUT/runs/<job id> and reports the mean "
                                   "validation auROC at every evaluation; ASHA stops the weak ones early. A trial "
                                   "whose node dies resumes from its checkpoints; re-running the same command after a "
                                   "crash continues the search without retraining finished trials. Writes "
                                   "OUT/leaderboard.{parquet,md}, learning_curves.png, objective_vs_params.png and "
                                   "best_recipe.yaml (for `tfbind train --recipe`).")
    _add_spec_flags(p, "search spec YAML, e.g. jobs/tune_demo.yaml", "search directory", "trial")
    p.add_argument("--num-samples", type=int, help="trials to sample (default: the spec's num_samples)")
    p.add_argument("--max-failures", type=int, default=2,
                   help="restarts of a trial whose process or node died (each resumes from its checkpoints)")
    p.add_argument("--quiet", action="store_true", help="no trial table while it runs")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="leaderboard and learning curves of every finished run under a directory")
    p.add_argument("root", help="directory holding run directories (e.g. a sweep dir or runs/)")
    p.set_defaults(func=cmd_report)


def _parser_score(sub) -> None:
    p = sub.add_parser("score", help="score Parquet shards with one or more runs (Ray Data), resumable",
                       description="Predictions, gradients and ISM for every row of SHARD_DIR's Parquet shards (from "
                                   "`tfbind data shard`), with every run's best model, in one pass over the data. "
                                   "The actor that scores a shard writes OUT_DIR/<shard>.parquet itself, atomically, "
                                   "then the marker OUT_DIR/_done/<shard>.json; a re-run scores only shards without "
                                   "one. Runs, shards and OUT_DIR may be local paths or gs:// / s3:// URLs.")
    p.add_argument("--runs", nargs="+", required=True, help="run directories or URLs (column prefix: each run's TF)")
    p.add_argument("--input", required=True, help="shard directory or URL (from `tfbind data shard`)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--outputs", action="append", default=[], required=True,
                   help="comma-separated: prob, logit, grad, grad_corrected, ism, ism_summary, deeplift_shap "
                        "(20 dinucleotide shuffles per window, seed 0)")
    _add_actor_flags(p)
    p.add_argument("--ism-dtype", choices=["float16", "float32"], default="float16")
    p.add_argument("--on-bad-rows", choices=["fail", "skip"], default="fail",
                   help="fail: a shard with a bad row is not written (others are); skip: write bad rows to "
                        "OUT_DIR/errors/_<shard>.parquet and score the rest")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("variants", help="variant effects: a VCF and a reference genome, scored by one or more runs",
                       description="For every ALT allele of VCF: the window of the models' length centred on the "
                                   "variant, from the indexed FASTA (index built when missing), ref and alt "
                                   "probability and logit per run, and their differences (alt - ref). Indels keep "
                                   "the window's start: the ALT allele replaces the REF bases and the right flank "
                                   "shifts. Runs on the scoring service (the same actors, resume and gs:// support "
                                   "as `tfbind score`); OUT reads as one Parquet dataset, and variants that cannot "
                                   "be scored are listed with a reason in OUT/errors/_input.parquet.")
    p.add_argument("--vcf", required=True, help="VCF (.vcf, .vcf.gz or bgzip)")
    p.add_argument("--fasta", required=True, help="reference genome FASTA (plain, bgzip, or gzip: decompressed "
                                                   "once into the data cache to be indexed)")
    p.add_argument("--runs", nargs="+", required=True, help="run directories or URLs (column prefix: each run's TF)")
    p.add_argument("--out", required=True, help="output directory or URL")
    p.add_argument("--attribution", choices=["none", "ism_center", "grad"], default="none",
                   help="also: the change of probability for each base at the variant (ism_center: 4 more "
                        "forward passes), or the corrected input gradient there (grad)")
    p.add_argument("--on-mismatch", choices=["error", "fail"], default="error",
                   help="a REF that differs from the FASTA: report the variant in the errors file (error) or stop")
    p.add_argument("--chrom-map", choices=["none", "auto"], default="none",
                   help="auto: match 'chr1' and '1' by adding or dropping the 'chr' prefix")
    _add_actor_flags(p)
    p.add_argument("--rows-per-shard", type=int, default=100_000, help="alleles per shard (the unit of resume)")
    p.set_defaults(func=cmd_variants)


def _parser_data(sub) -> None:
    data = sub.add_parser("data", help="import, synthesize, build from peaks or shard datasets").add_subparsers(dest="data_command",
                                                                                             required=True)
    p = data.add_parser("import", help="chapter CSVs (dir or file) or FASTA -> Parquet dataset dir",
                        description="Read {TF}_{train,valid,test}_sequences.csv[.gz] files (a directory or one file) "
                                    "or a FASTA, validate every row, and write DIR/{TF}_{split}.parquet atomically.")
    p.add_argument("src", help="directory of chapter CSVs, one CSV, or a FASTA file")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--tf", help="TF name (needed for FASTA or oddly named files)")
    p.add_argument("--split", choices=SPLITS, help="split (needed for FASTA)")
    p.add_argument("--label", type=int, choices=[0, 1], help="label for every FASTA record")
    p.add_argument("--label-field", default="label", help="FASTA header token holding the label, as label=1")
    p.add_argument("--n-policy", default="uniform", choices=["uniform", "zeros", "ones", "error"],
                   help="how N is encoded; 'error' rejects sequences containing N")
    p.set_defaults(func=cmd_data_import)

    p = data.add_parser("shard", help="stream a FASTA genome, CSV/TSV or Parquet into Parquet shards for scoring",
                        description="Tile FASTA records into windows (chrom, start, end) or re-shard CSV/TSV/Parquet "
                                    "sequences, streaming with flat memory, into OUT/part-NNNNN.parquet with a stable "
                                    "int64 `id` and uint8 base codes as fixed-size binary; OUT/_SHARDS.json last.")
    p.add_argument("src", help="FASTA (.fa/.fasta/.fna[.gz]), CSV/TSV with a 'sequence' column, Parquet file/dir, or "
                               "regions: BED/narrowPeak (.bed/.narrowPeak/.broadPeak[.gz], with --fasta)")
    p.add_argument("--out", required=True, help="shard directory: a local path or a gs:// or s3:// URL")
    p.add_argument("--window", type=int, default=200, help="window / sequence length (bp)")
    p.add_argument("--stride", type=int, help="FASTA tiling step (default: the window)")
    p.add_argument("--rows-per-shard", type=int, default=100_000)
    p.add_argument("--n-policy", choices=["skip", "keep"], default="skip",
                   help="FASTA windows containing N (or IUPAC ambiguity codes): skip and count them, or keep as N")
    p.add_argument("--chroms", help="comma-separated FASTA records to tile (e.g. a held-out chromosome; default: all)")
    regions = p.add_argument_group("regions (a BED or narrowPeak SRC): one window per region, written in genome order")
    regions.add_argument("--fasta", help="the genome the regions lie on (plain, bgzip or gzip FASTA; indexed by pysam)")
    regions.add_argument("--center", choices=["summit", "midpoint"], default="summit",
                         help="centre each window on the narrowPeak summit (column 10; BED: the midpoint) or on the "
                              "region's midpoint")
    regions.add_argument("--off-end", choices=["pad", "drop"], default="pad",
                         help="a window past a contig end: pad with N and flag it (off_end), or drop it (counted and "
                              "listed in OUT/_dropped.parquet)")
    regions.add_argument("--chrom-map", choices=["none", "auto"], default="none",
                         help="auto: match 'chr1' and '1' by adding or dropping the 'chr' prefix")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_data_shard)

    p = data.add_parser("peaks", help="peak calls + genome FASTA -> per-TF training sets (GC-matched background, "
                                      "held-out chromosomes)",
                        description="One labelled dataset per TF (OUT/{TF}_{train,valid,test}.parquet, what `tfbind "
                                    "train --data OUT` reads): windows centred on each peak's summit (else midpoint; a "
                                    "zero-length interval is its point) as positives, background windows of the same "
                                    "GC content from the same chromosome split as negatives, validation and test on "
                                    "whole held-out chromosomes. Every row keeps chrom, start, end, source (peak name "
                                    "or 'background') and gc; OUT/_PEAKS.json records every setting, the counts and "
                                    "how well GC matches. Re-running the same command is a no-op.")
    p.add_argument("peaks", nargs="+", help="peak files, one per TF: BED (3+ columns; zero-length points allowed) or "
                                            "narrowPeak (.bed/.narrowPeak[.gz])")
    p.add_argument("--fasta", required=True, help="the genome the peaks lie on (plain, bgzip or gzip FASTA)")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--tf", nargs="+", help="the TF of each peak file, in order (default: each file's name up to the "
                                           "first '_', '.' or '-')")
    p.add_argument("--window", type=int, default=200, help="sequence length of the model (bp)")
    p.add_argument("--flank", type=int, default=0, help="store J more bases on each side, for random shifts of up "
                                                         "to J bp in training (train.jitter)")
    p.add_argument("--center", choices=["summit", "midpoint"], default="summit")
    p.add_argument("--valid-chroms", help="comma-separated validation chromosomes (default: chosen to hold about "
                                          "10%% of the peaks)")
    p.add_argument("--test-chroms", help="comma-separated test chromosomes (default: about 10%% of the peaks)")
    p.add_argument("--negatives", type=float, default=1.0, help="GC-matched background windows per positive")
    p.add_argument("--shuffled", type=float, default=0.0, help="dinucleotide-shuffled positives per positive, as "
                                                              "more negatives")
    p.add_argument("--gc-bin-width", type=float, default=0.02, help="GC-content bin for matching")
    p.add_argument("--margin", type=int, default=0, help="background keeps this many bp away from every peak")
    p.add_argument("--exclude", help="BED of regions no background window may touch (an ENCODE blacklist, say)")
    p.add_argument("--max-n", type=float, default=0.01, help="largest fraction of N in a kept window")
    p.add_argument("--chrom-map", choices=["none", "auto"], default="none",
                   help="auto: match 'chr1' and '1' by adding or dropping the 'chr' prefix")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--multilabel", action="store_true", help="also OUT/multilabel_{split}.parquet: every window "
                                                             "once, a 0/1 column per TF")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_data_peaks)

    p = data.add_parser("synth", help="synthetic data from real JASPAR motifs (the embedded default data)")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--tfs", nargs="+", help="TFs to generate (default: all 10)")
    p.add_argument("--n-train", type=int, default=6000, help="train rows per TF (valid/test scale with it)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_data_synth)


def _parser_tracks(sub) -> None:
    p = sub.add_parser("tracks", help="bigWig tracks and a BED of predicted sites from a finished scoring run",
                       description="For every model of SCORES_DIR (a `tfbind score` output over shards tiled from a "
                                   "FASTA or made from regions): OUT/<model>.prob.bw and .logit.bw, per-base "
                                   "attribution bigWigs for the attributions scored (ism, grad_corrected, grad, "
                                   "deeplift_shap), and OUT/<model>.sites.bed (windows at or above --threshold, merged "
                                   "where they touch). Chromosome sizes come from the shard manifest: no FASTA needed.")
    p.add_argument("scores", metavar="SCORES_DIR", help="a finished `tfbind score` output folder or URL")
    p.add_argument("--out", required=True, help="output folder or URL")
    p.add_argument("--combine", choices=["center", "mean"], default="center",
                   help="overlapping windows: each base from the window whose centre is nearest (center: a tiling's "
                        "central stride bases, as ChromBPNet/CREsted) or the mean of the windows covering it")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="predicted sites: windows with probability at or above this (default 0.5)")
    p.add_argument("--models", nargs="+", metavar="KEY", help="only these models (column prefixes, e.g. CTCF)")
    p.add_argument("--plot", metavar="CHROM:START-END",
                   help="also OUT/locus_*.png: each model's probability over the locus (1-based, as IGV shows it) "
                        "above the attribution logo of its best window")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tracks)


PARSERS = (_parser_train, _parser_model_commands, _parser_explain, _parser_motifs, _parser_sweep, _parser_score,
           _parser_tracks, _parser_data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfbind", description="Train, evaluate and score transcription-factor binding models.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in PARSERS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")  # the command line only writes figures to files
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TfbindError as err:
        print(f"tfbind: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfbind: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
