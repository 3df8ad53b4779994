"""Databend Query's server-UDF calls, made from pyarrow (a native Arrow client, as Databend's is).

Every call is one DoExchange on a new connection (a new FlightClient with its own subchannel
pool, so gRPC cannot reuse another call's TCP connection), with the headers Databend sends and
its input: fields arg1..argN, strings as Utf8View. Every result row is checked.

  fast_client.py throughput ENDPOINT FUNCTION IN_FLIGHT [HEADER=VALUE ...]
      Prints "ready", then for every "go SECONDS" line on stdin keeps IN_FLIGHT calls of 65,536
      rows going for SECONDS (each caller makes at least one) and prints
      "result BATCHES ROWS_PER_SECOND CLIENT_CPU_SECONDS". Ends at the end of stdin.
  fast_client.py latency ENDPOINT CALLS [HEADER=VALUE ...]
      CALLS sequential add calls of one row (after 20 not counted); prints
      "latency P50_MS P99_MS MEAN_MS", then "times MS MS ..." (each call, in order).
"""

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.flight as flight

ROWS = 65536


def batch(function, rows):
    """Databend's input for the function, and the result it must get back."""
    if function == "add":
        xs = list(range(rows))
        a = pa.array(xs, pa.int64())
        b = pa.array([1000000 * x for x in xs], pa.int64())
        expected = pa.array([1000001 * x for x in xs], pa.int64())
    else:
        a = pa.array(["left-%d" % x for x in range(rows)], pa.string_view())
        b = pa.array(["right-%d" % x for x in range(rows)], pa.string_view())
        expected = pa.array(["left-%dright-%d" % (x, x) for x in range(rows)], pa.large_string())
    schema = pa.schema([pa.field("arg1", a.type), pa.field("arg2", b.type)])
    return pa.record_batch([a, b], schema=schema), expected


class Caller:
    """Makes Databend's calls to one endpoint for one handler."""

    def __init__(self, endpoint, handler, headers):
        # Databend reads http:// as plaintext HTTP/2 and https:// as TLS: gRPC's two transports.
        if endpoint.startswith("http://"):
            endpoint = "grpc+tcp://" + endpoint[len("http://"):]
        elif endpoint.startswith("https://"):
            endpoint = "grpc+tls://" + endpoint[len("https://"):]
        self.endpoint = endpoint
        self.descriptor = flight.FlightDescriptor.for_path(handler)
        sent = {
            "x-databend-tenant": "bench",
            "x-databend-function": handler,
            "x-databend-function-handler": handler,
            "x-databend-query-id": "fast-client-bench",
        }
        sent.update(headers)  # the provisioning RPC's headers override ours
        self.options = flight.FlightCallOptions(
            headers=[(k.encode(), v.encode()) for k, v in sent.items()], timeout=180
        )

    def call(self, data):
        """One DoExchange on a new connection; returns the result's first column."""
        client = flight.FlightClient(
            self.endpoint,
            generic_options=[
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.primary_user_agent", "databend-query/fast-client-bench"),
            ],
        )
        try:
            writer, reader = client.do_exchange(self.descriptor, self.options)
            with writer:
                writer.begin(data.schema)
                writer.write_batch(data)
                writer.done_writing()
                result = reader.read_all()
        finally:
            client.close()
        if result.num_rows != data.num_rows or result.num_columns < 1:
            raise AssertionError("result has %d rows for %d" % (result.num_rows, data.num_rows))
        return result.column(0).combine_chunks()


class Checker:
    """Compares every row of a result with the expected one (cast once to the result's type)."""

    def __init__(self, expected):
        self.expected = {expected.type: expected}
        self.lock = threading.Lock()

    def check(self, column):
        with self.lock:
            want = self.expected.get(column.type)
            if want is None:
                want = next(iter(self.expected.values())).cast(column.type)
                self.expected[column.type] = want
        if not column.equals(want):
            raise AssertionError("wrong result rows (type %s)" % column.type)


def throughput(endpoint, function, in_flight, headers):
    caller = Caller(endpoint, function, headers)
    data, expected = batch(function, ROWS)
    checker = Checker(expected)

    def keep_calling(deadline):
        calls = 0
        while True:
            checker.check(caller.call(data))
            calls += 1
            if time.monotonic() >= deadline:
                return calls, time.monotonic()

    print("ready", flush=True)
    with ThreadPoolExecutor(max_workers=in_flight) as threads:
        for line in sys.stdin:
            seconds = float(line.split()[1])
            cpu = time.process_time()
            start = time.monotonic()
            futures = [threads.submit(keep_calling, start + seconds) for _ in range(in_flight)]
            done = [f.result() for f in futures]
            batches = sum(calls for calls, _ in done)
            last = max(end for _, end in done)
            rate = batches * ROWS / (last - start)
            print("result %d %f %f" % (batches, rate, time.process_time() - cpu), flush=True)


def latency(endpoint, calls, headers):
    caller = Caller(endpoint, "add", headers)
    data, expected = batch("add", 1)
    checker = Checker(expected)
    times = []
    for i in range(20 + calls):
        start = time.perf_counter()
        checker.check(caller.call(data))
        if i >= 20:
            times.append((time.perf_counter() - start) * 1000)
    each = list(times)
    times.sort()
    p50 = times[len(times) // 2]
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print("latency %f %f %f" % (p50, p99, sum(times) / len(times)), flush=True)
    print("times " + " ".join("%.3f" % t for t in each), flush=True)


def main(argv):
    mode, endpoint = argv[1], argv[2]
    if mode == "throughput":
        headers = dict(h.split("=", 1) for h in argv[5:])
        throughput(endpoint, argv[3], int(argv[4]), headers)
    elif mode == "latency":
        headers = dict(h.split("=", 1) for h in argv[4:])
        latency(endpoint, int(argv[3]), headers)
    else:
        sys.exit("usage: see this script's docstring")


if __name__ == "__main__":
    main(sys.argv)
