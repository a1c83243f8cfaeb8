"""A small built-in 5×7 bitmap font, drawn with numpy: deterministic pixels on any machine.

FFmpeg's `drawtext` needs libfreetype and a font file, neither of which this PyAV build
guarantees (its filter list has no `drawtext`), and text rendered through a font library
changes with its version. These glyphs (after the HD44780 character ROM) are fixed, so a
test can read a burned-in time back by matching each character cell against them.
Lower case is drawn as upper case; characters without a glyph as `?`.
"""

from __future__ import annotations

import numpy as np

WIDTH, HEIGHT = 5, 7  # glyph pixels
CELL_WIDTH, CELL_HEIGHT = WIDTH + 1, HEIGHT + 1  # with one pixel of spacing

_ROWS = {
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    "A": "01110 10001 10001 10001 11111 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11100 10010 10001 10001 10001 10010 11100",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 10001 01010 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "/": "00000 00001 00010 00100 01000 10000 00000",
    "_": "00000 00000 00000 00000 00000 00000 11111",
    "+": "00000 00100 00100 11111 00100 00100 00000",
    "(": "00010 00100 01000 01000 01000 00100 00010",
    ")": "01000 00100 00010 00010 00010 00100 01000",
    "#": "01010 01010 11111 01010 11111 01010 01010",
    "'": "01100 00100 01000 00000 00000 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
}

GLYPHS: dict[str, np.ndarray] = {
    char: np.array([[bit == "1" for bit in row] for row in rows.split()], dtype=bool)
    for char, rows in _ROWS.items()
}

# Each glyph in its cell (spacing right and below), ready to be put side by side.
_CELLS = {char: np.pad(glyph, ((0, 1), (0, 1))) for char, glyph in GLYPHS.items()}


def printable(text: str) -> str:
    """`text` as this font draws it: upper case, unknown characters as `?`."""
    return "".join(c if c in GLYPHS else "?" for c in text.upper())


def render(text: str, scale: int) -> np.ndarray:
    """A boolean mask of `text` on one line, each font pixel `scale` × `scale` screen pixels.

    Every character takes one cell of CELL_WIDTH × CELL_HEIGHT font pixels (the glyph at its
    top left), so character k starts at column k × CELL_WIDTH × scale.
    """
    text = printable(text)
    cells = [_CELLS[char] for char in text] or [_CELLS[" "]]
    mask = np.concatenate(cells, axis=1)
    return mask.repeat(scale, axis=0).repeat(scale, axis=1)
