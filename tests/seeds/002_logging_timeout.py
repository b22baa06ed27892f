# Seed document 002 (002_2de926642aaa31b6.txt, LabEx: how to cancel Python
# multiprocessing tasks), example "Error Handling and Logging" (complete
# example 8 of 8). Indentation reconstructed (the page lost it). Only the
# import is swapped:
#   from multiprocessing import Process, Queue -> from gopool import Process, Queue
# The document does not show the output. As published, the program never
# imports `time`: the child's first time.sleep(1) raises NameError, which the
# `except Exception` logs ("Task failed: name 'time' is not defined", on
# stderr) before putting "Failed"; the program then prints
#   Failed
# (Kept as published: adding the import would make the child run 10 s, be
# terminated after 5 s with nothing in the queue, and get() block for ever.)
import logging
from gopool import Process, Queue
def setup_logging():
    logging.basicConfig(
        level=logging.INFO,
        format='%(asctime)s - %(levelname)s: %(message)s'
    )
def cancellable_task(result_queue, max_iterations=10):
    try:
        for i in range(max_iterations):
            logging.info(f"Task iteration {i}")
            time.sleep(1)
        result_queue.put("Completed")
    except Exception as e:
        logging.error(f"Task failed: {e}")
        result_queue.put("Failed")
def manage_task():
    setup_logging()
    result_queue = Queue()
    p = Process(target=cancellable_task, args=(result_queue,))
    p.start()
    p.join(timeout=5)
    if p.is_alive():
        logging.warning("Task cancelled due to timeout")
        p.terminate()
        p.join()
    return result_queue.get()
if __name__ == '__main__':
    result = manage_task()
    print(result)
