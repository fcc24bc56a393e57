with

sessionized as (

    select * from {{ ref('int_events_sessionized') }}

),

final as (

    select
        session_id,
        person_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        {{ safar.epoch_seconds('max(occurred_at)') }}
        - {{ safar.epoch_seconds('min(occurred_at)') }} as duration_seconds,
        count(*) as event_count,
        {{ safar.min_by('platform', safar.sort_key(['occurred_at', 'message_id'])) }} as platform,
        {{ safar.min_by('device_id', safar.sort_key(['occurred_at', 'message_id'])) }}
        filter (where device_id is not null) as device_id,
        {{ safar.min_by('context_page_url', safar.sort_key(['occurred_at', 'message_id'])) }}
        filter (where context_page_url is not null) as landing_page_url
    from sessionized
    group by session_id, person_id

)

select * from final
