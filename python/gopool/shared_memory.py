"""``multiprocessing.shared_memory`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.shared_memory is multiprocessing.shared_memory``)."""

import sys

import multiprocessing.shared_memory

sys.modules[__name__] = multiprocessing.shared_memory
