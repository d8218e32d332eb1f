"""Custom policy rules in Rego, evaluated with ``regopy`` (rego-cpp) over the policy input.

A module defines ``deny`` and/or ``warn`` as sets of messages (``deny contains msg if {…}``);
the input is :func:`supplychain.decide.regoinput.policy_input`. A module is read and checked
when the policy is loaded: a syntax error is a :class:`~supplychain.interface.PolicyError`
naming the file and line. Anything that goes wrong at decision time — an evaluation error,
``deny`` that is not a set — is returned as an error, which the policy turns into a deny.
Each thread compiles a module once into a bundle and evaluates it with one interpreter whose
input is set per decision (compiling costs ~10 ms; handing the input over is then most of a
decision's cost, see ``docs/benchmarks.md``).

Besides regopy's public API this module uses its ``rego_shared`` C bindings to run a bundle and
to read results node by node (regopy's JSON rendering of results leaves quotes inside strings
unescaped); pin ``regopy>=1.5.2,<1.6``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supplychain.interface import PolicyError

__all__ = ["RegoModule", "RegoOutcome", "evaluate", "load_module"]

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)[ \t]*(?:#.*)?$", re.M)
_LOCATION = re.compile(r"\(error \d+:[^|\n]*\|(\d+)\|(\d+)")
_MESSAGE = re.compile(r"\(errormsg \d+:([^\n]*)\)")
MAX_MESSAGES = 50
"""Messages kept from one rule (the rest are counted)."""
MAX_MESSAGE = 500
"""Characters kept of one message."""


@dataclass(frozen=True)
class RegoModule:
    """One Rego file of a policy; its source is part of the policy's canonical form."""

    path: str
    """The file as the policy names it (relative to the policy file)."""
    package: str
    """Its ``package`` (the rules read are ``data.<package>.deny`` and ``.warn``)."""
    source: str
    """The whole module text."""


@dataclass(frozen=True)
class RegoOutcome:
    """What one module said about one input."""

    deny: tuple[str, ...] = ()
    """``deny`` messages: each denies."""
    warn: tuple[str, ...] = ()
    """``warn`` messages: shown, never deny."""
    error: str | None = field(default=None)
    """Why it could not be evaluated (the policy denies: fail closed)."""


def _interpreter() -> Any:
    from regopy import Interpreter, LogLevel

    interpreter = Interpreter()
    interpreter.log_level = LogLevel.NONE  # errors come back as values, not printed to stdout
    interpreter.strict_built_in_errors = True  # a failing built-in is an error, not undefined
    return interpreter


def _messages(text: str) -> str:
    found = [m.strip() for m in _MESSAGE.findall(text)]
    return "; ".join(dict.fromkeys(found)) or "evaluation error"


def _located(path: str, source: str, error: str) -> str:
    """``path:line: message`` from a rego-cpp error (its location is a byte offset)."""
    where = _LOCATION.search(error)
    line = 1
    if where is not None:
        offset = int(where.group(1))
        line = source.encode()[:offset].count(b"\n") + 1
    return f"{path}:{line}: {_messages(error)}"


def _value(node: Any, depth: int = 0) -> Any:
    """A result node as Python, read node by node: regopy's JSON rendering of results does not
    escape quotes inside strings (rego-cpp 1.x), so a message holding one would not parse.
    Strings made by some built-ins carry their JSON quotes in the node; one pair is removed."""
    from regopy import rego_shared as api
    from regopy.rego_shared import NodeKind

    if depth > 64:
        raise ValueError("result nested too deep")
    kind = api.rego_node_type(node)
    children = [api.rego_node_get(node, i) for i in range(api.rego_node_size(node))]
    if kind in (NodeKind.Term, NodeKind.Scalar) and len(children) == 1:
        return _value(children[0], depth + 1)
    if kind == NodeKind.Object:
        items: dict[str, Any] = {}
        for item in children:
            key = _value(api.rego_node_get(item, 0), depth + 1)
            items[key if isinstance(key, str) else json.dumps(key)] = _value(
                api.rego_node_get(item, 1), depth + 1
            )
        return items
    if kind in (NodeKind.Array, NodeKind.Set):
        return [_value(child, depth + 1) for child in children]
    if kind == NodeKind.String:
        text = str(api.rego_node_value(node))
        quoted = len(text) >= 2 and text[0] == text[-1] == '"'
        return text[1:-1] if quoted else text
    if kind == NodeKind.Int:
        return int(api.rego_node_value(node))
    if kind == NodeKind.Float:
        return float(api.rego_node_value(node))
    if kind in (NodeKind.True_, NodeKind.False_, NodeKind.Boolean):
        return api.rego_node_value(node) == "true"
    if kind == NodeKind.Null:
        return None
    raise ValueError(f"unexpected result node kind {kind}")


