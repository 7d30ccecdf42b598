"""A real subset of K/3 Cloud's ``FilterString``: parsed, then evaluated against each result row.

Supported: ``= <> != > >= < <=``, ``like`` / ``not like`` (``%`` and ``_``), ``in`` / ``not in``,
``is [not] null``, ``and``, ``or``, ``not`` and parentheses; literals are ``'text'`` (``''`` escapes a
quote, ``N'..'`` allowed) or numbers. The array form (``[{"Left","FieldName","Compare","Value","Right",
"Logic"}]``) is translated to the same tree. Comparisons follow SQL Server's defaults: NULL never
compares equal, text compares case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .values import as_date

_TOKEN = re.compile(
    r"\s*(?:(?P<str>[Nn]?'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op>>=|<=|<>|!=|=|>|<)"
    r"|(?P<punct>[(),])|(?P<name>[A-Za-z_][A-Za-z0-9_.]*))"
)
_KEYWORDS = {"and", "or", "not", "like", "in", "is", "null"}
# Operator codes of the array form seen in client code (67 equality, 21 greater-than) plus literals.
ARRAY_COMPARE = {
    "67": "=",
    "21": ">",
    "=": "=",
    "<>": "<>",
    "!=": "<>",
    ">": ">",
    ">=": ">=",
    "<": "<",
    "<=": "<=",
    "like": "like",
}


class FilterSyntaxError(ValueError):
    """The FilterString could not be parsed."""


@dataclass(frozen=True)
class Node:
    """A parsed expression: op is and/or/not/cmp/like/in/null; args are child nodes or operands."""

    op: str
    args: tuple[Any, ...]


def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise FilterSyntaxError(f"cannot read FilterString at position {pos}: {text[pos : pos + 20]!r}")
        pos = match.end()
        if match.group("str") is not None:
            raw = match.group("str")
            raw = raw[1:] if raw[0] in "Nn" else raw
            out.append(("lit", raw[1:-1].replace("''", "'")))
        elif match.group("num") is not None:
            out.append(("lit", Decimal(match.group("num"))))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        elif match.group("punct") is not None:
            out.append((match.group("punct"), match.group("punct")))
        else:
            name = match.group("name")
            out.append(("kw", name.lower()) if name.lower() in _KEYWORDS else ("name", name))
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, Any]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, kind: str | None = None, value: Any = None) -> tuple[str, Any]:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value is not None and token[1] != value):
            want = value or kind or "more input"
            raise FilterSyntaxError(
                f"expected {want} at token {self.pos + 1}, found {token[1] if token else 'end'}"
            )
        self.pos += 1
        return token

    def accept(self, kind: str, value: Any = None) -> bool:
        token = self.peek()
        if token is not None and token[0] == kind and (value is None or token[1] == value):
            self.pos += 1
            return True
        return False

    def expr(self) -> Node:
        parts = [self.term()]
        while self.accept("kw", "or"):
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Node("or", tuple(parts))

    def term(self) -> Node:
        parts = [self.factor()]
        while self.accept("kw", "and"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else Node("and", tuple(parts))

    def factor(self) -> Node:
        if self.accept("kw", "not"):
            return Node("not", (self.factor(),))
        if self.accept("("):
            node = self.expr()
            self.take(")")
            return node
        return self.comparison()

    def literal(self) -> Any:
        return self.take("lit")[1]

    def comparison(self) -> Node:
        field = self.take("name")[1]
        negate = self.accept("kw", "not")
        if self.accept("kw", "like"):
            return Node("like", (field, self.literal(), negate))
        if self.accept("kw", "in"):
            self.take("(")
            values = [self.literal()]
            while self.accept(","):
                values.append(self.literal())
            self.take(")")
            return Node("in", (field, tuple(values), negate))
        if negate:
            raise FilterSyntaxError(f"'not' after {field} must be followed by like or in")
        if self.accept("kw", "is"):
            is_not = self.accept("kw", "not")
            self.take("kw", "null")
            return Node("null", (field, is_not))
        op = self.take("op")[1]
        return Node("cmp", (field, "<>" if op == "!=" else op, self.literal()))


def parse(text: str) -> Node | None:
    """The tree of a FilterString; None when it is blank."""
    if not text or not text.strip():
        return None
    parser = _Parser(_tokens(text))
    node = parser.expr()
    if parser.peek() is not None:
        raise FilterSyntaxError(f"unexpected {parser.peek()[1]!r} after a complete condition")  # type: ignore[index]
    return node


def from_array(items: list[Any]) -> str:
    """The string form of the array FilterString (``Logic`` joins an item to the next one: 0 and, 1 or)."""
    parts: list[str] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise FilterSyntaxError("array FilterString items must be objects")
        lowered = {str(k).lower(): v for k, v in item.items()}
        op = ARRAY_COMPARE.get(str(lowered.get("compare", "67")).strip().lower())
        if op is None:
            raise FilterSyntaxError(f"unsupported Compare code {lowered.get('compare')!r}")
        value = lowered.get("value", "")
        literal = "'" + str(value).replace("'", "''") + "'"
        parts.append(
            f"{lowered.get('left') or ''}{lowered['fieldname']} {op} {literal}{lowered.get('right') or ''}"
        )
        if i < len(items) - 1:
            parts.append("or" if str(lowered.get("logic", "0")).strip().lower() in ("1", "or") else "and")
    return " ".join(parts)


def fields_of(node: Node | None) -> list[str]:
    """Every field name the tree mentions."""
    if node is None:
        return []
    if node.op in ("and", "or", "not"):
        return [f for child in node.args for f in fields_of(child)]
    return [node.args[0]]


def _comparable(value: Any, literal: Any) -> tuple[Any, Any] | None:
    """Both sides in one comparable type, or None when they cannot be compared."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = Decimal(int(value))
    if isinstance(value, int | float | Decimal):
        try:
            return Decimal(str(value)), Decimal(str(literal))
        except ArithmeticError:
            return None
    text = str(value)
    if isinstance(literal, Decimal):
        try:
            return Decimal(text), literal
        except ArithmeticError:
            return text.casefold(), str(literal).casefold()
    if re.match(r"^\d{4}-\d{2}-\d{2}T", text):
        try:
            return text, as_date(literal)
        except ValueError:
            pass
    return text.casefold(), str(literal).casefold()


def _like(value: Any, pattern: Any) -> bool:
    if value is None:
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, str(value), flags=re.IGNORECASE | re.DOTALL) is not None


def evaluate(node: Node | None, get: Callable[[str], Any]) -> bool:
    """Whether a row matches; ``get`` returns a field's value for this row."""
    if node is None:
        return True
    op, args = node.op, node.args
    if op == "and":
        return all(evaluate(a, get) for a in args)
    if op == "or":
        return any(evaluate(a, get) for a in args)
    if op == "not":
        return not evaluate(args[0], get)
    value = get(args[0])
    if op == "null":
        return (value is not None and value != "") if args[1] else (value is None or value == "")
    if op == "like":
        return _like(value, args[1]) != args[2]
    if op == "in":
        hit = any((pair := _comparable(value, lit)) is not None and pair[0] == pair[1] for lit in args[1])
        return hit != args[2]
    pair = _comparable(value, args[2])
    if pair is None:
        return False
    left, right = pair
    try:
        return {
            "=": left == right,
            "<>": left != right,
            ">": left > right,
            ">=": left >= right,
            "<": left < right,
            "<=": left <= right,
        }[args[1]]
    except TypeError:
        return False
