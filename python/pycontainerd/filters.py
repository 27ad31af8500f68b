"""containerd's filter syntax: parse once, match many records.

A filter string is a comma-separated list of selectors that must all match (AND)::

    <fieldpath>[<operator><value>]

``fieldpath`` is dot-separated fields, each ``[A-Za-z0-9_]+`` or a double-quoted string
(``labels."containerd.io/gc.ref.content.l.0"``). Operators are ``==``, ``!=`` and ``~=`` (a
regular expression); without an operator the selector tests presence. Values are bare
(``[^\\s,]+``) or double-quoted; a ``~=`` value may also be quoted with ``/.../`` or ``|...|``.
Several filter strings are alternatives (OR). The scanner, the parser and their error messages
follow containerd's ``filters`` package (1.6) step for step; positions count characters.

Regular expressions use Go's RE2 syntax; they are translated to Python's :mod:`re` (ASCII
classes, ``$`` as end of text, POSIX classes, ``\\Q...\\E``...). As in containerd, a ``~=``
value that does not compile is not a parse error: the selector matches nothing.
"""

from __future__ import annotations

import enum
import json
import logging
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pycontainerd.errdefs import InvalidArgument

__all__ = [
    "ALWAYS",
    "Adaptor",
    "AdaptorFunc",
    "Filter",
    "LabelAdaptor",
    "Operator",
    "Selector",
    "adapt",
    "check_map",
    "label_adaptor",
    "parse",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")


class Adaptor(Protocol):
    """Maps a field path to a record's value and whether the field is present."""

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]: ...


class AdaptorFunc:
    """An :class:`Adaptor` made from a function (containerd's ``AdapterFunc``)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[Sequence[str]], tuple[str, bool]]) -> None:
        self._fn = fn

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        """The value at ``fieldpath`` and whether it is present."""
        return self._fn(fieldpath)


def adapt(fn: Callable[[Sequence[str]], tuple[str, bool]]) -> Adaptor:
    """Wrap a function as an :class:`Adaptor`."""
    return AdaptorFunc(fn)


def check_map(fieldpath: Sequence[str], mapping: Mapping[str, str]) -> tuple[str, bool]:
    """Look up the joined rest of a field path in a string map, as containerd's ``checkMap``."""
    if not mapping:
        return "", False
    value = mapping.get(".".join(fieldpath))
    if value is None:
        return "", False
    return value, True


