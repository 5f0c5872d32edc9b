"""Code-aware text inputs: comments, docstrings and blank lines stripped, identifiers split."""

from __future__ import annotations

import gzip
import io
import json
import tokenize
import warnings
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rlm.inputs.code import code_text, split_name
from rlm.inputs.numtext import find_numbers
from rlm.inputs.textnums import TextNumberEncoder
from rlm.inputs.vocab import InputTokenizer, VocabConfig

PIE = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "code_memory" / "pie_python.jsonl.gz"
)

STRIP = [
    # (name, source, expected)
    (
        "comments and blank lines",
        "# header\n\nx = 1  # one\n\n\n# done\ny = x\n",
        "x = 1\ny = x",
    ),
    (
        "docstrings: module, class, def; bare strings too",
        '"""Module."""\nclass A:\n    """Class."""\n    def f(self):\n'
        "        '''Doc\n        more.'''\n        'a note'\n        return 1\n",
        "class A:\n def f(self):\n  return 1",
    ),
    (
        "a # inside a string stays",
        "s = 'a # b'  # real comment\nt = \"#\"\n",
        "s = 'a # b'\nt = \"#\"",
    ),
    (
        "a multi-line string that is not a docstring stays, byte for byte",
        'q = """\n  SELECT *   # keep\n\n  FROM t\n"""\nprint(q)\n',
        'q = """\n  SELECT *   # keep\n\n  FROM t\n"""\nprint(q)',
    ),
    (
        "an f-string statement may call code: it stays",
        'f"{print(1)}"\n"gone"\n',
        'f"{print(1)}"',
    ),
    (
        "decorators, one space per level",
        "@functools.cache\n@app.route('/x', methods=['GET'])\ndef g(n):\n"
        "    if n:\n        return n\n    return 0\n",
        "@functools.cache\n@app.route('/x', methods=['GET'])\ndef g(n):\n if n:\n  return n\n return 0",
    ),
    (
        "tabs, alignment and continuations collapse",
        "for i in range(3):\n\tx  =  (i +\n\t      1)  # c\n\ty = 1 + \\\n\t    2\n",
        "for i in range(3):\n x = (i + 1)\n y = 1 + 2",
    ),
    (
        "CRLF and CR line endings",
        "a = 1\r\n\r\n# c\r\nif a:\r\n    b = 2\rc = 3\r\n",
        "a = 1\nif a:\n b = 2\nc = 3",
    ),
    (
        "a body that was only a docstring",
        'def f():\n    """Only doc."""\nf()\n',
        "def f():\nf()",
    ),
    (
        "numbers keep their digits",
        "x = [1e-3, 0x1F, 10**9 + 7, 3.14j, 1_000, .5]\n",
        "x = [1e-3, 0x1F, 10**9 + 7, 3.14j, 1_000, .5]",
    ),
    (
        "unterminated string: the line fallback",
        "x = '''open\n\n# c\n    y\n",
        "x = '''open\n    y",
    ),
    (
        "inconsistent dedent: the line fallback",
        "if a:\n        b\n    # c\n    c  # kept as written\n",
        "if a:\n        b\n    c  # kept as written",
    ),
    (
        "not Python at all: only blank and '#' lines go",
        "loss $0.5 at step 3?\n\n#note\n  ok!  \n",
        "loss $0.5 at step 3?\n  ok!  ",
    ),
    (
        "C++: preprocessor lines are code",
        "#include <cstdio>\n#define N 100005\n// c\n\nint a[N];  # x\n",
        "#include <cstdio>\n#define N 100005\n// c\nint a[N];  # x",
    ),
    ("empty", "", ""),
    ("only comments", "# a\n\n   # b\n", ""),
]


@pytest.mark.parametrize(("name", "source", "expected"), STRIP, ids=[c[0] for c in STRIP])
def test_code_text_golden(name: str, source: str, expected: str) -> None:
    assert code_text(source, split_identifiers=False) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("maxValue", "max value"),
        ("num_rows", "num rows"),
        ("HTTPServer", "http server"),
        ("getHTTPResponseCode", "get http response code"),
        ("MAX_N", "max n"),
        ("utf8Decode", "utf8 decode"),
        ("_private_name", "_private name"),
        # one piece: unchanged, case included (N and n are two variables)
        ("N", "N"),
        ("MOD", "MOD"),
        ("Counter", "Counter"),
        ("__init__", "__init__"),
        ("_", "_"),
        # never at a letter-digit boundary, never a piece that starts with a digit
        ("x264", "x264"),
        ("conv3x3", "conv3x3"),
        ("lr_1e3", "lr_1e3"),
        ("dp_2d_table", "dp_2d table"),
    ],
)
def test_split_name(name: str, expected: str) -> None:
    assert split_name(name) == expected


