"""``multiprocessing.managers`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.managers is multiprocessing.managers``)."""

import sys

import multiprocessing.managers

sys.modules[__name__] = multiprocessing.managers
