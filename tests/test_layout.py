"""The package's shape: public names, where they say they live, the version, and no
import cycle among flushkit's own modules."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import pathlib
import pickle
import subprocess
import sys

import flushkit
import flushkit.middleware
import flushkit.testing

PACKAGE = pathlib.Path(flushkit.__file__).parent
PUBLIC = (flushkit, flushkit.middleware, flushkit.testing)


def test_one_public_name_is_one_thing():
    seen: dict[str, object] = {}
    for module in PUBLIC:
        for name in module.__all__:
            value = getattr(module, name)
            if name in seen and name != "__version__":
                assert seen[name] is value, f"{name} names two different things"
            seen[name] = value


def test_middlewares_live_in_flushkit_middleware_and_also_at_the_top():
    for name in flushkit.middleware.__all__:
        assert getattr(flushkit, name) is getattr(flushkit.middleware, name)
        value = getattr(flushkit.middleware, name)
        if isinstance(value, type) or (callable(value) and hasattr(value, "__code__")):
            assert value.__module__ == "flushkit.middleware", name


def test_public_classes_say_where_users_import_them():
    for name in flushkit.__all__:
        value = getattr(flushkit, name)
        if isinstance(value, type) and name not in flushkit.middleware.__all__:
            assert value.__module__ == "flushkit", name
    assert repr(flushkit.FlushTimeoutError) == "<class 'flushkit.FlushTimeoutError'>"


def test_errors_pickle_under_their_public_names():
    error = flushkit.RateLimitedError("slow down", collection_names=("docs",), db_name="db")
    data = pickle.dumps(error)
    assert type(pickle.loads(data)) is flushkit.RateLimitedError


def test_version_comes_from_the_package_metadata():
    assert flushkit.__version__ == importlib.metadata.version("flushkit")


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports_at_import_time(path: pathlib.Path) -> set[str]:
    """flushkit modules ``path`` imports at module level (not inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not node.module:
                candidates = [f"{target}.{alias.name}" for alias in node.names]
            else:
                candidates = [target]
            found.update(c for c in candidates if c.startswith("flushkit"))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("flushkit"))
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {
        target if target in modules else target.rpartition(".")[0]
        for target in found
        if target in modules or target.rpartition(".")[0] in modules
    } - {name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path of imports that leads from a module back to itself, if any."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph.get(module, ())):
            found = visit(target, [*path, module])
            if found:
                return found
        done.add(module)
        return None

    for module in sorted(graph):
        found = visit(module, [])
        if found:
            return found
    return None


def test_no_import_cycle_among_flushkit_modules():
    graph = {_module_name(p): _imports_at_import_time(p) for p in PACKAGE.rglob("*.py")}
    assert graph["flushkit._client"] >= {"flushkit._chain", "flushkit._grpc.transport"}
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or ())


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


_MUTABLE_CALLS = {"dict", "list", "set", "deque", "defaultdict", "OrderedDict", "Counter"}
_WEAK_CACHES = {"WeakKeyDictionary", "WeakValueDictionary", "WeakSet"}


def test_no_process_wide_state_beside_constants_and_weak_caches():
    """State lives in objects (a client's transport and scheduler), not in modules: a
    module-level container is a constant (UPPER_CASE), a weak-keyed cache of an object's
    helpers (that object's state), or the set that keeps the event loop's shared-round
    tasks alive; no module rebinds a global."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        found += [
            f"{path.name}:{n.lineno} global" for n in ast.walk(tree) if isinstance(n, ast.Global)
        ]
        for node in tree.body:
            if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            value = node.value
            called = ""
            if isinstance(value, ast.Call):
                func = value.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            container = isinstance(
                value, ast.Dict | ast.List | ast.Set | ast.DictComp | ast.ListComp | ast.SetComp
            )
            for name in names:
                constant = name.lstrip("_").isupper() or name == "__all__"
                if called in _WEAK_CACHES or (name == "_shared_tasks" and called == "set"):
                    continue
                if (container or called in _MUTABLE_CALLS) and not constant:
                    found.append(f"{path.name}:{node.lineno} {name}")
    assert found == []


def test_importing_flushkit_or_its_pytest_plugin_imports_neither_grpc_nor_pymilvus():
    code = (
        "import sys, flushkit, flushkit._tools.pytest_plugin\n"
        "heavy = [m for m in ('grpc', 'pymilvus', 'anyio', 'opentelemetry') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "assert flushkit.Flusher.__module__ == 'flushkit'  # the public names load on first use\n"
        "assert 'pymilvus' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "MILVUS_URI": ""})