def test_split_identifiers_leaves_literals_and_numbers() -> None:
    src = (
        "def maxValue(num_rows, HTTPServer):\n"
        "    # myComment\n"
        "    s = 'camelCase snake_case # x'\n"
        "    return x264 + conv3x3 * 1e-3 + 0x1F + f(2.5)\n"
    )
    got = code_text(src, split_identifiers=True)
    assert got == (
        "def max value(num rows, http server):\n"
        " s = 'camelCase snake_case # x'\n"
        " return x264 + conv3x3 * 1e-3 + 0x1F + f(2.5)"
    )
    # the number reader sees the same numbers before and after
    assert [f.value for f in find_numbers(got)] == [0.001, 2.5]
    assert [f.value for f in find_numbers(src)] == [0.001, 2.5]
    # a number glued to a unit is not Python: the line rule keeps it whole, names unsplit
    assert code_text("y = 2.5GHz_x\n", split_identifiers=True) == "y = 2.5GHz_x"


def test_split_never_glues_a_name_piece_to_a_string() -> None:
    # "a_b'x'" split would become "a b'x'", where b'x' is a bytes literal; it is not Python,
    # so the line rule keeps it as written, and in Python a name never touches a string
    assert code_text("a_b'x'\n", split_identifiers=True) == "a_b'x'"
    assert code_text("f(a_b, 'x')\n", split_identifiers=True) == "f(a b, 'x')"


def _compiles(src: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)  # "1if x": in the originals too
            compile(src, "<pie>", "exec")
    except SyntaxError:
        return False
    return True


def test_pie_programs_shrink_and_keep_their_numbers() -> None:
    if not PIE.exists():
        pytest.skip(f"{PIE} is not here")
    with gzip.open(PIE, "rt") as f:
        rows = [json.loads(line) for _, line in zip(range(50), f, strict=False)]
    for row in rows:
        src = row["x"]
        stripped = code_text(src, split_identifiers=False)
        assert len(stripped) <= len(src)
        if _compiles(src):
            assert _compiles(stripped)  # PIE programs have no body that is only a docstring
        split = code_text(src, split_identifiers=True)
        nums = [f.value for f in find_numbers(stripped)]
        assert [f.value for f in find_numbers(split)] == nums


# pieces of Python, and of what breaks it, for the property tests
FRAGMENTS = [
    "def f(a_b, cD):", "    ", "\t", "\n", "\r\n", "# c", "'''", '"', "'", "x = 1",
    "\\\n", "(", ")", "[", "]", ":", "  return maxValue", '"""doc"""', "f'{x}'",
    "#include <x>", "$", "1e-3", "0x1F", "a_1", "__init__", ";", "@dec", "b'", "\x0c",
]  # fmt: skip
PYTHONISH = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), PYTHONISH), st.booleans())
@example('x\n "s"\n  z\n', False)  # a dropped docstring between two levels
@example("'''\n#'''\n'''", False)  # the dropped '#' line was inside a broken string
def test_never_raises_and_is_idempotent(text: str, split: bool) -> None:
    once = code_text(text, split_identifiers=split)
    assert isinstance(once, str)
    assert code_text(once, split_identifiers=split) == once


def _prefix(literal: str) -> str:
    return literal[: len(literal) - len(literal.lstrip("rRbBuUfF"))]


