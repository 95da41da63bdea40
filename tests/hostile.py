"""Hostile and clumsy inputs, shared by the fuzz, security and browser tests.

What a learner mistyping a link, or someone crafting one, can put in a query
string or on the command line: numbers past every float and integer limit,
text that Markdown, LaTeX, HTML or Streamlit's own directives would render,
very long and non-ASCII strings, and settings that are each in bounds but far
too large together. ``INJECTIONS`` are the payloads a page must never render:
each must show, if at all, as escaped text (``rendered_injections``).
"""

from __future__ import annotations

# Each of these, shown unescaped in a Markdown element, would render as
# something other than its own characters (a link, bold, LaTeX, HTML, a
# Streamlit colour or icon directive, code, a heading).
INJECTIONS = (
    "[click me](https://evil.example)",
    "![img](https://evil.example/i.png)",
    "<https://evil.example>",
    "**bold**",
    "__under__",
    "$\\def\\x{}$",
    "$$x^2$$",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    ":red[red text]",
    ":material/warning:",
    "`code`",
    "# heading",
    "~~struck~~",
)

NUMBERS = (
    "",
    " ",
    "\t",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "1e309",
    "-1e309",
    "-0",
    "-0.0",
    "0",
    "-1",
    "10**30",
    "1" + "0" * 30,
    "1e30",
    "1e-320",
    "5e-324",
    "1e-45",
    "2147483648",
    "9" * 25,
    "0x10",
    "1_000",
    "1,5",
    "１２",  # full-width digits
    "٣",  # an Arabic-Indic digit
    "true",
    "None",
    "[]",
    "\x00",
    "%00",
    "é😀",
    "1" * 5000,
    "x" * 5000,
    "0.1\n**x**",
)

HOSTILE_VALUES = NUMBERS + INJECTIONS
HOSTILE_KEYS = (
    "zz",
    "LR",
    "batch-size",
    "**bold**",
    "[click me](https://evil.example)",
    "<b>x</b>",
    "é😀",
    "k" * 300,
    "embed",
    "embed_options",
)

# Settings each inside its own bounds, too large together (issue 16's links and their class).
ABSURD_LAB_QUERIES = (
    {"epochs": "100000", "batch_size": "100000"},
    {"network": "lstm", "seq_len": "500", "hidden_size": "256", "batch_size": "1000",
     "n_train": "5000"},
    {"network": "lstm", "seq_len": "500", "hidden_size": "256", "batch_size": "1000",
     "n_train": "5000", "twin": "true", "autoplay": "true"},
    {"depth": "12", "width": "512", "epochs": "5000"},
    {"depth": "12", "width": "512", "epochs": "20"},
    {"network": "rnn", "seq_len": "500", "hidden_size": "256", "n_train": "5000",
     "epochs": "5000", "batch_size": "1"},
    {"preset": "lstm_long_explodes", "seq_len": "500", "hidden_size": "256", "tbptt": "499"},
    {"lr": "100", "clip_mode": "norm", "clip_norm": "1e9", "epochs": "5000", "batch_size": "1"},
)  # fmt: skip


def rendered_injections(text: str) -> list[str]:
    """The payloads of ``INJECTIONS`` that ``text`` (a Markdown body) holds unescaped.

    A payload shown escaped (``\\[click me\\]\\(...``, or ``&lt;script&gt;`` in
    HTML) is not found; nor is one whose first character is escaped
    (``\\# heading``): an odd number of backslashes before it.
    """
    found = []
    for payload in INJECTIONS:
        start = text.find(payload)
        while start >= 0:
            slashes = len(text[:start]) - len(text[:start].rstrip("\\"))
            if slashes % 2 == 0:
                found.append(payload)
                break
            start = text.find(payload, start + 1)
    return found
