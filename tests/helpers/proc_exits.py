"""A user's script whose gopool.Process ends badly, for its stderr.

Usage: python proc_exits.py raise|sys_exit_msg

Starts a Process named "doomed-child" whose target (defined here, in
``__main__``) raises or calls sys.exit("..."), joins it and prints
``EXITCODE <n>`` on stdout. The child's messages go to the inherited stderr.
"""

import sys

import gopool


def target(how):
    if how == "raise":
        raise ValueError("a bad thing happened in the child")
    if how == "sys_exit_msg":
        sys.exit("the child said goodbye")
    raise AssertionError(how)


def main():
    p = gopool.Process(target=target, args=(sys.argv[1],), name="doomed-child")
    p.start()
    p.join()
    print("EXITCODE", p.exitcode, flush=True)


if __name__ == "__main__":
    main()
