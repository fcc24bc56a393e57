"""Email messages written straight to bytes: folded headers, encoded words, text bodies.

The stdlib ``email`` package builds a tree of objects, parses every header it is given into a
registry class and folds it back through a policy: milliseconds per message, while a campaign
sends thousands a second, all of one shape (a dozen headers, then one text part or a text and
HTML alternative). This module writes that shape directly, to RFC 5322 (lines folded at 78
characters), RFC 2047 (non-ASCII header text as base64 UTF-8 encoded words) and RFC 2045/2046
(bodies in quoted-printable or base64 with CRLF line ends, so no server needs 8BITMIME).

Bodies are always encoded, never sent as they are, so a boundary beginning with ``=_`` cannot
occur in them: quoted-printable writes ``=`` only before two hex digits or a line end, and
base64 has no ``_``.
"""

from __future__ import annotations

import os
import re
from binascii import b2a_base64, b2a_qp
from collections.abc import Sequence
from email.utils import formataddr, getaddresses

MAX_LINE = 78
"""The longest header line written (RFC 5322's SHOULD), unless one word is longer."""

_HEADER_NAME = re.compile(r"[!-9;-~]+")
_ENCODED_WORD = "=?utf-8?b?{}?="
# What "=?utf-8?b?" and "?=" take of a line, and of a continuation line after its space.
_WORD_OVERHEAD = 12
_CONTINUATION_ROOM = MAX_LINE - 1
_BASE64_LINE = 76


def header(name: str, value: str) -> str:
    """One unstructured header field (``Subject``, ``X-…``) with its CRLF, folded.

    ASCII text is written as given and folded at spaces; anything else (and ASCII that a
    reader would take for an encoded word) becomes encoded words.

    Args:
        name: the field name.
        value: the field's text, without line breaks.

    Returns:
        The field, ready to go in a header block.

    Raises:
        ValueError: the name is not a field name, or the value has a line break.

    Example:
        >>> header("Subject", "سلام دنیا")
        'Subject: =?utf-8?b?2LPZhNin2YUg2K/ZhtuM2Kc=?=\\r\\n'
        >>> for line in header("X-Note", "word " * 19 + "end").splitlines():
        ...     print(line)
        X-Note: word word word word word word word word word word word word word word
         word word word word word end
    """
    _check(name, value)
    if value.isascii() and "=?" not in value:
        return fold(name, value.split(" "))
    return fold(name, encoded_words(value, MAX_LINE - len(name) - 2))


def mailboxes(name: str, pairs: Sequence[tuple[str, str]]) -> str:
    """An address header field (``From``, ``To``, ``Reply-To``) with its CRLF, folded.

    Args:
        name: the field name.
        pairs: ``(display name, address)`` pairs; an empty display name writes the bare address.
            Display names may be in any script; addresses must be ASCII.

    Returns:
        The field, ready to go in a header block.

    Raises:
        ValueError: an address is not ASCII (that needs SMTPUTF8) or a value has a line break.

    Example:
        >>> mailboxes("From", [("فروشگاه سفر", "news@safar.example")])
        'From: =?utf-8?b?2YHYsdmI2LTar9in2Ycg2LPZgdix?= <news@safar.example>\\r\\n'
        >>> mailboxes("To", [("Ali, Sr.", "ali@example.com"), ("", "sara@example.com")])
        'To: "Ali, Sr." <ali@example.com>, sara@example.com\\r\\n'
    """
    atoms: list[str] = []
    for display, address in pairs:
        _check(name, display + address)
        if not address.isascii():
            raise ValueError(f"the address {address!r} is not ASCII (SMTPUTF8 is not supported)")
        if atoms:
            atoms[-1] += ","
        if not display:
            atoms.append(address)
        elif display.isascii() and "=?" not in display:
            atoms += formataddr((display, address)).split(" ")
        else:
            room = MAX_LINE - len(name) - 2 if not atoms else _CONTINUATION_ROOM
            atoms += encoded_words(display, room)
            atoms.append(f"<{address}>")
    return fold(name, atoms)


def addresses(name: str, value: str) -> str:
    """An address header field from its text (``a@x, Name <b@y>``), with its CRLF, folded.

    ASCII is written as given; display names in other scripts are encoded.

    Raises:
        ValueError: an address is not ASCII or the value has a line break.

    Example:
        >>> addresses("Reply-To", "پشتیبانی <help@safar.example>")
        'Reply-To: =?utf-8?b?2b7YtNiq24zYqNin2YbbjA==?= <help@safar.example>\\r\\n'
        >>> addresses("Reply-To", "a=?b@safar.example")  # an address, not an encoded word
        'Reply-To: a=?b@safar.example\\r\\n'
    """
    _check(name, value)
    if value.isascii():
        return fold(name, value.split(" "))
    return mailboxes(name, getaddresses([value]))


