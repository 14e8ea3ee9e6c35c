"""Generate the Python modules for our Hubble API subset from `proto/`.

Usage: ``python scripts/gen_proto.py [OUT_DIR]`` (default: the package's ``api/`` directory).
protoc writes absolute imports such as ``from flow import flow_pb2``; they are rewritten to
``cilium_node_exporter.api.flow`` so that the generated code lives inside our package.
The test suite regenerates into a temporary directory and fails when the committed files differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "exporter" / "cilium_node_exporter" / "api"
PACKAGES = ("flow", "relay", "observer")
_IMPORT = re.compile(r"^from (flow|relay|observer)( import |\.)(\w+_pb2)", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    """Run protoc for every package into ``out`` and return the files written."""
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    out.mkdir(parents=True, exist_ok=True)
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("*/*.proto"))
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    written = []
    (out / "__init__.py").write_text('"""Generated Hubble API messages (see proto/ and scripts/gen_proto.py)."""\n')
    written.append(out / "__init__.py")
    for pkg in PACKAGES:
        (out / pkg / "__init__.py").write_text("")
        written.append(out / pkg / "__init__.py")
        for f in sorted((out / pkg).glob("*_pb2.py*")):
            f.write_text(_IMPORT.sub(r"from cilium_node_exporter.api.\1\2\3", f.read_text()))
            written.append(f)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    for path in generate(target):
        print(path.relative_to(target.parent) if path.is_relative_to(target.parent) else path)
