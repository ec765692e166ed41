"""The shape of ``server/``, read from its source with ``ast`` (nothing is imported).

Each rule is a function over parsed source that returns its offenders, one readable line
each. It is tested twice: on a small synthetic tree where it must find what was planted
(a detector that cannot fail is no check), and on the real tree, where it must find nothing.
The rules name packages and patterns, never today's files, so they hold while modules move.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

# not tests.helpers.REPO_ROOT: importing tests.helpers imports server/, which these checks only read
REPO_ROOT = Path(__file__).resolve().parents[2]

#: what a module of ``server/oauth/`` may not import: Authlib wiring knows neither people,
#: nor pages, nor the command line (a prefix matches the package and all below it)
OAUTH_FORBIDDEN_IMPORTS = (
    "server.users",
    "server.web",
    "server.signin",
    "server.cli",
    "jinja2",
    "starlette.templating",
)
#: the one package that talks to the database, through SQLAlchemy
STORAGE = "server.storage"
#: the longest a function may be without a ``# long: <reason>`` comment (def line to last line)
MAX_FUNCTION_LINES = 50
LONG_MARKER = re.compile(r"#\s*long:\s*\S")
#: pointers from a comment or docstring to something outside the repository: a reader of
#: the repository alone cannot follow them (name, pattern)
OUTSIDE_POINTERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a numbered pitfall", re.compile(r"\bpitfalls?\s*#?\s*\d+", re.IGNORECASE)),
    ("a spike's measurement notes", re.compile(r"bridge-measured", re.IGNORECASE)),
    ("the shared folder", re.compile(r"\.\./shared\b")),
    ("a reference file of the shared folder", re.compile(r"\bshared/reference\b")),
    ("the house style file", re.compile(r"\bSTYLE\.md\b")),
    ("an absolute path on a machine", re.compile(r"(?<![\w.:/~-])/(?:work|tmp|home|root|Users)/")),
)
#: the trees whose comments and docstrings must stand on their own
SELF_CONTAINED_TREES = ("server", "migrations", "bench")


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. server.oauth.grants; a package is named by its __init__.py
    path: str  # relative to the repository, for messages
    is_package: bool
    source: str
    tree: ast.Module


@dataclass(frozen=True)
class Import:
    line: int
    names: tuple[str, ...]  # what the statement may name: the module, and module.name for each name
    where: str  # "top", "TYPE_CHECKING" or "function": a cycle through any of them is still one


def parse(files: Mapping[str, str]) -> list[Module]:
    """Modules from ``{relative path: source}`` (``.py`` files only)."""
    modules = []
    for path, source in sorted(files.items()):
        if not path.endswith(".py"):
            continue
        parts = path[: -len(".py")].split("/")
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules.append(Module(".".join(parts), path, is_package, source, ast.parse(source, filename=path)))
    return modules


def read_tree(*tops: str) -> list[Module]:
    files = {}
    for top in tops:
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            files[path.relative_to(REPO_ROOT).as_posix()] = path.read_text(encoding="utf-8")
    return parse(files)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: Module) -> list[Import]:
    """Every import statement of the module, wherever it sits, with its resolved names."""
    found: list[Import] = []

    def handle(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(node.lineno, (alias.name,), where) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.module, node.level)
            names = (base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*"))
            found.append(Import(node.lineno, names, where))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            where = "function"
        walk(node, where)

    def walk(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for statement in child.body:
                    handle(statement, "TYPE_CHECKING" if where == "top" else where)
                for statement in child.orelse:
                    handle(statement, where)
            else:
                handle(child, where)

    walk(module.tree, "top")
    return found


def _absolute(module: Module, name: str | None, level: int) -> str:
    if level == 0:
        return name or ""
    package = module.name.split(".")
    if not module.is_package:
        package = package[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _resolve(names: Iterable[str], known: set[str]) -> set[str]:
    """The modules of ``known`` an import names: ``from .a import b`` is ``a.b`` if that is a
    module, else ``a``; ``import a.b.c`` is its longest known prefix."""
    base, *members = names
    targets = {member for member in members if member in known}
    if len(targets) < len(members) or not members:
        parts = base.split(".")
        while parts and ".".join(parts) not in known:
            parts.pop()
        if parts:
            targets.add(".".join(parts))
    return targets


class Edge(NamedTuple):
    source: str
    target: str
    path: str
    line: int
    where: str
    #: for an edge between packages, the import between modules that makes it
    via: str = ""


def import_graph(modules: list[Module]) -> dict[str, list[Edge]]:
    """Edges between the given modules only. Importing ``a.b`` runs ``a/__init__.py`` too,
    but that implicit edge is left out: it is how Python loads packages, not a dependency
    one module chose to have on another."""
    known = {module.name for module in modules}
    graph: dict[str, list[Edge]] = {name: [] for name in known}
    for module in modules:
        for imp in imports_of(module):
            for target in sorted(_resolve(imp.names, known) - {module.name}):
                graph[module.name].append(Edge(module.name, target, module.path, imp.line, imp.where))
    return graph


def _strongly_connected(graph: Mapping[str, list[Edge]]) -> list[list[str]]:
    """Tarjan's components, iteratively (no recursion limit for a large tree)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[Edge]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for edge in edges:
                target = edge.target
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph[target])))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle(graph: Mapping[str, list[Edge]], start: str, members: set[str]) -> list[Edge]:
    """A shortest path of imports from ``start`` back to itself, inside one component."""
    previous: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for edge in graph[node]:
                target = edge.target
                if target not in members or target in previous:
                    continue
                previous[target] = edge
                if target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, previous[path[0].source])
                    return path
                following.append(target)
        frontier = following
    return []


