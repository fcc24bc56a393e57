"""dbt assets over the project in ``dbt/`` and the jobs that select them."""
