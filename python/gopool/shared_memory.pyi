"""Types of ``gopool.shared_memory``, which is ``multiprocessing.shared_memory`` itself."""

from multiprocessing.shared_memory import *