def fold(name: str, atoms: Sequence[str]) -> str:
    """A header field of ``atoms`` joined by single spaces, folded where a line would pass 78.

    A fold replaces a space with CRLF and that space, so unfolding gives back the exact text.
    It never comes before the first atom or before an empty one (a line of only whitespace is
    not allowed); an atom longer than a line stays whole.

    Example:
        >>> url = "<https://t.example/" + "u" * 60 + ">,"
        >>> fold("List-Unsubscribe", [url, "<mailto:u@x>"]).split("\\r\\n")[1:]
        [' <mailto:u@x>', '']
    """
    lines, line = [], f"{name}:"
    for index, atom in enumerate(atoms):
        if index and atom and len(line) + 1 + len(atom) > MAX_LINE:
            lines.append(line)
            line = ""
        line = f"{line} {atom}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def encoded_words(text: str, room: int = _CONTINUATION_ROOM) -> list[str]:
    """Text as base64 UTF-8 encoded words: the first fits ``room``, the rest a folded line.

    Every character, spaces included, sits inside a word: readers drop the whitespace between
    two encoded words, so the text decodes back exactly. A word ends on a character boundary.

    Args:
        text: the text to encode.
        room: the characters left on the line the first word starts.

    Example:
        >>> encoded_words("سلام دنیا")
        ['=?utf-8?b?2LPZhNin2YUg2K/ZhtuM2Kc=?=']
        >>> [len(word) for word in encoded_words("سلام " * 10, room=69)]
        [68, 76]
    """
    data = text.encode()
    words: list[str] = []
    start, limit = 0, _word_bytes(room)
    while start < len(data):
        end = start + limit
        # Back off to the start of a character: UTF-8 continuation bytes are 0b10xxxxxx.
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(_ENCODED_WORD.format(b2a_base64(data[start:end], newline=False).decode()))
        start, limit = end, _word_bytes(_CONTINUATION_ROOM)
    return words


def text_body(text: str) -> tuple[str, bytes]:
    """A text body with CRLF line ends, in the shorter of quoted-printable and base64.

    Mostly-ASCII text (HTML, English) stays readable as quoted-printable; Persian text is a
    third shorter in base64. Line ends are normalised to CRLF, with one after the last line.

    Args:
        text: the body.

    Returns:
        The ``Content-Transfer-Encoding`` and the encoded body.

    Example:
        >>> text_body("a = b\\n")
        ('quoted-printable', b'a =3D b\\r\\n')
        >>> text_body("سلام")
        ('base64', b'2LPZhNin2YUNCg==\\r\\n')
    """
    data = b"\r\n".join(text.encode().splitlines()) + b"\r\n"
    quoted = b2a_qp(data, istext=True)
    # Four base64 characters carry three bytes.
    if len(quoted) <= len(data) * 4 // 3:
        return "quoted-printable", quoted
    encoded = b2a_base64(data, newline=False)
    lines = [encoded[at : at + _BASE64_LINE] for at in range(0, len(encoded), _BASE64_LINE)]
    return "base64", b"\r\n".join(lines) + b"\r\n"


def message(headers: str, text: str, html: str | None = None) -> bytes:
    """A whole message: the header block, then a text body or a text and HTML alternative.

    Args:
        headers: header fields, each with its CRLF (from :func:`header` and
            :func:`mailboxes`); ``MIME-Version`` and ``Content-*`` are added here.
        text: the plain-text body.
        html: the HTML body; with it the message is ``multipart/alternative``.

    Returns:
        The message as it goes into SMTP ``DATA`` (before dot-stuffing).

    Example:
        >>> for line in message("Subject: hi\\r\\n", "Hello!").split(b"\\r\\n"):
        ...     print(line.decode())
        Subject: hi
        MIME-Version: 1.0
        Content-Type: text/plain; charset="utf-8"
        Content-Transfer-Encoding: quoted-printable
        <BLANKLINE>
        Hello!
        <BLANKLINE>
    """
    if html is None:
        return f"{headers}MIME-Version: 1.0\r\n{_part('plain', text)}".encode()
    # "=_" cannot occur in an encoded body (see the module's docstring); the random rest keeps
    # the boundary apart from those of a message this one is quoted or forwarded in.
    boundary = f"=_{os.urandom(12).hex()}"
    return (
        f"{headers}MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\n{_part('plain', text)}\r\n"
        f"--{boundary}\r\n{_part('html', html)}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _part(subtype: str, text: str) -> str:
    """``Content-Type``, ``Content-Transfer-Encoding``, a blank line and the encoded body."""
    encoding, body = text_body(text)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body.decode('ascii')}"
    )


def _word_bytes(room: int) -> int:
    """The UTF-8 bytes one encoded word of at most ``room`` characters carries (at least 4)."""
    return max((room - _WORD_OVERHEAD) // 4 * 3, 4)


def _check(name: str, value: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"not a header name: {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name} has a line break in its value")
