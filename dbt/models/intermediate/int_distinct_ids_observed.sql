with

events as (

    select * from {{ ref('stg_safar__events') }}

),

observed_ids as (

    select
        user_id as distinct_id,
        true as is_identified_id,
        timestamp as seen_at
    from events
    where user_id is not null

    union all

    select
        anonymous_id as distinct_id,
        false as is_identified_id,
        timestamp as seen_at
    from events
    where anonymous_id is not null

    union all

    {#- alias previous ids: usually anonymous ids or earlier user ids. #}
    select
        previous_id as distinct_id,
        false as is_identified_id,
        timestamp as seen_at
    from events
    where previous_id is not null

),

final as (

    select
        distinct_id,
        {{ dbt.bool_or('is_identified_id') }} as is_identified_id,
        min(seen_at) as first_seen_at
    from observed_ids
    group by distinct_id

)

select * from final
