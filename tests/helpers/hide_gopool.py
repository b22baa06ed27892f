"""A Dask worker preload: this worker cannot import gopool (as on a node
where it is not installed)."""

import sys

sys.modules["gopool"] = None
