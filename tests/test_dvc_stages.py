"""dvc.yaml's audit trail: every stage lists, among its dependencies, each project module its assets and their checks
import (directly or through other modules, lazy imports inside functions included), so a code change reruns exactly
the stages whose code it touches."""

import ast
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rec_pipeline", "assets", "checks", "orchestration")


def module_file(name: str) -> Path | None:
    path = REPO.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(path: Path) -> set[Path]:
    """The project files `path` imports, anywhere in it (module level or inside a function)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names if module_file(f"{node.module}.{alias.name}")]
            # `from pkg import module` runs pkg/__init__.py too, but what the stage computes lies in the module.
            names = submodules if len(submodules) == len(node.names) else [node.module, *submodules]
        for name in names:
            if name.split(".")[0] in PACKAGES and (file := module_file(name)) is not None:
                found.add(file)
    return found


def closure(start: set[Path], other_assets: set[Path]) -> set[Path]:
    """What `start` imports, not following into `other_assets`: an asset module imports an upstream asset's module
    only for its key (deps=[...]), and that asset's code runs in its own stage."""
    seen, todo = set(), list(start)
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(imports_of(path) - seen - other_assets)
    return seen


def has_code(path: Path) -> bool:
    """A package's __init__.py holding only its docstring changes nothing a stage computes."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)) for node in body)


def defining_modules() -> dict[str, set[Path]]:
    """Asset name -> the files defining the asset and the checks on it."""
    from orchestration.definitions import defs

    out: dict[str, set[Path]] = {}
    for asset in defs.assets:
        out.setdefault(asset.key.to_user_string(), set()).add(module_file(asset.op.compute_fn.decorated_fn.__module__))
    for check in defs.asset_checks:
        module = module_file(check.node_def.compute_fn.decorated_fn.__module__)
        for key in check.check_keys:
            out[key.asset_key.to_user_string()].add(module)
    return out


def covered(file: Path, deps: list[str]) -> bool:
    relative = file.relative_to(REPO).as_posix()
    return any(relative == dep or relative.startswith(dep.rstrip("/") + "/") for dep in deps)


def missing_deps(stages: dict) -> dict[str, list[str]]:
    modules = defining_modules()
    missing = {}
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"])
        assets = words[words.index("--assets") + 1].split(",")
        own = set().union(*(modules[a] for a in assets))
        needed = closure(own, set().union(*modules.values()) - own)
        absent = sorted(f.relative_to(REPO).as_posix() for f in needed if has_code(f) and not covered(f, stage["deps"]))
        if absent:
            missing[name] = absent
    return missing


def test_every_stage_lists_every_module_its_assets_import():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert missing_deps(stages) == {}


def test_a_stage_missing_a_module_is_caught():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stages["ranker"]["deps"] = [d for d in stages["ranker"]["deps"] if d != "rec_pipeline/metrics.py"]
    stages["validated_data"]["deps"] = [d for d in stages["validated_data"]["deps"] if d != "rec_pipeline/sources"]
    missing = missing_deps(stages)
    assert missing["ranker"] == ["rec_pipeline/metrics.py"]
    assert "rec_pipeline/sources/online_retail.py" in missing["validated_data"]  # read_source dispatches to it lazily or not
