"""``multiprocessing.reduction`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.reduction is multiprocessing.reduction``)."""

import sys

import multiprocessing.reduction

sys.modules[__name__] = multiprocessing.reduction
