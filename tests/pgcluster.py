"""A private PostgreSQL cluster that may be crashed: the durability test and the fault scripts use it.

Made with the programs of the PostgreSQL wheel the hub embeds (no server needs to be installed), in a
temporary folder, listening on a Unix socket there only; as root, run as the wheel's server user (initdb and
postgres refuse root). `crash()` is `pg_ctl stop -m immediate`: every server process quits at once, no
shutdown checkpoint, nothing left in the WAL buffers survives.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hub.ops import embedded
from tests.ports import free_port


@dataclass
class Cluster:
    """A cluster in `home` (data, socket and log), owned by the server's OS user."""

    home: Path
    port: int  # names the socket file; the settings decide whether anything listens on TCP
    bindir: Path
    run_as: list[str]  # runuser prefix when we are root
    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, settings: Mapping[str, str], *, prefix: str = "hashfed-cluster-") -> Cluster:
        bindir, run_as = embedded.server_programs()
        home = Path(tempfile.mkdtemp(prefix=prefix))  # short: a socket path has at most 107 bytes
        if run_as:
            user = pwd.getpwnam(embedded.SERVER_USER)
            os.chown(home, user.pw_uid, user.pw_gid)
        return cls(home, free_port(), bindir, run_as, dict(settings))

    @property
    def data(self) -> Path:
        return self.home / "data"

    def url(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@/{database}?host={self.home}&port={self.port}"

    def version(self) -> str:
        done = subprocess.run([str(self.bindir / "pg_ctl"), "--version"], capture_output=True, text=True)
        return done.stdout.strip().removeprefix("pg_ctl (").replace(")", "", 1)

    def _run(self, *args: str, check: bool = True) -> None:
        done = subprocess.run([*self.run_as, *args], capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            log = self.home / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout}{done.stderr}{tail}")

    def init(self) -> None:
        """initdb with the settings, then start."""
        # --no-sync: initdb's own fsyncs guard against an OS crash; these clusters crash the server only.
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.home}'\nport = {self.port}\n")
            conf.writelines(f"{name} = {value}\n" for name, value in self.settings.items())
        self.start()

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.home / "server.log"),
                  "-w", "-t", "120", "start")

    def crash(self, *, check: bool = True) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=check)

    def remove(self) -> None:
        self.crash(check=False)  # the server may already be down
        shutil.rmtree(self.home, ignore_errors=True)
