{#-
    Sessions are per person, across devices: a session ends after `session_gap_minutes` of
    inactivity, so an event exactly that long after the previous one starts a new session.
    Only events a person performs count (track/page/screen, minus `inactive_event_names`):
    a "Message Sent" must not keep a session alive.
#}

with

events as (

    select * from {{ ref('stg_safar__events') }}

),

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

active_events as (

    select
        events.message_id,
        distinct_ids.person_id,
        distinct_ids.is_known,
        events.timestamp as occurred_at,
        events.event_date,
        events.platform,
        events.device_id,
        events.context_page_url
    from events
    inner join distinct_ids
        on events.distinct_id = distinct_ids.distinct_id
    where
        events.type in ('track', 'page', 'screen')
        and events.event_name not in (
            {%- for name in var('inactive_event_names') %}
            '{{ name }}'{{ ',' if not loop.last }}
            {%- endfor %}
        )

),

with_previous as (

    select
        *,
        lag(occurred_at) over (
            partition by person_id order by occurred_at, message_id
        ) as previous_occurred_at
    from active_events

),

session_starts_marked as (

    select
        *,
        case
            when previous_occurred_at is null then 1
            when
                occurred_at
                >= {{ dbt.dateadd('minute', var('session_gap_minutes'), 'previous_occurred_at') }}
                then 1
            else 0
        end as is_session_start
    from with_previous

),

sessions_numbered as (

    select
        *,
        sum(is_session_start) over (
            partition by person_id
            order by occurred_at, message_id
            rows between unbounded preceding and current row
        ) as session_number
    from session_starts_marked

),

final as (

    select
        message_id,
        person_id,
        is_known,
        {#- Named after its first event, so the id survives events added later in the session. #}
        {{ dbt.hash(dbt.concat([
            'person_id',
            "'/'",
            'first_value(message_id) over (partition by person_id, session_number order by occurred_at, message_id)',
        ])) }} as session_id,
        occurred_at,
        event_date,
        platform,
        device_id,
        context_page_url,
        is_session_start = 1 as is_session_start
    from sessions_numbered

)

select * from final
