"""Every "DESIGN §n" citation resolves: docs/design.md (DESIGN §1) has a section n."""

from __future__ import annotations

import re

from conftest import REPO

CITATION = re.compile(r"DESIGN §(\d+)(?:\s*[-–]\s*(\d+))?")


def test_every_design_citation_names_a_section_of_docs_design() -> None:
    design = (REPO / "docs" / "design.md").read_text()
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", design, re.MULTILINE)}
    assert sections == set(range(1, max(sections) + 1)), sections
    files = [p for pattern in ("cyclelib/**/*.py", "tests/*.py", "benchmarks/*.py",
                               "notebooks/*.ipynb", "README.md", "docs/*.py")
             for p in REPO.glob(pattern)]
    cited = 0
    for path in files:
        for first, last in CITATION.findall(path.read_text()):
            for n in range(int(first), int(last or first) + 1):
                assert n in sections, f"{path.name} cites DESIGN §{n}, which docs/design.md lacks"
                cited += 1
    assert cited > 100  # the citations are found at all


def test_notebooks_link_their_design_citations() -> None:
    """In a notebook each citation is a link to follow: [DESIGN §n](../docs/design.md#...)."""
    anchors = {m.group(1): "-".join(re.sub(r"[^\w\s-]", "", m.group(0)[3:]).lower().split())
               for m in re.finditer(r"^## (\d+)\. .*$", (REPO / "docs" / "design.md").read_text(),
                                    re.MULTILINE)}
    for path in sorted(REPO.glob("notebooks/*.ipynb")):
        text = path.read_text()
        for n, anchor in re.findall(r"\[DESIGN §(\d+)\]\(\.\./docs/design\.md#([\w-]+)\)", text):
            assert anchors[n] == anchor, (path.name, n, anchor)
        bare = re.findall(r"(?<!\[)DESIGN §\d+", text)
        assert not bare, f"{path.name}: unlinked {bare}"
