# Seed document 004 (004_509514dd7cbea019.txt, SuperFastPython: ThreadPool
# does not support terminate()), example "Example of ThreadPool Not
# Terminating" (the only complete example). Only the import is swapped:
#   from multiprocessing.pool import ThreadPool -> from gopool.pool import ThreadPool
# The document says it prints (on an 8-CPU machine; thread idents vary; the
# page lost the leading tab of the thread lines):
#   main reporting all threads:
#   <_MainThread(MainThread, started 4460346880)>
#   <DummyProcess(Thread-1, started daemon 123145354792960)>
#   ... (8 DummyProcess worker threads, Thread-1 .. Thread-8)
#   <Thread(Thread-9, started daemon 123145489108992)>
#   <Thread(Thread-10, started daemon 123145505898496)>
#   <Thread(Thread-11, started daemon 123145522688000)>
#   Main is waiting a moment...
#   Main is terminating the pool
#   Main is waiting a moment...
#   Main reporting all threads:
#   <_MainThread(MainThread, started 4460346880)>
#   <DummyProcess(Thread-1, started daemon 123145354792960)>
#   Main joining the pool...
#   This is coming from another thread
#   Main done.
# SuperFastPython.com
# example of thread workers not being terminated
from time import sleep
from gopool.pool import ThreadPool
import threading

# task function executed in a new thread
def task():
    # block for a moment
    sleep(10)
    # display a message
    print('This is coming from another thread')

# protect the entry point
if __name__ == '__main__':
    # create a thread pool
    pool = ThreadPool()
    # execute the task asynchronously
    _ = pool.apply_async(task)
    # report all threads
    print('main reporting all threads:')
    for thread in threading.enumerate():
        print(f'\t{thread}')
    # wait a moment
    print('Main is waiting a moment...')
    sleep(2)
    # terminate the pool
    print('Main is terminating the pool')
    pool.terminate()
    # wait a moment
    print('Main is waiting a moment...')
    sleep(1)
    # check if the pool is terminated
    print('Main reporting all threads:')
    for thread in threading.enumerate():
        print(f'\t{thread}')
    # main joining the thread pool
    print('Main joining the pool...')
    pool.join()
    print('Main done.')
