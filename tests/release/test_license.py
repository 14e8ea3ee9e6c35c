"""The licence the packages declare (Apache-2.0) ships as its full text, in the repository and in every wheel."""

from __future__ import annotations

import os
import re
import tomllib

from tests.support.paths import REPO


def test_license_is_the_apache_2_text() -> None:
    text = (REPO / "LICENSE").read_text()
    assert re.match(r"\s*Apache License\n\s*Version 2\.0, January 2004\n\s*http://www\.apache\.org/licenses/\n", text)
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX: How to apply the Apache License" in text
    assert len(re.findall(r"^\s+\d\. [A-Z]", text, re.M)) == 9  # sections 1 to 9


def test_every_distribution_declares_and_carries_it() -> None:
    """setuptools puts LICENSE* of a project's root into its wheel (PEP 639 default license-files): the simulator's
    root is simulator/, so it holds a link to the one text."""
    for root in (REPO, REPO / "simulator"):
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        assert project["license"] == "Apache-2.0", root
        assert (root / "LICENSE").read_text() == (REPO / "LICENSE").read_text(), root
    assert os.readlink(REPO / "simulator" / "LICENSE") == "../LICENSE"
