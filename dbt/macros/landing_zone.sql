{#
    The raw landing zone is a glob of Parquet files (models/staging/_safar__sources.yml).
    DuckDB's read_parquet fails when the glob matches no file, which is the state of a fresh
    install before the first event; the staging model asks these macros first and reads an
    empty, typed relation instead.
#}

{# The file glob inside the source's external_location (single source of truth). #}
{% macro landing_zone_glob(source_name, table_name) -%}
    {%- set node = graph.sources.values()
        | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name)
        | first -%}
    {%- set location = node.meta.external_location -%}
    {%- set match = modules.re.search("'([^']+)'", location) -%}
    {%- if not match -%}
        {{ exceptions.raise_compiler_error(
            "external_location of source " ~ source_name ~ "." ~ table_name
            ~ " has no quoted file glob: " ~ location) }}
    {%- endif -%}
    {{ return(match.group(1)) }}
{%- endmacro %}


{# True when at least one landing file exists (always true at parse time). #}
{% macro landing_zone_has_files(source_name, table_name) -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {{ return(adapter.dispatch('landing_zone_has_files', 'safar')(source_name, table_name)) }}
{%- endmacro %}

{% macro duckdb__landing_zone_has_files(source_name, table_name) -%}
    {%- set glob_pattern = safar.landing_zone_glob(source_name, table_name) -%}
    {%- set result = run_query("select count(*) from glob('" ~ glob_pattern ~ "')") -%}
    {{ return(result.columns[0].values()[0] > 0) }}
{%- endmacro %}

{% macro default__landing_zone_has_files(source_name, table_name) -%}
    {{ return(true) }}
{%- endmacro %}


{# A zero-row relation with the columns and types the source YAML declares. #}
{% macro empty_source_relation(source_name, table_name) -%}
    {%- set node = graph.sources.values()
        | selectattr('source_name', 'equalto', source_name)
        | selectattr('name', 'equalto', table_name)
        | first -%}
    select
    {%- for column in node.columns.values() %}
        cast(null as {{ column.data_type }}) as {{ column.name }},
    {%- endfor %}
        cast(null as date) as date
    where 1 = 0
{%- endmacro %}
