-- Python UDFs as a Databend user creates them. `bin/kiln prewarm examples/udfs.sql`
-- builds them ahead of their first query (add --index-url for a private package index).

CREATE OR REPLACE FUNCTION add_one (INT) RETURNS INT LANGUAGE python
HANDLER = 'add_one' AS $$
def add_one(x):
    return None if x is None else x + 1
$$;

-- A package from PACKAGES.
CREATE OR REPLACE FUNCTION hypot (DOUBLE, DOUBLE) RETURNS DOUBLE LANGUAGE python
PACKAGES = ('numpy') HANDLER = 'hypot' AS $$
import numpy as np

def hypot(x, y):
    if x is None or y is None:
        return None
    return float(np.hypot(x, y))
$$;

-- A package from the code's PEP 723 block.
CREATE OR REPLACE FUNCTION human_size (BIGINT) RETURNS VARCHAR LANGUAGE python
HANDLER = 'human_size' AS $$
# /// script
# dependencies = ["humanize"]
# ///
import humanize

def human_size(n):
    return None if n is None else humanize.naturalsize(n)
$$;
