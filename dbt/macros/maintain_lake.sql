{#
    on-run-end: keep the DuckLake warehouse from growing without bound. Every build replaces
    the mart tables, and DuckLake keeps the old files for time travel until their snapshots
    expire; micro-batches would otherwise add a copy of fct_events each time. Snapshots older
    than `lake_snapshot_retention_minutes` are expired and their files deleted, and the
    incremental staging table's small files (one set per micro-batch) are compacted.
    Readers never see a half-written table: a query that started on a snapshot older than the
    retention is the only thing that can fail.
#}
{% macro maintain_lake() -%}
    {{ return(adapter.dispatch('maintain_lake', 'safar')()) }}
{%- endmacro %}

{% macro default__maintain_lake() -%}
    select 1
{%- endmacro %}

{% macro duckdb__maintain_lake() -%}
    {%- if execute and flags.WHICH in ('run', 'build') and results | length > 0 -%}
        {%- set catalog = target.database -%}
        {%- set older_than = "now() - interval '" ~ var('lake_snapshot_retention_minutes') ~ " minutes'" -%}
        {%- set incremental_models = graph.nodes.values()
            | selectattr('resource_type', 'equalto', 'model')
            | selectattr('config.materialized', 'equalto', 'incremental')
            | list -%}
        {%- for node in incremental_models %}
        call ducklake_merge_adjacent_files('{{ catalog }}', '{{ node.alias }}', schema => '{{ node.schema }}');
        call ducklake_rewrite_data_files('{{ catalog }}', '{{ node.alias }}', schema => '{{ node.schema }}');
        {%- endfor %}
        call ducklake_expire_snapshots('{{ catalog }}', older_than => {{ older_than }});
        call ducklake_cleanup_old_files('{{ catalog }}', older_than => {{ older_than }});
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
