"""Local object stores for the tests and benchmarks of object-storage paths: a GCS emulator and an S3 server.

No real object store can be reached from a test machine. gcp-storage-emulator (the `test` extra) speaks
the GCS JSON API that gcsfs (run-directory files, Parquet) and TensorStore (orbax checkpoints) use; moto's
server mode (the `test` extra) speaks the S3 API that s3fs uses, with IAM authentication on, so a wrong
key is refused as AWS refuses it. Each is pointed at by the environment variables users set for any
compatible endpoint (STORAGE_EMULATOR_HOST, AWS_ENDPOINT_URL and the AWS credentials).
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _environment(env: dict[str, str]):
    """`env` set in this process until the block ends, then the variables as they were."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _server(command: list[str], port: int, log: Path, env: dict[str, str], server_env: dict[str, str] | None = None):
    """Run a server process until the block ends, with `env` set in this process while it runs."""
    with open(log, "w") as log_file:
        server = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                  env={**os.environ, **(server_env or {})})
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        try:
            with _environment(env):
                yield
        finally:
            server.terminate()
            server.wait(timeout=10)


# The emulator's own entry point, less one cost: after every object write or delete it re-serialises the
# metadata of every object it has ever held (soft-deleted ones too) into a `.meta` file, which in memory mode
# is never read back. That made each write slower than the last: a module's tests spent most of their
# time there (a 20-step run directory took 170 s). Skipping the dump changes no response.
_GCS_EMULATOR_MAIN = ("import sys; from gcp_storage_emulator import storage; "
                      "storage.Storage._write_config_to_file = lambda self: None; "
                      "from gcp_storage_emulator.__main__ import main; main(sys.argv[1:])")


@contextlib.contextmanager
def gcs_emulator(bucket: str, log: Path):
    """Run the emulator (in memory, in its own process) with `bucket`; yields `gs://<bucket>`.

    While the block runs, this process's environment points gcsfs and TensorStore at it (and
    `storage_env()` forwards the same variables to Ray workers).
    """
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "GOOGLE_CLOUD_PROJECT": "tfbind-test"}
    command = [sys.executable, "-c", _GCS_EMULATOR_MAIN, "start", "--host", "127.0.0.1", "--port", str(port),
               "--in-memory", "--default-bucket", bucket, "--quiet"]
    with _server(command, port, log, env):
        yield f"gs://{bucket}"


S3_ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
_SETUP_CALLS = 3  # unauthenticated requests moto allows before enforcing IAM: user, access key, policy


@contextlib.contextmanager
def s3_server(bucket: str, log: Path):
    """Run moto's S3 server (its own process, IAM authentication on) with `bucket`; yields `s3://<bucket>`.

    While the block runs, this process's environment holds AWS_ENDPOINT_URL and the access key of a
    user allowed every S3 action (`storage_env()` forwards them to Ray workers); any other key is refused.
    """
    import boto3

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1", "-p", str(port)]
    with _server(command, port, log, {}, {"INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_CALLS)}):
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup",
                           aws_secret_access_key="setup")
        iam.create_user(UserName="tfbind")
        key = iam.create_access_key(UserName="tfbind")["AccessKey"]
        iam.put_user_policy(UserName="tfbind", PolicyName="s3", PolicyDocument=json.dumps(S3_ALLOW_ALL))
        env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"], "AWS_DEFAULT_REGION": "us-east-1"}
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)
        try:
            with _environment(env):
                _reset_s3_clients()
                yield f"s3://{bucket}"
        finally:
            _reset_s3_clients()  # with the variables as they were


def _reset_s3_clients() -> None:
    """Drop cached s3fs clients, so the next one reads the current endpoint and credentials."""
    try:
        import s3fs
    except ImportError:
        return
    s3fs.S3FileSystem.clear_instance_cache()
