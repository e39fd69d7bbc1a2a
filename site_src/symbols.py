"""Where things are defined, and which names in the code refer to them: the data behind the site's code links.

For every module of a project (dotted name -> source), `index_project` finds

* the definitions: classes and functions with their qualified names (`MultiHeadAttention.forward`) and the
  position of the name in the source (for anchors);
* the references: positions of names that refer to a definition or a module of the project, resolved with the
  module's imports and Python's scoping rules (a local variable or parameter that shadows a global is not a link).

Positions are `(line, column)` with 1-based lines and 0-based columns, as in `ast`.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

Position = tuple[int, int]


@dataclass(frozen=True)
class Target:
    """A module of the project (`qualname is None`) or a definition in it."""
    module: str
    qualname: str | None = None


@dataclass
class Definition:
    qualname: str
    position: Position  # of the name after `def` / `class`
    start: int  # first line of the statement, decorators included
    bases: list[ast.expr] = field(default_factory=list)


@dataclass
class ModuleIndex:
    name: str
    is_package: bool
    tree: ast.Module
    lines: list[str]
    definitions: dict[str, Definition] = field(default_factory=dict)
    # Position of a name in the code -> (its text, what it refers to).
    references: dict[Position, tuple[str, Target]] = field(default_factory=dict)


FUNCTION_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef)
SCOPE_TYPES = FUNCTION_TYPES + (ast.ClassDef, ast.Lambda)


def _collect_definitions(index: ModuleIndex) -> None:
    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, FUNCTION_TYPES + (ast.ClassDef,)):
                qualname = f"{prefix}{node.name}"
                line = index.lines[node.lineno - 1]
                keyword = "class" if isinstance(node, ast.ClassDef) else "def"
                match = re.compile(rf"\b{keyword}\s+({re.escape(node.name)})\b").search(line, node.col_offset)
                column = match.start(1) if match else node.col_offset
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                bases = list(node.bases) if isinstance(node, ast.ClassDef) else []
                index.definitions[qualname] = Definition(qualname, (node.lineno, column), start, bases)
                visit(node.body, f"{qualname}.")
            elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For, ast.While)):
                # Definitions under `if TYPE_CHECKING:` and the like are still module-level definitions.
                for block in ("body", "orelse", "finalbody"):
                    visit(getattr(node, block, []), prefix)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body, prefix)

    visit(index.tree.body, "")


def _bound_names(scope: ast.AST) -> set[str]:
    """Names bound in a scope (not in the scopes nested in it): Python decides at compile time that they are local."""
    names: set[str] = set()
    if isinstance(scope, FUNCTION_TYPES + (ast.Lambda,)):
        args = scope.args
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if arg is not None:
                names.add(arg.arg)
    body = scope.body if isinstance(scope.body, list) else [scope.body]
    stack = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, SCOPE_TYPES):
            if not isinstance(node, ast.Lambda):
                names.add(node.name)
            # Decorators, defaults and bases are evaluated in this scope; the body is not.
            stack.extend(getattr(node, "decorator_list", []))
            if not isinstance(node, ast.ClassDef):
                stack.extend(node.args.defaults + [d for d in node.args.kw_defaults if d is not None])
            else:
                stack.extend(node.bases)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return names


class _Resolver:
    """Resolves the names of every module of a project against the project's modules and definitions."""

    def __init__(self, modules: dict[str, ModuleIndex]):
        self.modules = modules
        self._exports: dict[str, dict[str, Target | None]] = {}

    def absolute(self, module: ModuleIndex, name: str | None, level: int) -> str:
        """The absolute module name of `from <.level><name> import ...` written in `module`."""
        if level == 0:
            return name or ""
        parts = module.name.split(".")
        if not module.is_package:
            parts = parts[:-1]
        if level > 1:
            parts = parts[:len(parts) - (level - 1)]
        return ".".join(parts + ([name] if name else []))

    def member(self, target: Target | None, attr: str, seen: frozenset = frozenset()) -> Target | None:
        """What `<target>.<attr>` refers to: a submodule, a definition, a name imported into a module, a method."""
        if target is None:
            return None
        if target.qualname is None:
            submodule = f"{target.module}.{attr}"
            if submodule in self.modules:
                return Target(submodule)
            module = self.modules.get(target.module)
            if module is None:
                return None
            if attr in module.definitions:
                return Target(target.module, attr)
            key = (target.module, attr)
            if key in seen:
                return None
            return self.exports(module, seen | {key}).get(attr)
        module = self.modules.get(target.module)
        if module is None:
            return None
        qualname = f"{target.qualname}.{attr}"
        if qualname in module.definitions:
            return Target(target.module, qualname)
        # A method inherited from a base class defined in the project.
        definition = module.definitions.get(target.qualname)
        if definition is None or (target, attr) in seen:
            return None
        scopes = self.module_scope(module)
        for base in definition.bases:
            found = self.member(self.expression(base, [scopes]), attr, seen | {(target, attr)})
            if found is not None and found.qualname is not None:
                return found
        return None

    def exports(self, module: ModuleIndex, seen: frozenset = frozenset()) -> dict[str, Target | None]:
        """Module-level names of `module` that refer to something in the project (None: bound to something else)."""
        if module.name in self._exports:
            return self._exports[module.name]
        names: dict[str, Target | None] = {name: None for name in _bound_names(module.tree)}
        for qualname in module.definitions:
            if "." not in qualname:
                names[qualname] = Target(module.name, qualname)
        self._exports[module.name] = names
        for node in module.tree.body:
            for statement in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    names.update(self.imports(module, statement, seen))
        return names

    def imports(self, module: ModuleIndex, node: ast.Import | ast.ImportFrom, seen: frozenset = frozenset()
                ) -> dict[str, Target | None]:
        bound: dict[str, Target | None] = {}
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = Target(alias.name) if alias.name in self.modules else None
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = Target(top) if top in self.modules else None
            return bound
        base = self.absolute(module, node.module, node.level)
        for alias in node.names:
            if alias.name == "*":
                continue
            target = None
            if base in self.modules:
                target = self.member(Target(base), alias.name, seen)
            bound[alias.asname or alias.name] = target
        return bound

    def module_scope(self, module: ModuleIndex) -> dict[str, Target | None]:
        return self.exports(module)

    def expression(self, node: ast.expr, scopes: list[dict[str, Target | None]]) -> Target | None:
        """What a `Name` or a chain of attributes refers to, looked up innermost scope first."""
        if isinstance(node, ast.Name):
            for scope in reversed(scopes):
                if node.id in scope:
                    return scope[node.id]
            return None
        if isinstance(node, ast.Attribute):
            return self.member(self.expression(node.value, scopes), node.attr)
        return None


