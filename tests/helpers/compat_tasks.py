"""Targets for the drop-in tests (test_compat.py): children and pool
workers import these by reference. Shared objects reach a pool's tasks
through ``keep`` (the initializer), as real programs do."""

import multiprocessing
import os
import sys
import time

KEPT = None  # what ``keep`` received, in a pool worker

# Set at run time by a test that forks (never by pickle): a child made by a
# bare fork sees it, a child that gopool starts does not.
INHERITED = None


def keep(*args):
    """A pool initializer: remember the shared objects for the tasks."""
    global KEPT
    KEPT = args


def kept_types(_=None):
    return [type(obj).__name__ for obj in KEPT]


# -- Value / Array / RawValue / RawArray --------------------------------------


def add_to_value(value, times):
    for _ in range(times):
        with value.get_lock():
            value.value += 1


def pool_add_to_value(times):
    add_to_value(KEPT[0], times)
    return os.getpid()


def fill_array(array, start):
    with array.get_lock():
        for i in range(len(array)):
            array[i] = start + i


def pool_fill_array(start):
    fill_array(KEPT[0], start)
    return list(KEPT[0][:])


def set_raw_value(raw, value):
    raw.value = value


def pool_set_raw_value(value):
    set_raw_value(KEPT[0], value)
    return KEPT[0].value


def fill_raw_array(raw, start):
    for i in range(len(raw)):
        raw[i] = start + i


def pool_fill_raw_array(start):
    fill_raw_array(KEPT[0], start)
    return list(KEPT[0][:])


# -- Pipe ---------------------------------------------------------------------


def echo_upper(conn):
    """Answer each string received with its upper-case version, until None."""
    while True:
        message = conn.recv()
        if message is None:
            break
        conn.send(message.upper())
    conn.close()


def send_to(conn, message):
    conn.send(message)
    conn.close()


def pool_send(message):
    KEPT[0].send((os.getpid(), message))
    return message


def pool_echo(message):
    conn = KEPT[0]
    conn.send(message)
    return conn.recv()


def answer_through_received_connection(queue):
    """Take a connection from queue (pickled for a running process), answer
    on it."""
    conn = queue.get(timeout=60)
    conn.send(("via queue", os.getpid()))
    conn.close()


# -- Manager ------------------------------------------------------------------


def fill_proxies(shared_dict, shared_list, key):
    shared_dict[key] = os.getpid()
    shared_list.append(key)


def pool_fill_proxies(key):
    fill_proxies(KEPT[0], KEPT[1], key)
    return key


def set_proxied_event(event):
    """A task given a Manager's proxy as its argument: it must authenticate."""
    event.set()
    return event.is_set()


def worker_preparation(_=None):
    """What a pool worker took from its parent."""
    current = multiprocessing.current_process()
    return bytes(current.authkey), list(sys.argv), current.name, os.getpid()


def manager_lock_and_value(lock, value, times):
    for _ in range(times):
        with lock:
            value.value += 1


# -- shared_memory ------------------------------------------------------------


def write_shared_memory(name, data):
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name)
    try:
        shm.buf[: len(data)] = data
    finally:
        shm.close()


# -- contexts -----------------------------------------------------------------


def square(x):
    return x * x


def getpid(_=None):
    return os.getpid()


def exit_abruptly(code):
    os._exit(code)


def put_pid(queue):
    queue.put(os.getpid())


def put_items(queue, first, count):
    for i in range(first, first + count):
        queue.put(i)


def report_start_method(queue):
    import gopool

    queue.put(gopool.get_start_method(allow_none=True))


def report_inherited(queue):
    """Put what this process sees of INHERITED (only a fork carries it)."""
    queue.put(report_inherited_value())


def report_inherited_value(_=None):
    value = INHERITED
    return None if value is None else (type(value[0]).__name__, value[1])


def use_gopool_queue(queue, results):
    """In a forked child: try a gopool queue inherited from the parent."""
    try:
        queue.put(1)
    except BaseException as exc:
        results.put((type(exc).__name__, str(exc)[:40]))
    else:
        results.put(("ok", ""))


def sleep_forever(_=None):
    time.sleep(3600)


def receive_one(conn):
    """Receive one object (pickled by reference by the stdlib)."""
    obj = conn.recv()
    print("received", type(obj).__name__, flush=True)


def attach_shared_memory(name, results):
    """Attach to a segment by name and say whether this process had to
    start a resource tracker of its own (it then removes the segment when
    this process exits)."""
    from multiprocessing import resource_tracker, shared_memory

    shm = shared_memory.SharedMemory(name)
    shm.close()
    results.put(resource_tracker._resource_tracker._pid)


def pool_attach_shared_memory(name):
    from multiprocessing import resource_tracker, shared_memory

    shm = shared_memory.SharedMemory(name)
    shm.close()
    return resource_tracker._resource_tracker._pid


def take_token(x):
    """Wait for a token on the queue given to ``keep``, then return x."""
    KEPT[0].get(timeout=60)
    return x


def fail_after_token(x):
    KEPT[0].get(timeout=60)
    raise ValueError(x)


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def put_parent_pid(queue):
    queue.put(os.getppid())
