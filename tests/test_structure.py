"""The package's shape (#9): modules import each other without a loop, counting the
imports placed inside functions too (a loop dodged that way is still a loop)."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ampel_tasks"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str, modules: set) -> set:
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                if target != name and not name.startswith(target + "."):  # (a package's own __init__)
                    found.add(target)
    return found


def import_graph() -> dict:
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, name, set(paths)) for name, path in paths.items()}


def find_loop(graph: dict):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                loop = visit(nxt, path + [nxt])
                if loop:
                    return loop
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            loop = visit(start, [start])
            if loop:
                return loop
    return None


def test_the_finder_sees_a_loop_hidden_in_a_function():
    assert find_loop({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_loop({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_of_the_package_imports_itself_through_others():
    graph = import_graph()
    assert "ampel_tasks.steps.up" in graph and "ampel_tasks.flow.plan" in graph["ampel_tasks.steps.up"]
    assert find_loop(graph) is None, " -> ".join(find_loop(graph))


def test_modules_and_functions_stay_short():
    """One module per concern, short functions: over 300 lines or 40 lines is a sign
    that a module owns two things or a function does."""
    long_modules, long_functions = [], []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if len(text.splitlines()) > 300:
            long_modules.append(path.name)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 40:
                long_functions.append(f"{path.name}:{node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)


def test_the_package_imports_its_own_modules_at_the_top():
    """An own-module import placed inside a function is how a loop hides; only heavy
    third-party libraries (docker, yaml, git) are imported late, and the face
    (`ampel_tasks/tasks/`) imports the module owning a task's work in its body, for
    `invoke --list` (the import graph above counts those imports too)."""
    inside = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE / "tasks":
            continue
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        inside += [f"{path.name}:{node.lineno}" for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) and node.level and id(node) not in top]
    assert inside == []


def test_no_test_module_imports_another_test_module():
    """Shared helpers live in modules of their own (conftest.py, sandboxsite.py): a test
    module imported by another would run its tests' module code twice and tie them."""
    tests = Path(__file__).resolve().parent
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not found, found


def test_listing_the_tasks_loads_only_the_face_and_the_help():
    """What `invoke --list`, `--help` and tab completion import of the package: the
    tasks' signatures and help, the defaults and the steps' table; no module doing
    work, no heavy library."""
    code = ("import sys, ampel_tasks; print(' '.join(sorted(m for m in sys.modules if m.startswith('ampel_tasks') "
            "or m.split('.')[0] in ('docker', 'git', 'dotenv', 'requests', 'urllib3'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                cwd=PACKAGE.parent).stdout.split())
    face = {"ampel_tasks", "ampel_tasks.tasks", "ampel_tasks.tasks.build", "ampel_tasks.tasks.hosts",
            "ampel_tasks.tasks.site", "ampel_tasks.tasks.runoptions", "ampel_tasks.config", "ampel_tasks.config.helptext",
            "ampel_tasks.config.defaults", "ampel_tasks.config.version", "ampel_tasks.config.errors",
            "ampel_tasks.steps"}
    assert loaded == face, sorted(loaded - face)


LAYERS = ["config", "remote", "facts", "flow", "steps", "operations", "tasks"]


def _layer(module: str):
    parts = module.split(".")
    if module in ("ampel_tasks.steps", "ampel_tasks.cli", "ampel_tasks"):
        return None  # the steps' table (data the flow reads), the entry point, the package's face
    return LAYERS.index(parts[1]) if len(parts) >= 2 and parts[1] in LAYERS else None


def test_each_folder_imports_only_the_folders_below_it():
    """The layers, bottom up: settings and errors; hosts, ssh and the runner; facts and
    commands per subject; the flow of a run; the steps; the tasks over the whole site;
    the face (the tasks' options and help)."""
    graph = import_graph()
    for module in graph:
        assert _layer(module) is not None or module in ("ampel_tasks.steps", "ampel_tasks.cli", "ampel_tasks"), module
    upward = [f"{m} -> {d}" for m, deps in sorted(graph.items()) for d in sorted(deps)
              if _layer(m) is not None and _layer(d) is not None and _layer(d) > _layer(m)]
    assert not upward, upward


def test_every_task_body_reads_each_parameter_it_declares():
    """What a task's body takes is what it reads; the options that the run reads (typed
    once into `Options`) are declared with `run_options` and never reach the body."""
    import ast
    import inspect
    import textwrap

    from ampel_tasks.tasks import ns

    unread = []
    for name, t in sorted(ns.tasks.items()):
        body = inspect.unwrap(t.body)
        fn = ast.parse(textwrap.dedent(inspect.getsource(body))).body[0]
        used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        unread += [f"{name}: {p}" for p in list(inspect.signature(body).parameters)[1:] if p not in used]
    assert not unread, unread
