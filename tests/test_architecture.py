"""The package arrows and the import rules (ARCHITECTURE.md), checked.

``export → artifact``, ``bulk → artifact``, ``service → artifact``; never the other way,
and never ``service``/``bulk`` → ``export``. Checked twice: statically over every import
statement (lazy ones inside functions included), and by importing in a fresh interpreter
and looking at what got loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("artifact", "bulk", "export", "service")
ALLOWED = {
    "artifact": {"artifact"},
    "bulk": {"bulk", "artifact"},
    "export": {"export", "artifact"},
    "service": {"service", "artifact"},
}
# What the `export` extra adds to the runtime requirements: none of it may be needed by bulk.
EXPORT_ONLY_MODULES = (
    "torch", "torchvision", "timm", "onnx", "onnxscript", "safetensors", "matplotlib",
    "pyarrow", "onnxconverter_common",
)  # fmt: skip
MAX_MODULE_LINES = 300
# service/'s layers, bottom to top (ARCHITECTURE.md): a module imports from its own layer and
# the layers below it, never above. "service" is the package's __init__ (its version).
SERVICE_LAYERS = (
    (
        "service",
        "service.errors",
        "service.parsing",
        "service.policy",
        "service.web",
    ),
    ("service.core",),  # one version's inference: admission, decode, batching, drain
    ("service.repository",),  # which versions exist, load and serve
    ("service.edge",),  # everything that refuses a request before a protocol reads it
    ("service.observability",),  # request ids, metrics, spans
    ("service.protocols",),  # the ways to ask: uploads, v2, OpenAI embeddings
    ("service.routes",),  # thin FastAPI routers
    # wiring: the settings are read here and handed down, each part its slice
    ("service.config", "service.app", "service.cli", "service.__main__", "service.healthcheck"),
)
# Below the edge nothing speaks HTTP: the core and the repository run without a web framework.
HTTP_FRAMEWORKS = {"fastapi", "starlette", "uvicorn"}
HTTP_FREE = ("service.errors", "service.core", "service.repository")
# The one module that maps the settings onto each part's slice, and who may read the settings.
SETTINGS = "service.config"
READS_SETTINGS = ("service.config", "service.app", "service.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as ``a.b`` too: b may be a
    submodule), wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def layer_of(module: str) -> int | None:
    """The index in SERVICE_LAYERS of a service module (longest matching prefix)."""
    best: tuple[int, int] | None = None
    for index, prefixes in enumerate(SERVICE_LAYERS):
        for prefix in prefixes:
            covers = module == prefix or (prefix != "service" and module.startswith(prefix + "."))
            if covers and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def test_every_service_module_has_a_layer() -> None:
    unplaced = [
        module_name(path)
        for path in sorted((ROOT / "service").rglob("*.py"))
        if layer_of(module_name(path)) is None
    ]
    assert not unplaced, unplaced


def test_service_layers_import_only_downwards() -> None:
    upward = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        own = layer_of(module_name(path))
        assert own is not None
        for imported in imported_modules(path):
            layer = layer_of(imported)
            if imported.startswith("service") and layer is not None and layer > own:
                upward.append(f"{module_name(path)} imports {imported}")
    assert not upward, upward


def test_the_core_and_the_repository_speak_no_http() -> None:
    speaking = [
        f"{module_name(path)} imports {sorted(http)}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        if module_name(path).startswith(HTTP_FREE)
        and (http := {m.split(".")[0] for m in imported_modules(path)} & HTTP_FRAMEWORKS)
    ]
    assert not speaking, speaking


def test_only_the_wiring_reads_the_settings() -> None:
    """The core, the repository, the edge and the protocols take their slice of the settings
    (types they own), never the settings module."""
    reading = [
        f"{module_name(path)} imports {imported}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        if not module_name(path).startswith(READS_SETTINGS)
        for imported in imported_modules(path)
        if imported == SETTINGS or imported.startswith(SETTINGS + ".")
    ]
    assert not reading, reading


def test_protocols_and_the_core_do_not_touch_observability() -> None:
    """Request ids, metrics and spans are the edge's and the routes' business: a protocol or
    the core says what happened (a request's own id, an error), it does not record it."""
    touching = [
        f"{module_name(path)} imports {imported}"
        for path in sorted((ROOT / "service").rglob("*.py"))
        if module_name(path).startswith(("service.protocols", "service.core"))
        for imported in imported_modules(path)
        if imported.startswith("service.observability")
    ]
    assert not touching, touching


def first_party_imports(path: Path) -> set[str]:
    """Top-level first-party packages ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_arrows(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports {sorted(imported - ALLOWED[package])}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if (imported := first_party_imports(path)) - ALLOWED[package]
    }
    assert not wrong, wrong


def loaded_after(statement: str, blocked: tuple[str, ...] = ()) -> set[str]:
    """Top-level modules loaded by ``statement`` in a fresh interpreter (``blocked`` ones
    made unimportable, as if not installed)."""
    script = (
        "import importlib.abc, json, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (blocked)')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"{statement}\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_artifact_loads_neither_torch_nor_fastapi() -> None:
    modules = loaded_after(
        "import pkgutil, importlib, artifact\n"
        "for module in pkgutil.iter_modules(artifact.__path__):\n"
        "    importlib.import_module('artifact.' + module.name)"
    )
    assert not modules & {"torch", "timm", "fastapi", "starlette", "service", "export", "bulk"}


def test_service_loads_no_torch() -> None:
    modules = loaded_after("import service.app, service.cli, service.edge.server")
    assert not modules & {"torch", "timm", "torchvision", "export", "bulk"}


def test_bulk_runs_without_the_export_extra(exported_model: Path, tmp_path: Path) -> None:
    """xception-features end to end with every export-only module unimportable."""
    out = tmp_path / "feats.npy"
    argv = [str(ROOT / "tests" / "data"), "--model", str(exported_model), "--out", str(out)]
    modules = loaded_after(
        f"from bulk.features import main\nassert main({argv!r}) == 0", EXPORT_ONLY_MODULES
    )
    assert not modules & set(EXPORT_ONLY_MODULES)
    assert np.load(out).shape == (5, 2048)  # 6 files there; the undecodable TIFF is skipped


def test_parquet_without_pyarrow_is_one_clear_line(exported_model: Path, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['pyarrow'] = None  # as if not installed\n"
        "from bulk.features import main\n"
        f"sys.exit(main([{str(ROOT / 'tests' / 'data')!r}, '--model', "
        f"{str(exported_model)!r}, '--out', {str(tmp_path / 'f.parquet')!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith("or write a .npy file"), result.stderr
    assert "xception-service[parquet]" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "f.parquet").exists()


def test_no_module_is_over_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for package in (*PACKAGES, "bench")
        for path in (ROOT / package).rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_source_folder_is_ignored_by_git() -> None:
    """A new module in any package folder reaches a clean clone (and ruff): ``build/`` once
    ignored ``export/build/`` too, so its files had to be force-added."""
    folders = sorted(
        {
            path.parent
            for top in (*PACKAGES, "bench", "tests")
            for path in (ROOT / top).rglob("*.py")
        }
    )
    probes = [str((folder / "new_module.py").relative_to(ROOT)) for folder in folders]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *probes], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1, f"ignored by .gitignore: {result.stdout.split()}"
