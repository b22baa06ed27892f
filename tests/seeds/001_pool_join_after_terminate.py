# Seed document 001 (001_6af0d681151b3044.txt, SuperFastPython: joining a
# process pool), example "Example of Joining a Process Pool After Terminate"
# (complete example 2 of 4). Only the imports are swapped:
#   from multiprocessing.pool import Pool -> from gopool.pool import Pool
#   from multiprocessing import active_children -> from gopool import active_children
# (active_children is imported but unused, as in the document.)
# The document says it prints (the task "does not get a chance to print the
# first message" in its run, and never finishes):
#   Main done
# SuperFastPython.com
# example of joining a process pool after calling terminate
from time import sleep
from gopool.pool import Pool
from gopool import active_children

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
    # terminate the process pool
    pool.terminate()
    # wait a moment
    pool.join()
    # report a message
    print(f'Main done', flush=True)
