"""`make bench`: Stageflow's write and read paths against the physical floor and against Unleash.

Run as ``python -m bench`` (``--help`` lists the options). Nothing here asserts on time: it
measures, prints a Markdown table and writes ``bench/results.json``.
"""
