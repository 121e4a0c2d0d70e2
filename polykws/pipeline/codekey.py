"""A stage's code key, derived from the imports its function can reach.

A stage's artifact is stale when any project code it runs changes, and only then. The engine
therefore hashes the source of every project module in the stage function's import closure,
found by reading the source (never by running it):

* the function's own module, and everything that module imports at module level (importing the
  module to find the function runs those imports);
* every import statement inside the function, and inside each module-level function, class or
  constant of its module that the function names, transitively; an `importlib.import_module`
  call whose argument is a string literal or a module-level string constant counts as an import;
* for every other project module reached: every import it makes anywhere, module level or inside
  a function, since any of its functions may run;
* the parent packages of each module (importing `a.b.c` runs `a/__init__` and `a/b/__init__`);
* a package that discovers its subpackages (`pkgutil.iter_modules(__path__)`) reaches all of them;
  a package that exports names lazily through an `_EXPORTS = {name: submodule}` table reaches the
  submodule of each name imported from it;
* a layer that holds C sources (the firmware) adds those files when any of its modules is reached.

Only the project's own modules (`polykws.*`) count: third-party versions are the environment's,
recorded by the run, not keyed per stage.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

from polykws.core import PolykwsError, sha256_file

PROJECT = "polykws"
# Sources a C build reads: a layer that holds them is keyed on them when any of its modules runs.
C_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".h", ".hpp", ".ld", ".mk", ".cmake", ".s", ".S")
C_SOURCE_NAMES = ("Makefile", "CMakeLists.txt")


@dataclass(frozen=True)
class _Module:
    name: str
    path: Path
    is_package: bool


# --- locating modules without importing them ------------------------------------------------------
@lru_cache(maxsize=None)
def _layer_dir(layer: str) -> Path | None:
    """The folder of `polykws` or of one `polykws.<layer>` package (package-dir maps several folders)."""
    try:
        spec = importlib.util.find_spec(layer)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@lru_cache(maxsize=None)
def locate(name: str) -> _Module | None:
    """The source file of project module `name`, or None when no such module exists."""
    parts = name.split(".")
    if parts[0] != PROJECT:
        return None
    if len(parts) == 1:
        root = _layer_dir(PROJECT)
        return _Module(name, root / "__init__.py", True) if root else None
    top = _layer_dir(".".join(parts[:2]))
    if top is None:
        # `polykws.<x>` that is a plain module directly under polykws/
        root = _layer_dir(PROJECT)
        f = root / f"{parts[1]}.py" if root else None
        return _Module(name, f, False) if f is not None and len(parts) == 2 and f.is_file() else None
    folder = top.joinpath(*parts[2:])
    if (folder / "__init__.py").is_file():
        return _Module(name, folder / "__init__.py", True)
    f = folder.with_suffix(".py")
    if len(parts) > 2 and f.is_file():
        return _Module(name, f, False)
    return None


def module_of_file(path: Path) -> str | None:
    """The project module whose source is `path` (the inverse of `locate`), or None."""
    path = Path(path).resolve()
    best: tuple[int, str] | None = None
    for pkg, d in _package_dirs().items():
        if path.is_relative_to(d) and (best is None or len(d.parts) > best[0]):
            parts = [p for p in path.relative_to(d).with_suffix("").parts if p != "__init__"]
            best = (len(d.parts), ".".join([pkg, *parts]))
    return best[1] if best else None


@lru_cache(maxsize=None)
def _package_dirs() -> dict[str, Path]:
    """`polykws` and every `polykws.<x>` package folder, wherever package-dir maps it."""
    root = _layer_dir(PROJECT)
    if root is None:
        return {}
    out = {PROJECT: root.resolve()}
    for parent in (root, root.parent):
        for child in sorted(parent.iterdir()):
            if child.is_dir() and (child / "__init__.py").is_file():
                d = _layer_dir(f"{PROJECT}.{child.name}")
                if d is not None and d.resolve() == child.resolve():
                    out[f"{PROJECT}.{child.name}"] = d.resolve()
    return out


# --- reading one module's imports ---------------------------------------------------------------
@dataclass(frozen=True)
class _Parsed:
    tree: ast.Module
    exports: dict[str, str]  # the lazy `_EXPORTS` table: name -> submodule
    discovers: bool  # pkgutil.iter_modules(__path__) in a package
    constants: dict[str, str]  # module-level NAME = "string" (an import_module argument may name one)


@lru_cache(maxsize=None)
def _parse(path: Path) -> _Parsed:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise PolykwsError(f"{path}: cannot read its imports for a stage's code key ({exc})") from None
    exports: dict[str, str] = {}
    discovers = False
    constants = {t.id: node.value.value for node in tree.body if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                 and isinstance(node.value.value, str) for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            if isinstance(node.value, ast.Dict):
                for k, v in zip(node.value.keys, node.value.values):
                    if isinstance(k, ast.Constant) and isinstance(v, ast.Constant):
                        exports[str(k.value)] = str(v.value)
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("iter_modules", "walk_packages")
                and any(isinstance(a, ast.Name) and a.id == "__path__" for a in node.args)):
            discovers = True
    return _Parsed(tree, exports, discovers, constants)


def _resolve_from(mod: _Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    pkg = mod.name if mod.is_package else mod.name.rsplit(".", 1)[0]
    base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
    return f"{base}.{node.module}" if node.module else base


def _import_targets(mod: _Module, node: ast.Import | ast.ImportFrom) -> set[str]:
    """Project modules that one import statement runs."""
    out: set[str] = set()
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == PROJECT:
                out.add(alias.name)
        return out
    base = _resolve_from(mod, node)
    if base.split(".")[0] != PROJECT:
        return out
    out.add(base)
    base_mod = locate(base)
    exports = _parse(base_mod.path).exports if base_mod is not None and base_mod.is_package else {}
    for alias in node.names:
        if alias.name == "*":
            out.update(f"{base}.{m}" for m in exports.values())
        elif locate(f"{base}.{alias.name}") is not None:
            out.add(f"{base}.{alias.name}")
        elif alias.name in exports:
            out.add(f"{base}.{exports[alias.name]}")
    return out


def _is_type_checking(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): its imports never run."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk_running(root: ast.AST) -> Iterable[ast.AST]:
    """ast.walk, less the bodies of `if TYPE_CHECKING:` blocks (their `else` runs)."""
    todo = [root]
    while todo:
        node = todo.pop()
        yield node
        if _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def direct_imports(name: str) -> set[str]:
    """Project modules that the import statements of module `name` name (lazy ones included)."""
    mod = locate(name)
    if mod is None:
        raise PolykwsError(f"{name}: not a project module")
    return _all_imports(mod, [_parse(mod.path).tree])


def _by_name_import(mod: _Module, node: ast.AST) -> str | None:
    """The module an `importlib.import_module(NAME)` call loads, when NAME is a string literal or a
    module-level string constant: a by-name import runs code as an import statement does."""
    if not (isinstance(node, ast.Call) and node.args):
        return None
    f = node.func
    if not ((isinstance(f, ast.Attribute) and f.attr == "import_module") or (isinstance(f, ast.Name) and f.id == "import_module")):
        return None
    arg = node.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.Name):
        return _parse(mod.path).constants.get(arg.id)
    return None


def _all_imports(mod: _Module, nodes: Iterable[ast.AST]) -> set[str]:
    out: set[str] = set()
    for root in nodes:
        for node in _walk_running(root):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out |= _import_targets(mod, node)
            elif (name := _by_name_import(mod, node)) is not None and name.split(".")[0] == PROJECT:
                out.add(name)
    return out


@lru_cache(maxsize=None)
def _module_reach(mod: _Module) -> frozenset[str]:
    """What running any code of `mod` can import: every import statement in it, and the discovered subpackages."""
    parsed = _parse(mod.path)
    out = _all_imports(mod, [parsed.tree])
    if mod.is_package and parsed.discovers:
        for f in sorted(mod.path.parent.rglob("*.py")):
            sub = module_of_file(f)
            if sub is not None:
                out.add(sub)
    return frozenset(out)


def _function_reach(mod: _Module, fn_name: str) -> set[str]:
    """Imports made by importing `mod` plus those the module-level function `fn_name` can reach within it."""
    tree = _parse(mod.path).tree
    defs: dict[str, list[ast.AST]] = {}
    top_level: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defs.setdefault(node.name, []).append(node)
            top_level.extend(node.decorator_list)
            if isinstance(node, ast.ClassDef):
                top_level.extend(node.bases)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        defs.setdefault(n.id, []).append(node)
            top_level.append(node)
        else:
            top_level.append(node)  # imports, ifs, expressions: they run when the module is imported
    if fn_name not in defs:
        raise PolykwsError(f"{mod.path}: no module-level function {fn_name!r} to key a stage on")
    # Module-level statements run on import; the functions they name run then too.
    seen: set[str] = set()
    todo = [n.id for stmt in top_level for n in ast.walk(stmt) if isinstance(n, ast.Name)] + [fn_name]
    bodies: list[ast.AST] = list(top_level)
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        for node in defs[name]:
            bodies.append(node)
            todo.extend(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
    return _all_imports(mod, bodies)


def _start_module(fn: Callable) -> _Module:
    """The module that defines `fn`: a project module, or any other source file (a test's, a bench script's)."""
    mod = locate(fn.__module__)
    if mod is not None:
        return mod
    src = inspect.getsourcefile(fn)
    if src is None:
        raise PolykwsError(f"stage function {fn.__module__}.{fn.__qualname__} has no source file; its code cannot be keyed")
    return _Module(fn.__module__, Path(src), False)


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _reached(fn: Callable) -> dict[str, Path]:
    """Each project module a call of the module-level function `fn` can run -> its source file."""
    fn = inspect.unwrap(fn)
    start = _start_module(fn)
    found: dict[str, Path] = {start.name: start.path}
    # Modules whose every import is followed. The stage's own module joins only when another
    # module imports it: then any of its functions may run, not just the stage.
    read: set[str] = set()
    todo = [p for name in _function_reach(start, fn.__name__) for p in _with_parents(name)]
    todo += _with_parents(start.name)[:-1]
    while todo:
        name = todo.pop()
        if name in read or (mod := locate(name)) is None:
            continue
        read.add(name)
        found[name] = mod.path
        todo += [p for m in _module_reach(mod) for p in _with_parents(m)]
    return found


def closure(fn: Callable) -> list[str]:
    """Sorted project modules whose source a call of the module-level function `fn` can run."""
    return sorted(_reached(fn))


def _c_sources(modules: Iterable[str]) -> dict[str, str]:
    """C sources of each layer reached (relative path -> sha256)."""
    out: dict[str, str] = {}
    layers = {".".join(m.split(".")[:2]) for m in modules if m.count(".") >= 1}
    for layer in sorted(layers):
        d = _layer_dir(layer)
        if d is None:
            continue
        for f in sorted(d.rglob("*")):
            rel = f.relative_to(d)
            # A build folder inside the layer holds outputs, not sources.
            if any(part == "build" or part.startswith(".") for part in rel.parts[:-1]):
                continue
            if f.is_file() and (f.suffix in C_SOURCE_SUFFIXES or f.name in C_SOURCE_NAMES):
                out[f"{layer}/{rel.as_posix()}"] = sha256_file(f)
    return out


def code_files(fn: Callable) -> dict[str, str]:
    """What a stage's key hashes: each reached module -> the SHA-256 of its source, plus reached C sources."""
    reached = _reached(fn)
    files = {m: sha256_file(path) for m, path in sorted(reached.items())}
    files.update(_c_sources(reached))
    return files


def clear_caches() -> None:
    """Forget parsed sources and located modules (after files change in the same process)."""
    for f in (_layer_dir, locate, _parse, _package_dirs, _module_reach):
        f.cache_clear()
