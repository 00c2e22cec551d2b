"""``python -m etagger.ops [OUT]``: builds etagger's op library (default: beside the package)."""

import sys
from pathlib import Path

from etagger.ops import LIBRARY, build

print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else LIBRARY))