def _edge_text(edge: Edge) -> str:
    note = {"top": "", "TYPE_CHECKING": " (under TYPE_CHECKING)", "function": " (inside a function)"}[edge.where]
    return f"{edge.path}:{edge.line} {edge.via or f'{edge.source} -> {edge.target}'}{note}"


def _knots(graph: Mapping[str, list[Edge]], noun: str) -> list[str]:
    """One entry per knot of nodes that import each other: a shortest cycle, then every
    import inside the knot (the ones to cut)."""
    found = []
    for component in _strongly_connected(graph):
        members = set(component)
        if len(component) == 1 and not any(edge.target == component[0] for edge in graph[component[0]]):
            continue
        cycle = _shortest_cycle(graph, component[0], members)
        knot = sorted(
            (edge for name in component for edge in graph[name] if edge.target in members),
            key=lambda edge: (edge.path, edge.line, edge.target),
        )
        found.append(
            f"{len(component)} {noun} in a knot: {', '.join(component)}\n"
            f"  a shortest cycle: {' -> '.join([edge.source for edge in cycle] + [cycle[0].source])}\n"
            "  every import inside the knot:\n" + "".join(f"    {_edge_text(edge)}\n" for edge in knot)
        )
    return found


def import_cycles(modules: list[Module]) -> list[str]:
    return _knots(import_graph(modules), "modules")


