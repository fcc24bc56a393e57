with

active_events as (

    select * from {{ ref('int_events_sessionized') }}

),

final as (

    select
        person_id,
        event_date as activity_date,
        is_known,
        count(*) as event_count
    from active_events
    group by person_id, event_date, is_known

)

select * from final
