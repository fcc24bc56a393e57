{#
    Small engine-specific functions behind adapter.dispatch (ARCHITECTURE.md §7): the dbt
    project runs on DuckDB here and on Apache Spark when it scales out.
#}

{# Seconds since the Unix epoch, fractional, for a naive UTC timestamp. #}
{% macro epoch_seconds(timestamp_expression) -%}
    {{ return(adapter.dispatch('epoch_seconds', 'safar')(timestamp_expression)) }}
{%- endmacro %}

{% macro duckdb__epoch_seconds(timestamp_expression) -%}
    epoch({{ timestamp_expression }})
{%- endmacro %}

{% macro spark__epoch_seconds(timestamp_expression) -%}
    (cast(unix_micros({{ timestamp_expression }}) as double) / 1000000)
{%- endmacro %}


{# True when the whole string matches the regular expression (RE2 / Java syntax alike). #}
{% macro regexp_full_match(expression, pattern) -%}
    {{ return(adapter.dispatch('regexp_full_match', 'safar')(expression, pattern)) }}
{%- endmacro %}

{% macro duckdb__regexp_full_match(expression, pattern) -%}
    regexp_full_match({{ expression }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__regexp_full_match(expression, pattern) -%}
    ({{ expression }} rlike '^(?:{{ pattern }})$')
{%- endmacro %}


{# A cast that yields null instead of failing; dbt.safe_cast raises on DuckDB. #}
{% macro try_cast(expression, data_type) -%}
    {{ return(adapter.dispatch('try_cast', 'safar')(expression, data_type)) }}
{%- endmacro %}

{% macro default__try_cast(expression, data_type) -%}
    try_cast({{ expression }} as {{ data_type }})
{%- endmacro %}


{# One row per element of an array expression, used in a select list. #}
{% macro unnest_array(array_expression) -%}
    {{ return(adapter.dispatch('unnest_array', 'safar')(array_expression)) }}
{%- endmacro %}

{% macro duckdb__unnest_array(array_expression) -%}
    unnest({{ array_expression }})
{%- endmacro %}

{% macro spark__unnest_array(array_expression) -%}
    explode({{ array_expression }})
{%- endmacro %}


{# The value of `value_expression` on the row with the largest `order_expression`. #}
{% macro max_by(value_expression, order_expression) -%}
    {{ return(adapter.dispatch('max_by', 'safar')(value_expression, order_expression)) }}
{%- endmacro %}

{% macro default__max_by(value_expression, order_expression) -%}
    max_by({{ value_expression }}, {{ order_expression }})
{%- endmacro %}


{% macro min_by(value_expression, order_expression) -%}
    {{ return(adapter.dispatch('min_by', 'safar')(value_expression, order_expression)) }}
{%- endmacro %}

{% macro default__min_by(value_expression, order_expression) -%}
    min_by({{ value_expression }}, {{ order_expression }})
{%- endmacro %}


{# A query returning one row per day, `date_day`, from start to end inclusive. #}
{% macro day_spine(start_date_expression, end_date_expression) -%}
    {{ return(adapter.dispatch('day_spine', 'safar')(start_date_expression, end_date_expression)) }}
{%- endmacro %}

{% macro duckdb__day_spine(start_date_expression, end_date_expression) -%}
    select cast(unnest(generate_series(
        cast({{ start_date_expression }} as timestamp),
        cast({{ end_date_expression }} as timestamp),
        interval 1 day
    )) as date) as date_day
{%- endmacro %}

{% macro spark__day_spine(start_date_expression, end_date_expression) -%}
    select explode(sequence(
        cast({{ start_date_expression }} as date),
        cast({{ end_date_expression }} as date),
        interval 1 day
    )) as date_day
{%- endmacro %}


{# A composite ordering key for max_by/min_by: ties on the first column fall to the next. #}
{% macro sort_key(columns) -%}
    {{ return(adapter.dispatch('sort_key', 'safar')(columns)) }}
{%- endmacro %}

{% macro duckdb__sort_key(columns) -%}
    row({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__sort_key(columns) -%}
    struct({{ columns | join(', ') }})
{%- endmacro %}
