"""containerd's filter syntax: scanner, parser, matching, regexps and adaptors."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from pycontainerd import filters
from pycontainerd.errdefs import InvalidArgument
from pycontainerd.filters import (
    ALWAYS,
    Adaptor,
    AdaptorFunc,
    Filter,
    Operator,
    Selector,
    _compile_regexp,
    _Scanner,
    _Tok,
    adapt,
    check_map,
    label_adaptor,
    parse,
)


@dataclass
class Entry:
    name: str
    other: str = ""
    labels: dict[str, str] = field(default_factory=dict)


# The corpus of containerd's TestFilters.
CORPUS = [
    Entry("foo", labels={"foo": "true"}),
    Entry("bar"),
    Entry("foo", labels={"foo": "present", "more complex label": "present"}),
    Entry("bar", labels={"bar": "true"}),
    Entry("fooer", labels={'more complex label with \\ and "': "present"}),
    Entry("fooer", labels={'more complex label with \\ and ".post': "present"}),
    Entry("baz", other="too complex, yo"),
    Entry("bazo", other="abc"),
    Entry("compound", labels={"foo": "omg_asdf.asdf-qwer"}),
]


def adapt_entry(entry: Entry) -> Adaptor:
    """The adaptor of containerd's test: name, other and labels."""

    def field_of(fieldpath: Sequence[str]) -> tuple[str, bool]:
        if fieldpath[0] == "name":
            return entry.name, bool(entry.name)
        if fieldpath[0] == "other":
            return entry.other, bool(entry.other)
        if fieldpath[0] == "labels":
            value = entry.labels.get(".".join(fieldpath[1:]))
            return (value, True) if value is not None else ("", False)
        return "", False

    return AdaptorFunc(field_of)


def matching(flt: Filter) -> list[int]:
    return [i for i, entry in enumerate(CORPUS) if flt.match(adapt_entry(entry))]


