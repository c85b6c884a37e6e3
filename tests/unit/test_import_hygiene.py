"""The boundaries that keep the command line fast and the engine headless, checked
in a fresh interpreter (``sys.modules`` shows what an import really pulled in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("pandas", "numpy", "sklearn", "sqlalchemy", "sqlmodel", "textual", "pydantic", "scipy", "dask", "distributed")
COMMANDS = (
    "console",
    "generate",
    "validate",
    "ingest",
    "status",
    "train",
    "score",
    "evaluate",
    "anomalies",
    "engine",
    "bench",
)


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _help_code(argv: list[str]) -> str:
    return (
        "import contextlib, io\n"
        "from itap_tui.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
    )


@pytest.mark.parametrize("argv", [["--help"], *([c, "--help"] for c in COMMANDS)], ids=lambda a: " ".join(a))
def test_help_imports_nothing_heavy(argv: list[str]) -> None:
    loaded = _loaded_after(_help_code(argv))
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"itap {' '.join(argv)} imported {heavy}"


def test_engine_never_imports_the_console_or_the_bench() -> None:
    code = (
        "import importlib, pkgutil, itap_engine\n"
        "for info in pkgutil.walk_packages(itap_engine.__path__, 'itap_engine.'):\n"
        "    importlib.import_module(info.name)\n"
    )
    roots = {m.split(".")[0] for m in _loaded_after(code)}
    assert not roots & {"textual", "itap_tui", "itap_bench"}


def _roots_after_status(folder) -> set[str]:
    """The top-level packages ``itap status`` loads in a fresh interpreter, with a config
    (and so a database) in ``folder``."""
    config = folder / "config.toml"
    if not config.exists():
        config.write_text('[paths]\ndata_dir = "data"\n', encoding="utf-8")
    code = (
        "import contextlib, io, os\n"
        f"os.environ['ITAP_CONFIG'] = {str(config)!r}\n"
        "os.environ.pop('ITAP_DB_URL', None)\n"
        "from itap_tui.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['status']) == 0\n"
    )
    return {m.split(".")[0] for m in _loaded_after(code)}


def test_status_on_an_empty_database_does_not_load_pandas(tmp_path) -> None:
    """``itap status`` answers from SQL alone: pandas and numpy cost a third of its start-up."""
    roots = _roots_after_status(tmp_path)
    assert "sqlalchemy" in roots  # a new database: the Store made its schema
    assert not roots & {"pandas", "numpy", "sklearn", "textual"}


def test_status_on_an_existing_database_loads_no_sqlalchemy(tmp_path) -> None:
    """Once a Store has made the schema, ``itap status`` reads SQLite with the standard
    library: SQLAlchemy and SQLModel are most of what it would otherwise pay to start."""
    _roots_after_status(tmp_path)  # creates the database
    again = _roots_after_status(tmp_path)
    assert not again & {"sqlalchemy", "sqlmodel", "pandas", "numpy", "sklearn", "textual"}


def _frame_rate(code: str, env: dict[str, str]) -> int:
    probe = code + "\nimport textual.constants\nprint(textual.constants.MAX_FPS)\n"
    clean = {k: v for k, v in os.environ.items() if k != "TEXTUAL_FPS"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=clean | env)
    return int(out.stdout.strip().splitlines()[-1])


def test_the_console_paints_at_up_to_its_own_frame_rate_unless_the_operator_says() -> None:
    """Textual's 60 frames a second make a key wait up to 16.7 ms for its frame; the
    console's entry point and the app (what the benchmark imports) raise the cap, and
    ``TEXTUAL_FPS`` set by the operator wins."""
    from itap_tui import MAX_FPS

    assert MAX_FPS > 60
    assert _frame_rate("import itap_tui.cli", {}) == MAX_FPS
    assert _frame_rate("import itap_tui.app", {}) == MAX_FPS
    assert _frame_rate("import itap_tui.cli", {"TEXTUAL_FPS": "30"}) == 30
