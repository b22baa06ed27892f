"""Types of ``gopool.util``, which is ``multiprocessing.util`` itself."""

from multiprocessing.util import *
from multiprocessing.util import (
    NOTSET as NOTSET,
    DEBUG as DEBUG,
    INFO as INFO,
    LOGGER_NAME as LOGGER_NAME,
    DEFAULT_LOGGING_FORMAT as DEFAULT_LOGGING_FORMAT,
    is_abstract_socket_namespace as is_abstract_socket_namespace,
    abstract_sockets_supported as abstract_sockets_supported,
    MAXFD as MAXFD,
    spawnv_passfds as spawnv_passfds,
)
