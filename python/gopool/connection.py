"""``multiprocessing.connection`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.connection is multiprocessing.connection``)."""

import sys

import multiprocessing.connection

sys.modules[__name__] = multiprocessing.connection
