"""``multiprocessing.dummy.connection`` itself, under gopool's name."""

import sys

import multiprocessing.dummy.connection

sys.modules[__name__] = multiprocessing.dummy.connection
