"""The console under test: ``databourse`` commands run in-process against a SQLite
database in a temporary directory, migrated and seeded as an operator would."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from databourse.cli import app
from databourse.settings import get_settings


class Console:
    """Runs ``databourse`` commands against one data directory."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.dir = data_dir
        self.env = {"DATABOURSE_DATA_DIR": str(data_dir), "COLUMNS": "200", **env}
        self.runner = CliRunner(env=self.env)

    def invoke(self, args: list[str]) -> Result:
        return self.runner.invoke(app, args)

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.invoke(list(args))
        if ok:
            assert result.exit_code == 0, (args, result.output, result.exception)
        return result

    def refused(self, *args: str) -> str:
        """A refusal: one line, exit code 1, no traceback."""
        result = self(*args, ok=False)
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result.output

    def write(self, name: str, doc: object) -> str:
        path = self.dir / name
        path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        return str(path)


def one_id(prefix: str, text: str) -> str:
    found = re.findall(rf"\b{prefix}_[0-9a-f]{{20}}\b", text)
    assert found, text
    return found[0]


@contextmanager
def seeded(console: Console) -> Iterator[Console]:
    """The console's exchange migrated and seeded with the demo world, its settings in
    the environment for the test's duration."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in console.env.items():
            mp.setenv(name, value)
        mp.delenv("DATABOURSE_DATABASE_URL", raising=False)
        # the consoles were made at import, before COLUMNS was set: fix their width
        from databourse.assets import cli as shared

        for out in (shared.console, shared.err):
            mp.setattr(out, "_width", 200)
        get_settings.cache_clear()  # the settings are read once per process
        console("db", "upgrade")
        console("demo", "seed")
        yield console
    get_settings.cache_clear()
