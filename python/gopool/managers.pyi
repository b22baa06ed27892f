"""Types of ``gopool.managers``, which is ``multiprocessing.managers`` itself."""

from multiprocessing.managers import *
from multiprocessing.managers import (
    Namespace as Namespace,
    ValueProxy as ValueProxy,
    BaseListProxy as BaseListProxy,
    ListProxy as ListProxy,
    DictProxy as DictProxy,
    Server as Server,
    RemoteError as RemoteError,
    SharedMemoryServer as SharedMemoryServer,
)
