with

reachability as (

    select * from {{ ref('dim_user_reachability') }}

),

final as (

    select
        channel,
        count(*) as total_users,
        count(case when is_reachable then 1 end) as reachable_users,
        round(
            100.0 * count(case when is_reachable then 1 end) / nullif(count(*), 0), 2
        ) as reachable_pct
    from reachability
    group by channel

)

select * from final
