"""Concurrency pools shared by every job that writes to the warehouse.

DuckLake takes one writer at a time (ARCHITECTURE.md §6), so every op that writes declares
``pool=WAREHOUSE_POOL`` and the instance caps each pool at one slot (``dagster.yaml`` beside
this file: ``concurrency.pools.default_limit: 1``).
"""

WAREHOUSE_POOL = "warehouse"
