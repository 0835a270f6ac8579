"""Reading FHIRPath expressions as text: splitting at a top-level operator while respecting
parentheses and quoted strings (search parameter expressions are unions of paths)."""

from __future__ import annotations


def split_top_level(expression: str, separator: str) -> list[str]:
    """`a | b.where(x = 'c|d') | (e | f)` split at `|` → `a`, `b.where(x = 'c|d')`, `(e | f)`."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(expression):
        if char == "'" and (index == 0 or expression[index - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(expression[start:index].strip())
            start = index + 1
    parts.append(expression[start:].strip())
    return parts


def split_union(expression: str) -> list[str]:
    return split_top_level(expression, "|")
