"""``multiprocessing.sharedctypes`` itself, under gopool's name: gopool uses
the stdlib's module as it is (``gopool.sharedctypes is multiprocessing.sharedctypes``)."""

import sys

import multiprocessing.sharedctypes

sys.modules[__name__] = multiprocessing.sharedctypes
