"""Kiln's in-sandbox UDF runner.

Runs one Python UDF for the Kiln worker, speaking the columnar frame protocol
described in PROTOCOL.md over stdin/stdout. Standard library only (no pyarrow),
Python 3.8 or newer.

    python3 kiln_runner.py init    # prints "ready", then waits for stdin to close
    python3 kiln_runner.py serve   # loads $KILN_UDF_DIR/udf.py and serves batches
    python3 kiln_runner.py pooled  # says WAITING, takes the UDF from a LOAD frame, then serves
    python3 kiln_runner.py listen HOST:PORT [pooled]  # a serve (or pooled) runner per TCP connection

Speed matters more than elegance here: columns are decoded and encoded whole
(memoryview.cast, array, bytes.join) and the function is called through map(),
so the per-row cost is the UDF's own call and little else.

The runner is a few modules, each with one concern, each importing only those
below it:

    kiln_runner.py   this entry point: init mode, or serve mode from kiln_serve
    kiln_modules.py  packages' modules from the image's module bundles
    kiln_serve.py    loading the UDF and the serve loop
    kiln_listen.py   listen mode: runners over TCP connections (a sandbox pod)
    kiln_calls.py    decorator options and error messages (imported on first use)
    kiln_columns.py  the column codecs of the flat types
    kiln_nested.py   DATE, TIMESTAMP, DECIMAL, VARIANT results, nested types (on first use)
    kiln_wire.py     frame I/O, the type codes, type descriptors, batch errors

Under gVisor every import costs file-system round trips, and a sandbox caches no
bytecode, so every module is compiled at every start: init mode imports none of
them, serve mode only kiln_serve, kiln_columns and kiln_wire (with cheap
standard modules), and what most UDFs never run (json, reprlib, traceback,
inspect, resource, kiln_calls, kiln_nested with datetime, decimal and the rest)
is imported where it is used.
"""

import sys


def init():
    # The sandbox's first process: children of runners that died are handed to it. Ignoring
    # SIGCHLD lets the kernel reap them as they exit, so their process slots come back (a UDF
    # that forked until refused and died would otherwise leave no room for a new runner).
    # _signal, not signal: signal imports enum, which costs the sandbox's start ~100 ms here.
    import _signal
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)
    # Readiness signal for the provisioner; then keep the sandbox alive until stdin closes.
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while sys.stdin.buffer.read(65536):
        pass
    return 0


def module_bundles():
    """Serves packages' modules from the image's module bundles (kiln_modules), if it has any:
    every *.kmb file in $KILN_MODULE_BUNDLES (default /kiln/modules; the variable is removed).
    Returns how many directories got a finder. Most UDFs have no packages, so kiln_modules is
    only imported when the directory exists: compiling it costs a runner about 6 ms under gVisor.
    os is loaded already (site imports it)."""
    import os
    directory = os.environ.pop("KILN_MODULE_BUNDLES", "/kiln/modules")
    if not os.path.isdir(directory):
        return 0
    import kiln_modules
    return kiln_modules.install(directory)


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "init":
        return init()
    if mode in ("serve", "pooled"):
        module_bundles()
        # From this script's directory, first on sys.path until the UDF's imports are set up.
        import kiln_serve
        return kiln_serve.serve(pooled=mode == "pooled")
    if mode == "listen" and len(argv) in (3, 4):
        module_bundles()
        import kiln_listen
        return kiln_listen.listen(argv[2], pooled=argv[3:] == ["pooled"])
    sys.stderr.write("usage: kiln_runner.py init|serve|pooled|listen HOST:PORT [pooled]\n")
    return 64


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, EOFError) as e:
        # The worker went away; nothing is left to answer.
        sys.stderr.write("kiln_runner: %s\n" % (e or "the worker closed the stream"))
        sys.exit(3)