ALL = list(range(len(CORPUS)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ALL),
        ("name", ALL),
        ("labels.foo", [0, 2, 8]),
        ("labels.foo,name", [0, 2, 8]),
        ("labels.foo==true", [0]),
        ("labels.foo==omg_asdf.asdf-qwer", [8]),
        ("name==bar", [1, 3]),
        ("name!=bar", [0, 2, 4, 5, 6, 7, 8]),
        ("name==bar,labels.bar", [3]),
        ('other=="too complex, yo"', [6]),
        ("other~=[abc]+,name!=foo", [6, 7]),
        ("other~=/[abc]+/,name!=foo", [6, 7]),
        ("other~=/[abc]{1,2}/,name!=foo", [6, 7]),
        ('other~=/[abc]{0,1}"\\//,name!=foo', []),
        ("name==bar,labels.bar==true", [3]),
        ("name==bar,labels.bar==wrong", []),
        ('name==foo,labels."more complex label"', [2]),
        ('labels."more complex label with \\\\ and \\""==present', [4]),
        ('labels."more complex label with \\\\ and \\"".post==present', [5]),
        # beyond containerd's table
        ("name == bar", [1, 3]),
        ("  name==bar", [1, 3]),
        ("name~=^ba", [1, 3, 6, 7]),
        ("name~=|^ba[rz]$|", [1, 3, 6]),
        ("name~=^foo$", [0, 2]),
        ("name~=(?i)^FOO$", [0, 2]),
        ("labels.foo~=/./", [0, 2, 8]),
        ("labels.foo~=\\w", [0, 2, 8]),
        ("labels.foo!=true", [1, 2, 3, 4, 5, 6, 7, 8]),
        ('labels.foo=="true"', [0]),
        ("name==compound,labels.foo~=asdf\\.asdf", [8]),
        ("other==abc", [7]),
        ("missing", []),
        ("missing!=x", ALL),
        ('missing==""', []),
        ('other!=""', [6, 7]),
        ('labels."foo"', [0, 2, 8]),
        ('labels."\\x66oo"==true', [0]),
        ('labels."\\u0066oo"==true', [0]),
        ('labels."\\146oo"==true', [0]),
        ("name==fooer,labels.more", []),
    ],
)
def test_filters(text: str, expected: list[int]) -> None:
    assert matching(parse(text)) == expected


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        ((), ALL),
        (("name==foo", "name==bar"), [0, 1, 2, 3]),
        (("name==foo,labels.foo==true", "name==bar,labels.bar"), [0, 3]),
        (("name==nothing", "other==abc"), [7]),
        (("name==nothing", ""), ALL),
        (("name==nothing", "name==none"), []),
    ],
)
def test_alternatives_are_ored(texts: tuple[str, ...], expected: list[int]) -> None:
    assert matching(parse(*texts)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "labels.|foo|==omg_asdf.asdf-qwer",
            "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: "
            "invalid quote encountered",
        ),
        (
            'labels.?"more complex label with \\\\ and \\"".post==present',
            'filters: parse error: [labels. >|?|< "more complex label with \\\\ and \\"".post'
            "==present]: expected field or quoted",
        ),
        ("name==foo,", "filters: parse error: [name==foo,]: expected field or quoted"),
        ("labels.", "filters: parse error: [labels.]: expected field or quoted"),
        (
            "image~=,id?=?fbaq",
            "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted",
        ),
        (
            "labels.ns/key==value",
            "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated",
        ),
        (
            "labels.key==/value",
            "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated",
        ),
        # beyond containerd's table
        ("name=foo", 'filters: parse error: [name >|=|< foo]: unsupported operator "="'),
        ("name===foo", 'filters: parse error: [name >|=|< ==foo]: unsupported operator "==="'),
        ("name==", "filters: parse error: [name==]: expected value or quoted"),
        ("name=|foo|", 'filters: parse error: [name >|=|< |foo|]: unsupported operator "="'),
        ("name==|foo|", "filters: parse error: [name== >|||< foo|]: invalid quote encountered"),
        ("name!=/foo/", "filters: parse error: [name!= >|/|< foo/]: invalid quote encountered"),
        (
            "name foo",
            'filters: parse error: [name  >|f|< oo]: expected an operator ("=="|"!="|"~=")',
        ),
        ("name ", 'filters: parse error: [name ]: expected an operator ("=="|"!="|"~=")'),
        ("name==a b", "filters: parse error: [name==a >| |< b]: unexpected input:  "),
        ("name==bar ", "filters: parse error: [name==bar >| |< ]: unexpected input:  "),
        ('name=="a"b', 'filters: parse error: [name=="a" >|b|< ]: unexpected input: b'),
        ("  ", "filters: parse error: [  ]: expected field or quoted"),
        (",", "filters: parse error: [ >|,|< ]: expected field or quoted"),
        ("name,,id", "filters: parse error: [name, >|,|< id]: expected field or quoted"),
        (".name", "filters: parse error: [ >|.|< name]: expected field or quoted"),
        ("labels..a", "filters: parse error: [labels. >|.|< a]: expected field or quoted"),
        ("labels.'a'", "filters: parse error: [labels. >|'|< a']: expected field or quoted"),
        ('labels."\\g"', 'filters: parse error: [labels. >|"|< \\g"]: illegal escape sequence'),
        (
            'labels."\\xaz"',
            'filters: parse error: [labels. >|"|< \\xaz"]: illegal numeric escape sequence',
        ),
        (
            'labels."\\777"',
            'filters: parse error: [labels. >|"|< \\777"]: unquoting failed: quote syntax error',
        ),
        (
            'labels."\\U00110000"',
            'filters: parse error: [labels. >|"|< \\U00110000"]: unquoting failed: '
            "quote syntax error",
        ),
        (
            'labels."a\nb"==c',
            'filters: parse error: [labels. >|"|< a\nb"==c]: quoted literal not terminated',
        ),
        ("name\x00==a", "filters: parse error: [name >|\x00|< ==a]: unexpected null"),
        ("na\x00me", "filters: parse error: [na >|\x00|< me]: unexpected null"),
        ("name==a\x00", "filters: parse error: [name==a >|\x00|< ]: unexpected input: \ufffd"),
        ("\x00", "filters: parse error: [ >|\x00|< ]: unexpected null"),
        ("name==\x00", "filters: parse error: [name== >|\x00|< ]: unexpected null"),
        ('name~=/a\\"b/', 'filters: parse error: [name~= >|/|< a\\"b/]: illegal escape sequence'),
        ("name!", 'filters: parse error: [name >|!|< ]: unsupported operator "!"'),
        ("name~", 'filters: parse error: [name >|~|< ]: unsupported operator "~"'),
        ("name?", 'filters: parse error: [name >|?|< ]: expected an operator ("=="|"!="|"~=")'),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse(text)
    assert str(info.value) == message


