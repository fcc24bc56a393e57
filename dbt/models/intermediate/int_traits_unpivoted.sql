{#- The only model that parses identify traits; everything downstream reads its rows. #}

with

events as (

    select * from {{ ref('stg_safar__events') }}
    where type = 'identify' and traits is not null

),

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

attributes as (

    select
        message_id,
        distinct_id,
        timestamp as occurred_at,
        received_at,
        traits,
        {{ safar.unnest_array(safar.json_object_keys('traits')) }} as attribute
    from events

),

values_extracted as (

    select
        message_id,
        distinct_id,
        occurred_at,
        received_at,
        attribute,
        {{ safar.json_extract_json_by_key('traits', 'attribute') }} as value_json
    from attributes

),

final as (

    select
        values_extracted.message_id,
        distinct_ids.person_id,
        values_extracted.attribute,
        {{ safar.json_value_as_string('values_extracted.value_json') }} as value,
        values_extracted.value_json,
        values_extracted.occurred_at,
        values_extracted.received_at
    from values_extracted
    inner join distinct_ids
        on values_extracted.distinct_id = distinct_ids.distinct_id

)

select * from final
