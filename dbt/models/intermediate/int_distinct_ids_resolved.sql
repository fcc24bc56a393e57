{#-
    Each distinct id follows its parent: the target of its earliest link (identify or alias),
    so an anonymous id identified as several users (a shared device) stays with the first.
    Parents are followed hop by hop up to `identity_max_chain_length` times (a bounded
    iteration, portable to engines without recursive CTEs). An id without a parent is a root:
    the person. Roots that are user ids are known people.

    Alias cycles (a -> b, b -> a) have no root; every id that runs into one resolves to the
    smallest id on the cycle, which the walk collects as `min_id_on_path`.
#}

{%- set hops = var('identity_max_chain_length') -%}

with

distinct_ids as (

    select * from {{ ref('int_distinct_ids_observed') }}

),

links as (

    select * from {{ ref('int_identity_links') }}

),

parents as (

    select
        distinct_id,
        linked_to as parent_id
    from links
    qualify row_number() over (
            partition by distinct_id
            order by first_linked_at, first_received_at, first_message_id, linked_to
        ) = 1

),

{#- Roots point at themselves so every hop is a plain inner join. #}

pointers as (

    select
        distinct_ids.distinct_id,
        coalesce(parents.parent_id, distinct_ids.distinct_id) as pointer_id,
        parents.parent_id is null as is_root
    from distinct_ids
    left join parents
        on distinct_ids.distinct_id = parents.distinct_id

),

hop_0 as (

    select
        distinct_id,
        distinct_id as pointer_id,
        distinct_id as min_id_on_path
    from pointers

),

{% for hop in range(1, hops + 1) -%}
hop_{{ hop }} as (

    select
        previous_hop.distinct_id,
        pointers.pointer_id,
        least(previous_hop.min_id_on_path, pointers.pointer_id) as min_id_on_path
    from hop_{{ hop - 1 }} as previous_hop
    inner join pointers
        on previous_hop.pointer_id = pointers.distinct_id

),

{% endfor -%}

walked as (

    select
        walk.distinct_id,
        walk.pointer_id,
        pointers.is_root as has_reached_root,
        {#- The walk from the reached id covers its whole cycle, if it is on one. #}
        from_reached.min_id_on_path as cycle_min_id
    from hop_{{ hops }} as walk
    inner join pointers
        on walk.pointer_id = pointers.distinct_id
    inner join hop_{{ hops }} as from_reached
        on walk.pointer_id = from_reached.distinct_id

),

resolved as (

    select
        distinct_id,
        case when has_reached_root then pointer_id else cycle_min_id end as person_id
    from walked

),

final as (

    select
        distinct_ids.distinct_id,
        resolved.person_id,
        distinct_ids.is_identified_id,
        coalesce(people.is_identified_id, false) as is_known,
        distinct_ids.first_seen_at
    from distinct_ids
    inner join resolved
        on distinct_ids.distinct_id = resolved.distinct_id
    left join distinct_ids as people
        on resolved.person_id = people.distinct_id

)

select * from final
