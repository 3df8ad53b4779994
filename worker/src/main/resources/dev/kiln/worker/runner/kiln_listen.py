"""Runners over TCP: `kiln_runner.py listen HOST:PORT [pooled]`, for a sandbox pod.

The pod's one process listens; each connection the worker opens gets its own runner process,
forked from the listener, which speaks the same frames over the connection that a runner speaks
over stdin/stdout (PROTOCOL.md) and ends when the worker closes it. The UDF's own output goes to
the listener's stderr: the pod's log. The listener says where it listens on stdout, one line:

    kiln-runner listening on HOST:PORT
"""

import os
import signal
import socket
import sys


def address(text):
    """`HOST:PORT`, `[V6]:PORT` or `:PORT` (every address) as a (host, port) pair."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError("expected HOST:PORT, got %r" % text)
    host = host.strip("[]")
    return host or "0.0.0.0", int(port)


def listen(where, pooled=False):
    host, port = address(where)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.create_server((host, port), family=family, backlog=128)
    bound = server.getsockname()
    sys.stdout.write("kiln-runner listening on %s:%d\n" % (bound[0], bound[1]))
    sys.stdout.flush()
    # Runners that end are reaped by the kernel; a runner puts the default back for its UDF.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Imported once here, so that each runner forked from this process has it already.
    import kiln_serve
    while True:
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pid = os.fork()
        if pid:
            conn.close()
            continue
        server.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = conn.detach()
        # The connection becomes stdin and stdout, which serve() takes for the protocol.
        os.dup2(fd, 0)
        os.dup2(fd, 1)
        os.close(fd)
        status = 1
        try:
            status = kiln_serve.serve(pooled=pooled) or 0
        except (BrokenPipeError, ConnectionResetError, EOFError):
            status = 0
        except BaseException:
            # What ended the runner goes to the pod's log, not into the connection.
            import traceback
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
