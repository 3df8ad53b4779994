#!/usr/bin/env bash
set -euo pipefail
WORKDIR=/app
mkdir -p "$WORKDIR"
cd "$WORKDIR"




cat <<'UDF_CODE' > /app/udf.py
def add_one(x):
    return None if x is None else x + 1

UDF_CODE
cat <<'UDF_SERVER_1' > /app/server.py
import importlib
import os
import sys
import threading
from databend_udf import UDFServer, udf as udf_decorator

IMPORTS_DIR = "/app/imports"
sys._xoptions["databend_import_directory"] = IMPORTS_DIR
STATUS_ADDR = os.getenv("RESOURCE_STATUS_ADDR", "0.0.0.0:8080")

# Abbreviated: the status server (/health, /stats), the request counter and the code
# that puts IMPORTS_DIR and its .zip/.whl/.egg files on sys.path.

def _load_udf():
    return importlib.import_module("udf")

def _wrap_udf(func):
    return udf_decorator(name="add_one", input_types=["INT32 NULL"], result_type="INT32 NULL")(func)

def _track_udf(udf):
    if hasattr(udf, "eval_batch"):
        return udf
    return udf

def main():
    udf = _load_udf()
    address = os.getenv("UDF_SERVER_ADDR", "0.0.0.0:8815")
    server = UDFServer(location=address)
    func = getattr(udf, "add_one")
    if not hasattr(func, "_name"):
        func = _wrap_udf(func)
    func = _track_udf(func)
    server.add_function(func)
    server.serve()

if __name__ == "__main__":
    main()

UDF_SERVER_1
exec python /app/server.py
