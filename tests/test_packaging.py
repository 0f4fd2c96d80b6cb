"""Packaging rules: a partner or regulator installs no hub code, and the console scripts exist."""

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules_after_import(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout
    return set(out.split())


def test_audit_and_partners_pull_in_no_flask_and_no_hub():
    loaded = _modules_after_import(
        "import importlib, pkgutil, audit, partners\n"
        "for pkg in (audit, partners):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        if not m.name.startswith('partners.intake'):  # the intake is a Flask app of its own\n"
        "            importlib.import_module(m.name)\n"
    )
    assert "audit" in loaded and "partners" in loaded
    forbidden = {m for m in loaded if m.split(".")[0] in {"flask", "flask_smorest", "hub", "werkzeug", "alembic"}}
    assert forbidden == set()


def test_the_intake_pulls_in_no_hub():
    loaded = _modules_after_import("import partners.intake.cli\n")
    assert "flask" in loaded and {m for m in loaded if m.split(".")[0] == "hub"} == set()


def test_audit_imports_no_database_framework():
    loaded = _modules_after_import(
        "import importlib, pkgutil, audit\n"
        "for m in pkgutil.walk_packages(audit.__path__, 'audit.'):\n"
        "    importlib.import_module(m.name)\n"
    )
    assert {m for m in loaded if m.split(".")[0] in {"sqlalchemy", "psycopg2", "requests", "partners"}} == set()


def test_console_scripts_and_extras_are_declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["scripts"] == {
        "hashfed": "hub.cli.main:main",
        "hashfed-partner": "partners.cli.main:main",
        "hashfed-audit": "audit.cli:main",
        "hashfed-intake": "partners.intake.cli:main",
    }
    extras = meta["optional-dependencies"]
    assert {"partner", "match", "hub", "test"} <= set(extras)
    assert not any(dep.lower().startswith("flask") for dep in meta["dependencies"] + extras["partner"])
    for name in ("flask", "flask-smorest", "sqlalchemy", "alembic", "psycopg2-binary", "authlib", "apscheduler"):
        assert any(dep.lower().startswith(name + ">=") for dep in extras["hub"]), name


def test_licence_is_an_spdx_expression():
    """PEP 639: a TOML table licence is deprecated and makes every install print a banner."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    assert any(req.startswith("setuptools>=77") for req in meta["build-system"]["requires"])
