"""Forbidden licences: which components' stated licences a policy refuses. Pure.

A component's licences all apply (as the SBOM states them: several become one ``AND``
expression), so it is forbidden when one of them is. Each is put in disjunctive normal form with
the ``license-expression`` library: it is forbidden when **every** choice it leaves (``MIT OR
GPL-3.0-only`` lets one take MIT) includes a forbidden licence. A forbidden id also matches that
licence with an exception (``GPL-2.0-only`` matches ``GPL-2.0-only WITH Classpath-exception-2.0``);
a forbidden ``X WITH E`` matches only itself. Stated text that is not an SPDX expression is
"unknown": it denies only when the rule says ``unknown: deny`` or the text is itself a forbidden id.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from license_expression import (
    ExpressionError,
    LicenseWithExceptionSymbol,
    Licensing,
    get_spdx_licensing,
)

from supplychain.interface import Component

__all__ = ["LicenseRule", "forbidden_keys", "license_problem"]


@dataclass(frozen=True)
class LicenseRule:
    """Licences that must not be in the image."""

    deny: tuple[str, ...] = ()
    """Forbidden licences: SPDX ids or expressions (every licence named in one is forbidden)."""
    unknown: str = "allow"
    """``deny``: a component whose stated licence is not an SPDX expression denies too."""


@functools.cache
def _licensing() -> Licensing:
    """The SPDX licence index (the library builds it anew on every call: ~40 ms)."""
    return get_spdx_licensing()


def forbidden_keys(expression: str) -> tuple[str, ...]:
    """The licences an SPDX id or expression names (``X WITH E`` kept whole); ValueError if it
    is not one SPDX knows."""
    licensing = _licensing()
    try:
        parsed = licensing.parse(expression, validate=True)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None
    if parsed is None:
        raise ValueError("empty licence expression")
    return tuple(sorted(str(s) for s in licensing.license_symbols(parsed, decompose=False)))


@functools.lru_cache(maxsize=8192)
def _choices(expression: str) -> tuple[frozenset[str], ...] | None:
    """The licence sets one may choose among (DNF terms; each symbol also as its bare licence
    when it carries an exception, lower-cased), or None when not SPDX."""
    licensing = _licensing()
    try:
        parsed = licensing.parse(expression, validate=True)
    except ExpressionError:
        return None
    if parsed is None:
        return None
    dnf = licensing.dnf(parsed)
    terms = dnf.args if isinstance(dnf, licensing.OR) else (dnf,)
    out: list[frozenset[str]] = []
    for term in terms:
        names: set[str] = set()
        for symbol in licensing.license_symbols(term, decompose=False):
            names.add(str(symbol).lower())
            if isinstance(symbol, LicenseWithExceptionSymbol):
                names.add(str(symbol.license_symbol.key).lower())
        out.append(frozenset(names))
    return tuple(out)


def license_problem(rule: LicenseRule, component: Component) -> str | None:
    """Why ``component``'s licences are forbidden by ``rule``, or None.

    Its licences all apply, so it is forbidden when one of them is: ``A AND B`` leaves no
    choice without a forbidden licence exactly when ``A`` or ``B`` leaves none. Each stated text
    is therefore judged on its own (and a text that is not SPDX spoils only itself)."""
    spelling = {k.lower(): k for k in rule.deny}
    forbidden = set(spelling)
    for text in component.licenses:
        choices = _choices(text)
        if choices is None:
            if text.strip().lower() in forbidden:
                return f"forbidden licence {text.strip()}"
            if rule.unknown == "deny":
                return f"licence not an SPDX expression: {text}"
            continue
        if all(choice & forbidden for choice in choices):
            named = sorted({spelling[n] for choice in choices for n in choice & forbidden})
            shown = f" ({text})" if text != ", ".join(named) else ""
            return f"forbidden licence {', '.join(named)}{shown}"
    return None
