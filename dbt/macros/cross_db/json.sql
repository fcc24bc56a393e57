{#
    JSON helpers. Payloads stay JSON text in the lake (safar/contract.py) so any engine reads
    them; these macros are the only place that knows each engine's JSON functions.
#}

{% macro json_extract_string(json_column, key) -%}
    {{ return(adapter.dispatch('json_extract_string', 'safar')(json_column, key)) }}
{%- endmacro %}

{% macro duckdb__json_extract_string(json_column, key) -%}
    json_extract_string({{ json_column }}, '$.{{ key }}')
{%- endmacro %}

{% macro spark__json_extract_string(json_column, key) -%}
    get_json_object({{ json_column }}, '$.{{ key }}')
{%- endmacro %}


{# The value under a key computed at run time, as JSON text (strings keep their quotes). #}
{% macro json_extract_json_by_key(json_column, key_expression) -%}
    {{ return(adapter.dispatch('json_extract_json_by_key', 'safar')(json_column, key_expression)) }}
{%- endmacro %}

{% macro duckdb__json_extract_json_by_key(json_column, key_expression) -%}
    cast(json_extract({{ json_column }}, '$."' || {{ key_expression }} || '"') as varchar)
{%- endmacro %}

{% macro spark__json_extract_json_by_key(json_column, key_expression) -%}
    {#- Spark has no JSON type: strings come back unquoted, other values as JSON text. -#}
    from_json({{ json_column }}, 'map<string,string>')[{{ key_expression }}]
{%- endmacro %}


{# JSON text to the string it holds (a JSON string loses its quotes; null stays null). #}
{% macro json_value_as_string(json_text) -%}
    {{ return(adapter.dispatch('json_value_as_string', 'safar')(json_text)) }}
{%- endmacro %}

{% macro duckdb__json_value_as_string(json_text) -%}
    json_extract_string({{ json_text }}, '$')
{%- endmacro %}

{% macro spark__json_value_as_string(json_text) -%}
    {{ json_text }}
{%- endmacro %}


{% macro json_object_keys(json_column) -%}
    {{ return(adapter.dispatch('json_object_keys', 'safar')(json_column)) }}
{%- endmacro %}

{% macro duckdb__json_object_keys(json_column) -%}
    json_keys({{ json_column }})
{%- endmacro %}

{% macro spark__json_object_keys(json_column) -%}
    json_object_keys({{ json_column }})
{%- endmacro %}


{# Aggregate (key, JSON text value) pairs into one JSON object, as text. #}
{% macro json_object_agg(key_column, json_value_column) -%}
    {{ return(adapter.dispatch('json_object_agg', 'safar')(key_column, json_value_column)) }}
{%- endmacro %}

{% macro duckdb__json_object_agg(key_column, json_value_column) -%}
    {#- Keys in order, so rebuilding the same data gives the same text. Sorted as a list, not
        with `string_agg(... order by ...)`: DuckDB keeps a sort buffer per group for ordered
        aggregates, which ran out of 19 GB at 1M people; a list and list_sort take ~1 GB. #}
    '{' || coalesce(array_to_string(list_transform(
        list_sort(list({
            'k': {{ key_column }},
            'e': cast(to_json({{ key_column }}) as varchar) || ':' || {{ json_value_column }}
        })),
        x -> x.e
    ), ','), '') || '}'
{%- endmacro %}

{% macro spark__json_object_agg(key_column, json_value_column) -%}
    to_json(map_from_entries(collect_list(struct({{ key_column }}, {{ json_value_column }}))))
{%- endmacro %}


{% macro json_is_object(json_text) -%}
    {{ return(adapter.dispatch('json_is_object', 'safar')(json_text)) }}
{%- endmacro %}

{% macro duckdb__json_is_object(json_text) -%}
    (json_valid({{ json_text }}) and json_type({{ json_text }}) = 'OBJECT')
{%- endmacro %}

{% macro spark__json_is_object(json_text) -%}
    (from_json({{ json_text }}, 'map<string,string>') is not null)
{%- endmacro %}
