{#-
    Rolling active users without a days x people cross join: each active person-day covers
    the next N days (N = 1, 7, 30) up to the person's next active day, so one person's
    intervals never overlap. +1 where an interval starts, -1 where it ends, and a running
    sum over the date spine counts the distinct people active within each window.
#}

with

person_days as (

    select * from {{ ref('int_person_days_aggregated') }}

),

with_next as (

    select
        person_id,
        is_known,
        activity_date,
        lead(activity_date) over (
            partition by person_id order by activity_date
        ) as next_activity_date,
        cast({{ dbt.dateadd('day', 1, 'activity_date') }} as date) as one_day_later,
        cast({{ dbt.dateadd('day', 7, 'activity_date') }} as date) as seven_days_later,
        cast({{ dbt.dateadd('day', 30, 'activity_date') }} as date) as thirty_days_later
    from person_days

),

interval_bounds as (

    {#- An interval ends at the next active day if that comes first. #}
    select
        is_known,
        activity_date as starts_on,
        least(coalesce(next_activity_date, one_day_later), one_day_later) as dau_ends_on,
        least(coalesce(next_activity_date, seven_days_later), seven_days_later) as wau_ends_on,
        least(coalesce(next_activity_date, thirty_days_later), thirty_days_later) as mau_ends_on
    from with_next

),

deltas as (

    select
        starts_on as delta_date,
        is_known,
        1 as dau_delta,
        1 as wau_delta,
        1 as mau_delta
    from interval_bounds

    union all

    select
        dau_ends_on as delta_date,
        is_known,
        -1 as dau_delta,
        0 as wau_delta,
        0 as mau_delta
    from interval_bounds

    union all

    select
        wau_ends_on as delta_date,
        is_known,
        0 as dau_delta,
        -1 as wau_delta,
        0 as mau_delta
    from interval_bounds

    union all

    select
        mau_ends_on as delta_date,
        is_known,
        0 as dau_delta,
        0 as wau_delta,
        -1 as mau_delta
    from interval_bounds

),

daily_deltas as (

    select
        delta_date,
        sum(case when is_known then dau_delta else 0 end) as dau_known_delta,
        sum(case when is_known then 0 else dau_delta end) as dau_unknown_delta,
        sum(case when is_known then wau_delta else 0 end) as wau_known_delta,
        sum(case when is_known then 0 else wau_delta end) as wau_unknown_delta,
        sum(case when is_known then mau_delta else 0 end) as mau_known_delta,
        sum(case when is_known then 0 else mau_delta end) as mau_unknown_delta
    from deltas
    group by delta_date

),

spine as (

    {{ safar.day_spine(
        '(select min(activity_date) from person_days)',
        '(select max(activity_date) from person_days)',
    ) }}

),

running as (

    select
        {%- for column in [
            'dau_known', 'dau_unknown', 'wau_known', 'wau_unknown', 'mau_known', 'mau_unknown',
        ] %}
        cast(sum(coalesce(daily_deltas.{{ column }}_delta, 0)) over (
            order by spine.date_day rows between unbounded preceding and current row
        ) as bigint) as {{ column }},
        {%- endfor %}
        spine.date_day as activity_date
    from spine
    left join daily_deltas
        on spine.date_day = daily_deltas.delta_date

),

final as (

    select
        activity_date,
        dau_known + dau_unknown as dau,
        wau_known + wau_unknown as wau,
        mau_known + mau_unknown as mau,
        dau_known,
        dau_unknown,
        wau_known,
        wau_unknown,
        mau_known,
        mau_unknown,
        cast(dau_known + dau_unknown as double)
        / nullif(mau_known + mau_unknown, 0) as stickiness
    from running

)

select * from final