def test_parse_error_in_any_alternative() -> None:
    with pytest.raises(InvalidArgument, match=r"\[name==\]"):
        parse("name==foo", "name==")


@pytest.mark.parametrize(
    ("text", "selectors"),
    [
        ("name", [Selector(("name",), Operator.PRESENT)]),
        ("name==foo", [Selector(("name",), Operator.EQUAL, "foo")]),
        ("name!=foo", [Selector(("name",), Operator.NOT_EQUAL, "foo")]),
        ("name~=foo", [Selector(("name",), Operator.MATCHES, "foo")]),
        ("name~=/fo\\/o/", [Selector(("name",), Operator.MATCHES, "fo/o")]),
        ("name~=|fo\\|o|", [Selector(("name",), Operator.MATCHES, "fo|o")]),
        ("name~=|a/b|", [Selector(("name",), Operator.MATCHES, "a/b")]),
        ('name~="a/b"', [Selector(("name",), Operator.MATCHES, "a/b")]),
        (
            'labels."containerd.io/gc.ref.content.l.0"',
            [Selector(("labels", "containerd.io/gc.ref.content.l.0"), Operator.PRESENT)],
        ),
        (
            'labels."containerd.io/snapshot.ref"==sha256:abc,parent==""',
            [
                Selector(("labels", "containerd.io/snapshot.ref"), Operator.EQUAL, "sha256:abc"),
                Selector(("parent",), Operator.EQUAL, ""),
            ],
        ),
        (
            '"leading quote".postquote==value',
            [Selector(("leading quote", "postquote"), Operator.EQUAL, "value")],
        ),
        (
            "compound.labels==punctuated_value.foo-bar",
            [Selector(("compound", "labels"), Operator.EQUAL, "punctuated_value.foo-bar")],
        ),
        ("name==牛", [Selector(("name",), Operator.EQUAL, "牛")]),
        ("name=='a'", [Selector(("name",), Operator.EQUAL, "'a'")]),
        ("name==`a`", [Selector(("name",), Operator.EQUAL, "`a`")]),
        ("name==a=b", [Selector(("name",), Operator.EQUAL, "a=b")]),
        ("name==a/b", [Selector(("name",), Operator.EQUAL, "a/b")]),
        ("name==a|b", [Selector(("name",), Operator.EQUAL, "a|b")]),
        ("name==a?b~c!", [Selector(("name",), Operator.EQUAL, "a?b~c!")]),
        ('name=="a\\tb"', [Selector(("name",), Operator.EQUAL, "a\tb")]),
        ('name=="\\xc3\\xa9"', [Selector(("name",), Operator.EQUAL, "é")]),
        ('name=="\\u00e9\\U0001F600"', [Selector(("name",), Operator.EQUAL, "é\U0001f600")]),
        ('name=="\\ud800"', [Selector(("name",), Operator.EQUAL, "\ufffd")]),
        ("a_b.C9==x", [Selector(("a_b", "C9"), Operator.EQUAL, "x")]),
        ("9==x", [Selector(("9",), Operator.EQUAL, "x")]),
    ],
)
def test_parsed_selectors(text: str, selectors: list[Selector]) -> None:
    assert parse(text).alternatives == (tuple(selectors),)


def test_invalid_utf8_escape_matches_nothing_valid() -> None:
    flt = parse('name=="\\xff"')
    assert not flt.match(label_adaptor({"name": "\xff"}))
    assert not flt.match(label_adaptor({"name": "\ufffd"}))


def test_always() -> None:
    assert parse().always
    assert parse("").always
    assert parse("a==b", "").always
    assert not parse("a==b").always
    assert ALWAYS.match(label_adaptor({}))
    assert parse() == ALWAYS


def test_selector_str() -> None:
    flt = parse('labels."a.b"==c,name,x~="a b"')
    assert [str(s) for s in flt.alternatives[0]] == ['labels."a.b"=="c"', "name", 'x~="a b"']
    for sel in flt.alternatives[0]:
        assert parse(str(sel)).alternatives[0] == (sel,)


