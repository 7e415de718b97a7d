"""Run a sweep's jobs as Ray tasks across a cluster's nodes; resumable and fault tolerant.

Each job is one Ray task with explicit resources (CPUs, GPUs, TPUs), spread over
nodes, in a fresh worker process (`max_calls=1`, so JAX sees exactly the
accelerators Ray assigned). A task whose worker or node dies is retried by Ray
(`max_retries`) and resumes from the job's latest checkpoint: the run directory
under SWEEP_DIR, on storage every node can reach, is the job's whole state.
Finished jobs (their run directory holds a summary) are not submitted again.

With `pack: K`, jobs that share an architecture and batch shape (`training.packing.pack_key`)
and their resources run K at a time as one packed Ray task (`training.loop.train_pack`); each
keeps its own run directory, so the table, retries, resume and the report are the same.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from tfbind_dist.ray_utils import connect
from tfbind_dist.rundir import RunDir
from tfbind_dist.errors import StorageError
from tfbind_dist.storage import as_path, storage_env, storage_fault, write_text_atomic
from tfbind_dist.experiment import Resources, group_into_packs, pack_key
from tfbind_dist.launch import start_pack, start_processes
from tfbind_dist.sweeps.report import write_report
from tfbind_dist.sweeps.spec import Job, SweepSpec

STATES = ("pending", "running", "finished", "failed")


def _train_group(config: dict[str, Any], workdir: str, resources: Resources, max_restarts: int) -> dict[str, Any]:
    """Run one job over `hosts` nodes: a STRICT_SPREAD placement group, one process per node.

    The group is one job: if any process fails (its worker or node died), all are
    cancelled and the group restarts from the job's latest checkpoint, up to
    `max_restarts` times.
    """
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    group = placement_group([resources.bundle()] * resources.hosts, strategy="STRICT_SPREAD")
    try:
        for attempt in range(max_restarts + 1):
            ray.get(group.ready())
            refs = start_processes(config, workdir, resources, lambda i: PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=i))
            try:
                return ray.get(refs)[0]
            except ray.exceptions.RayError:
                for ref in refs:
                    ray.cancel(ref, force=True)
                if attempt == max_restarts:
                    raise
    finally:
        remove_placement_group(group)


def job_status(out, job: Job, state: str) -> dict[str, Any]:
    """One row of the live table, read from the job's run directory."""
    run = RunDir(out / job.job_id)
    progress, attempt = run.progress(), run.last_attempt()
    best = progress.get("best_auroc", -1.0)
    return {
        "job": job.job_id, "state": state, "node": attempt.get("node", "-"),
        "attempts": attempt.get("attempts", 0),
        "step": f"{progress.get('step', 0)}/{job.config.train.steps}",
        "best_auroc": f"{best:.4f}" if best is not None and best >= 0 else "-",
    }


class LiveTable:
    """Prints the job table, redrawn in place on a terminal, or on change otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = sys.stdout.isatty()
        self.last = ""
        self.lines = 0

    def show(self, rows: list[dict[str, Any]]) -> None:
        if not self.enabled:
            return
        text = pd.DataFrame(rows).to_string(index=False)
        if text == self.last:
            return
        if self.tty and self.lines:
            sys.stdout.write(f"\x1b[{self.lines}F\x1b[J")
        print(text, flush=True)
        self.last, self.lines = text, text.count("\n") + 1


def run_sweep(spec: SweepSpec, out: str | Path, *, address: str = "local", cpus_per_job: float | None = None,
              gpus_per_job: float | None = None, tpus_per_job: float | None = None, hosts_per_job: int | None = None,
              max_retries: int = 2, poll_seconds: float = 2.0, progress: bool = True,
              pack: int | None = None) -> pd.DataFrame:
    """Run every unfinished job of `spec` on Ray; returns the final status table and writes the report.

    The `*_per_job` arguments, when given, replace every job's resources from the spec; `pack`, when
    given, replaces the spec's `pack`.
    """
    out = as_path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "sweep.json", json.dumps(
        {"name": spec.name, "jobs": {j.job_id: j.config.to_dict() for j in spec.jobs}}, indent=1))
    states = {j.job_id: "finished" if RunDir(out / j.job_id).is_finished() else "pending" for j in spec.jobs}
    todo = [j for j in spec.jobs if states[j.job_id] == "pending"]
    print(f"sweep {spec.name}: {len(spec.jobs)} jobs, {len(spec.jobs) - len(todo)} already finished, "
          f"{len(todo)} to run", flush=True)
    table = LiveTable(progress)
    errors: dict[str, str] = {}
    if todo:
        connect(address, env_vars=storage_env())
        import ray

        group = ray.remote(_train_group)
        refs: dict[Any, list[str]] = {}

        def resources_of(job: Job) -> Resources:
            return job.resources.with_flags(cpus=cpus_per_job, gpus=gpus_per_job, tpus=tpus_per_job,
                                            hosts=hosts_per_job)

        def packable(job: Job):
            resources = resources_of(job)
            return None if resources.hosts > 1 else (pack_key(job.config), resources)

        for members in group_into_packs(todo, packable, spec.pack if pack is None else pack):
            job, resources = members[0], resources_of(members[0])
            if len(members) > 1:
                ref = start_pack([m.config.to_dict() for m in members], [str(out / m.job_id) for m in members],
                                 resources, "SPREAD", max_retries=max_retries, name=f"pack-{job.job_id}")
            elif resources.hosts > 1:  # the group task only coordinates; its processes hold the resources
                ref = group.options(num_cpus=0, max_retries=max_retries, name=job.job_id).remote(
                    job.config.to_dict(), str(out / job.job_id), resources, max_retries)
            else:
                (ref,) = start_processes(job.config.to_dict(), str(out / job.job_id), resources, lambda i: "SPREAD",
                                         max_retries=max_retries, name=job.job_id)
            refs[ref] = [m.job_id for m in members]
            for member in members:
                states[member.job_id] = "running"
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=poll_seconds, fetch_local=False)
                for ref in done:
                    jids = refs.pop(ref)
                    try:
                        ray.get(ref)
                        states.update(dict.fromkeys(jids, "finished"))
                    except Exception as err:  # a job's failure is reported, the sweep goes on
                        if storage_fault(err):  # ... unless its storage is full: every other job would fail too
                            for other in refs:
                                ray.cancel(other, force=True)
                            raise StorageError(f"{out / jids[0]}: no space left on the device holding it, or the "
                                               "storage refused a write; free space and re-run the same command: "
                                               "finished jobs are kept, the others resume from their last "
                                               "checkpoints") from None
                        for jid in jids:
                            states[jid] = "failed"
                            errors[jid] = str(err).strip().splitlines()[-1]
                table.show([job_status(out, j, states[j.job_id]) for j in spec.jobs])
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            print("\nsweep cancelled; checkpoints are kept: re-run the same command to resume", flush=True)
            raise
    final = pd.DataFrame([job_status(out, j, states[j.job_id]) for j in spec.jobs])
    table.show(final.to_dict("records"))
    for jid, message in errors.items():
        print(f"{jid} failed: {message}", file=sys.stderr)
    if (final.state == "finished").any():
        write_report(out)
    return final
