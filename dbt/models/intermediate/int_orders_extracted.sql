with

events as (

    select * from {{ ref('stg_safar__events') }}
    where type = 'track' and event_name = 'Order Completed'

),

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

final as (

    select
        events.message_id,
        distinct_ids.person_id,
        coalesce(
            {{ safar.json_extract_string('events.properties', 'order_id') }}, events.message_id
        ) as order_id,
        {#- Money is decimal, never float (IRR amounts are large integers). #}
        {{ safar.try_cast(
            safar.json_extract_string('events.properties', 'revenue'), 'decimal(38, 2)',
        ) }} as revenue,
        {{ safar.json_extract_string('events.properties', 'currency') }} as currency,
        events.timestamp as ordered_at
    from events
    inner join distinct_ids
        on events.distinct_id = distinct_ids.distinct_id

)

select * from final
