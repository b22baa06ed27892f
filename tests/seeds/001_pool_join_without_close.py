# Seed document 001 (001_6af0d681151b3044.txt, SuperFastPython: joining a
# process pool), example "Error When Joining a Process Pool Without Shutting
# Down" (complete example 3 of 4). Only the import is swapped:
#   from multiprocessing.pool import Pool -> from gopool.pool import Pool
# The document says it prints (on stderr, exit status non-zero):
#   Traceback (most recent call last):
#   ...
#   ValueError: Pool is still running
# SuperFastPython.com
# example of joining a process pool without shutting it down
from time import sleep
from gopool.pool import Pool

# task executed in a worker process
def task():
    # report a message
    print(f'Task executing', flush=True)
    # block for a moment
    sleep(1)
    # report a message
    print(f'Task done', flush=True)

# protect the entry point
if __name__ == '__main__':
    # create and configure the process pool
    pool = Pool()
    # issue a task to the process pool
    pool.apply_async(task)
    # wait a moment
    pool.join()
    # report a message
    print(f'Main done', flush=True)
