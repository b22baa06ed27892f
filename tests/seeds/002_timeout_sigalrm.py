# Seed document 002 (002_2de926642aaa31b6.txt, LabEx: how to cancel Python
# multiprocessing tasks), example "Implementing Intelligent Cancellation"
# (timeout-based cancellation, complete example 6 of 8). Indentation
# reconstructed (the page lost it; whether the second p.join() is inside the
# `if p.is_alive():` block is ambiguous, it makes no difference). Only the
# import is swapped:
#   from multiprocessing import Process, Queue -> from gopool import Process, Queue
# The document does not show the output; it means to print
#   Task cancelled
# (the child's SIGALRM after 5 s interrupts its 10 s sleep). But the parent's
# join(timeout=5) expires at about the same moment, and when it expires first
# the child is terminated before it puts anything, and result_queue.get()
# blocks for ever (see tests/seeds/expected.json).
from gopool import Process, Queue
import time
import signal
def worker_task(result_queue, timeout=5):
    def handler(signum, frame):
        raise TimeoutError("Task exceeded time limit")
    signal.signal(signal.SIGALRM, handler)
    signal.alarm(timeout)
    try:
        ## Simulated long-running task
        time.sleep(10)
        result_queue.put("Task completed")
    except TimeoutError:
        result_queue.put("Task cancelled")
    finally:
        signal.alarm(0)
def cancel_task():
    result_queue = Queue()
    p = Process(target=worker_task, args=(result_queue,))
    p.start()
    p.join(timeout=5)
    if p.is_alive():
        p.terminate()
        p.join()
    return result_queue.get()
if __name__ == '__main__':
    result = cancel_task()
    print(result)
