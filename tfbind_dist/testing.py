"""A local Google Cloud Storage emulator, for the tests and benchmarks of object-storage paths.

No real object store can be reached from a test machine; gcp-storage-emulator (the `test` extra)
speaks the GCS JSON API that gcsfs (run-directory files, Parquet) and TensorStore (orbax
checkpoints) use, pointed at by the same environment variables users set for any GCS-compatible
endpoint.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


@contextlib.contextmanager
def gcs_emulator(bucket: str, log: Path):
    """Run the emulator (in memory, in its own process) with `bucket`; yields `gs://<bucket>`.

    While the block runs, this process's environment points gcsfs and TensorStore at it (and
    `storage_env()` forwards the same variables to Ray workers).
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with open(log, "w") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1",
                                   "--port", str(port), "--in-memory", "--default-bucket", bucket, "--quiet"],
                                  stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_CLOUD_PROJECT": "tfbind-test"}
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield f"gs://{bucket}"
        finally:
            for key, value in old.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            server.terminate()
            server.wait(timeout=10)
