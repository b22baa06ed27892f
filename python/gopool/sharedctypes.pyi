"""Types of ``gopool.sharedctypes``, which is ``multiprocessing.sharedctypes`` itself."""

from multiprocessing.sharedctypes import *
from multiprocessing.sharedctypes import (
    SynchronizedBase as SynchronizedBase,
    Synchronized as Synchronized,
    SynchronizedArray as SynchronizedArray,
    SynchronizedString as SynchronizedString,
)
