"""Remove the modules of an installed package that the function can never import (run by handler/Makefile).

Powertools ships every utility in one distribution (event handlers, batch, idempotency, parser, ...): 5.9 MB of the
artifact, compiled, where the function uses the logger, metrics, tracer and the Secrets Manager provider (about
0.7 MB). Rather than a list of subpackages to keep in step with each Powertools release, the build keeps exactly
what the function's own code can reach:

- the roots are the package's modules that the function's code imports (any import, at any depth);
- from each kept module, every import of the package is followed, top-level or inside a function, and so is every
  string constant that names one of its modules (what a lazy loader imports by name);
- imports under ``if TYPE_CHECKING:`` (or in the else of ``if not TYPE_CHECKING:``) are not followed: they never
  run;
- a module that cannot be imported here anyway is not kept and not followed: one whose top-level code imports a
  distribution that is in neither the artifact, the standard library nor the Lambda runtime (Powertools' OpenAPI
  support needs pydantic, which the function does not ship, so no call can reach it successfully either way).

What is left out is deleted, with the data files of directories that no longer hold a module, and the
distribution's RECORD is rewritten to match. Packages are never imported to do this: it reads their source.

Usage: python prune_unreachable.py ARTIFACT_DIR PACKAGE FROM_PACKAGE
(e.g. ``.aws-sam/build/CollectorFunction aws_lambda_powertools auto_collector``).
"""

from __future__ import annotations

import ast
import csv
import io
import sys
from collections.abc import Iterator
from pathlib import Path

USAGE = "usage: python prune_unreachable.py ARTIFACT_DIR PACKAGE FROM_PACKAGE"
#: What the Lambda Python runtime provides on sys.path after the function's code (/var/runtime).
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "dateutil", "six", "jmespath", "urllib3"})


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> its source file, for every module of `package` under `root`."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """`TYPE_CHECKING` or `typing.TYPE_CHECKING` itself (not any test that mentions it)."""
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """The nodes that run only for a type checker: the body of `if TYPE_CHECKING:`, the else of
    `if not TYPE_CHECKING:` (whose body does run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.If):
            continue
        if _is_type_checking(node.test):
            branch = node.body
        elif (
            isinstance(node.test, ast.UnaryOp)
            and isinstance(node.test.op, ast.Not)
            and _is_type_checking(node.test.operand)
        ):
            branch = node.orelse
        else:
            continue
        for child in branch:
            skipped.update(id(n) for n in ast.walk(child))
    return skipped


def referenced_names(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Every dotted name the module's code may import: import statements (absolute or relative, with each
    imported name also tried as a submodule) and string constants, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(source)
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def unimportable(source: str, available: set[str]) -> bool:
    """True if the module's top-level code imports a distribution that is not there (an import the module
    guards with try/except is not top-level code in this sense)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        else:
            continue
        if any(name.partition(".")[0] not in available for name in names):
            return True
    return False


def _parents(module: str) -> Iterator[str]:
    parts = module.split(".")
    for end in range(1, len(parts)):
        yield ".".join(parts[:end])


def reachable(root: Path, package: str, from_package: str) -> tuple[set[str], dict[str, Path]]:
    """(the modules of `package` that `from_package`'s code can reach, all of `package`'s modules)."""
    modules = module_files(root, package)
    available = (
        set(sys.stdlib_module_names)
        | RUNTIME_PROVIDED
        | {entry.name.removesuffix(".py").partition(".")[0] for entry in root.iterdir()}
    )
    dead = {name for name, path in modules.items() if unimportable(path.read_text(), available)}
    pending: list[str] = []
    for name, path in module_files(root, from_package).items():
        pending.extend(referenced_names(path.read_text(), name, path.name == "__init__.py"))
    kept: set[str] = set()
    while pending:
        name = pending.pop()
        if name not in modules or name in dead or name in kept:
            continue
        kept.add(name)
        pending.extend(_parents(name))
        path = modules[name]
        pending.extend(referenced_names(path.read_text(), name, path.name == "__init__.py"))
    return kept, modules


def prune(root: Path, package: str, from_package: str) -> tuple[int, int]:
    """Delete what `from_package` cannot reach of `package`; (modules kept, modules removed)."""
    kept, modules = reachable(root, package, from_package)
    if package not in kept:
        raise SystemExit(f"{from_package} does not import {package}: nothing to prune from")
    removed = [path for name, path in modules.items() if name not in kept]
    for path in removed:
        path.unlink()
    # Directories without a module left (a removed subpackage's templates, stylesheets, schemas) go entirely.
    package_dir = root / package
    for directory in sorted((d for d in package_dir.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        if not any(directory.rglob("*.py")):
            for path in sorted(directory.rglob("*"), key=lambda p: -len(p.parts)):
                path.unlink() if path.is_file() or path.is_symlink() else path.rmdir()
            directory.rmdir()
    _rewrite_record(root, package)
    return len(kept), len(removed)


def _rewrite_record(root: Path, package: str) -> None:
    """Drop the deleted files from the RECORD of the distribution that installed `package`."""
    for record in root.glob("*.dist-info/RECORD"):
        rows = list(csv.reader(io.StringIO(record.read_text())))
        if not any(row and row[0].startswith(f"{package}/") for row in rows):
            continue
        present = [row for row in rows if row and ((root / row[0]).exists() or row[0] == str(record.relative_to(root)))]
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(present)
        record.write_text(out.getvalue())


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(USAGE, file=sys.stderr)
        return 2
    root, package, from_package = Path(argv[0]), argv[1], argv[2]
    kept, removed = prune(root, package, from_package)
    print(f"{package}: kept {kept} modules reachable from {from_package}, removed {removed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
