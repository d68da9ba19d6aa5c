"""Every relative link and image in README.md and docs/*.md points at a file that exists (and, for a link
into a markdown file with ``#anchor``, at one of its headings). Fast: reads text only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_LINK = re.compile(r"<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def documents(repo: Path = REPO) -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def link_targets(text: str) -> list[str]:
    """Targets of the markdown links, images and HTML ``src``/``href`` attributes outside code."""
    text = INLINE_CODE.sub("", FENCE.sub("", text))
    return MARKDOWN_LINK.findall(text) + HTML_LINK.findall(text)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of the headings of a markdown file."""
    text = FENCE.sub("", path.read_text())
    return {heading_anchor(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)}


def broken_links(document: Path, repo: Path = REPO) -> list[str]:
    """``"target (why)"`` for every relative link of ``document`` that does not resolve."""
    problems = []
    for target in link_targets(document.read_text()):
        if target.startswith(EXTERNAL):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        if path_part and not resolved.exists():
            shown = resolved.relative_to(repo) if resolved.is_relative_to(repo) else resolved
            problems.append(f"{target} (no such file: {shown})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target} (no heading with anchor #{anchor})")
    return problems


@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_image_resolves(document):
    assert broken_links(document) == []


def test_the_link_pattern_still_finds_the_readmes_links():
    targets = link_targets((REPO / "README.md").read_text())
    assert {"docs/overview.png", "docs/img/nb01.png", "docs/pretraining.md"} <= set(targets)


def test_the_readme_links_every_docs_page():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in link_targets((REPO / "README.md").read_text())}
    pages = set(documents()[1:])
    assert pages <= linked, f"docs pages the README does not link: {sorted(p.name for p in pages - linked)}"


def test_the_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Some `code` heading\n")
    (tmp_path / "img.png").write_bytes(b"")
    readme = tmp_path / "README.md"
    readme.write_text(
        "[ok](docs/page.md) [ok anchor](docs/page.md#some-code-heading) ![ok](img.png) "
        '<img src="img.png" width="9"> [web](https://example.org/x) [self](#top)\n'
        "[missing](docs/nope.md) ![missing](docs/img/none.png) <img src='gone.png'> "
        "[bad anchor](docs/page.md#no-such-heading)\n"
        "```\n[in code](not/checked.md)\n```\n`[inline](not/checked.md)`\n# Top\n")
    found = broken_links(readme, tmp_path)
    assert [f.split(" ")[0] for f in found] == [
        "docs/nope.md", "docs/img/none.png", "docs/page.md#no-such-heading", "gone.png"]
