with

events as (

    select * from {{ ref('stg_safar__events') }}
    where
        (anonymous_id is not null and user_id is not null)
        or type = 'alias'

),

edges as (

    {#-
        identify ties a browser's or device's anonymous id to the user id it signed in as;
        any other message that carries both ids says the same.
    #}
    select
        anonymous_id as distinct_id,
        user_id as linked_to,
        type as link_type,
        timestamp as linked_at,
        received_at,
        message_id
    from events
    where
        type != 'alias'
        and anonymous_id is not null
        and user_id is not null
        and anonymous_id != user_id

    union all

    {#- alias merges previous_id into user_id. #}
    select
        previous_id as distinct_id,
        user_id as linked_to,
        type as link_type,
        timestamp as linked_at,
        received_at,
        message_id
    from events
    where
        type = 'alias'
        and previous_id is not null
        and user_id is not null
        and previous_id != user_id

),

first_message_per_edge as (

    select *
    from edges
    qualify row_number() over (
            partition by distinct_id, linked_to
            order by linked_at, received_at, message_id
        ) = 1

),

message_counts as (

    select
        distinct_id,
        linked_to,
        count(*) as message_count
    from edges
    group by distinct_id, linked_to

),

final as (

    select
        first_message_per_edge.distinct_id,
        first_message_per_edge.linked_to,
        first_message_per_edge.link_type,
        first_message_per_edge.linked_at as first_linked_at,
        first_message_per_edge.received_at as first_received_at,
        first_message_per_edge.message_id as first_message_id,
        message_counts.message_count
    from first_message_per_edge
    inner join message_counts
        on
            first_message_per_edge.distinct_id = message_counts.distinct_id
            and first_message_per_edge.linked_to = message_counts.linked_to

)

select * from final
