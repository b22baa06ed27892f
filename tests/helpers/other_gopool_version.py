"""A Dask worker preload: this worker's gopool reports another version."""

import gopool

gopool.__version__ = "0.0.0-other"
