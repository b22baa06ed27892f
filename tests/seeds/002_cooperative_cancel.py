# Seed document 002 (002_2de926642aaa31b6.txt, LabEx: how to cancel Python
# multiprocessing tasks), example "Cooperative Cancellation Pattern" (complete
# example 7 of 8). Indentation reconstructed (the page lost it). Only the
# import is swapped:
#   from multiprocessing import Process, Event -> from gopool import Process, Event
# The document does not show the output; the child prints "Task running..."
# every 0.5 s until it is cancelled after 3 seconds (about 6 lines).
# The target is a bound method of an object holding an Event.
from gopool import Process, Event
import time
class CancellableTask:
    def __init__(self):
        self.stop_event = Event()
    def run(self):
        while not self.stop_event.is_set():
            ## Perform task with periodic cancellation checks
            time.sleep(0.5)
            print("Task running...")
    def cancel(self):
        self.stop_event.set()
def execute_cancellable_task():
    task = CancellableTask()
    p = Process(target=task.run)
    p.start()
    ## Simulate cancellation after 3 seconds
    time.sleep(3)
    task.cancel()
    p.join()
if __name__ == '__main__':
    execute_cancellable_task()
