"""Types of ``gopool.dummy.connection``, which is ``multiprocessing.dummy.connection`` itself."""

from multiprocessing.dummy.connection import *
from multiprocessing.dummy.connection import (
    families as families,
    Connection as Connection,
)
