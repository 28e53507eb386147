"""What the person wrote this time, out of a mail body: quoted history, signatures and HTML removed.

Mail clients append the earlier thread to every reply; the agent already has that history in its
conversation, so only the new text is sent. Finding where the history starts is done by two
maintained libraries (the evaluation is in docs/setup/email.md): quotequail (quote and
forward structure, reply below the quote) and mail-parser-reply (attribution lines and header
blocks in many languages). What stays here is the glue: forwards, bottom-posting, signatures,
and two language-independent shapes the libraries miss (HTML to text is in ``html.py``).
"""

from __future__ import annotations

import re

import quotequail
from mailparser_reply import EmailMessage as _ReplyParser
from mailparser_reply.constants import MAIL_LANGUAGES

from channels.email.html import html_to_text

_HEADERS = _ReplyParser("", languages=[lang for lang in MAIL_LANGUAGES if lang != "david"]).HEADER_REGEX
# "<date> <time>, Name <a@b>:" in whatever language, wrapped over up to three lines (Gmail, Yandex,
# Android, Zoho's "---- On … wrote ----"): a date or time, an address, and a colon or dashes at the end
# (or an address cut by the wrap, whose ">:" the next client then quoted).
_ATTRIBUTION = re.compile(r"(\d{4}|\d:\d\d|\d/\d+/\d).*(@.*(:|\s-{2,})|<\S+@\S+)\s*$", re.DOTALL)
# What is left of a cut separator: "-----", "____", "-------- Oprindelig besked --------".
_SEPARATOR = re.compile(r"^\s*([-_=*]+|-{2,}[^-]*-{2,})?\s*$")
# Outlook's rule above a header block ("Label: value" in the writer's language, then the old mail).
_RULE = re.compile(r"^\s*_{30,}\s*$")
_LABEL = re.compile(r"^\s*\*?[^\W\d_][^:\n]{0,30}:")
_SIGNATURE = re.compile(r"^--\s?$")
# "Sent from my iPhone", "Get Outlook for iOS<https://…>", "Envoyé de mon iPad": short, no sentence.
_MOBILE = re.compile(
    r"^(sent from|sent with|get outlook for|envoyé (de|depuis|à partir de)|gesendet von|enviado desde|"
    r"inviato da|verzonden (met|vanaf)|sendt fra|skickat från)\b[^,;!?]{0,40}$", re.IGNORECASE)
#: how much of a body is read: the agent gets 16,000 characters at most, and the libraries' patterns
#: slow down steeply on long inputs (a 20 kB line starting with "On " takes seconds)
MAX_LINES, MAX_CHARS, MAX_HTML, LONG_LINE = 2_000, 64_000, 128_000, 1_000
_FORWARD_SUBJECT = re.compile(r"^\s*(fwd?|fw|wg|tr|rv|enc|vs|vb|doorst|pd|fs|пересл|转发|転送)\s*:", re.IGNORECASE)


def mail_text(body: str, *, html: bool, subject: str = "") -> str:
    """The new text of one body part; a forward keeps the forwarded content under a line saying so."""
    body = body[:MAX_HTML] if html else "\n".join(body[:MAX_CHARS].splitlines()[:MAX_LINES])
    found = quotequail.unwrap_html(body) if html else quotequail.unwrap(body)
    key = "html" if html else "text"

    def text(part: str, keep_quotes: bool = False) -> str:
        return html_to_text(part, keep_quotes) if html else part

    if found is None:
        return new_text(text(body))
    top = new_text(text(found.get(f"{key}_top", "")))
    if found["type"] == "forward":
        if _FORWARD_SUBJECT.match(subject) or not top:
            origin = ", ".join(f"{k}: {found[k]}" for k in ("from", "subject") if found.get(k))
            note = f"---- Forwarded message ({origin}) ----" if origin else "---- Forwarded message ----"
            return "\n\n".join(p for p in (top, note, text(found.get(key, ""), True).strip()) if p)
        return top
    # Nothing but a greeting above the quote: the answer was written below it (bottom-posting).
    if not top or (len(top.split()) <= 3 and not top.endswith((".", "?"))):
        return "\n\n".join(p for p in (top, new_text(text(found.get(f"{key}_bottom", "")))) if p)
    return top


def new_text(text: str) -> str:
    """Plain text without quoted lines, quoted history, signature and mobile footer."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:MAX_LINES]]
    probe = "\n".join("" if len(line) > LONG_LINE else line for line in lines)
    if header := _HEADERS.search(probe):
        # The history starts there, unless nothing came before it (then the answer is below it).
        first = probe.count("\n", 0, header.start() + probe.startswith("\n", header.start()))
        last = probe.count("\n", 0, header.end())
        lines = lines[:first] if any(line.strip() for line in lines[:first]) else lines[last + 1 :]
    kept: list[str] = []
    resume = 0
    for i, line in enumerate(lines):
        if i < resume or line.lstrip().startswith(">"):
            continue
        words = len(re.sub(r"<[^>]*>", "", line).split())
        if _SIGNATURE.match(line) or (_MOBILE.match(line.strip()) and words <= 8):
            break
        if _RULE.match(line) and any(_LABEL.match(nxt) for nxt in lines[i + 1 : i + 4] if nxt.strip()):
            break
        if (end := _attribution_end(lines, i)) is not None:
            if any(k.strip() for k in kept):
                break
            resume = end + 1  # nothing above it: the answer is below (bottom-posting)
            continue
        kept.append(line)
    while kept and _SEPARATOR.match(kept[-1]):
        kept.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _attribution_end(lines: list[str], i: int) -> int | None:
    """The last line of an attribution that starts at line ``i`` (wrapped over up to 3 lines), if any."""
    if not re.search(r"\d", lines[i]):
        return None
    wrapped = [j for j in range(i, min(i + 3, len(lines))) if lines[j].strip()]
    for n in range(1, len(wrapped) + 1):
        if _ATTRIBUTION.search(" ".join(lines[j] for j in wrapped[:n])[:400]):
            return wrapped[n - 1]
    return None
