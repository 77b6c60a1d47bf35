#!/usr/bin/env python3
"""Checks the links of README.md and docs/*.md.

Usage: python3 scripts/check_links.py [REPO_ROOT]   (default: the parent of this script's folder)

For every markdown link outside fenced code blocks and inline code -- inline `[text](target)`,
images `![alt](target)`, reference definitions `[label]: target` and reference uses
`[text][label]` -- it checks that:
- a relative target exists, relative to the file that holds the link (a target starting with `/`
  is relative to the repository root), and stays inside the repository;
- a `#anchor` (alone, or after a .md target) matches a heading of that file, with GitHub's slugs
  (lowercase; punctuation other than `-` and `_` removed; spaces to `-`; `-1`, `-2` ... for
  repeated headings) or an explicit `<a name="...">` / `id="..."`;
- a reference use has a definition in the same file.
http(s), mailto and other URL schemes are not checked. README.md must also be at most 200 lines.

Prints `file:line: broken link TARGET (reason)` for each problem and exits 1, or prints
`checked N links in M files` and exits 0.
"""

import os
import re
import sys
import unicodedata
from urllib.parse import unquote

README_MAX_LINES = 200

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:.+?)\1")
# [text](target) or ![alt](target); text may hold one level of nested brackets.
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*(<[^>]*>|[^()\s]*(?:\([^()\s]*\)[^()\s]*)*)"
                         r"(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
REF_DEF = re.compile(r"^ {0,3}\[([^\]]+)\]:\s*(<[^>]*>|\S+)")
# [text][label] or [label][]; not preceded by `]` (that is the tail of a longer construct).
REF_USE = re.compile(r"(?<![\]\\])!?\[((?:[^\[\]]|\[[^\[\]]*\])+)\]\[([^\]]*)\]")
ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:name|id)\s*=\s*[\"']([^\"']+)[\"']|\sid\s*=\s*[\"']([^\"']+)[\"']", re.I)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def strip_code(line):
    """The line with inline code spans blanked out (same length, so columns stay)."""
    return INLINE_CODE.sub(lambda m: " " * len(m.group(0)), line)


def prose_lines(text):
    """(line number, line) for every line outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
                continue
            yield number, line
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and not line.strip()[len(m.group(1)):].strip():
            fence = None


def heading_text_to_slug(text):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    out = []
    for ch in text:
        if ch in " -_" or ch.isalnum() or unicodedata.category(ch).startswith("M"):
            out.append(ch)
    return "".join(out).replace(" ", "-")


def anchors_of(text):
    """Every anchor a markdown file defines: heading slugs (with GitHub's -N suffixes) and HTML anchors."""
    anchors, seen = set(), {}
    previous = None
    for _, line in prose_lines(text):
        for m in HTML_ANCHOR.finditer(line):
            anchors.add(m.group(1) or m.group(2))
        heading = None
        m = ATX.match(line)
        if m:
            heading = m.group(2) or ""
        elif previous is not None and previous.strip() and SETEXT.match(line) and not ATX.match(previous):
            # A setext heading: "Title" underlined by === or --- (not a table rule or list).
            if not previous.lstrip().startswith(("|", "-", "*", "+", ">")):
                heading = previous.strip()
        previous = line
        if heading is None:
            continue
        slug = heading_text_to_slug(heading)
        if slug in seen:
            seen[slug] += 1
            anchors.add(f"{slug}-{seen[slug]}")
        else:
            seen[slug] = 0
            anchors.add(slug)
    return anchors


class Checker:
    def __init__(self, root):
        self.root = os.path.realpath(root)
        self.anchor_cache = {}
        self.problems = []
        self.links = 0

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def anchors(self, path):
        if path not in self.anchor_cache:
            with open(path, encoding="utf-8") as f:
                self.anchor_cache[path] = anchors_of(f.read())
        return self.anchor_cache[path]

    def problem(self, path, line, target, reason):
        self.problems.append((self.rel(path), line, f"{self.rel(path)}:{line}: broken link {target} ({reason})"))

    def check_target(self, path, line, target):
        self.links += 1
        raw = target
        if target.startswith("<") and target.endswith(">"):
            target = target[1:-1]
        if not target:
            self.problem(path, line, raw or "''", "empty target")
            return
        if SCHEME.match(target) or target.startswith("//"):
            return  # http(s), mailto and other URLs are not checked
        file_part, _, anchor = target.partition("#")
        file_part = file_part.split("?", 1)[0]
        if file_part:
            file_part = unquote(file_part)
            base = self.root if file_part.startswith("/") else os.path.dirname(path)
            resolved = os.path.realpath(os.path.join(base, file_part.lstrip("/")))
            if resolved != self.root and not resolved.startswith(self.root + os.sep):
                self.problem(path, line, raw, "outside the repository")
                return
            if not os.path.exists(resolved):
                self.problem(path, line, raw, f"no such file: {self.rel(resolved)}")
                return
        else:
            resolved = path
        if anchor:
            if os.path.isdir(resolved) or not resolved.lower().endswith((".md", ".markdown")):
                return  # anchors into source files (#L10) or folders are not checked
            if anchor.lower() not in {a.lower() for a in self.anchors(resolved)}:
                self.problem(path, line, raw, f"no heading #{anchor} in {self.rel(resolved)}")

    def check_file(self, path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        lines = list(prose_lines(text))
        definitions = {}
        for number, line in lines:
            m = REF_DEF.match(line)
            if m:
                definitions[m.group(1).strip().lower()] = (number, m.group(2))
        for label, (number, target) in definitions.items():
            self.check_target(path, number, target)
        for number, line in lines:
            if REF_DEF.match(line):
                continue
            code_free = strip_code(line)
            for m in INLINE_LINK.finditer(code_free):
                self.check_target(path, number, m.group(2))
            for m in REF_USE.finditer(INLINE_LINK.sub(lambda x: " " * len(x.group(0)), code_free)):
                label = (m.group(2) or m.group(1)).strip().lower()
                self.links += 1
                if label not in definitions:
                    self.problem(path, number, f"[{m.group(1)}][{m.group(2)}]", "no definition of this reference")


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1] in ("-h", "--help")):
        print(__doc__.strip())
        return 0 if len(argv) == 2 else 2
    root = argv[1] if len(argv) == 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    checker = Checker(root)
    files = []
    readme = os.path.join(checker.root, "README.md")
    if os.path.isfile(readme):
        files.append(readme)
    else:
        checker.problems.append(("README.md", 0, "README.md:1: missing"))
    docs = os.path.join(checker.root, "docs")
    if os.path.isdir(docs):
        files += sorted(os.path.join(docs, n) for n in os.listdir(docs) if n.endswith(".md"))
    for path in files:
        checker.check_file(path)
    if os.path.isfile(readme):
        with open(readme, encoding="utf-8") as f:
            count = len(f.read().splitlines())
        if count > README_MAX_LINES:
            checker.problems.append(("README.md", README_MAX_LINES + 1,
                                     f"README.md:{README_MAX_LINES + 1}: README.md has {count} lines, "
                                     f"more than {README_MAX_LINES}"))
    for _, _, message in sorted(checker.problems, key=lambda p: (p[0] != "README.md", p[0], p[1])):
        print(message)
    if checker.problems:
        return 1
    print(f"checked {checker.links} links in {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
