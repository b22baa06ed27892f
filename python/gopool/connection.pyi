"""Types of ``gopool.connection``, which is ``multiprocessing.connection`` itself."""

from multiprocessing.connection import *
from multiprocessing.connection import (
    Connection as Connection,
    answer_challenge as answer_challenge,
)
