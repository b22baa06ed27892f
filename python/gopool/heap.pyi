"""Types of ``gopool.heap``, which is ``multiprocessing.heap`` itself."""

from multiprocessing.heap import *
from multiprocessing.heap import (
    Arena as Arena,
    Heap as Heap,
)
