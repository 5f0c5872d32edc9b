"""Source code as a model reads it: comments, docstrings and blank lines out, indentation compact.

A text input keeps ``VocabConfig.max_length`` tokens (256 by default, head and tail), and a
typical program spends a good share of them on what does not run: comments, docstrings, blank
lines, runs of indentation spaces and alignment. ``code_text`` removes that noise so more of
the program itself fits (``VocabConfig(code="strip" | "split")``, ``rlm train --code``):

* **Python first**: when the text tokenizes as Python (``tokenize``, no error tokens) it is
  rebuilt from its tokens. ``#`` comments, blank lines and *bare string statements* go: a
  logical line made only of (non-f) string literals, which covers every docstring (module,
  class, def) and the strings used as block comments; neither does anything at run time.
  Every other token is kept as written (string literals and numbers byte for byte), so a ``#``
  inside a string and a multi-line string that is assigned or passed stay.
* **Indentation is one space per block level**, not dropped: it is Python's block structure
  (``for`` ... ``print`` inside or after the loop is a different program). One space per level
  keeps that structure, re-tokenizes to the same blocks, and with byte-level BPE a single
  leading space merges into the line's first token, so a line at depth one costs no extra
  token (four spaces or a tab usually cost one or two). Between the tokens of a line any
  whitespace, a backslash continuation or a newline inside brackets becomes one space.
* **Identifier splitting** (``split_identifiers``) cuts names at underscores and camelCase
  boundaries into lowercase word pieces (``maxValue`` -> ``max value``, ``num_rows`` ->
  ``num rows``, ``HTTPServer`` -> ``http server``), so the pieces a BPE learns are words shared
  across programs. A capital starts a word (also after a digit: ``utf8Decode`` -> ``utf8
  decode``), but letters and digits are never parted otherwise (``x264``, ``conv3x3``;
  ``lr_1e3`` stays whole: a piece starting with a digit would read as a number), and a name
  that is one piece keeps its case (``N`` and ``n`` are different variables in one program).
* **Anything else falls back** to a conservative line rule: blank lines and whole-line ``#``
  comments are dropped, nothing else changes. That is the path for text that Python cannot
  parse (an unterminated string, inconsistent dedents, ``$`` or ``?`` outside strings, a
  brace language whose ``//`` comments would otherwise swallow the rest of their line once
  lines are joined, Python 2) and for C/C++ (a preprocessor line such as ``#include``,
  ``#if`` or ``#else`` marks it, and is kept: it is code there).
* **The Python version matters at the edges**: newer syntax (``type X = int``, 3.12) parses
  only on newer versions, so such a program is rebuilt on one and falls back on another.
  Serve a model whose inputs are code on the Python minor version it was trained with.

Line endings are normalised to ``\\n`` first (as Python itself reads source). The function never
raises on a ``str`` and is idempotent: ``code_text(code_text(s)) == code_text(s)``. Torch-free.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import warnings
from collections.abc import Sequence

# C preprocessor lines: code in C/C++, so such a text is never read as Python with comments.
_DIRECTIVE = re.compile(
    r"^[ \t]*#[ \t]*(?:if|ifdef|ifndef|elif|else|endif|define|undef|include|include_next|pragma"
    r"|error|warning|line|import)\b",
    re.M,
)
# camelCase boundaries: aB, ABc (HTTPServer -> HTTP|Server), 8Dec (utf8Decode -> utf8|Decode)
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[0-9])(?=[A-Z][a-z])")
_AFFIXES = re.compile(r"(_*)(.*?)(_*)", re.S)  # leading and trailing underscores of a name
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# tokens that carry no code of their own: comments, and the line structure rebuilt below
_LAYOUT = frozenset(
    (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
)


def code_text(source: str, *, split_identifiers: bool) -> str:
    """``source`` with comments, docstrings and blank lines removed and indentation compact
    (see the module docstring); ``split_identifiers`` also splits names into word pieces."""
    text = source.replace("\r\n", "\n").replace("\r", "\n")
    kept = _by_lines(text)
    if _DIRECTIVE.search(text) is None:
        # the whole text first; then the lines the fallback keeps, which may be Python when
        # a dropped '#' line was inside a broken string: so a second call changes nothing
        for attempt in (text, kept):
            tokens = _python_tokens(attempt)
            if tokens is not None:
                return _rebuild(tokens, split_identifiers)
    return kept


def split_name(name: str) -> str:
    """``name`` as lowercase word pieces (``maxValue`` -> ``max value``), or unchanged when it
    is one piece. Leading and trailing underscores stay on the first and last piece."""
    m = _AFFIXES.fullmatch(name)
    assert m is not None  # the pattern matches every string
    head, core, tail = m.groups()
    pieces: list[str] = []
    for part in core.split("_"):
        if not part:
            continue
        if pieces and part[0].isdigit():  # lr_1e3, x_1: a digit never starts a piece
            pieces[-1] += "_" + part
        else:
            pieces += _CAMEL.split(part)
    if len(pieces) < 2:
        return name
    pieces[0], pieces[-1] = head + pieces[0], pieces[-1] + tail
    return " ".join(p.translate(_LOWER) for p in pieces)


def _python_tokens(text: str) -> list[tokenize.TokenInfo] | None:
    """The tokens of ``text`` as Python, or None when it is not Python to ``tokenize``."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, ValueError):  # IndentationError is a SyntaxError
        return None
    # '$', '?', a lone quote: error tokens up to 3.11, unknown operators from 3.12
    if any(t.type == tokenize.ERRORTOKEN or t.exact_type == tokenize.OP for t in tokens):
        return None
    # C, Java, JavaScript often tokenize as Python ('{', ';', '//' are operators); only a
    # program Python can parse is rebuilt, so '//' comments never swallow the code after them
    try:
        with warnings.catch_warnings():  # "1if x": a warning per program on stderr otherwise
            warnings.simplefilter("ignore", SyntaxWarning)
            ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    return _whole_fstrings(tokens, text)


