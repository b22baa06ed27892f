# Seed document 003 (003_19a7e9bec67bd863.txt, "Understanding Python
# Multiprocessing Module's .join() Method"), example "Example Usage of
# .join()" (the only complete example). The page flattened the code onto one
# line and dropped its string quotes (print(Worker 1: Starting),
# __name__ == __main__); lines, indentation and quotes are reconstructed.
# Import swapped the literal way:
#   import multiprocessing -> import gopool; multiprocessing.Process -> gopool.Process
# The document does not show the output; it says both processes run at the
# same time and "Done." is printed once both have finished:
#   Worker 1: Starting
#   Worker 2: Starting
#   Worker 1: Finished   (after 2 s)
#   Worker 2: Finished   (after 4 s)
#   Done.
import gopool
import time
def worker1():
    # Process 1 task
    print('Worker 1: Starting')
    time.sleep(2)
    print('Worker 1: Finished')
def worker2():
    # Process 2 task
    print('Worker 2: Starting')
    time.sleep(4)
    print('Worker 2: Finished')
if __name__ == '__main__':
    p1 = gopool.Process(target=worker1)
    p2 = gopool.Process(target=worker2)
    # Start the processes
    p1.start()
    p2.start()
    # Synchronize the processes
    p1.join()
    p2.join()
    # Both processes have finished
    print('Done.')
