"""``multiprocessing.util`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.util is multiprocessing.util``)."""

import sys

import multiprocessing.util

sys.modules[__name__] = multiprocessing.util
