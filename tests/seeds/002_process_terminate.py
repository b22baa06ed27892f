# Seed document 002 (002_2de926642aaa31b6.txt, LabEx: how to cancel Python
# multiprocessing tasks), example "Terminate() Method" (complete example 3 of 8).
# Indentation reconstructed (the page lost it). Only the import is swapped:
#   from multiprocessing import Process -> from gopool import Process
# The document does not show the output; the child prints "Task running..."
# once a second until it is terminated after 3 seconds (about 3 lines, as seen
# on a terminal), then the program exits.
from gopool import Process
import time
def long_running_task():
    while True:
        print("Task running...")
        time.sleep(1)
if __name__ == '__main__':
    p = Process(target=long_running_task)
    p.start()
    ## Interrupt after 3 seconds
    time.sleep(3)
    p.terminate()
    p.join()
