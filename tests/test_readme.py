"""The README's first round trip, run as written against a served hub, so the README cannot drift.

The shell block under "A first round trip" is split into commands and run one by one in one bash (shell
variables such as TOKEN carry over). A comment `# prints "client id" (INTAKE_CLIENT_ID)` names a labelled
line the command prints (`client id: ...`) and the placeholder that later commands use for its value.
The hub is the embedded default, started as `make run` starts it, on a free port.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
README_URL = "http://127.0.0.1:8000"
PRINTS = re.compile(r'"([^"]+)" \(([A-Z][A-Z0-9_]*)\)')
COMMAND_TIMEOUT_S = 180


def round_trip_commands(readme: str) -> list[str]:
    """The commands of the shell block after '### A first round trip', continuation lines joined."""
    section = readme.split("### A first round trip", 1)[1]
    block = section.split("```sh\n", 1)[1].split("\n```", 1)[0]
    commands: list[str] = []
    pending = ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if not line.rstrip().endswith("\\"):
            commands.append(pending.rstrip("\n"))
            pending = ""
    assert not pending, "the block ends inside a continued command"
    return commands


def placeholders_printed(command: str) -> list[tuple[str, str]]:
    """(label, PLACEHOLDER) pairs named by the command's trailing comment."""
    comment = command.rsplit("#", 1)[1] if " # " in command or "  #" in command else ""
    return PRINTS.findall(comment)


def labelled(output: str, label: str) -> str:
    found = re.search(rf"^{re.escape(label)}: (\S+)", output, re.MULTILINE)
    assert found, f"no line '{label}: ...' in:\n{output}"
    return found.group(1)


@dataclass
class Shell:
    """One bash process; each command's output and exit status are read up to a marker line."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]

    @classmethod
    def start(cls, cwd: Path, env: dict[str, str]) -> Shell:
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"], cwd=cwd, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        return cls(process, lines)

    def run(self, command: str) -> tuple[int, str]:
        marker = f"__readme_done_{time.monotonic_ns()}__"
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\necho; echo {marker} $?\n")
        self.process.stdin.flush()
        out: list[str] = []
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while True:
            line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(f"bash ended during:\n{command}\n{''.join(out)}")
            if line.startswith(marker):
                return int(line.split()[1]), "".join(out)
            out.append(line)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def served_hub(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The embedded hub, initialised and served the way `make run PORT=...` does; yields its URL and env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHFED_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HASHFED_VAR_DIR=str(tmp_path / "var"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    subprocess.run([BIN / "hashfed", "init", "--base-url", url], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=COMMAND_TIMEOUT_S)
    log = (tmp_path / "hub.log").open("w")
    hub = subprocess.Popen([BIN / "hashfed", "serve", "--port", str(port)], env=env, cwd=tmp_path,
                           stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert hub.poll() is None, (tmp_path / "hub.log").read_text()
            try:
                if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "hub.log").read_text()
            time.sleep(0.2)
        yield url, env
    finally:
        hub.send_signal(signal.SIGINT)
        try:
            hub.wait(timeout=15)
        except subprocess.TimeoutExpired:
            hub.kill()
            hub.wait()
        log.close()


def test_the_readme_round_trip_runs_as_written(served_hub: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, env = served_hub
    commands = round_trip_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 15, commands  # the block was found and split, not silently empty
    # The round trip runs in a folder of its own: docs/examples beside it, as in a clone.
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(ROOT / "docs" / "examples", work / "docs" / "examples")
    shell = Shell.start(work, env)
    values: dict[str, str] = {}
    outputs: dict[str, str] = {}
    try:
        for command in commands:
            ready = command.replace(README_URL, url)
            for name, value in values.items():
                ready = re.sub(rf"\b{name}\b", value, ready)
            left = [m for m in re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b|\bPDQ\b", ready.split("#")[0])
                    if m not in {"TOKEN"}]
            assert not left, f"placeholders never printed before use: {left} in\n{command}"
            status, out = shell.run(ready)
            assert status == 0, f"{command}\nexited {status}:\n{out}"
            for label, name in placeholders_printed(command):
                values[name] = labelled(out, label)
            outputs[command.split("#")[0].strip()] = out
    finally:
        shell.close()

    assert set(values) == {"INTAKE_CLIENT_ID", "INTAKE_SECRET", "ACME_CLIENT_ID", "ACME_SECRET", "COLLECTION_ID",
                           "PDQ", "DISPUTE_ID"}
    submitted = next(out for cmd, out in outputs.items() if cmd.startswith("curl -s -H"))
    assert '"accepted"' in submitted or '"audit_seq"' in submitted, submitted
    matched = next(out for cmd, out in outputs.items() if cmd.startswith("hashfed-partner match"))
    assert values["COLLECTION_ID"] in matched and "reports sent 1, rejected 0" in matched, matched
    decided = next(out for cmd, out in outputs.items() if cmd.startswith("hashfed disputes decide"))
    assert f"dispute id: {values['DISPUTE_ID']}\nstatus: quarantined\n" in decided, decided
    shown = next(out for cmd, out in outputs.items() if cmd.startswith("hashfed-partner dispute --show"))
    assert "status: quarantined" in shown and " quarantine (effective): " in shown, shown
    verified = next(out for cmd, out in outputs.items() if cmd.startswith("hashfed audit export"))
    assert "OK: " in verified, verified
    if "follow the latest checkpoint" in verified:  # the newest entries wait for the next audit checkpoint
        assert "The hub signs an audit checkpoint every 30 s: the next is due by" in verified, verified
