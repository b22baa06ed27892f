# Seed document 001 (001_6af0d681151b3044.txt, SuperFastPython: joining a
# process pool), example "Example of Joining a Process Pool After Close"
# (complete example 1 of 4). Only the import is swapped:
#   from multiprocessing.pool import Pool -> from gopool.pool import Pool
# The document says it prints:
#   Task executing
#   Task done
#   Main done
# SuperFastPython.com
# example of joining a process pool after calling close
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
    # close the process pool
    pool.close()
    # wait a moment
    pool.join()
    # report a message
    print(f'Main done', flush=True)
