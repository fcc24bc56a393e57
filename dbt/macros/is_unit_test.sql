{# True while dbt compiles a model for one of its `unit_tests:` (inputs are fixtures). #}
{% macro is_unit_test() -%}
    {{ return(model is not none and model.resource_type == 'unit_test') }}
{%- endmacro %}