def test_select() -> None:
    flt = parse("name==bar")
    assert list(flt.select(CORPUS, adapt_entry)) == [CORPUS[1], CORPUS[3]]
    assert list(ALWAYS.select(CORPUS, adapt_entry)) == CORPUS


# --- scanner: containerd's TestScanner (positions count characters here) ---

T = _Tok


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("name", [(0, T.FIELD, "name"), (4, T.EOF, "")]),
        (
            "name==value,foo!=bar",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "=="),
                (6, T.VALUE, "value"),
                (11, T.SEPARATOR, ","),
                (12, T.FIELD, "foo"),
                (15, T.OPERATOR, "!="),
                (17, T.VALUE, "bar"),
                (20, T.EOF, ""),
            ],
        ),
        (
            "name==value,labels.foo=value,other.bar~=match",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "=="),
                (6, T.VALUE, "value"),
                (11, T.SEPARATOR, ","),
                (12, T.FIELD, "labels"),
                (18, T.SEPARATOR, "."),
                (19, T.FIELD, "foo"),
                (22, T.OPERATOR, "="),
                (23, T.VALUE, "value"),
                (28, T.SEPARATOR, ","),
                (29, T.FIELD, "other"),
                (34, T.SEPARATOR, "."),
                (35, T.FIELD, "bar"),
                (38, T.OPERATOR, "~="),
                (40, T.VALUE, "match"),
                (45, T.EOF, ""),
            ],
        ),
        (
            "name~=[abc]+,foo=test",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "~="),
                (6, T.VALUE, "[abc]+"),
                (12, T.SEPARATOR, ","),
                (13, T.FIELD, "foo"),
                (16, T.OPERATOR, "="),
                (17, T.VALUE, "test"),
                (21, T.EOF, ""),
            ],
        ),
        (
            "name~=[abc]\\+,foo=test",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "~="),
                (6, T.VALUE, "[abc]\\+"),
                (13, T.SEPARATOR, ","),
                (14, T.FIELD, "foo"),
                (17, T.OPERATOR, "="),
                (18, T.VALUE, "test"),
                (22, T.EOF, ""),
            ],
        ),
        (
            "name~=/[abc]{0,2}/,foo=test",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "~="),
                (6, T.QUOTED, "/[abc]{0,2}/"),
                (18, T.SEPARATOR, ","),
                (19, T.FIELD, "foo"),
                (22, T.OPERATOR, "="),
                (23, T.VALUE, "test"),
                (27, T.EOF, ""),
            ],
        ),
        (
            "name~=牛,labels.moo=true",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "~="),
                (6, T.VALUE, "牛"),
                (7, T.SEPARATOR, ","),
                (8, T.FIELD, "labels"),
                (14, T.SEPARATOR, "."),
                (15, T.FIELD, "moo"),
                (18, T.OPERATOR, "="),
                (19, T.VALUE, "true"),
                (23, T.EOF, ""),
            ],
        ),
        (
            "name~=|牛|,labels.moo=true",
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "~="),
                (6, T.QUOTED, "|牛|"),
                (9, T.SEPARATOR, ","),
                (10, T.FIELD, "labels"),
                (16, T.SEPARATOR, "."),
                (17, T.FIELD, "moo"),
                (20, T.OPERATOR, "="),
                (21, T.VALUE, "true"),
                (25, T.EOF, ""),
            ],
        ),
        (
            'name~="asdf\\n\\tfooo"',
            [
                (0, T.FIELD, "name"),
                (4, T.OPERATOR, "~="),
                (6, T.QUOTED, '"asdf\\n\\tfooo"'),
                (20, T.EOF, ""),
            ],
        ),
        (
            "foo\x00bar",
            [(0, T.FIELD, "foo"), (3, T.ILLEGAL, ""), (4, T.FIELD, "bar"), (7, T.EOF, "")],
        ),
        (
            "foo = bar    ",
            [(0, T.FIELD, "foo"), (4, T.OPERATOR, "="), (6, T.VALUE, "bar"), (13, T.EOF, "")],
        ),
        (
            "compound.labels==punctuated_value.foo-bar",
            [
                (0, T.FIELD, "compound"),
                (8, T.SEPARATOR, "."),
                (9, T.FIELD, "labels"),
                (15, T.OPERATOR, "=="),
                (17, T.VALUE, "punctuated_value.foo-bar"),
                (41, T.EOF, ""),
            ],
        ),
        ("interrupted=", [(0, T.FIELD, "interrupted"), (11, T.OPERATOR, "="), (12, T.EOF, "")]),
        (
            "doublevalue=value value",
            [
                (0, T.FIELD, "doublevalue"),
                (11, T.OPERATOR, "="),
                (12, T.VALUE, "value"),
                (18, T.FIELD, "value"),
                (23, T.EOF, ""),
            ],
        ),
        (
            '"leading quote".postquote==value',
            [
                (0, T.QUOTED, '"leading quote"'),
                (15, T.SEPARATOR, "."),
                (16, T.FIELD, "postquote"),
                (25, T.OPERATOR, "=="),
                (27, T.VALUE, "value"),
                (32, T.EOF, ""),
            ],
        ),
        (
            "input==,id!=ff",
            [
                (0, T.FIELD, "input"),
                (5, T.OPERATOR, "=="),
                (7, T.SEPARATOR, ","),
                (8, T.FIELD, "id"),
                (10, T.OPERATOR, "!="),
                (12, T.VALUE, "ff"),
                (14, T.EOF, ""),
            ],
        ),
        (
            "input~=/foo\\/bar/,id!=ff",
            [
                (0, T.FIELD, "input"),
                (5, T.OPERATOR, "~="),
                (7, T.QUOTED, "/foo\\/bar/"),
                (17, T.SEPARATOR, ","),
                (18, T.FIELD, "id"),
                (20, T.OPERATOR, "!="),
                (22, T.VALUE, "ff"),
                (24, T.EOF, ""),
            ],
        ),
        (
            "input~=|foo/bar|,id!=ff",
            [
                (0, T.FIELD, "input"),
                (5, T.OPERATOR, "~="),
                (7, T.QUOTED, "|foo/bar|"),
                (16, T.SEPARATOR, ","),
                (17, T.FIELD, "id"),
                (19, T.OPERATOR, "!="),
                (21, T.VALUE, "ff"),
                (23, T.EOF, ""),
            ],
        ),
        (
            "labels.containerd.io/key==value",
            [
                (0, T.FIELD, "labels"),
                (6, T.SEPARATOR, "."),
                (7, T.FIELD, "containerd"),
                (17, T.SEPARATOR, "."),
                (18, T.FIELD, "io"),
                (20, T.ILLEGAL, "/key==value"),
                (31, T.EOF, ""),
            ],
        ),
        (
            'labels."containerd.io\nkey"==value',
            [
                (0, T.FIELD, "labels"),
                (6, T.SEPARATOR, "."),
                (7, T.ILLEGAL, '"containerd.io\n'),
                (22, T.FIELD, "key"),
                (25, T.ILLEGAL, '"==value'),
                (33, T.EOF, ""),
            ],
        ),
        (
            'labels."\\g"',
            [
                (0, T.FIELD, "labels"),
                (6, T.SEPARATOR, "."),
                (7, T.ILLEGAL, '"\\g"'),
                (11, T.EOF, ""),
            ],
        ),
        (
            'labels."\\xaz"',
            [
                (0, T.FIELD, "labels"),
                (6, T.SEPARATOR, "."),
                (7, T.ILLEGAL, '"\\xaz"'),
                (13, T.EOF, ""),
            ],
        ),
    ],
)
def test_scanner(text: str, tokens: list[tuple[int, _Tok, str]]) -> None:
    scanner = _Scanner(text)
    seen = []
    while True:
        pos, tok, value = scanner.scan()
        seen.append((pos, tok, value))
        if tok == _Tok.EOF:
            break
    assert seen == tokens
    assert scanner.scan()[1] == _Tok.EOF


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("foo\x00bar", "unexpected null"),
        ('labels."containerd.io\nkey"==value', "quoted literal not terminated"),
        ("labels.containerd.io/key==value", "quoted literal not terminated"),
        ('labels."\\g"', "illegal escape sequence"),
        ('labels."\\xaz"', "illegal numeric escape sequence"),
    ],
)
def test_scanner_error(text: str, error: str) -> None:
    scanner = _Scanner(text)
    while scanner.scan()[1] != _Tok.EOF:
        pass
    assert scanner.err == error


