"""Parsing helpers shared by the CLI modules: text options -> Python values (nothing else)."""

from __future__ import annotations

from histolatent.errors import InputError


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def numbers(text: str, option: str) -> list[float]:
    """``"1,0.5,2"`` -> ``[1.0, 0.5, 2.0]``; anything else is an error naming ``option``."""
    try:
        return [float(v) for v in comma_list(text)]
    except ValueError:
        raise InputError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def overrides(sets: list[str] | None) -> dict:
    """``["a=1", "b.c=x"]`` (``--set``, repeatable) -> ``{"a": 1, "b": {"c": "x"}}``."""
    from histolatent.config import parse_override

    out: dict = {}
    for text in sets or []:
        keys, value = parse_override(text)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return out
