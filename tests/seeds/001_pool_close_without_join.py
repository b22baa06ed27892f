# Seed document 001 (001_6af0d681151b3044.txt, SuperFastPython: joining a
# process pool), example "What if We Don't Join the Process Pool"
# (complete example 4 of 4). Only the import is swapped:
#   from multiprocessing.pool import Pool -> from gopool.pool import Pool
# The document says it prints (the pool is terminated when the main process
# exits, so the issued task never finishes):
#   Main done
# SuperFastPython.com
# example of not joining a process pool after calling close
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
    # report a message
    print(f'Main done', flush=True)
