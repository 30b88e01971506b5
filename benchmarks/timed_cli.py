"""`archviz ARGS` as the console script runs it, plus an in-process timer: python benchmarks/timed_cli.py ARGS.

The console script is `from archviz.cli import main; sys.exit(main())`; this file does the same and writes the time
of main() alone (after the import of archviz.cli, so without start-up) as one JSON line to the file named by the
environment variable ARCHVIZ_BENCH_TIMING. Anything torch-related archviz imports lazily is inside main().
Only sys, os and time are imported before main(), so the whole-process time is the console script's.
"""

import os
import sys
import time

start = time.perf_counter()
from archviz.cli import main  # noqa: E402  (timed: the import is start-up, main() is the call)

imported = time.perf_counter()
sys.argv = ["archviz", *sys.argv[1:]]
try:
    exit_code = main()
except SystemExit as stop:  # typer ends with sys.exit
    exit_code = stop.code
done = time.perf_counter()
timing_file = os.environ.get("ARCHVIZ_BENCH_TIMING")
if timing_file:
    with open(timing_file, "w") as out:
        out.write('{"import_s": %.6f, "call_s": %.6f}\n' % (imported - start, done - imported))
sys.exit(exit_code)
