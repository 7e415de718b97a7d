"""Run a sweep's jobs as Ray tasks across a cluster's nodes; resumable and fault tolerant.

Each job is one Ray task with explicit resources (CPUs, GPUs, TPUs), spread over
nodes, in a fresh worker process (`max_calls=1`, so JAX sees exactly the
accelerators Ray assigned). A task whose worker or node dies is retried by Ray
(`max_retries`) and resumes from the job's latest checkpoint: the run directory
under SWEEP_DIR, on storage every node can reach, is the job's whole state.
Jobs whose run directory already holds summary.json are not submitted again.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from tfbind_dist.sweep.report import write_report
from tfbind_dist.sweep.spec import Job, SweepSpec

STATES = ("pending", "running", "finished", "failed")


def _train_job(config: dict[str, Any], workdir: str) -> dict[str, Any]:
    """Body of one sweep task (runs on a Ray worker)."""
    import ray

    from tfbind_dist import config as C
    from tfbind_dist.train.loop import train_and_evaluate

    node = ray.util.get_node_ip_address()
    Path(workdir).mkdir(parents=True, exist_ok=True)
    with open(Path(workdir) / "attempts.jsonl", "a") as log:
        log.write(json.dumps({"node": node, "node_id": ray.get_runtime_context().get_node_id(),
                              "pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}) + "\n")
    summary = train_and_evaluate(C.from_dict(config), workdir, progress=False)
    if summary.get("status") == "finished" and "node" not in summary:
        summary["node"] = node
        path = Path(workdir) / "summary.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(path)
    return summary


def connect(address: str) -> None:
    """Join an existing cluster (`auto`, HOST:PORT) or start a local one (`local`)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address == "local":
        ray.init(include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
        return
    host = address.split(":")[0]
    kwargs = {"_node_ip_address": host} if host.startswith("127.") else {}
    ray.init(address=address, log_to_driver=False, **kwargs)


def _last_attempt(workdir: Path) -> dict[str, Any]:
    path = workdir / "attempts.jsonl"
    if not path.exists():
        return {}
    lines = path.read_text().strip().splitlines()
    return {**json.loads(lines[-1]), "attempts": len(lines)} if lines else {}


def job_status(out: Path, job: Job, state: str) -> dict[str, Any]:
    """One row of the live table, read from the job's run directory."""
    workdir = out / job.job_id
    progress = {}
    if (workdir / "progress.json").exists():
        try:
            progress = json.loads((workdir / "progress.json").read_text())
        except json.JSONDecodeError:
            pass
    attempt = _last_attempt(workdir)
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


def run_sweep(spec: SweepSpec, out: str | Path, *, address: str = "local", cpus_per_job: float = 1.0,
              gpus_per_job: float = 0.0, tpus_per_job: float = 0.0, max_retries: int = 2,
              poll_seconds: float = 2.0, progress: bool = True) -> pd.DataFrame:
    """Run every unfinished job of `spec` on Ray; returns the final status table and writes the report."""
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.json").write_text(json.dumps(
        {"name": spec.name, "jobs": {j.job_id: j.config.to_dict() for j in spec.jobs}}, indent=1))
    states = {j.job_id: "finished" if (out / j.job_id / "summary.json").exists() else "pending" for j in spec.jobs}
    todo = [j for j in spec.jobs if states[j.job_id] == "pending"]
    print(f"sweep {spec.name}: {len(spec.jobs)} jobs, {len(spec.jobs) - len(todo)} already finished, "
          f"{len(todo)} to run", flush=True)
    table = LiveTable(progress)
    errors: dict[str, str] = {}
    if todo:
        import ray

        connect(address)
        resources = {"TPU": tpus_per_job} if tpus_per_job else None
        remote = ray.remote(max_calls=1)(_train_job)
        refs = {}
        for job in todo:
            ref = remote.options(num_cpus=cpus_per_job, num_gpus=gpus_per_job, resources=resources,
                                 max_retries=max_retries, retry_exceptions=False, scheduling_strategy="SPREAD",
                                 name=job.job_id).remote(job.config.to_dict(), str(out / job.job_id))
            refs[ref] = job.job_id
            states[job.job_id] = "running"
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=poll_seconds, fetch_local=False)
                for ref in done:
                    jid = refs.pop(ref)
                    try:
                        ray.get(ref)
                        states[jid] = "finished"
                    except Exception as err:  # a job's failure is reported, the sweep goes on
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