# --- regular expressions: Go (RE2) semantics ---


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("abc", ["abc", "xabcx"], ["ab", "ABC"]),
        ("^abc$", ["abc"], ["abc\n", "xabc", "abcd"]),
        ("(?m)^abc$", ["abc", "x\nabc\ny", "abc\n"], ["abcd"]),
        ("a$|b", ["a", "b", "xb\n"], ["a\n"]),
        ("(?m:a$)|b$", ["a\n", "b"], ["b\n"]),
        ("(?i)abc", ["ABC", "aBc"], ["ab"]),
        ("a(?i)b|c", ["aB", "C", "c"], ["AB", "A"]),
        ("(a(?i)b)c", ["aBc"], ["aBC", "ABc"]),
        ("(?i:a)b", ["Ab"], ["AB"]),
        ("(?s).", ["\n"], [""]),
        (".", ["a"], ["\n", ""]),
        ("(?)a", ["a"], ["b"]),
        ("(?:ab)+$", ["abab"], ["aba"]),
        ("\\d+", ["123"], ["\u0661\u0662", "abc"]),
        ("\\w", ["_", "a", "Z", "0"], ["é", "-"]),
        ("^\\W$", ["é", "-"], ["a"]),
        ("\\s", [" ", "\t", "\n", "\r", "\f"], ["\v", "\xa0"]),
        ("a\\b", ["a", "a-", "aé"], ["ab"]),
        ("[[:alpha:]]+$", ["abc"], ["ab1"]),
        ("^[[:digit:][:upper:]]+$", ["A1"], ["a1"]),
        ("^[^[:space:]]+$", ["ab"], ["a b"]),
        ("[\\d]", ["5"], ["x"]),
        ("\\Qa.b\\E", ["a.b"], ["axb"]),
        ("^\\Qab\\E*$", ["a", "abbb"], ["abab"]),
        ("\\Qa.b", ["a.b"], ["a-b"]),
        ("\\x41\\x{42}\\x{1F600}", ["AB\U0001f600"], ["AB"]),
        ("\\101\\0", ["A\x00"], ["A0"]),
        ("a\\z", ["a"], ["a\n"]),
        ("\\Aa", ["ab"], ["ba"]),
        ("x{2}", ["xx"], ["x"]),
        ("^x{1,2}$", ["x", "xx"], ["xxx"]),
        ("^x{,2}$", ["x{,2}"], ["x", "xx"]),
        ("^x{a}$", ["x{a}"], ["x"]),
        ("^a}$", ["a}"], ["a"]),
        ("^x*?y", ["xxy"], ["x"]),
        ("^[]a]+$", ["]a"], ["b"]),
        ("^[^]a]+$", ["bc"], ["]"]),
        ("^[a-]+$", ["a-"], ["b"]),
        ("^[[a]+$", ["[a"], ["b"]),
        ("^[a&&b]$", ["&"], ["c"]),
        ("^[\\-\\]]+$", ["-]"], ["a"]),
        ("(?P<name>a)b", ["ab"], ["a"]),
        ("\\ \\_\\#", [" _#"], ["_#"]),
        ("a#b c", ["a#b c"], ["abc"]),
        ("牛", ["牛"], ["a"]),
    ],
)
def test_regexp_semantics(pattern: str, matches: list[str], misses: list[str]) -> None:
    compiled = _compile_regexp(pattern)
    assert compiled is not None, pattern
    for text in matches:
        assert compiled.search(text), (pattern, text)
    for text in misses:
        assert not compiled.search(text), (pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [
        "(",
        ")",
        "[a",
        "a**",
        "a*+",
        "a++",
        "a?+",
        "a{2}+",
        "a{2}{3}",
        "*a",
        "a|*",
        "x{1001}",
        "x{2,1}",
        "(?=a)",
        "(?!a)",
        "(?<=a)b",
        "(?<!a)b",
        "(?#comment)",
        "(a)\\1",
        "(?P=name)",
        "(?U)a",
        "(?i-)a",
        "\\Z",
        "\\pL",
        "\\p{Greek}",
        "[\\pL]",
        "\\C",
        "[[:foo:]]",
        "[[:^alpha:]]",
        "\\q",
        "\\x{110000}",
        "\\x{}",
        "\\xZZ",
        "\\",
        "\\8",
    ],
)
def test_regexp_refused_as_go_would(pattern: str) -> None:
    assert _compile_regexp(pattern) is None