def _code_tokens(text: str) -> list[tuple[int, str]] | None:
    """The (type, string) of every token that is code: no comments or layout, and no logical
    line made only of plain string literals (a docstring); None when not Python."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    if any(t.type == tokenize.ERRORTOKEN for t in tokens):
        return None
    layout = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT}
    out: list[tuple[int, str]] = []
    line: list[tuple[int, str]] = []
    for t in tokens:
        if t.type in (tokenize.NEWLINE, tokenize.ENDMARKER):  # a logical line ends
            if not all(k == tokenize.STRING and "f" not in _prefix(s).lower() for k, s in line):
                out += line
            line = []
        elif t.type not in layout:
            line.append((t.type, t.string))
    return out


@settings(max_examples=300, deadline=None)
@given(PYTHONISH)
def test_no_code_token_is_lost(text: str) -> None:
    source = text.replace("\r\n", "\n").replace("\r", "\n")
    before = _code_tokens(source)
    # only a program Python parses is rebuilt; the line fallback has its own goldens above
    if before is None or "#include" in text or not _compiles(source):
        return
    assert _code_tokens(code_text(text, split_identifiers=False)) == before


def test_vocab_config_code_option() -> None:
    assert VocabConfig().code == "off"
    with pytest.raises(ValueError, match=r"code='tidy': choose 'off', 'strip' or 'split'"):
        VocabConfig(code="tidy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop one of the two"):
        VocabConfig(code="strip", pattern=r"\w+")
    # a tokenizer file written before the option existed has no "code" key: it reads as "off"
    old = VocabConfig().to_dict()
    del old["code"]
    assert VocabConfig.from_dict(old) == VocabConfig()


@pytest.fixture(scope="module")
def programs() -> list[str]:
    if not PIE.exists():
        pytest.skip(f"{PIE} is not here")
    with gzip.open(PIE, "rt") as f:
        return [json.loads(line)["x"] for _, line in zip(range(120), f, strict=False)]


def test_tokenizer_with_code_round_trips_and_reads_fewer_tokens(tmp_path, programs) -> None:
    train, probe = programs[:100], programs[100:]
    cfg = VocabConfig(vocab_size=600, max_length=4096)
    off = InputTokenizer.train(train, cfg)
    strip = InputTokenizer.train(train, VocabConfig(vocab_size=600, max_length=4096, code="strip"))
    loaded = InputTokenizer.load(strip.save(tmp_path))
    assert loaded.config.code == "strip"
    assert loaded.encode_batch(probe) == strip.encode_batch(probe)
    assert loaded.decode(loaded.encode(probe[0])) == code_text(probe[0], split_identifiers=False)
    n_off = sum(len(off.encode(p)) for p in probe)
    n_strip = sum(len(loaded.encode(p)) for p in probe)
    assert n_strip < n_off, (n_strip, n_off)
    # the old file format (no "code" key) still loads, as "off"
    blob = json.loads(off.to_json())
    del blob["rlm_vocab_config"]["code"]
    assert InputTokenizer.from_json(json.dumps(blob)).encode(probe[0]) == off.encode(probe[0])


def test_text_numbers_read_the_prepared_text() -> None:
    texts = ["# n = 999\nn = 5  # 7\nprint(n)\n", "x = 2.5\n"]
    enc = TextNumberEncoder.train(texts, VocabConfig(numbers="value", code="strip"))
    row = enc.encode(texts[0])
    values = row.nums[row.ids == enc.num_id]  # only the 5: the comments' numbers are gone
    assert len(values) == 1
    plain = TextNumberEncoder.train(texts, VocabConfig(numbers="value")).encode(texts[0])
    assert int((plain.ids == enc.num_id).sum()) == 3


def test_cli_code_option(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    import rlm.api
    from rlm.cli import app

    seen: list[VocabConfig] = []

    class Stop(Exception):
        pass

    def stub(*, vocab: VocabConfig, **_: object) -> None:
        seen.append(vocab)
        raise Stop  # the options reached the model: no training needed to know that

    monkeypatch.setattr(rlm.api, "RegressionLM", stub)
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(json.dumps({"x": f"n = {i}", "y": {"t": i}}) for i in range(5)))
    args = ["train", str(data), "--out", str(tmp_path / "ck"), "--no-progress"]
    result = CliRunner().invoke(app, [*args, "--code", "split"])
    assert isinstance(result.exception, Stop), result.output
    assert seen[0].code == "split"
    bad = CliRunner().invoke(app, [*args, "--code", "tidy"])
    assert bad.exit_code == 2 and seen[1:] == []


@pytest.mark.parametrize("kw", [{}, {"inputs": "auto"}])
def test_code_is_refused_for_field_inputs(kw) -> None:
    """Mappings are read as fields, whose strings are not programs: the option would be ignored
    silently, so it is refused before anything is fitted."""
    from rlm import RegressionLM
    from rlm.io import Example

    rows = [Example(x={"a": i, "b": "s"}, y={"y": float(i)}) for i in range(8)]
    model = RegressionLM(model="tiny", vocab=VocabConfig(code="strip"), targets=["y"], **kw)
    with pytest.raises(ValueError, match="code='strip' reads text inputs as source code"):
        model.fit(rows)


def test_parsing_prints_no_syntax_warnings() -> None:
    """Deprecated but valid spellings ("1if", an invalid escape) are read without a warning:
    a program's text is checked at every encode, and stderr would fill up."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = code_text("y = 1if x else 2  # c\ns = '\\d'\n", split_identifiers=False)
    assert got == "y = 1if x else 2\ns = '\\d'"  # read as Python: the comment is gone
    assert [w for w in caught if issubclass(w.category, SyntaxWarning)] == []