def _record(module: ModuleIndex, position: Position, text: str, target: Target | None) -> None:
    if target is not None:
        line, column = position
        # `ast` counts columns in UTF-8 bytes; the page counts characters.
        column = len(module.lines[line - 1].encode("utf-8")[:column].decode("utf-8", errors="ignore"))
        module.references[(line, column)] = (text, target)


def _index_references(resolver: _Resolver, module: ModuleIndex) -> None:
    def import_positions(node: ast.Import | ast.ImportFrom, scopes: list[dict[str, Target | None]]) -> None:
        if isinstance(node, ast.ImportFrom):
            line = module.lines[node.lineno - 1]
            match = re.compile(r"from\s+(\.*[\w.]*)").match(line, node.col_offset)
            base = resolver.absolute(module, node.module, node.level)
            if match and base in resolver.modules:
                byte_column = len(line[:match.start(1)].encode("utf-8"))
                _record(module, (node.lineno, byte_column), match.group(1), Target(base))
            for alias in node.names:
                if alias.name != "*" and base in resolver.modules:
                    _record(module, (alias.lineno, alias.col_offset), alias.name,
                            resolver.member(Target(base), alias.name))
        else:
            for alias in node.names:
                if alias.name in resolver.modules:
                    _record(module, (alias.lineno, alias.col_offset), alias.name, Target(alias.name))

    def visit(node: ast.AST, scopes: list[dict[str, Target | None]], class_scope: dict | None,
              owner: tuple[str, str] | None, prefix: str) -> None:
        """`owner` is (class qualname, name of the first parameter) inside a method, for `self.method` links."""
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            import_positions(node, scopes)
            return
        if isinstance(node, FUNCTION_TYPES + (ast.Lambda,)):
            outer = scopes + ([class_scope] if class_scope is not None else [])
            for child in getattr(node, "decorator_list", []):
                visit(child, outer, None, owner, prefix)
            for child in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                visit(child, outer, None, owner, prefix)
            for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs + [node.args.vararg,
                                                                                     node.args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    visit(arg.annotation, outer, None, owner, prefix)
            if getattr(node, "returns", None) is not None:
                visit(node.returns, outer, None, owner, prefix)
            local: dict[str, Target | None] = {name: None for name in _bound_names(node)}
            for statement in ast.walk(node):
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    local.update(resolver.imports(module, statement))
            for statement in ast.iter_child_nodes(node):
                if isinstance(statement, FUNCTION_TYPES + (ast.ClassDef,)):
                    local[statement.name] = Target(module.name, f"{prefix}{node.name}.{statement.name}") \
                        if not isinstance(node, ast.Lambda) else None
            method_owner = owner
            if class_scope is not None and not isinstance(node, ast.Lambda):
                positional = node.args.posonlyargs + node.args.args
                is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
                if positional and not is_static:
                    method_owner = (prefix.rstrip("."), positional[0].arg)
            inner_prefix = prefix if isinstance(node, ast.Lambda) else f"{prefix}{node.name}."
            body = node.body if isinstance(node.body, list) else [node.body]
            for child in body:
                visit(child, scopes + [local], None, method_owner, inner_prefix)
            return
        if isinstance(node, ast.ClassDef):
            outer = scopes + ([class_scope] if class_scope is not None else [])
            for child in node.decorator_list + node.bases + [k.value for k in node.keywords]:
                visit(child, outer, None, owner, prefix)
            qualname = f"{prefix}{node.name}"
            members: dict[str, Target | None] = {name: None for name in _bound_names(node)}
            for child in node.body:
                if isinstance(child, FUNCTION_TYPES + (ast.ClassDef,)):
                    members[child.name] = Target(module.name, f"{qualname}.{child.name}")
            for child in node.body:
                visit(child, outer, members, None, f"{qualname}.")
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            lookup = scopes + ([class_scope] if class_scope is not None else [])
            _record(module, (node.lineno, node.col_offset), node.id, resolver.expression(node, lookup))
            return
        if isinstance(node, ast.Attribute):
            lookup = scopes + ([class_scope] if class_scope is not None else [])
            value = node.value
            target = None
            if owner is not None and isinstance(value, ast.Name) and value.id == owner[1]:
                target = resolver.member(Target(module.name, owner[0]), node.attr)
            else:
                target = resolver.expression(node, lookup)
            position = (node.end_lineno, node.end_col_offset - len(node.attr))
            if module.lines[position[0] - 1].encode("utf-8")[position[1]:node.end_col_offset] == node.attr.encode():
                _record(module, position, node.attr, target)
            visit(value, scopes, class_scope, owner, prefix)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, scopes, class_scope, owner, prefix)

    module_scope = resolver.module_scope(module)
    for statement in module.tree.body:
        visit(statement, [module_scope], None, None, "")


def index_project(sources: dict[str, tuple[str, bool]]) -> dict[str, ModuleIndex]:
    """Index every module: `sources` maps a dotted module name to `(source, is_package)`."""
    modules = {}
    for name, (source, is_package) in sources.items():
        module = ModuleIndex(name, is_package, ast.parse(source), source.split("\n"))
        _collect_definitions(module)
        modules[name] = module
    resolver = _Resolver(modules)
    for module in modules.values():
        _index_references(resolver, module)
    return modules
