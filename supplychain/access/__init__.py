"""Who may ask what: API tokens with a role, and the rule of every route.

A token is ``sc_<role>_<52 base32 characters>`` (256 random bits). Only its keyed SHA-256 is
stored; the token is shown once when created. Roles: ``webhook`` (one webhook source), ``ci``
(gate, admission), ``auditor`` (read-only history), ``admin`` (tokens, and the policy and waiver
routes).
"""

from supplychain.access.tokens import ROLES, Principal, TokenError, TokenStore

__all__ = ["ROLES", "Principal", "TokenError", "TokenStore"]