class LabelAdaptor:
    """Adaptor for a record with string fields, ``labels`` and other string maps.

    ``fields`` is keyed by the dotted field path (``name``, ``target.digest``); a field is
    present when it is set and not empty (or always, with ``present_if_empty``). A path whose
    first component is ``labels`` or a key of ``maps`` looks the rest of the path, joined with
    dots, up in that map.
    """

    __slots__ = ("_fields", "_labels", "_maps", "_present_if_empty")

    def __init__(
        self,
        fields: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        *,
        maps: Mapping[str, Mapping[str, str]] | None = None,
        present_if_empty: bool = False,
    ) -> None:
        self._fields = fields
        self._labels: Mapping[str, str] = labels if labels is not None else {}
        self._maps: Mapping[str, Mapping[str, str]] = maps if maps is not None else {}
        self._present_if_empty = present_if_empty

    def field(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        """The value at ``fieldpath`` and whether it is present."""
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "labels":
            return check_map(fieldpath[1:], self._labels)
        if self._maps:
            mapping = self._maps.get(head)
            if mapping is not None:
                return check_map(fieldpath[1:], mapping)
        value = self._fields.get(head if len(fieldpath) == 1 else ".".join(fieldpath))
        if value is None:
            return "", False
        return value, self._present_if_empty or value != ""


def label_adaptor(
    fields: Mapping[str, str],
    labels: Mapping[str, str] | None = None,
    *,
    maps: Mapping[str, Mapping[str, str]] | None = None,
    present_if_empty: bool = False,
) -> Adaptor:
    """An adaptor for the common record shape: string fields plus a ``labels`` map."""
    return LabelAdaptor(fields, labels, maps=maps, present_if_empty=present_if_empty)


class Operator(enum.Enum):
    """A selector's operator; the value is containerd's spelling."""

    PRESENT = "?"
    EQUAL = "=="
    NOT_EQUAL = "!="
    MATCHES = "~="


@dataclass(frozen=True, slots=True)
class Selector:
    """One ``fieldpath OP value`` test."""

    fieldpath: tuple[str, ...]
    operator: Operator
    value: str = ""
    regexp: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def match(self, adaptor: Adaptor) -> bool:
        """Whether the record behind ``adaptor`` passes this selector."""
        value, present = adaptor.field(self.fieldpath)
        op = self.operator
        if op is Operator.EQUAL:
            return present and value == self.value
        if op is Operator.NOT_EQUAL:
            return value != self.value
        if op is Operator.PRESENT:
            return present
        regexp = self.regexp
        return regexp is not None and regexp.search(value) is not None

    def __str__(self) -> str:
        path = ".".join(p if _FIELD_RE.fullmatch(p) else _quote(p) for p in self.fieldpath)
        if self.operator is Operator.PRESENT:
            return path
        return f"{path}{self.operator.value}{_quote(self.value)}"


_FIELD_RE = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Filter:
    """Alternatives (OR) of selector conjunctions (AND); no alternatives matches everything."""

    alternatives: tuple[tuple[Selector, ...], ...] = ()

    @property
    def always(self) -> bool:
        """Whether the filter matches every record."""
        return not self.alternatives or any(not sels for sels in self.alternatives)

    def match(self, adaptor: Adaptor) -> bool:
        """Whether the record behind ``adaptor`` matches."""
        alternatives = self.alternatives
        if not alternatives:
            return True
        for selectors in alternatives:
            for selector in selectors:
                if not selector.match(adaptor):
                    break
            else:
                return True
        return False

    def select(self, items: Iterable[T], adaptor: Callable[[T], Adaptor]) -> Iterator[T]:
        """The items that match, each seen through ``adaptor(item)``."""
        if self.always:
            yield from items
            return
        match = self.match
        for item in items:
            if match(adaptor(item)):
                yield item


ALWAYS = Filter()


def parse(*filters: str) -> Filter:
    """Parse filter strings (ORed) into a :class:`Filter`; none, or an empty one, matches all.

    Raises :class:`InvalidArgument` with containerd's message, e.g.
    ``filters: parse error: [labels. >|?|< foo]: expected field or quoted``.
    """
    return Filter(tuple(_parse_one(s) for s in filters))


def _parse_one(text: str) -> tuple[Selector, ...]:
    if text == "":
        return ()
    return _Parser(text).parse()


def _quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


# --- scanner (containerd filters/scanner.go) ---------------------------------------------------

_EOF = ""  # end of input, as a rune
_ILLEGAL = "\x00"  # a rune the scanner refuses (NUL, a lone surrogate)


class _Tok(enum.IntEnum):
    EOF = -1
    QUOTED = -2
    VALUE = -3
    FIELD = -4
    SEPARATOR = -5
    OPERATOR = -6
    ILLEGAL = -7
    OTHER = 0  # any other rune


_QUOTES = frozenset('/|"')
_SEPARATORS = frozenset(",.")
_OPERATOR_RUNES = frozenset("=!~")
_FIELD_RUNES = frozenset("_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Go's unicode.IsSpace
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SIMPLE_ESCAPES = frozenset("abfnrtv\\")
_OCTAL = frozenset("01234567")


_NOT_VALUE = frozenset((_EOF, ","))


def _is_value_rune(ch: str) -> bool:
    if ch in _NOT_VALUE or ch in _SPACES:
        return False
    if ch.isascii():
        return "!" <= ch <= "~"
    return unicodedata.category(ch)[0] in "LMNPS"


def _digit_val(ch: str) -> int:
    if ch != _EOF and ch in "0123456789abcdefABCDEF":
        return int(ch, 16)
    return 16


class _Scanner:
    __slots__ = ("err", "input", "pos", "ppos", "value")

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.ppos = 0
        self.value = False
        self.err = ""

    def next(self) -> str:
        if self.pos >= len(self.input):
            return _EOF
        self.pos = self.ppos
        if self.ppos >= len(self.input):
            return _EOF
        ch = self.input[self.ppos]
        self.ppos += 1
        if ch == "\x00":
            self.error("unexpected null")
            return _ILLEGAL
        if "\ud800" <= ch <= "\udfff":
            self.error("rune error")
            return _ILLEGAL
        return ch

    def peek(self) -> str:
        pos, ppos = self.pos, self.ppos
        ch = self.next()
        self.pos, self.ppos = pos, ppos
        return ch

    def scan(self) -> tuple[int, _Tok, str]:
        ch = self.next()
        pos = self.pos
        while True:
            if ch == _EOF:
                return self.pos, _Tok.EOF, ""
            if ch == _ILLEGAL:
                return self.pos, _Tok.ILLEGAL, ""
            if ch in _QUOTES:
                ok = self._scan_quoted(ch)
                return pos, _Tok.QUOTED if ok else _Tok.ILLEGAL, self.input[pos : self.ppos]
            if ch in _SEPARATORS:
                self.value = False
                return pos, _Tok.SEPARATOR, self.input[pos : self.ppos]
            if ch in _OPERATOR_RUNES:
                while self.peek() in _OPERATOR_RUNES:
                    self.next()
                self.value = True
                return pos, _Tok.OPERATOR, self.input[pos : self.ppos]
            if ch in _SPACES:
                ch = self.next()
                pos = self.pos
                continue
            if self.value:
                while _is_value_rune(self.peek()):
                    self.next()
                self.value = False
                return pos, _Tok.VALUE, self.input[pos : self.ppos]
            if ch in _FIELD_RUNES:
                while self.peek() in _FIELD_RUNES:
                    self.next()
                return pos, _Tok.FIELD, self.input[pos : self.ppos]
            return self.pos, _Tok.OTHER, ""

    def _scan_quoted(self, quote: str) -> bool:
        illegal = False
        ch = self.next()
        while ch != quote:
            if ch in (_EOF, _ILLEGAL, "\n"):
                self.error("quoted literal not terminated")
                return False
            if ch == "\\":
                ch, legal = self._scan_escape(quote)
                if not legal:
                    illegal = True
            else:
                ch = self.next()
        return not illegal

    def _scan_escape(self, quote: str) -> tuple[str, bool]:
        ch = self.next()
        if ch in _SIMPLE_ESCAPES or ch == quote:
            return self.next(), True
        if ch in _OCTAL:
            return self._scan_digits(ch, 8, 3)
        if ch == "x":
            return self._scan_digits(self.next(), 16, 2)
        if ch == "u":
            return self._scan_digits(self.next(), 16, 4)
        if ch == "U":
            return self._scan_digits(self.next(), 16, 8)
        self.error("illegal escape sequence")
        return ch, False

    def _scan_digits(self, ch: str, base: int, n: int) -> tuple[str, bool]:
        while n > 0 and _digit_val(ch) < base:
            ch = self.next()
            n -= 1
        if n > 0:
            self.error("illegal numeric escape sequence")
            return ch, False
        return ch, True

    def error(self, msg: str) -> None:
        if not self.err:
            self.err = msg


# --- unquoting (containerd filters/quote.go) -----------------------------------------------


class _QuoteSyntaxError(Exception):
    pass


def _unquote(s: str) -> str:
    """Unquote a ``"``, ``/`` or ``|`` quoted literal with Go's escapes."""
    if len(s) < 2 or s[0] != s[-1] or s[0] not in _QUOTES:
        raise _QuoteSyntaxError
    quote = s[0]
    body = s[1:-1]
    if "\n" in body:
        raise _QuoteSyntaxError
    if "\\" not in body and quote not in body:
        return body
    buf = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == quote:
            raise _QuoteSyntaxError
        if c != "\\":
            buf += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= n:
            raise _QuoteSyntaxError
        c = body[i + 1]
        i += 2
        if c in _GO_ESCAPES:
            buf.append(_GO_ESCAPES[c])
        elif c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = body[i : i + width]
            if len(digits) < width or any(_digit_val(d) > 15 for d in digits):
                raise _QuoteSyntaxError
            i += width
            v = int(digits, 16)
            if c == "x":
                buf.append(v)
            elif v > 0x10FFFF:
                raise _QuoteSyntaxError
            else:
                buf += _encode_rune(v)
        elif c in _OCTAL:
            digits = body[i : i + 2]
            if len(digits) < 2 or any(d not in _OCTAL for d in digits):
                raise _QuoteSyntaxError
            i += 2
            v = int(c + digits, 8)
            if v > 255:
                raise _QuoteSyntaxError
            buf.append(v)
        elif c in "'\"|/":
            if c != quote:
                raise _QuoteSyntaxError
            buf.append(ord(c))
        else:
            raise _QuoteSyntaxError
    return buf.decode("utf-8", "surrogateescape")


_GO_ESCAPES = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}


def _encode_rune(v: int) -> bytes:
    if 0xD800 <= v <= 0xDFFF:
        v = 0xFFFD  # Go encodes surrogate halves as the replacement character
    return chr(v).encode("utf-8")


# --- parser (containerd filters/parser.go) ------------------------------------------------


class _ParseError(Exception):
    pass


class _Parser:
    __slots__ = ("input", "scanner")

    def __init__(self, text: str) -> None:
        self.input = text
        self.scanner = _Scanner(text)

    def parse(self) -> tuple[Selector, ...]:
        try:
            return self._selectors()
        except _ParseError as exc:
            raise InvalidArgument(f"filters: parse error: {exc}") from None

    def _error(self, pos: int, msg: str) -> _ParseError:
        text = self.input
        if pos < len(text):
            return _ParseError(f"[{text[:pos]} >|{text[pos]}|< {text[pos + 1 :]}]: {msg}")
        return _ParseError(f"[{text}]: {msg}")

    def _selectors(self) -> tuple[Selector, ...]:
        selectors = [self._selector()]
        while True:
            ch = self.scanner.peek()
            if ch == ",":
                pos, tok, _ = self.scanner.scan()
                if tok != _Tok.SEPARATOR:
                    raise self._error(pos, "expected a separator")
                selectors.append(self._selector())
            elif ch == _EOF:
                return tuple(selectors)
            else:
                shown = "\ufffd" if ch == _ILLEGAL else ch
                raise self._error(self.scanner.ppos, f"unexpected input: {shown}")

    def _selector(self) -> Selector:
        fieldpath = self._fieldpath()
        if self.scanner.peek() in (",", _EOF):
            return Selector(fieldpath, Operator.PRESENT)
        op = self._operator()
        value = self._value(allow_alt_quotes=op is Operator.MATCHES)
        if op is Operator.MATCHES:
            return Selector(fieldpath, op, value, _compile_regexp(value))
        return Selector(fieldpath, op, value)

    def _fieldpath(self) -> tuple[str, ...]:
        fields = [self._field()]
        while self.scanner.peek() == ".":
            pos, tok, _ = self.scanner.scan()
            if tok != _Tok.SEPARATOR:
                raise self._error(pos, "expected a field separator (`.`)")
            fields.append(self._field())
        return tuple(fields)

    def _field(self) -> str:
        pos, tok, text = self.scanner.scan()
        if tok == _Tok.FIELD:
            return text
        if tok == _Tok.QUOTED:
            return self._unquote(pos, text, allow_alts=False)
        if tok == _Tok.ILLEGAL:
            raise self._error(pos, self.scanner.err)
        raise self._error(pos, "expected field or quoted")

    def _operator(self) -> Operator:
        pos, tok, text = self.scanner.scan()
        if tok == _Tok.OPERATOR:
            if text == "==":
                return Operator.EQUAL
            if text == "!=":
                return Operator.NOT_EQUAL
            if text == "~=":
                return Operator.MATCHES
            raise self._error(pos, f"unsupported operator {_quote(text)}")
        if tok == _Tok.ILLEGAL:
            raise self._error(pos, self.scanner.err)
        raise self._error(pos, 'expected an operator ("=="|"!="|"~=")')

    def _value(self, *, allow_alt_quotes: bool) -> str:
        pos, tok, text = self.scanner.scan()
        if tok in (_Tok.VALUE, _Tok.FIELD):
            return text
        if tok == _Tok.QUOTED:
            return self._unquote(pos, text, allow_alts=allow_alt_quotes)
        if tok == _Tok.ILLEGAL:
            raise self._error(pos, self.scanner.err)
        raise self._error(pos, "expected value or quoted")

    def _unquote(self, pos: int, text: str, *, allow_alts: bool) -> str:
        if not allow_alts and text[0] not in "'\"":
            raise self._error(pos, "invalid quote encountered")
        try:
            return _unquote(text)
        except _QuoteSyntaxError:
            raise self._error(pos, "unquoting failed: quote syntax error") from None


# --- Go RE2 syntax to Python re ------------------------------------------------------------


class _Unsupported(Exception):
    pass


_POSIX_CLASSES = {
    "alnum": r"0-9A-Za-z",
    "alpha": r"A-Za-z",
    "ascii": r"\x00-\x7f",
    "blank": r"\t ",
    "cntrl": r"\x00-\x1f\x7f",
    "digit": r"0-9",
    "graph": r"!-~",
    "lower": r"a-z",
    "print": r" -~",
    "punct": r"!-/:-@\[-`{-~",
    "space": r"\t\n\v\f\r ",
    "upper": r"A-Z",
    "word": r"0-9A-Za-z_",
    "xdigit": r"0-9A-Fa-f",
}
_CLASS_PERL = {"d": "0-9", "w": "0-9A-Za-z_", "s": r"\t\n\f\r "}
_PERL = {
    "d": "[0-9]",
    "D": "[^0-9]",
    "w": "[0-9A-Za-z_]",
    "W": "[^0-9A-Za-z_]",
    "s": r"[\t\n\f\r ]",
    "S": r"[^\t\n\f\r ]",
    "b": r"(?a:\b)",
    "B": r"(?a:\B)",
}
_REPEAT_RE = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAGS_RE = re.compile(r"\(\?([ims]*(?:-[ims]*)?)([:)])")
_NAMED_GROUP_RE = re.compile(r"\(\?P?<([A-Za-z0-9_]+)>")
_MAX_REPEAT = 1000


def _compile_regexp(pattern: str) -> re.Pattern[str] | None:
    """Compile a Go (RE2) regular expression, or None where Go would refuse it."""
    try:
        translated = _translate_regexp(pattern)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return re.compile(translated)
    except (_Unsupported, re.error, ValueError, OverflowError):
        _log.error("error compiling regexp %s", _quote(pattern))
        return None


def _char_escape(cp: int) -> str:
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


class _Level:
    __slots__ = ("multiline", "openers")

    def __init__(self, multiline: bool) -> None:
        self.multiline = multiline
        self.openers: list[str] = []


def _apply_flags(spec: str, multiline: bool) -> bool:
    on, _, off = spec.partition("-")
    if "m" in on:
        multiline = True
    if "m" in off:
        multiline = False
    return multiline


def _translate_regexp(p: str) -> str:
    """Rewrite RE2 syntax as Python ``re`` syntax with the same meaning."""
    out: list[str] = []
    levels = [_Level(multiline=False)]
    i, n = 0, len(p)
    can_repeat = False  # whether the previous item may take a repetition operator
    while i < n:
        c = p[i]
        if c == "\\":
            if p.startswith("\\Q", i):  # a literal up to \E; a repetition takes its last rune
                end = p.find("\\E", i + 2)
                literal = p[i + 2 :] if end < 0 else p[i + 2 : end]
                out.extend(_char_escape(ord(ch)) for ch in literal)
                can_repeat = can_repeat or bool(literal)
                i = n if end < 0 else end + 2
                continue
            text, i = _translate_escape(p, i, in_class=False)
            out.append(text)
            can_repeat = True
            continue
        if c == "[":
            text, i = _translate_class(p, i)
            out.append(text)
            can_repeat = True
            continue
        if c == "(":
            can_repeat = False
            m = _FLAGS_RE.match(p, i)
            if m:
                spec, closer = m.group(1), m.group(2)
                i = m.end()
                if spec.endswith("-"):
                    raise _Unsupported
                level = levels[-1]
                if not spec:
                    if closer == ":":
                        levels.append(_Level(level.multiline))
                        out.append("(?:")
                    continue
                if closer == ")":  # flags for the rest of the current group
                    opener = f"(?{spec}:"
                    level.openers.append(opener)
                    level.multiline = _apply_flags(spec, level.multiline)
                    out.append(opener)
                else:
                    levels.append(_Level(_apply_flags(spec, level.multiline)))
                    out.append(f"(?{spec}:")
                continue
            m = _NAMED_GROUP_RE.match(p, i)
            if m:
                levels.append(_Level(levels[-1].multiline))
                out.append(f"(?P<{m.group(1)}>")
                i = m.end()
                continue
            if p.startswith("(?", i):
                raise _Unsupported  # lookaround, backreference, comment, conditional...
            levels.append(_Level(levels[-1].multiline))
            out.append("(")
            i += 1
            continue
        if c == ")":
            if len(levels) == 1:
                raise _Unsupported
            level = levels.pop()
            out.append(")" * len(level.openers) + ")")
            i += 1
            can_repeat = True
            continue
        if c == "|":
            level = levels[-1]
            out.append(")" * len(level.openers) + "|" + "".join(level.openers))
            i += 1
            can_repeat = False
            continue
        if c in "*+?":
            if not can_repeat:
                raise _Unsupported
            i += 1
            lazy = i < n and p[i] == "?"
            if lazy:
                i += 1
            if i < n and (p[i] in "*+?" or (p[i] == "{" and _REPEAT_RE.match(p, i))):
                raise _Unsupported  # nested repetition (Python reads some as possessive)
            out.append(c + ("?" if lazy else ""))
            can_repeat = False
            continue
        if c == "{":
            m = _REPEAT_RE.match(p, i)
            if m is None:
                out.append(r"\{")
                i += 1
                can_repeat = True
                continue
            low = int(m.group(1))
            high = int(m.group(3)) if m.group(3) else low
            if not can_repeat or low > _MAX_REPEAT or high > _MAX_REPEAT or high < low:
                raise _Unsupported
            i = m.end()
            lazy = i < n and p[i] == "?"
            if lazy:
                i += 1
            if i < n and (p[i] in "*+?" or (p[i] == "{" and _REPEAT_RE.match(p, i))):
                raise _Unsupported
            out.append(m.group(0) + ("?" if lazy else ""))
            can_repeat = False
            continue
        if c == "$":
            out.append("$" if levels[-1].multiline else r"\Z")
            i += 1
            can_repeat = True
            continue
        if c in "^.":
            out.append(c)
        elif c == "}":
            out.append(r"\}")
        else:
            out.append(re.escape(c))
        i += 1
        can_repeat = True
    if len(levels) != 1:
        raise _Unsupported
    out.append(")" * len(levels[0].openers))
    return "".join(out)


def _translate_escape(p: str, i: int, *, in_class: bool) -> tuple[str, int]:
    """Translate the escape at ``p[i] == '\\'``; returns the text and the next index."""
    if i + 1 >= len(p):
        raise _Unsupported
    c = p[i + 1]
    i += 2
    if c in "01234567":
        if c != "0" and (i >= len(p) or p[i] not in _OCTAL):
            raise _Unsupported  # a backreference
        value = int(c)
        for _ in range(2):
            if i < len(p) and p[i] in _OCTAL:
                value = value * 8 + int(p[i])
                i += 1
            else:
                break
        return _char_escape(value), i
    if c == "x":
        if i < len(p) and p[i] == "{":
            end = p.find("}", i)
            digits = p[i + 1 : end] if end > 0 else ""
            if not digits or any(_digit_val(d) > 15 for d in digits):
                raise _Unsupported
            value = int(digits, 16)
            if value > 0x10FFFF:
                raise _Unsupported
            return _char_escape(value), end + 1
        digits = p[i : i + 2]
        if len(digits) < 2 or any(_digit_val(d) > 15 for d in digits):
            raise _Unsupported
        return _char_escape(int(digits, 16)), i + 2
    if c in "afnrtv":
        return "\\" + c, i
    if in_class and c in _CLASS_PERL:
        return _CLASS_PERL[c], i
    if c in "DWS" and in_class:
        return "\\" + c, i
    if not in_class and c in _PERL:
        return _PERL[c], i
    if not in_class and c == "A":
        return r"\A", i
    if not in_class and c == "z":
        return r"\Z", i
    if c.isascii() and not c.isalnum():
        return _char_escape(ord(c)), i  # an escaped punctuation rune is itself
    raise _Unsupported  # \p{...}, \C, \Q in a class: we cannot express; \Z, \G...: Go has none


def _translate_class(p: str, i: int) -> tuple[str, int]:
    """Translate the character class starting at ``p[i] == '['``."""
    out = ["["]
    i += 1
    n = len(p)
    if i < n and p[i] == "^":
        out.append("^")
        i += 1
    first = True
    while True:
        if i >= n:
            raise _Unsupported  # missing closing ]
        c = p[i]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if c == "[" and p.startswith("[:", i) and (end := p.find(":]", i + 2)) >= 0:
            name = p[i + 2 : end]
            if name not in _POSIX_CLASSES:
                raise _Unsupported  # a negated or unknown class
            out.append(_POSIX_CLASSES[name])
            i = end + 2
            continue
        if c == "\\":
            text, i = _translate_escape(p, i, in_class=True)
            out.append(text)
            continue
        if c == "-":
            out.append("-")
        else:
            out.append(_char_escape(ord(c)))
        i += 1
