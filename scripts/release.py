"""One version for everything a release publishes, and its release notes.

The version lives in places that cannot read each other: the exporter's ``__version__`` (the wheel's
version, ``--version``, the image tag), the simulator's ``__version__``, the chart's ``version`` and
``appVersion`` (static YAML, so that ``helm install ./helm/cilium-node-exporter`` works from a checkout),
and the versions in the deploy guide's and the README's commands. This script is the only writer of them
all; a test keeps them equal on every change, and the release workflow refuses a tag that differs from
them or has no CHANGELOG section.

    python scripts/release.py version              # print the version; exit 1 if the places differ
    python scripts/release.py set 0.2.0            # write it everywhere; CHANGELOG "Unreleased" -> "0.2.0"
    python scripts/release.py check-tag v0.2.0 [--image ghcr.io/OWNER/cilium-node-exporter]
    python scripts/release.py notes 0.2.0          # that version's CHANGELOG section (GitHub release notes)
"""

from __future__ import annotations

import argparse
import datetime
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHANGELOG = REPO / "CHANGELOG.md"
CHART = REPO / "helm" / "cilium-node-exporter" / "Chart.yaml"
VALUES = REPO / "helm" / "cilium-node-exporter" / "values.yaml"
# (file, pattern whose group 2 is the version): every place a version is written.
PLACES = {
    "exporter __version__": (REPO / "exporter" / "cilium_node_exporter" / "__init__.py",
                             r'^(__version__ = ")([^"]+)(")$'),
    "simulator __version__": (REPO / "simulator" / "cilium_node_simulator" / "__init__.py",
                              r'^(__version__ = ")([^"]+)(")$'),
    "chart version": (CHART, r"^(version: )(\S+)()$"),
    "chart appVersion": (CHART, r'^(appVersion: ")([^"]+)(")$'),
    "deploy guide VERSION": (REPO / "docs" / "deploy.md", r"^(VERSION=)(\S+)()$"),
    "README helm install --version": (REPO / "README.md", r"^(  --version )(\S+)( -n kube-system .*)$"),
}
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")
UNRELEASED = "## [Unreleased]"


def versions() -> dict[str, str]:
    """The version written in each place (an error if a place has none or several)."""
    found = {}
    for name, (path, pattern) in PLACES.items():
        matches = re.findall(pattern, path.read_text(), re.M)
        if len(matches) != 1:
            raise SystemExit(f"{path.relative_to(REPO)}: expected one {name}, found {len(matches)}")
        found[name] = matches[0][1]
    return found


def current() -> str:
    found = versions()
    if len(set(found.values())) != 1:
        raise SystemExit("versions differ: " + ", ".join(f"{k} {v}" for k, v in found.items())
                         + " (python scripts/release.py set X.Y.Z writes them all)")
    return next(iter(found.values()))


def notes(version: str) -> str:
    """The body of the CHANGELOG section ``## [version] - date``."""
    text = CHANGELOG.read_text()
    match = re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}\n(.*?)(?=^## |^\[|\Z)", text,
                      re.M | re.S)
    if not match or not match.group(1).strip():
        raise SystemExit(f"CHANGELOG.md has no section '## [{version}] - YYYY-MM-DD' with content")
    return match.group(1).strip() + "\n"


def set_version(version: str, today: datetime.date) -> None:
    if not SEMVER.match(version):
        raise SystemExit(f"{version!r} is not a semantic version (X.Y.Z)")
    for path, pattern in PLACES.values():
        path.write_text(re.sub(pattern, rf"\g<1>{version}\g<3>", path.read_text(), count=1, flags=re.M))
    text = CHANGELOG.read_text()
    if f"## [{version}]" not in text:
        if UNRELEASED not in text:
            raise SystemExit(f"CHANGELOG.md has no '{UNRELEASED}' section to release")
        text = text.replace(UNRELEASED, f"{UNRELEASED}\n\n## [{version}] - {today.isoformat()}", 1)
        # Keep a Changelog's links: Unreleased compares with the new tag, the version links to its release.
        link = re.search(r"^\[Unreleased\]: (https://github\.com/[^/\s]+/[^/\s]+)/\S*$", text, re.M)
        if not link:
            raise SystemExit("CHANGELOG.md has no '[Unreleased]: https://github.com/OWNER/REPO/...' link")
        base = link.group(1)
        text = text.replace(link.group(0), f"[Unreleased]: {base}/compare/v{version}...HEAD\n"
                                           f"[{version}]: {base}/releases/tag/v{version}", 1)
        CHANGELOG.write_text(text)


def image_repository() -> str:
    match = re.search(r"^image:\n  repository: (\S+)$", VALUES.read_text(), re.M)
    if not match:
        raise SystemExit("helm/cilium-node-exporter/values.yaml: no image.repository")
    return match.group(1)


def check_tag(tag: str, image: str | None) -> str:
    """The release gate: the tag is v<version>, the CHANGELOG has its notes, the chart points at the image."""
    version = current()
    if tag != f"v{version}":
        raise SystemExit(f"tag {tag} does not match the version {version} (python scripts/release.py set ...)")
    notes(version)
    if image and image_repository() != image:
        raise SystemExit(f"the chart's image.repository is {image_repository()}, the release pushes {image}")
    return version


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version; exit 1 if the places differ")
    set_cmd = sub.add_parser("set", help="write VERSION everywhere and date the Unreleased CHANGELOG section")
    set_cmd.add_argument("version")
    check = sub.add_parser("check-tag", help="the release workflow's gate")
    check.add_argument("tag")
    check.add_argument("--image", help="the image repository the release pushes to")
    notes_cmd = sub.add_parser("notes", help="print VERSION's CHANGELOG section")
    notes_cmd.add_argument("version")
    args = parser.parse_args(argv)
    if args.command == "version":
        print(current())
    elif args.command == "set":
        set_version(args.version, datetime.date.today())
        print(current())
    elif args.command == "check-tag":
        print(check_tag(args.tag, args.image))
    else:
        sys.stdout.write(notes(args.version))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