def _query(interpreter: Any, package: str, bundle: Any = None) -> tuple[Any, str | None]:
    """(``data.<package>`` as Python, None) or (None, the error); with ``bundle``, its compiled
    query is run instead of compiling one."""
    from regopy import RegoError
    from regopy import rego_shared as api

    try:
        if bundle is None:
            output = api.rego_query(interpreter._impl, f"x := data.{package}")
        else:
            output = api.rego_bundle_query(interpreter._impl, bundle._impl)
    except RegoError as exc:
        return None, _messages(str(exc))
    try:
        text = api.rego_output_string(output)
        if not api.rego_output_ok(output) or text.startswith(("<error>", "(error", "(rego-error")):
            return None, _messages(text)
        if text == "undefined":
            return None, f"data.{package} is undefined"
        value = _value(api.rego_output_binding_at_index(output, 0, "x"))
    except (RegoError, ValueError) as exc:
        return None, f"unreadable result: {exc}"
    finally:
        api.rego_free_output(output)
    if not isinstance(value, dict):
        return None, f"data.{package} is not an object"
    return value, None


def load_module(path: Path, name: str, probe: dict[str, Any]) -> RegoModule:
    """Read and check the Rego file at ``path`` (named ``name`` in the policy); ``probe`` is a
    minimal input to compile it against. :class:`PolicyError` names the file and line."""
    from regopy import Input, RegoError

    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read Rego module {path}: {exc}") from None
    package = _PACKAGE.search(source)
    if package is None:
        raise PolicyError(f"{path}:1: no package declaration (e.g. package supplychain.custom)")
    interpreter = _interpreter()
    try:
        interpreter.add_module(str(path), source)
    except RegoError as exc:
        raise PolicyError(_located(str(path), source, str(exc))) from None
    interpreter.set_input(Input(probe))
    _, error = _query(interpreter, package.group(1))
    if error is not None:
        raise PolicyError(f"{path}: {error}")
    return RegoModule(name, package.group(1), source)


def _texts(value: object, rule: str) -> tuple[tuple[str, ...], str | None]:
    if value is None:
        return (), None
    if not isinstance(value, list):  # a set comes back as a JSON list
        return (), f"{rule} must be a set of messages ({rule} contains msg if {{ … }})"
    texts = [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value]
    kept = [t[:MAX_MESSAGE] for t in sorted(texts)[:MAX_MESSAGES]]
    if len(texts) > MAX_MESSAGES:
        kept.append(f"… and {len(texts) - MAX_MESSAGES} more")
    return tuple(kept), None


class _Compiled(threading.local):
    """Per thread: one interpreter, and each module compiled once into a bundle (compiling is
    most of the cost of an evaluation; bundles are not shared between threads)."""

    def __init__(self) -> None:
        self.interpreter: Any = None
        self.bundles: dict[tuple[str, str], Any] = {}


_compiled = _Compiled()
MAX_BUNDLES = 64
"""Compiled modules kept per thread (policy reloads add new ones)."""


def _bundle(module: RegoModule) -> Any:
    from regopy import Interpreter, LogLevel

    key = (module.path, hashlib.sha256(module.source.encode()).hexdigest())
    found = _compiled.bundles.get(key)
    if found is None:
        builder = Interpreter()
        builder.log_level = LogLevel.NONE
        builder.add_module(module.path, module.source)
        found = builder.build(f"x := data.{module.package}")
        if not found.ok():
            raise ValueError("the module does not compile")
        if len(_compiled.bundles) >= MAX_BUNDLES:
            _compiled.bundles.clear()
        _compiled.bundles[key] = found
    return found


def _outcome(value: Any, error: str | None) -> RegoOutcome:
    if value is None:
        return RegoOutcome(error=error)
    deny, problem = _texts(value.get("deny"), "deny")
    warn, warn_problem = _texts(value.get("warn"), "warn")
    if problem or warn_problem:
        return RegoOutcome(deny, warn, problem or warn_problem)
    return RegoOutcome(deny, warn)


def evaluate(modules: Sequence[RegoModule], document: dict[str, Any]) -> list[RegoOutcome]:
    """Each module's deny and warn messages for the input ``document`` (never raises for what a
    module does: an error is returned, to deny)."""
    from regopy import Input, RegoError

    if _compiled.interpreter is None:
        _compiled.interpreter = _interpreter()
    interpreter = _compiled.interpreter
    try:
        interpreter.set_input(Input(document))
    except (RegoError, ValueError, TypeError) as exc:
        return [RegoOutcome(error=_messages(str(exc)))] * len(modules)
    outcomes: list[RegoOutcome] = []
    for module in modules:
        try:
            bundle = _bundle(module)
        except (RegoError, ValueError) as exc:
            outcomes.append(RegoOutcome(error=_messages(str(exc))))
            continue
        outcomes.append(_outcome(*_query(interpreter, module.package, bundle)))
    return outcomes
