{#-
    SCD type 2 over identify traits: a new interval starts only when an attribute's value
    changes. When several identifies set an attribute at the same instant, the one received
    last counts.
#}

with

traits as (

    select * from {{ ref('int_traits_unpivoted') }}

),

last_per_instant as (

    select *
    from traits
    qualify row_number() over (
            partition by person_id, attribute, occurred_at
            order by received_at desc, message_id desc
        ) = 1

),

with_previous as (

    select
        *,
        lag(value_json) over (
            partition by person_id, attribute order by occurred_at
        ) as previous_value_json,
        row_number() over (
            partition by person_id, attribute order by occurred_at
        ) as setting_number
    from last_per_instant

),

changes as (

    select *
    from with_previous
    where setting_number = 1 or value_json is distinct from previous_value_json

),

intervals as (

    select
        person_id,
        attribute,
        value,
        value_json,
        occurred_at as valid_from,
        lead(occurred_at) over (
            partition by person_id, attribute order by occurred_at
        ) as valid_to,
        message_id as set_by_message_id
    from changes

),

final as (

    select
        *,
        valid_to is null as is_current
    from intervals

)

select * from final
