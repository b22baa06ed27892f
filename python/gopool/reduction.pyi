"""Types of ``gopool.reduction``, which is ``multiprocessing.reduction`` itself."""

from multiprocessing.reduction import *
from multiprocessing.reduction import (
    HAVE_SEND_HANDLE as HAVE_SEND_HANDLE,
    AbstractReducer as AbstractReducer,
)