def _package(module: str) -> str:
    """``server.oauth.grants.refresh_token`` -> ``server.oauth``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def package_cycles(modules: list[Module]) -> list[str]:
    """Knots between the packages (and top-level modules) of ``server/``: dependencies
    between rooms point one way, even where no two modules import each other."""
    graph: dict[str, list[Edge]] = {}
    for source, edges in import_graph(modules).items():
        graph.setdefault(_package(source), [])
        for edge in edges:
            if _package(source) != _package(edge.target):
                via = f"{edge.source} -> {edge.target}"
                graph[_package(source)].append(
                    edge._replace(source=_package(source), target=_package(edge.target), via=via)
                )
    return _knots(graph, "packages")


def _in_place_order(found: list[str]) -> list[str]:
    """Offenders ("path:line ...") by file, then line: ``ast.walk`` goes breadth first."""
    return sorted(found, key=lambda text: (text.split(":")[0], int(text.split(":")[1].split()[0])))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def oauth_leaks(modules: list[Module]) -> list[str]:
    """Imports of ``server/oauth/`` out of its room, and page names in its strings."""
    found = []
    for module in modules:
        if not _under(module.name, "server.oauth"):
            continue
        for imp in imports_of(module):
            banned = sorted({p for name in imp.names for p in OAUTH_FORBIDDEN_IMPORTS if _under(name, p)})
            if banned:
                found.append(f"{module.path}:{imp.line} imports {', '.join(banned)}")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(".html"):
                found.append(f"{module.path}:{node.lineno} names a page: {node.value!r}")
    return _in_place_order(found)


#: anyio's (and so Starlette's) thread crossings are named run_sync too; they are no session
_THREAD_MODULES = ("to_thread", "from_thread")


def _attribute_chain(node: ast.expr) -> list[str]:
    chain: list[str] = []
    while isinstance(node, ast.Attribute):
        chain.insert(0, node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        chain.insert(0, node.id)
    return chain


def run_sync_outside_storage(modules: list[Module]) -> list[str]:
    """Every use of ``run_sync`` (a session's or a connection's) outside ``server/storage/``."""
    found = []
    for module in modules:
        if _under(module.name, STORAGE):
            continue
        thread_names = {
            alias.asname or alias.name
            for node in ast.walk(module.tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] in _THREAD_MODULES
            for alias in node.names
        }
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and node.attr == "run_sync":
                chain = _attribute_chain(node)
                if len(chain) < 2 or chain[-2] not in _THREAD_MODULES:
                    found.append(f"{module.path}:{node.lineno} {'.'.join(chain) or '(...).run_sync'}")
            elif isinstance(node, ast.Name) and node.id == "run_sync" and node.id not in thread_names:
                found.append(f"{module.path}:{node.lineno} run_sync")
    return _in_place_order(found)


def _comments(source: str) -> dict[int, str]:
    """Line number -> comment text, from the tokenizer (a ``#`` inside a string is no comment)."""
    return {
        token.start[0]: token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }


def long_functions(modules: list[Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions and methods longer than ``limit`` lines (from ``def`` to their last line)
    with no ``# long: <reason>`` comment inside them or directly above them."""
    found = []
    for module in modules:
        comments = _comments(module.source)
        lines = module.source.splitlines()
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length <= limit:
                continue
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = first - 1
            while above in comments and lines[above - 1].lstrip().startswith("#"):
                above -= 1
            span = range(above + 1, node.end_lineno + 1)
            if not any(LONG_MARKER.match(comments[line]) for line in span if line in comments):
                found.append(f"{module.path}:{node.lineno} {node.name}: {length} lines")
    return _in_place_order(found)


def _docstrings(tree: ast.Module) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                yield first.value


def outside_pointers(modules: list[Module]) -> list[str]:
    """Comments and docstrings that send the reader outside the repository."""
    found = []
    for module in modules:
        texts = list(_comments(module.source).items())
        texts += [(doc.lineno, str(doc.value)) for doc in _docstrings(module.tree)]
        for line, text in sorted(texts):
            for label, pattern in OUTSIDE_POINTERS:
                for match in pattern.finditer(text):
                    at = line + text.count("\n", 0, match.start())
                    found.append(f"{module.path}:{at} {label}: {match.group(0)!r}")
    return found


def sqlalchemy_outside_storage(modules: list[Module]) -> list[str]:
    found = []
    for module in modules:
        if _under(module.name, STORAGE):
            continue
        for imp in imports_of(module):
            if any(_under(name, "sqlalchemy") for name in imp.names):
                found.append(f"{module.path}:{imp.line} imports sqlalchemy")
    return found


def authlib_contract_names() -> frozenset[str]:
    """The methods Authlib's model mixins ask of clients, codes, tokens and device codes,
    and the user's ``get_user_id``: read from Authlib itself, so a new hook is covered."""
    from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
    from authlib.oauth2.rfc8628 import DeviceCredentialMixin
    from authlib.oidc.core import AuthorizationCodeMixin as OpenIDCodeMixin

    mixins = (ClientMixin, AuthorizationCodeMixin, TokenMixin, DeviceCredentialMixin, OpenIDCodeMixin)
    return frozenset({"get_user_id"}.union(*({n for n in vars(m) if not n.startswith("_")} for m in mixins)))


def authlib_contracts_outside_oauth(modules: list[Module], names: frozenset[str]) -> list[str]:
    """Methods of Authlib's model contracts defined on a class outside ``oauth/``: storage
    returns plain snapshots, and ``oauth/`` adapts them (as ``OAuthClient`` does clients)."""
    found = []
    for module in modules:
        if _under(module.name, "server.oauth"):
            continue
        for node in ast.walk(module.tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in names:
                    found.append(f"{module.path}:{item.lineno} {node.name}.{item.name}")
    return found


def _fail_with(offenders: list[str], rule: str) -> None:
    if offenders:
        pytest.fail(f"{rule} ({len(offenders)}):\n" + "\n".join(offenders), pytrace=False)


# --- the detectors on planted offenders ------------------------------------------------


def test_a_cycle_is_found_whatever_the_kind_of_import() -> None:
    modules = parse(
        {
            "server/__init__.py": "",
            "server/oauth/__init__.py": "",
            "server/oauth/bridge.py": "from .tokens import issue\n",
            "server/oauth/tokens.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import grants\n"
            ),
            "server/oauth/grants.py": "def hook():\n    from server.oauth import bridge\n",
            "server/web/__init__.py": "",
            "server/web/token.py": "from ..oauth import bridge\nfrom .. import oauth\n",
        }
    )
    (knot,) = import_cycles(modules)
    assert "a shortest cycle: server.oauth.bridge -> server.oauth.tokens -> server.oauth.grants -> " in knot
    assert "server/oauth/tokens.py:3 server.oauth.tokens -> server.oauth.grants (under TYPE_CHECKING)" in knot
    assert "server/oauth/grants.py:2 server.oauth.grants -> server.oauth.bridge (inside a function)" in knot
    assert "server.web" not in knot
    assert import_cycles([m for m in modules if m.name != "server.oauth.grants"]) == []


def test_a_module_importing_a_name_from_its_own_package_is_no_cycle() -> None:
    modules = parse({"server/__init__.py": "from .app import create\n", "server/app.py": "import os\n"})
    assert import_cycles(modules) == []


def test_packages_that_need_each_other_are_found_though_their_modules_do_not() -> None:
    modules = parse(
        {
            "server/runtime.py": "from .web import pages\n",
            "server/web/pages.py": "import jinja2\n",
            "server/web/token.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..runtime import Runtime\n"
            ),
            "server/storage/users.py": "from ..settings import Settings\n",
            "server/settings.py": "import os\n",
        }
    )
    assert import_cycles(modules) == []
    (knot,) = package_cycles(modules)
    assert knot.startswith("2 packages in a knot: server.runtime, server.web\n")
    assert "server/runtime.py:1 server.runtime -> server.web.pages\n" in knot
    assert "server/web/token.py:3 server.web.token -> server.runtime (under TYPE_CHECKING)\n" in knot


def test_oauth_may_not_reach_people_pages_or_the_command_line() -> None:
    modules = parse(
        {
            "server/oauth/__init__.py": "",
            "server/oauth/flow.py": (
                "from ..users import service\n"
                "from server import web\n"
                "import jinja2\n"
                "from starlette.templating import Jinja2Templates\n"
                "from ..storage import users\n"
                "PAGE = 'login.html'\n"
                "other = f'{PAGE}.html'\n"
            ),
            "server/web/pages.py": "from ..users import service\nPAGE = 'login.html'\n",
        }
    )
    assert oauth_leaks(modules) == [
        "server/oauth/flow.py:1 imports server.users",
        "server/oauth/flow.py:2 imports server.web",
        "server/oauth/flow.py:3 imports jinja2",
        "server/oauth/flow.py:4 imports starlette.templating",
        "server/oauth/flow.py:6 names a page: 'login.html'",
        "server/oauth/flow.py:7 names a page: '.html'",
    ]


def test_run_sync_is_found_but_a_thread_crossing_is_not() -> None:
    modules = parse(
        {
            "server/users/account.py": (
                "import anyio\nfrom anyio import to_thread\nfrom anyio.to_thread import run_sync as hop\n"
                "async def f(session, fn):\n"
                "    await anyio.to_thread.run_sync(fn)\n"
                "    await to_thread.run_sync(fn)\n"
                "    await hop(fn)\n"
                "    await session.run_sync(fn)\n"
                "    return session.connection.run_sync\n"
            ),
            "server/storage/transactions.py": "async def run(session, fn):\n    return await session.run_sync(fn)\n",
        }
    )
    assert run_sync_outside_storage(modules) == [
        "server/users/account.py:8 session.run_sync",
        "server/users/account.py:9 session.connection.run_sync",
    ]


def test_a_long_function_needs_a_reason() -> None:
    def body(indent: int) -> str:
        return (" " * indent + "x = 1\n") * 49  # with its def line: 50 lines, the limit

    source = (
        f"def at_the_limit():\n{body(4)}"
        f"async def too_long():\n{body(4)}    return x\n"
        f"# long: one table of cases, read top to bottom\n@decorated\ndef reason_above():\n{body(4)}    return x\n"
        f"class C:\n    def reason_inside(self):\n        # long: the steps in order\n{body(8)}\n"
        f"def marker_in_a_string():\n    '# long: in a string, not a comment'\n{body(4)}"
    )
    assert long_functions(parse({"server/a.py": source})) == [
        "server/a.py:51 too_long: 51 lines",
        "server/a.py:208 marker_in_a_string: 51 lines",
    ]


def test_pointers_outside_the_repository_are_found_in_comments_and_docstrings() -> None:
    modules = parse(
        {
            "server/engine.py": (
                '"""The pool.\n\nSee pitfall 11 and ../shared/reference/x.py."""\n'
                "# measured in bridge-measured.md\n"
                "def f():\n    '''As STYLE.md says.'''\n    return '/tmp/ostiary.db'  # a path in code is fine\n"
                "# read /work/main/keys first\n"
                "URL = 'https://example.com/tmp/x'  # a URL path is no machine path: https://h/work/x\n"
            )
        }
    )
    assert outside_pointers(modules) == [
        "server/engine.py:3 a numbered pitfall: 'pitfall 11'",
        "server/engine.py:3 the shared folder: '../shared'",
        "server/engine.py:3 a reference file of the shared folder: 'shared/reference'",
        "server/engine.py:4 a spike's measurement notes: 'bridge-measured'",
        "server/engine.py:6 the house style file: 'STYLE.md'",
        "server/engine.py:8 an absolute path on a machine: '/work/'",
    ]


def test_sqlalchemy_outside_storage_is_found() -> None:
    modules = parse(
        {
            "server/web/a.py": "from sqlalchemy import select\n",
            "server/web/b.py": "import sqlalchemy.orm\n",
            "server/storage/c.py": "from sqlalchemy import select\n",
        }
    )
    assert sqlalchemy_outside_storage(modules) == [
        "server/web/a.py:1 imports sqlalchemy",
        "server/web/b.py:1 imports sqlalchemy",
    ]


def test_authlib_contract_methods_outside_oauth_are_found() -> None:
    modules = parse(
        {
            "server/storage/codes.py": (
                "class StoredCode:\n    def get_redirect_uri(self): ...\n    def other(self): ...\n"
            ),
            "server/storage/users.py": "class StoredUser:\n    async def get_user_id(self): ...\n",
            "server/oauth/grants/code.py": "class Code:\n    def get_redirect_uri(self): ...\n",
            "server/storage/free.py": "def get_scope(): ...\n",
        }
    )
    assert authlib_contracts_outside_oauth(modules, authlib_contract_names()) == [
        "server/storage/codes.py:2 StoredCode.get_redirect_uri",
        "server/storage/users.py:2 StoredUser.get_user_id",
    ]
    assert {"check_client", "get_auth_time", "is_revoked", "check_client_secret"} <= authlib_contract_names()


# --- the rules on the real tree ---------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> list[Module]:
    return read_tree("server")


def test_the_import_graph_of_server_has_no_cycle(server: list[Module]) -> None:
    # Imports under TYPE_CHECKING and inside functions count: a cycle they hide is still
    # two modules that need each other, so a name is in the wrong room.
    _fail_with(import_cycles(server), "modules of server/ that import each other")


def test_dependencies_between_packages_point_one_way(server: list[Module]) -> None:
    # web -> {signin, oauth, authn, mfa, users, clients, keys, mail} -> storage -> settings:
    # two packages that need each other are one room, or a name is in the wrong one.
    _fail_with(package_cycles(server), "packages of server/ that import each other")


def test_oauth_imports_neither_users_web_signin_cli_nor_templates(server: list[Module]) -> None:
    _fail_with(oauth_leaks(server), "server/oauth/ reaching out of its room")


def test_run_sync_only_in_storage(server: list[Module]) -> None:
    _fail_with(run_sync_outside_storage(server), "run_sync outside server/storage/")


def test_no_long_function_without_a_reason(server: list[Module]) -> None:
    _fail_with(long_functions(server), f"functions over {MAX_FUNCTION_LINES} lines with no '# long: <reason>'")


def test_comments_point_nowhere_outside_the_repository() -> None:
    _fail_with(outside_pointers(read_tree(*SELF_CONTAINED_TREES)), "comments or docstrings pointing outside")


def test_sqlalchemy_only_in_storage(server: list[Module]) -> None:
    _fail_with(sqlalchemy_outside_storage(server), "sqlalchemy imported outside server/storage/")


def test_authlib_contracts_live_in_oauth(server: list[Module]) -> None:
    offenders = authlib_contracts_outside_oauth(server, authlib_contract_names())
    _fail_with(offenders, "Authlib model methods outside server/oauth/ (adapt the snapshot in oauth/)")


def test_the_tree_is_read_at_all(server: list[Module]) -> None:
    # Guards every rule above against passing on an empty or misnamed tree.
    names = {module.name for module in server}
    assert {"server.app", "server.oauth", "server.storage", "server.web.token"} <= names
    assert sum(len(edges) for edges in import_graph(server).values()) > 100
