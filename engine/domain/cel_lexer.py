"""The tokens of CEL (cel-spec `langdef.md`, "Lexical elements"): what `cel_syntax` parses.

Whitespace and `//` comments are skipped wherever they are (between a macro's name and its `(` too); strings are
read whole, in every form CEL has: quoted with `"` or `'`, triple-quoted (may span lines), raw (`r`, no escapes)
and bytes (`b`), so nothing inside a string or a comment is ever taken for code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["CelSyntaxError", "Kind", "Token", "tokenize"]


class CelSyntaxError(ValueError):
    """The source is not CEL this parser understands; `offset` is where, in characters."""

    def __init__(self, message: str, offset: int) -> None:
        self.offset = offset
        super().__init__(f"{message} (at character {offset + 1})")


class Kind(Enum):
    INT = "int"
    UINT = "uint"
    DOUBLE = "double"
    STRING = "string"
    BYTES = "bytes"
    IDENT = "identifier"
    PUNCT = "punctuation"
    END = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    kind: Kind
    text: str  # the punctuation or identifier; the source text of a number; the decoded value of a string
    offset: int
    raw_length: int = 0  # for strings and bytes: how many characters the literal takes in the source


_SKIP = re.compile(r"(?:[\t\n\f\r ]+|//[^\r\n]*)+")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d+|\.\d+)(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?")
_IDENT = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_PREFIX = re.compile(r"(?:[rR][bB]?|[bB][rR]?)?(?=['\"])")
_PUNCT = ("&&", "||", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "!", "?", ":", ".", ",",
          "(", ")", "[", "]", "{", "}")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"',
                   "'": "'", "\\": "\\", "?": "?", "`": "`"}


def tokenize(source: str) -> list[Token]:
    """Every token of `source`, ending with one `END`; raises CelSyntaxError at the first character that starts
    no token."""
    tokens: list[Token] = []
    position = 0
    while True:
        skipped = _SKIP.match(source, position)
        if skipped:
            position = skipped.end()
        if position >= len(source):
            tokens.append(Token(Kind.END, "", position))
            return tokens
        token = _next(source, position)
        tokens.append(token)
        position = token.offset + max(token.raw_length, 1)


def _next(source: str, position: int) -> Token:
    prefix = _PREFIX.match(source, position)
    if prefix:
        return _string(source, position, prefix.group(0).lower())
    char = source[position]
    if char.isdigit() or (char == "." and source[position + 1:position + 2].isdigit()):
        number = _NUMBER.match(source, position)
        assert number is not None
        text = number.group(0)
        kind = Kind.UINT if text[-1] in "uU" else Kind.DOUBLE if _is_double(text) else Kind.INT
        return Token(kind, text, position, len(text))
    ident = _IDENT.match(source, position)
    if ident:
        return Token(Kind.IDENT, ident.group(0), position, len(ident.group(0)))
    for punct in _PUNCT:
        if source.startswith(punct, position):
            return Token(Kind.PUNCT, punct, position, len(punct))
    raise CelSyntaxError(f"unexpected character {char!r}", position)


def _is_double(text: str) -> bool:
    return not text.lower().startswith("0x") and any(c in text for c in ".eE")


def _string(source: str, start: int, prefix: str) -> Token:
    raw, is_bytes = "r" in prefix, "b" in prefix
    position = start + len(prefix)
    quote = source[position:position + 3] if source[position:position + 3] in ('"""', "'''") else source[position]
    position += len(quote)
    parts: list[str] = []
    while True:
        if position >= len(source):
            raise CelSyntaxError("a string is not closed", start)
        if source.startswith(quote, position):
            position += len(quote)
            break
        char = source[position]
        if len(quote) == 1 and char in "\r\n":
            raise CelSyntaxError("a line break inside a quoted string (use a triple-quoted one)", position)
        if char == "\\" and not raw:
            text, position = _escape(source, position)
            parts.append(text)
            continue
        parts.append(char)
        position += 1
    return Token(Kind.BYTES if is_bytes else Kind.STRING, "".join(parts), start, position - start)


def _escape(source: str, position: int) -> tuple[str, int]:
    """The character an escape sequence at `position` (a backslash) stands for, and where the source goes on."""
    code = source[position + 1:position + 2]
    if code in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[code], position + 2
    width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(code)
    if width is not None:
        digits = source[position + 2:position + 2 + width]
        if len(digits) == width and all(c in "0123456789abcdefABCDEF" for c in digits):
            value = int(digits, 16)
            if value <= 0x10FFFF:
                return chr(value), position + 2 + width
    elif re.fullmatch(r"[0-3][0-7][0-7]", source[position + 1:position + 4]):
        return chr(int(source[position + 1:position + 4], 8)), position + 4
    raise CelSyntaxError("an invalid escape sequence", position)
