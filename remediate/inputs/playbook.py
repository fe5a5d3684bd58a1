"""Playbooks: found on the search path, loaded from YAML, bound to a host; every error cites file:line.

Each job has its module (search_path, playbook_yaml, binding, variables, extra_vars); this one is the name the rest
of remediate imports them by.
"""

from __future__ import annotations

from remediate.inputs.binding import READ_BY_REMEDIATE, Playbook, RawCheck, RawStep
from remediate.inputs.extra_vars import parse_extra
from remediate.inputs.playbook_yaml import CHECK_KEYS, STEP_ID, STEP_KEYS, TOP_KEYS, WHEN, load
from remediate.inputs.search_path import (
    DEFAULT_PLAYBOOK,
    PATH_ENV,
    SUFFIXES,
    Listed,
    argument,
    catalog,
    describe_search_path,
    locate,
    looks_like_playbook,
    resolve_fix,
    search_path,
    shadowed,
    shipped,
    shipped_folder,
)
from remediate.inputs.variables import MAX_EXPANDED_CHARS, MAX_VALUE_CHARS, referenced

__all__ = [
    "CHECK_KEYS", "DEFAULT_PLAYBOOK", "MAX_EXPANDED_CHARS", "MAX_VALUE_CHARS", "PATH_ENV", "READ_BY_REMEDIATE",
    "STEP_ID", "STEP_KEYS", "SUFFIXES", "TOP_KEYS", "WHEN", "Listed", "Playbook", "RawCheck", "RawStep", "argument",
    "catalog", "describe_search_path", "load", "locate", "looks_like_playbook", "parse_extra", "referenced",
    "resolve_fix", "search_path", "shadowed", "shipped", "shipped_folder",
]
