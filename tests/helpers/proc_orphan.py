"""A user's script that is killed while its gopool.Process runs.

Usage: python proc_orphan.py main|thread|daemon_exit

Starts a Process that sleeps 60 s (``thread``: from a short-lived thread that
has ended before the pid is printed), prints ``PID <child pid>``, then:
``main``/``thread`` wait to be SIGKILLed; ``daemon_exit`` makes the child
daemonic and lets the script end normally (the stdlib then terminates
daemonic children).
"""

import sys
import threading
import time

import gopool


def main():
    mode = sys.argv[1]
    p = gopool.Process(target=time.sleep, args=(60,), daemon=(mode == "daemon_exit"))
    if mode == "thread":
        spawner = threading.Thread(target=p.start)
        spawner.start()
        spawner.join()
    else:
        p.start()
    print("PID", p.pid, flush=True)
    if mode == "daemon_exit":
        return
    time.sleep(60)


if __name__ == "__main__":
    main()
