with

events as (

    select * from {{ ref('fct_events') }}
    where
        event_name in ('Application Installed', 'Application Uninstalled')
        and platform in ('ios', 'android')

),

daily as (

    select
        event_date as activity_date,
        platform,
        count(case when event_name = 'Application Installed' then 1 end) as installs,
        count(case when event_name = 'Application Uninstalled' then 1 end) as uninstalls
    from events
    group by event_date, platform

),

spine as (

    {{ safar.day_spine(
        '(select min(event_date) from events)',
        '(select max(event_date) from events)',
    ) }}

),

platforms as (

    select 'ios' as platform
    union all
    select 'android' as platform

),

final as (

    select
        spine.date_day as activity_date,
        platforms.platform,
        coalesce(daily.installs, 0) as installs,
        coalesce(daily.uninstalls, 0) as uninstalls,
        coalesce(daily.installs, 0) - coalesce(daily.uninstalls, 0) as net_installs
    from spine
    cross join platforms
    left join daily
        on
            spine.date_day = daily.activity_date
            and platforms.platform = daily.platform

)

select * from final
