"""handler/prune_unreachable.py on small package trees built for each case: what the build keeps of a package is
exactly what the function's code can reach."""

from __future__ import annotations

import csv
import io
import textwrap
from pathlib import Path

import pytest
from prune_unreachable import main, prune


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _modules(root: Path, package: str) -> set[str]:
    return {str(p.relative_to(root)) for p in (root / package).rglob("*") if p.is_file()}


def test_keeps_what_the_function_imports_and_what_that_imports_at_any_depth(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/main.py": "from lib.logging import Logger\n",
            "lib/__init__.py": "from .shared import VERSION\n",
            "lib/shared.py": "VERSION = 1\n",
            "lib/logging/__init__.py": "from .logger import Logger\n",
            "lib/logging/logger.py": "def later():\n    from lib.util import helper\n\nclass Logger: ...\n",
            "lib/util.py": "def helper(): ...\n",
            "lib/unused/__init__.py": "from lib.unused.big import X\n",
            "lib/unused/big.py": "X = 1\n",
            "lib/unused/assets/page.js": "console.log(1)\n",
            "lib/other.py": "import lib.unused\n",
        },
    )
    kept, removed = prune(tmp_path, "lib", "app")
    assert _modules(tmp_path, "lib") == {
        "lib/__init__.py",
        "lib/shared.py",
        "lib/logging/__init__.py",
        "lib/logging/logger.py",
        "lib/util.py",  # imported inside a function: followed all the same
    }
    assert (kept, removed) == (5, 3)
    assert not (tmp_path / "lib" / "unused").exists(), "a subpackage left without modules goes with its data files"


def test_a_module_named_in_a_string_is_kept_for_the_lazy_loader_that_imports_it(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "app/main.py": "import lib.tracing\n",
            "lib/__init__.py": "",
            "lib/tracing.py": "import importlib\nsdk = importlib.import_module('lib.sdk_shim')\n",
            "lib/sdk_shim.py": "",
            "lib/unrelated.py": "",
        },
    )
    prune(tmp_path, "lib", "app")
    assert _modules(tmp_path, "lib") == {"lib/__init__.py", "lib/tracing.py", "lib/sdk_shim.py"}


def test_imports_only_for_type_checkers_are_not_followed(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "app/main.py": "import lib.core\n",
            "lib/__init__.py": "",
            "lib/core.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lib.types import T\n",
            "lib/types.py": "T = int\n",
        },
    )
    prune(tmp_path, "lib", "app")
    assert _modules(tmp_path, "lib") == {"lib/__init__.py", "lib/core.py"}


def test_what_runs_when_not_type_checking_is_followed(tmp_path: Path) -> None:
    """Powertools' logger has an `if not TYPE_CHECKING:` block: its body runs, only its else is for type checkers."""
    _tree(
        tmp_path,
        {
            "app/main.py": "import lib.core\n",
            "lib/__init__.py": "",
            "lib/core.py": "import typing\nif not typing.TYPE_CHECKING:\n    import lib.needed\n"
            "else:\n    import lib.types\n",
            "lib/needed.py": "",
            "lib/types.py": "",
        },
    )
    prune(tmp_path, "lib", "app")
    assert _modules(tmp_path, "lib") == {"lib/__init__.py", "lib/core.py", "lib/needed.py"}


def test_a_module_that_needs_a_missing_distribution_is_neither_kept_nor_followed(tmp_path: Path) -> None:
    """Like Powertools' OpenAPI support, which needs pydantic: the function does not ship it, so no call into it
    can succeed with or without the module; what only it imports goes too. A guarded import is not a need."""
    _tree(
        tmp_path,
        {
            "app/main.py": "import lib.functions\n",
            "lib/__init__.py": "",
            "lib/functions.py": "def to_dict(m):\n    from lib.openapi.compat import dump\n    return dump(m)\n"
            "def other():\n    from lib.optional import x\n",
            "lib/openapi/__init__.py": "",
            "lib/openapi/compat.py": "from pydantic import BaseModel\nfrom lib.openapi.models import M\n",
            "lib/openapi/models.py": "M = 1\n",
            "lib/optional.py": "try:\n    import pydantic\nexcept ImportError:\n    pydantic = None\nx = 1\n",
        },
    )
    prune(tmp_path, "lib", "app")
    assert _modules(tmp_path, "lib") == {"lib/__init__.py", "lib/functions.py", "lib/optional.py"}


def test_what_the_lambda_runtime_and_the_artifact_provide_counts_as_available(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "app/main.py": "import lib.params\n",
            "lib/__init__.py": "",
            "lib/params.py": "import boto3\nimport requests\nimport json\n",
            "requests/__init__.py": "",
        },
    )
    prune(tmp_path, "lib", "app")
    assert "lib/params.py" in _modules(tmp_path, "lib")


def test_the_distributions_record_lists_only_what_is_left(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "app/main.py": "import lib.a\n",
            "lib/__init__.py": "",
            "lib/a.py": "",
            "lib/b.py": "",
            "lib-1.0.dist-info/METADATA": "Name: lib\n",
            "lib-1.0.dist-info/RECORD": "lib/__init__.py,sha256=x,0\nlib/a.py,sha256=y,0\nlib/b.py,sha256=z,0\n"
            "lib-1.0.dist-info/METADATA,sha256=m,10\nlib-1.0.dist-info/RECORD,,\n",
        },
    )
    prune(tmp_path, "lib", "app")
    rows = list(csv.reader(io.StringIO((tmp_path / "lib-1.0.dist-info" / "RECORD").read_text())))
    assert [row[0] for row in rows] == [
        "lib/__init__.py",
        "lib/a.py",
        "lib-1.0.dist-info/METADATA",
        "lib-1.0.dist-info/RECORD",
    ]


def test_a_package_the_function_does_not_import_is_an_error_not_an_empty_package(tmp_path: Path) -> None:
    _tree(tmp_path, {"app/main.py": "import json\n", "lib/__init__.py": "", "lib/a.py": ""})
    with pytest.raises(SystemExit, match="app does not import lib"):
        prune(tmp_path, "lib", "app")
    assert _modules(tmp_path, "lib") == {"lib/__init__.py", "lib/a.py"}


def test_the_command_line_says_how_to_call_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "ARTIFACT_DIR PACKAGE FROM_PACKAGE" in capsys.readouterr().err
