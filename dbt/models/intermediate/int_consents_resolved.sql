{#-
    A person's latest word per channel wins: an identify trait (`email_opt_in`, ...) or an
    unsubscribe event, whichever came last. No statement at all leaves the consent null.
#}

with

traits as (

    select * from {{ ref('int_traits_unpivoted') }}
    where attribute in ('email_opt_in', 'sms_opt_in', 'push_opt_in')

),

events as (

    select * from {{ ref('stg_safar__events') }}
    where
        type = 'track'
        and event_name in ('Email Unsubscribed', 'SMS Unsubscribed', 'Push Unsubscribed')

),

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

statements as (

    select
        person_id,
        replace(attribute, '_opt_in', '') as channel,
        {{ safar.try_cast('value', 'boolean') }} as is_opted_in,
        occurred_at as stated_at,
        received_at,
        message_id
    from traits

    union all

    select
        distinct_ids.person_id,
        lower(replace(events.event_name, ' Unsubscribed', '')) as channel,
        false as is_opted_in,
        events.timestamp as stated_at,
        events.received_at,
        events.message_id
    from events
    inner join distinct_ids
        on events.distinct_id = distinct_ids.distinct_id

),

final as (

    select
        person_id,
        channel,
        is_opted_in,
        stated_at
    from statements
    where is_opted_in is not null
    qualify row_number() over (
            partition by person_id, channel
            order by stated_at desc, received_at desc, message_id desc
        ) = 1

)

select * from final
