"""The protocol floor: a pyarrow Flight server in this process, no sandbox, serving add(BIGINT NULL,
BIGINT NULL) over DoExchange as the databend-udf server does (row by row in Python, one output
batch per input batch, result field "output"). Prints its port, then serves until its stdin ends.
"""

import sys
import threading

import pyarrow as pa
import pyarrow.flight as flight


class AddServer(flight.FlightServerBase):
    def do_exchange(self, context, descriptor, reader, writer):
        started = False
        for chunk in reader:
            if chunk.data is None:
                continue
            a, b = chunk.data.column(0).to_pylist(), chunk.data.column(1).to_pylist()
            out = pa.array(
                [None if x is None or y is None else x + y for x, y in zip(a, b)], pa.int64()
            )
            result = pa.record_batch([out], names=["output"])
            if not started:
                writer.begin(result.schema)
                started = True
            writer.write_batch(result)


if __name__ == "__main__":
    server = AddServer("grpc://127.0.0.1:0")
    print(server.port, flush=True)
    threading.Thread(target=server.serve, daemon=True).start()
    sys.stdin.read()
    server.shutdown()