def test_invalid_regexp_matches_nothing(caplog: pytest.LogCaptureFixture) -> None:
    flt = parse("name~=(")
    assert "error compiling regexp" in caplog.text
    assert not flt.match(label_adaptor({"name": "("}))
    assert not flt.match(label_adaptor({}))


def test_regexp_against_absent_field() -> None:
    assert parse("name~=^$").match(label_adaptor({}))
    assert not parse("name~=/./").match(label_adaptor({}))


# --- adaptors ---


def test_adaptor_func_and_adapt() -> None:
    calls: list[tuple[str, ...]] = []

    def fn(fieldpath: Sequence[str]) -> tuple[str, bool]:
        calls.append(tuple(fieldpath))
        return "v", True

    assert parse("a.b==v").match(adapt(fn))
    assert calls == [("a", "b")]


@pytest.mark.parametrize(
    ("fieldpath", "expected"),
    [
        ((), ("", False)),
        (("name",), ("busybox", True)),
        (("empty",), ("", False)),
        (("missing",), ("", False)),
        (("target", "digest"), ("sha256:abc", True)),
        (("target",), ("", False)),
        (("labels", "a"), ("1", True)),
        (("labels", "a", "b"), ("2", True)),
        (("labels", "c"), ("", False)),
        (("labels", "empty"), ("", True)),
        (("annotations", "x"), ("y", True)),
        (("annotations",), ("", False)),
    ],
)
def test_label_adaptor(fieldpath: tuple[str, ...], expected: tuple[str, bool]) -> None:
    adaptor = label_adaptor(
        {"name": "busybox", "empty": "", "target.digest": "sha256:abc"},
        {"a": "1", "a.b": "2", "empty": ""},
        maps={"annotations": {"x": "y"}},
    )
    assert adaptor.field(fieldpath) == expected