# Python 3.12+ tokenizes an f-string (3.14+: a t-string) into its parts; 3.11 as one STRING
_STARTS = {getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START") if hasattr(tokenize, n)}
_ENDS = {getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END") if hasattr(tokenize, n)}


def _whole_fstrings(tokens: list[tokenize.TokenInfo], text: str) -> list[tokenize.TokenInfo]:
    """``tokens`` with each f-string made one STRING token of its source text, as 3.11 gives
    it: a literal is never rebuilt from parts (``{{`` comes back as ``{`` in them) or split."""
    if not _STARTS:
        return tokens
    lines = text.split("\n")  # tokenize's rows, as StringIO.readline cuts them
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    out: list[tokenize.TokenInfo] = []
    depth = 0
    start = tokens[0]
    for tok in tokens:
        if tok.type in _STARTS:
            depth += 1
            start = tok if depth == 1 else start
        elif tok.type in _ENDS:
            depth -= 1
            if depth == 0:
                (r0, c0), (r1, c1) = start.start, tok.end
                literal = text[offsets[r0 - 1] + c0 : offsets[r1 - 1] + c1]
                out.append(tokenize.TokenInfo(tokenize.STRING, literal, start.start, tok.end, ""))
        elif depth == 0:
            out.append(tok)
    return out


def _rebuild(tokens: Sequence[tokenize.TokenInfo], split_identifiers: bool) -> str:
    """One output line per logical line that does something, indented one space per level."""
    lines: list[str] = []
    depth = 0  # block level in the source
    line: list[tokenize.TokenInfo] = []
    for tok in tokens:
        if tok.type == tokenize.INDENT:
            depth += 1
        elif tok.type == tokenize.DEDENT:
            depth -= 1
        elif tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if line and not _bare_strings(line):
                lines.append(" " * depth + _join(line, split_identifiers))
            line = []
        elif tok.type not in _LAYOUT:
            line.append(tok)
    return "\n".join(lines)


def _bare_strings(line: Sequence[tokenize.TokenInfo]) -> bool:
    """Whether a logical line is only string literals (a docstring): f-strings can call code."""
    return all(t.type == tokenize.STRING and not _is_fstring(t.string) for t in line)


def _is_fstring(literal: str) -> bool:
    prefix = literal[: len(literal) - len(literal.lstrip("rRbBuUfF"))]
    return "f" in prefix.lower()


def _join(line: Sequence[tokenize.TokenInfo], split_identifiers: bool) -> str:
    """The tokens of one logical line, each as written, one space where any gap was."""
    out: list[str] = []
    for i, tok in enumerate(line):
        if i and tok.start != line[i - 1].end:  # whitespace, a continuation, a bracketed newline
            out.append(" ")
        # only parsed Python gets here: a name glued to a number is a keyword (1if), one
        # piece, and none is glued to a string (a_b'x' would make a prefix of its last piece)
        out.append(
            split_name(tok.string)
            if split_identifiers and tok.type == tokenize.NAME
            else tok.string
        )
    return "".join(out)


def _by_lines(text: str) -> str:
    """The fallback: blank lines and whole-line ``#`` comments dropped (C directives kept)."""
    kept = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        if not stripped:
            continue
        if stripped.startswith("#") and _DIRECTIVE.match(line) is None:
            continue
        kept.append(line)
    return "\n".join(kept)
