{#-
    Weekly cohorts by the Monday of each person's first active week; week_number counts whole
    weeks since. Every cohort gets a row for every week up to the last week with data, so a
    week nobody came back shows 0 rather than a gap.
#}

with

person_days as (

    select * from {{ ref('int_person_days_aggregated') }}

),

person_weeks as (

    select distinct
        person_id,
        cast({{ dbt.date_trunc('week', 'activity_date') }} as date) as activity_week
    from person_days

),

cohorts as (

    select
        person_id,
        min(activity_week) as cohort_week
    from person_weeks
    group by person_id

),

cohort_sizes as (

    select
        cohort_week,
        count(*) as cohort_size
    from cohorts
    group by cohort_week

),

cohort_activity as (

    select
        cohorts.cohort_week,
        person_weeks.activity_week,
        count(*) as active_users
    from person_weeks
    inner join cohorts
        on person_weeks.person_id = cohorts.person_id
    group by cohorts.cohort_week, person_weeks.activity_week

),

weeks as (

    select date_day as week_start
    from (
        {{ safar.day_spine(
            '(select min(activity_week) from person_weeks)',
            '(select max(activity_week) from person_weeks)',
        ) }}
    ) as spine_days
    where date_day = cast({{ dbt.date_trunc('week', 'date_day') }} as date)

),

grid as (

    select
        cohort_sizes.cohort_week,
        weeks.week_start,
        cohort_sizes.cohort_size,
        cast(
            {{ dbt.datediff('cohort_sizes.cohort_week', 'weeks.week_start', 'day') }} / 7
            as integer
        ) as week_number
    from cohort_sizes
    inner join weeks
        on cohort_sizes.cohort_week <= weeks.week_start

),

final as (

    select
        grid.cohort_week,
        grid.week_number,
        grid.cohort_size,
        coalesce(cohort_activity.active_users, 0) as active_users,
        cast(coalesce(cohort_activity.active_users, 0) as double) / grid.cohort_size
            as retention_rate
    from grid
    left join cohort_activity
        on
            grid.cohort_week = cohort_activity.cohort_week
            and grid.week_start = cohort_activity.activity_week

)

select * from final
