{#- Fails with every non-null value of `column_name` that is not a JSON object. -#}
{% test is_valid_json_object(model, column_name) %}

select {{ column_name }}
from {{ model }}
where
    {{ column_name }} is not null
    and not coalesce({{ safar.json_is_object(column_name) }}, false)

{% endtest %}
