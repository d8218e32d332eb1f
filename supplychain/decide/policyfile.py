"""Reads policy files: ``apiVersion: supplychain.dev/v1`` (scoped rules) or the old three keys.

Errors name the file, the line and the key (``policy.yaml:7: rules.severities: …``): the file is
composed into YAML nodes, which carry their marks, and read node by node. A file without
``apiVersion`` is read as the old format, with a deprecation warning naming the file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from supplychain.decide.licenses import LicenseRule, forbidden_keys
from supplychain.decide.policy import PolicyRules, RulesPolicy, Scope, ScopedPolicy
from supplychain.decide.rego import RegoModule, load_module
from supplychain.decide.regoinput import probe_input
from supplychain.decide.rules import (
    SEVERITY_ORDER,
    AttestationRule,
    PackageRule,
    RuleSet,
    SignatureRule,
    SignerRule,
)
from supplychain.interface import PolicyError

__all__ = ["API_VERSION", "read_policy"]

API_VERSION = "supplychain.dev/v1"
OLD_KEYS = {"name", "deny_severities", "require_signature", "max_db_age_hours"}
RULE_KEYS = {
    "severities", "fixable_only", "cvss_at_least", "cves", "packages", "secrets", "signatures",
    "attestations", "registries", "repositories", "max_scan_age_hours", "max_db_age_hours",
    "licenses", "rego",
}  # fmt: skip


class _Reader:
    """Reads YAML nodes, raising :class:`PolicyError` with file, line and key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node, key: str, message: str) -> PolicyError:
        return PolicyError(f"{self.path}:{node.start_mark.line + 1}: {key}: {message}")

    def mapping(self, node: yaml.Node, key: str, allowed: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, "must be a mapping")
        out: dict[str, yaml.Node] = {}
        for k, v in node.value:
            name = str(k.value)
            if name not in allowed:
                raise self.fail(
                    k, f"{key}.{name}".lstrip("."), f"unknown key (allowed: {sorted(allowed)})"
                )
            out[name] = v
        return out

    def seq(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "must be a list")
        return list(node.value)

    def text(self, node: yaml.Node, key: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag.endswith(":null"):
            raise self.fail(node, key, "must be a string")
        return str(node.value)

    def texts(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        return tuple(self.text(n, f"{key}[{i}]") for i, n in enumerate(self.seq(node, key)))

    def number(self, node: yaml.Node, key: str) -> float:
        try:
            value = float(self.text(node, key))
        except ValueError:
            raise self.fail(node, key, "must be a number") from None
        if value < 0:
            raise self.fail(node, key, "must not be negative")
        return value

    def flag(self, node: yaml.Node, key: str) -> bool:
        value = self.text(node, key).lower()
        if value not in ("true", "false"):
            raise self.fail(node, key, "must be true or false")
        return value == "true"

    def regexp(self, node: yaml.Node, key: str) -> str:
        value = self.text(node, key)
        try:
            re.compile(value)
        except re.error as exc:
            raise self.fail(node, key, f"not a regular expression: {exc}") from None
        return value

    def severities(self, node: yaml.Node, key: str) -> tuple[str, ...]:
        values = tuple(v.upper() for v in self.texts(node, key))
        if not set(values) <= set(SEVERITY_ORDER):
            raise self.fail(node, key, f"must be among {list(SEVERITY_ORDER)}")
        return values

    def signers(self, node: yaml.Node, key: str) -> tuple[SignerRule, ...]:
        out: list[SignerRule] = []
        allowed = {f.name for f in fields(SignerRule)}
        for i, item in enumerate(self.seq(node, key)):
            where = f"{key}[{i}]"
            spec = self.mapping(item, where, allowed)
            if not spec or ("key" in spec) == bool(set(spec) - {"key"}):
                raise self.fail(
                    item, where, "give either key, or subject/issuer (exact or _regexp)"
                )
            values = {
                k: self.regexp(v, f"{where}.{k}")
                if k.endswith("_regexp")
                else self.text(v, f"{where}.{k}")
                for k, v in spec.items()
            }
            out.append(SignerRule(**values))
        return tuple(out)

    def signatures(self, node: yaml.Node, key: str) -> SignatureRule:
        spec = self.mapping(node, key, {"required", "signers"})
        signers = self.signers(spec["signers"], f"{key}.signers") if "signers" in spec else ()
        required = 1
        if "required" in spec:
            required = int(self.number(spec["required"], f"{key}.required"))
            if required < 1 or (signers and required > len(signers)):
                raise self.fail(spec["required"], f"{key}.required", "must be 1..number of signers")
        return SignatureRule(required, signers)

    def attestations(self, node: yaml.Node, key: str) -> tuple[AttestationRule, ...]:
        out: list[AttestationRule] = []
        for i, item in enumerate(self.seq(node, key)):
            where = f"{key}[{i}]"
            spec = self.mapping(item, where, {"predicate_type", "signers", "max_age_hours"})
            if "predicate_type" not in spec:
                raise self.fail(item, where, "predicate_type is required")
            signers = self.signers(spec["signers"], f"{where}.signers") if "signers" in spec else ()
            age = spec.get("max_age_hours")
            out.append(
                AttestationRule(
                    self.text(spec["predicate_type"], where),
                    signers,
                    self.number(age, f"{where}.max_age_hours") if age is not None else None,
                )
            )
        return tuple(out)

    def licenses(self, node: yaml.Node, key: str) -> LicenseRule:
        spec = self.mapping(node, key, {"deny", "unknown"})
        keys: list[str] = []
        for i, item in enumerate(self.seq(spec["deny"], f"{key}.deny") if "deny" in spec else []):
            try:
                keys += forbidden_keys(self.text(item, f"{key}.deny[{i}]"))
            except ValueError as exc:
                raise self.fail(item, f"{key}.deny[{i}]", f"not an SPDX licence: {exc}") from None
        unknown = self.text(spec["unknown"], f"{key}.unknown") if "unknown" in spec else "allow"
        if unknown not in ("allow", "deny"):
            raise self.fail(spec["unknown"], f"{key}.unknown", "must be allow or deny")
        return LicenseRule(tuple(dict.fromkeys(keys)), unknown)

    def rego(self, node: yaml.Node, key: str) -> tuple[RegoModule, ...]:
        out: list[RegoModule] = []
        for i, item in enumerate(self.seq(node, key)):
            name = self.text(item, f"{key}[{i}]")
            path = self.path.parent / name
            if not path.is_file():
                raise self.fail(item, f"{key}[{i}]", f"no Rego file {path}")
            out.append(load_module(path, name, probe_input()))
        return tuple(out)

    def packages(self, node: yaml.Node, key: str) -> tuple[PackageRule, ...]:
        out: list[PackageRule] = []
        for i, item in enumerate(self.seq(node, key)):
            where = f"{key}[{i}]"
            spec = self.mapping(item, where, {"purl", "versions"})
            if "purl" not in spec:
                raise self.fail(item, where, "purl is required")
            purl = self.text(spec["purl"], f"{where}.purl")
            if not purl.startswith("pkg:"):
                raise self.fail(spec["purl"], f"{where}.purl", "must start with pkg:")
            versions = None
            if "versions" in spec:
                versions = self.text(spec["versions"], f"{where}.versions")
                try:
                    SpecifierSet(versions)
                except InvalidSpecifier:
                    raise self.fail(
                        spec["versions"], f"{where}.versions", "not a version range"
                    ) from None
            out.append(PackageRule(purl, versions))
        return tuple(out)

    def rules(self, node: yaml.Node, key: str, base: RuleSet) -> RuleSet:
        spec = self.mapping(node, key, RULE_KEYS)
        values: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(RuleSet)}
        for name, value in spec.items():
            at = f"{key}.{name}"
            if name == "severities":
                values["deny_severities"] = self.severities(value, at)
            elif name == "fixable_only":
                values["fixable_only"] = self.flag(value, at)
            elif name == "cvss_at_least":
                values["deny_cvss_at_least"] = self.number(value, at)
            elif name == "cves":
                lists = self.mapping(value, at, {"deny", "allow"})
                for which, v in lists.items():
                    values[f"{which}_cves"] = self.texts(v, f"{at}.{which}")
            elif name == "packages":
                values["forbidden_packages"] = self.packages(value, at)
            elif name == "licenses":
                values["forbidden_licenses"] = self.licenses(value, at)
            elif name == "rego":
                values["rego"] = self.rego(value, at)
            elif name == "secrets":
                if self.text(value, at) not in ("deny", "severity"):
                    raise self.fail(value, at, "must be deny or severity")
                values["deny_secrets"] = value.value == "deny"
            elif name == "signatures":
                values["signatures"] = self.signatures(value, at)
            elif name == "attestations":
                values["attestations"] = self.attestations(value, at)
            elif name in ("registries", "repositories"):
                values[f"trusted_{name}"] = self.texts(value, at)
            else:  # max_scan_age_hours, max_db_age_hours
                values[name] = self.number(value, at)
        return RuleSet(**values)


def _old_format(reader: _Reader, root: yaml.Node) -> RulesPolicy:
    spec = reader.mapping(root, "", OLD_KEYS)
    warnings.warn(
        f"{reader.path}: policy without apiVersion is the deprecated old format; "
        f"add 'apiVersion: {API_VERSION}' and move its keys under 'rules' (see docs/policy.md)",
        FutureWarning,  # shown to users by default, unlike DeprecationWarning
        stacklevel=3,
    )
    age = spec.get("max_db_age_hours")
    return RulesPolicy(
        PolicyRules(
            name=reader.text(spec["name"], "name") if "name" in spec else "custom",
            deny_severities=reader.severities(spec["deny_severities"], "deny_severities")
            if "deny_severities" in spec
            else ("CRITICAL",),
            require_signature=reader.flag(spec["require_signature"], "require_signature")
            if "require_signature" in spec
            else False,
            max_db_age_hours=reader.number(age, "max_db_age_hours") if age is not None else None,
        )
    )


def read_policy(path: Path) -> ScopedPolicy:
    """The policy in the YAML file at ``path``; :class:`PolicyError` names file, line and key."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from None
    reader = _Reader(path)
    if root is None:
        raise PolicyError(f"{path}: empty policy")
    if not isinstance(root, yaml.MappingNode):
        raise reader.fail(root, "(top)", "must be a mapping")
    if not any(k.value == "apiVersion" for k, _ in root.value):
        return _old_format(reader, root)
    spec = reader.mapping(root, "", {"apiVersion", "name", "platforms", "rules", "scopes"})
    if reader.text(spec["apiVersion"], "apiVersion") != API_VERSION:
        raise reader.fail(spec["apiVersion"], "apiVersion", f"must be {API_VERSION}")
    name = reader.text(spec["name"], "name") if "name" in spec else "custom"
    platforms = reader.text(spec["platforms"], "platforms") if "platforms" in spec else "deployed"
    if platforms not in ("all", "deployed"):
        raise reader.fail(spec["platforms"], "platforms", "must be all or deployed")
    default = reader.rules(spec["rules"], "rules", RuleSet()) if "rules" in spec else RuleSet()
    scopes: list[Scope] = []
    for i, item in enumerate(reader.seq(spec["scopes"], "scopes") if "scopes" in spec else []):
        where = f"scopes[{i}]"
        scope = reader.mapping(item, where, {"match", "rules"})
        if "match" not in scope or "rules" not in scope:
            raise reader.fail(item, where, "needs match and rules")
        pattern = reader.text(scope["match"], f"{where}.match")
        scopes.append(Scope(pattern, reader.rules(scope["rules"], f"{where}.rules", default)))
    canonical = {
        "apiVersion": API_VERSION,
        "name": name,
        "platforms": platforms,
        "rules": asdict(default),
        "scopes": [{"match": s.pattern, "rules": asdict(s.rules)} for s in scopes],
    }
    policy = ScopedPolicy(name, default, tuple(scopes), canonical=canonical)
    policy.every_platform = platforms == "all"
    return policy