def test_label_adaptor_present_if_empty_and_no_labels() -> None:
    adaptor = label_adaptor({"parent": ""}, present_if_empty=True)
    assert adaptor.field(("parent",)) == ("", True)
    assert adaptor.field(("labels", "x")) == ("", False)
    assert parse('parent==""').match(adaptor)
    assert not parse('parent==""').match(label_adaptor({"parent": ""}))


def test_check_map() -> None:
    assert check_map(["a", "b"], {"a.b": "c"}) == ("c", True)
    assert check_map(["a"], {}) == ("", False)
    assert check_map([], {"": "x"}) == ("x", True)


def test_gc_style_label_filters() -> None:
    labels = {
        "containerd.io/gc.ref.content.l.0": "sha256:aaa",
        "containerd.io/snapshot.ref": "sha256:bbb",
    }
    adaptor = label_adaptor({"name": "img"}, labels)
    assert parse('labels."containerd.io/gc.ref.content.l.0"').match(adaptor)
    assert parse('labels."containerd.io/snapshot.ref"==sha256:bbb').match(adaptor)
    assert parse('labels."containerd.io/snapshot.ref"~=/^sha256:b+$/').match(adaptor)
    assert not parse('labels."containerd.io/gc.ref.content.l.1"').match(adaptor)


def test_module_exports() -> None:
    for name in filters.__all__:
        assert hasattr(filters, name)


def test_fast_enough_for_ten_thousand_records() -> None:
    records = [
        ({"name": f"image-{i}", "target.digest": f"sha256:{i:064x}"}, {"env": str(i % 3)})
        for i in range(10_000)
    ]
    flt = parse("name~=^image-1,labels.env==1", 'labels."env"==2,name!=x')
    start = time.perf_counter()
    for _ in range(3):
        hits = [r for r in records if flt.match(label_adaptor(*r))]
    elapsed = (time.perf_counter() - start) / 3
    expected = [
        r
        for r in records
        if (re.match("image-1", r[0]["name"]) and r[1]["env"] == "1") or r[1]["env"] == "2"
    ]
    assert hits == expected
    assert elapsed < 0.5, f"{elapsed:.3f}s for 10,000 records"
