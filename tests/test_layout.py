"""The package's shape: imports run one way (DESIGN.md), and the public API is not shadowed by a subpackage."""

import ast
import subprocess
import sys
from pathlib import Path

import gankit

PACKAGE = Path(gankit.__file__).parent

# Lowest first. A module may import from its own layer or a lower one, never from a higher one.
LAYERS = [
    {"gankit.errors", "gankit.host", "gankit.files", "gankit.config", "gankit.images", "gankit.distributed"},
    {"gankit.data", "gankit.models"},
    {"gankit.runs"},
    {"gankit.metrics"},
    {"gankit.training"},
    {"gankit.tools"},
    {"gankit.bench"},
    {"gankit", "gankit.cli", "gankit.__main__"},
]


def layer_of(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        for i, names in enumerate(LAYERS):
            if prefix in names:
                return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def gankit_imports(path: Path) -> set[str]:
    """Every gankit module `path` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gankit"}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; gankit imports by absolute name"
            if node.module.split(".")[0] == "gankit":
                found |= {f"{node.module}.{a.name}" if node.module == "gankit" else node.module for a in node.names}
    return found


def test_imports_run_one_way():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = module_name(path)
        for imported in gankit_imports(path):
            if layer_of(imported) > layer_of(importer):
                upward.append(f"{importer} imports {imported}")
    assert upward == []


def test_the_layer_check_catches_an_upward_import():
    assert layer_of("gankit.training.session") > layer_of("gankit.metrics.evaluate")  # metrics never import training
    assert layer_of("gankit.runs") < layer_of("gankit.tools.sample") and layer_of("gankit.cli") == len(LAYERS) - 1


def test_models_and_losses_import_only_torch():
    for path in [*sorted((PACKAGE / "models").glob("*.py")), PACKAGE / "training" / "losses.py"]:
        outside = {m for m in gankit_imports(path) if not m.startswith("gankit.models")}
        assert outside == set(), f"{path.name} imports {outside}"


def test_importing_gankit_does_no_work_and_the_api_is_not_shadowed():
    code = (
        "import sys, gankit; print('torch' in sys.modules, 'tensorboard' in sys.modules); "
        "import gankit.training.session, gankit.tools.sample; print(callable(gankit.train), callable(gankit.resume))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]  # `import gankit` loads no torch; gankit.train stays the function
