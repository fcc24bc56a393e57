with

events as (

    select * from {{ ref('stg_safar__events') }}

),

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

sessionized as (

    select * from {{ ref('int_events_sessionized') }}

),

final as (

    select
        events.message_id,
        distinct_ids.person_id,
        events.distinct_id,
        events.user_id,
        events.anonymous_id,
        events.type,
        events.event_name,
        events.timestamp as occurred_at,
        events.received_at,
        events.original_timestamp,
        events.sent_at,
        events.event_date,
        events.platform,
        events.device_id,
        sessionized.session_id,
        events.properties,
        events.traits,
        events.context,
        events.source_id,
        events.context_device_id,
        events.context_device_type,
        events.context_device_model,
        events.context_device_token,
        events.context_os_name,
        events.context_app_version,
        events.context_timezone,
        events.context_locale,
        events.context_ip,
        events.context_page_url
    from events
    inner join distinct_ids
        on events.distinct_id = distinct_ids.distinct_id
    left join sessionized
        on events.message_id = sessionized.message_id

)

select * from final
