{#-
    A device belongs to the person of its latest event (a shared device follows whoever used
    it last). It counts as uninstalled when its latest "Application Uninstalled" is not
    followed by anything the person did on it (opening the app, a reinstall, ...).
#}

{%- set latest = safar.sort_key(['occurred_at', 'message_id']) -%}

with

events as (

    select * from {{ ref('fct_events') }}
    where device_id is not null

),

active_events as (

    select * from {{ ref('int_events_sessionized') }}
    where device_id is not null

),

last_activity as (

    select
        device_id,
        max(occurred_at) as last_active_at
    from active_events
    group by device_id

),

devices as (

    select
        device_id,
        {{ safar.max_by('person_id', latest) }} as person_id,
        {{ safar.max_by('platform', latest) }} as platform,
        {{ safar.max_by('context_device_type', latest) }}
        filter (where context_device_type is not null) as device_type,
        {{ safar.max_by('context_os_name', latest) }}
        filter (where context_os_name is not null) as os_name,
        {{ safar.max_by('context_device_model', latest) }}
        filter (where context_device_model is not null) as device_model,
        {{ safar.max_by('context_app_version', latest) }}
        filter (where context_app_version is not null) as app_version,
        {{ safar.max_by('context_device_token', latest) }}
        filter (where context_device_token is not null) as push_token,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_seen_at,
        max(case when event_name = 'Application Installed' then occurred_at end) as installed_at,
        max(
            case when event_name = 'Application Uninstalled' then occurred_at end
        ) as uninstalled_at
    from events
    group by device_id

),

final as (

    select
        devices.device_id,
        devices.person_id,
        devices.platform,
        devices.device_type,
        devices.os_name,
        devices.device_model,
        devices.app_version,
        devices.first_seen_at,
        devices.last_seen_at,
        devices.push_token,
        case
            when
                devices.uninstalled_at is not null
                and (
                    last_activity.last_active_at is null
                    or devices.uninstalled_at >= last_activity.last_active_at
                )
                then 'uninstalled'
            when devices.push_token is not null then 'active'
            else 'none'
        end as push_token_state,
        devices.installed_at,
        devices.uninstalled_at
    from devices
    left join last_activity
        on devices.device_id = last_activity.device_id

)

select * from final
