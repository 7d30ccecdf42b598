"""Start a private OpenSSH ``sshd`` on a free loopback port (tests and benchmarks).

The server runs as the current user with a private config in ``workdir``: fresh ed25519 host and client
keys (ssh-keygen), ``Subsystem sftp internal-sftp``, ``UsePAM no``, ``StrictModes no``, its own
``PidFile`` and ``AuthorizedKeysFile``, ``LogLevel DEBUG1`` to ``workdir/sshd.log`` (tests read it to
prove, e.g., that no authentication request reached the server). Nothing outside ``workdir`` is
touched, except that a root-run sshd needs its compiled-in ``/run/sshd`` directory to exist.

    with start_sshd(Path(tmp)) as server:
        settings = server.settings(root=..., local_dir=...)
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from connectors.filedrop.settings import SftpSettings, key_fingerprint
from connectors.retry import RetryPolicy

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
# Fast retries for tests: the behaviour (reconnect, start over) is what is under test, not the waits.
FAST_RETRY = RetryPolicy(max_attempts=3, initial_wait=0.05, max_wait=0.2, max_elapsed=60.0)


def _find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((c for c in SSHD_CANDIDATES if os.access(c, os.X_OK)), None)


def _keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _public_key(path: Path) -> paramiko.PKey:
    key_type, blob = path.read_text().split()[:2]
    return paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_banner(port: int, process: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port}:\n{log.read_text(errors='replace')}")


@dataclass
class SshdServer:
    """Handle on the running test sshd."""

    host: str
    port: int
    user: str
    workdir: Path
    host_public_key: paramiko.PKey
    other_public_key: paramiko.PKey  # a key the server does NOT have: for wrong-host-key tests
    client_key: Path
    encrypted_client_key: Path
    encrypted_client_passphrase: str
    log_path: Path

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint of the real host key."""
        return key_fingerprint(self.host_public_key.asbytes())

    def known_hosts_line(self, port: int | None = None, key: paramiko.PKey | None = None) -> str:
        """A known_hosts line for ``[127.0.0.1]:port`` (the sshd port by default) and ``key``."""
        chosen = key or self.host_public_key
        return f"[{self.host}]:{port or self.port} {chosen.get_name()} {chosen.get_base64()}"

    def log_size(self) -> int:
        """Current size of the sshd log; pass it to :meth:`log_since`."""
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """sshd log text written after ``offset``."""
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode("utf-8", errors="replace")

    def wait_for_log(self, offset: int, needle: str, timeout: float = 10.0) -> str:
        """Wait until ``needle`` appears in the log after ``offset`` (sshd writes asynchronously)."""
        deadline = time.monotonic() + timeout
        text = self.log_since(offset)
        while needle not in text and time.monotonic() < deadline:
            time.sleep(0.05)
            text = self.log_since(offset)
        return text

    def settings(self, root: Path, local_dir: Path, **overrides: Any) -> SftpSettings:
        """Key-auth settings pinned with the real host key, fast retries; override anything."""
        values: dict[str, Any] = {
            "name": "test_drop",
            "host": self.host,
            "port": self.port,
            "username": self.user,
            "private_key_path": str(self.client_key),
            "known_hosts_line": self.known_hosts_line(),
            "root": str(root),
            "pattern": "*.csv",
            "completeness": "done_file",
            "stable_polls_interval": 0.01,
            "connect_timeout": 10.0,
            "stall_timeout": 10.0,
            "local_dir": local_dir,
            "retry": FAST_RETRY,
        }
        values.update(overrides)
        return SftpSettings(**values)


def find_sshd() -> str | None:
    """Path of the sshd binary, or None when OpenSSH server is not installed."""
    if shutil.which("ssh-keygen") is None:
        return None
    return _find_sshd()


@contextlib.contextmanager
def start_sshd(workdir: Path, binary: str | None = None) -> Iterator[SshdServer]:
    """Run sshd on 127.0.0.1:<free port> until the block ends; raises RuntimeError if it cannot start."""
    binary = binary or find_sshd()
    if binary is None:
        raise RuntimeError("OpenSSH sshd/ssh-keygen not installed (apt-get install -y openssh-server)")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, other_key = workdir / "ssh_host_ed25519_key", workdir / "other_host_ed25519_key"
    client_key, encrypted_key = workdir / "client_ed25519", workdir / "client_encrypted_ed25519"
    passphrase = "correct horse battery staple"
    for path in (host_key, other_key, client_key):
        _keygen(path)
    _keygen(encrypted_key, passphrase)
    authorized = workdir / "authorized_keys"
    authorized.write_text(
        (workdir / "client_ed25519.pub").read_text() + (workdir / "client_encrypted_ed25519.pub").read_text()
    )
    authorized.chmod(0o600)
    if os.geteuid() == 0:
        # sshd running as root insists on its compiled-in privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port = _free_port()
    user = getpass.getuser()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "UsePAM no",
                "StrictModes no",
                "PubkeyAuthentication yes",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin yes",
                f"AllowUsers {user}",
                "MaxStartups 50",
                "MaxSessions 50",
                "LogLevel DEBUG1",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    check = subprocess.run([binary, "-t", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"sshd rejected the config {config}: {check.stderr}")
    log_path = workdir / "sshd.log"
    with open(log_path, "wb") as log_handle:
        process = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config)], stdout=log_handle, stderr=subprocess.STDOUT
        )
        try:
            _wait_for_banner(port, process, log_path, time.monotonic() + 15)
            yield SshdServer(
                host="127.0.0.1",
                port=port,
                user=user,
                workdir=workdir,
                host_public_key=_public_key(Path(str(host_key) + ".pub")),
                other_public_key=_public_key(Path(str(other_key) + ".pub")),
                client_key=client_key,
                encrypted_client_key=encrypted_key,
                encrypted_client_passphrase=passphrase,
                log_path=log_path,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
