with

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

final as (

    select
        distinct_id,
        person_id,
        is_identified_id,
        first_seen_at
    from distinct_ids

)

select * from final
