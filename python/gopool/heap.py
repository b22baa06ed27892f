"""``multiprocessing.heap`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.heap is multiprocessing.heap``)."""

import sys

import multiprocessing.heap

sys.modules[__name__] = multiprocessing.heap
