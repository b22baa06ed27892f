"""A script without the ``if __name__ == "__main__":`` guard: it starts a
child at import. The child needs the script's ``__main__`` (a class sent
through a Pipe by reference), so it imports the script as ``__mp_main__``,
as the stdlib's spawn does; starting a process then is refused with the
stdlib's "bootstrapping phase" RuntimeError instead of multiplying
processes.

Prints ``child exitcode: <n>``; the child's error goes to stderr.
"""

import gopool as multiprocessing

from helpers import compat_tasks as ct


class Message:
    pass


reader, writer = multiprocessing.Pipe(duplex=False)
child = multiprocessing.Process(target=ct.receive_one, args=(reader,))
child.start()
writer.send(Message())
child.join(60)
print("child exitcode:", child.exitcode, flush=True)
