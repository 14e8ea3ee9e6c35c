"""``python -m cilium_node_exporter``."""

import sys

from cilium_node_exporter.cli import main

sys.exit(main())
