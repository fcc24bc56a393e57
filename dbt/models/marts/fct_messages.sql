{#-
    The delivery events the platform writes back (safar/delivery/events.py), folded into one
    row per delivery. Nothing depends on the order events arrived in, so a late event only
    fills in its column: times are the earliest of their event, counts are of distinct
    message_ids (a re-published event keeps its message_id and counts once), and attributes
    come from the delivery's latest event by occurred_at.
#}

{%- set latest = safar.sort_key(['occurred_at', 'message_id']) -%}

with

events as (

    select * from {{ ref('fct_events') }}
    where
        type = 'track'
        and event_name in (
            'Message Queued',
            'Message Sent',
            'Message Delivered',
            'Message Failed',
            'Message Bounced',
            'Message Opened',
            'Message Clicked',
            'Message Dropped'
        )

),

delivery_events as (

    select
        message_id,
        person_id,
        event_name,
        occurred_at,
        {{ safar.json_extract_string('properties', 'delivery_id') }} as delivery_id,
        {{ safar.json_extract_string('properties', 'channel') }} as channel,
        {{ safar.json_extract_string('properties', 'category') }} as category,
        {{ safar.json_extract_string('properties', 'provider') }} as provider,
        {{ safar.json_extract_string('properties', 'campaign_id') }} as campaign_id,
        {{ safar.json_extract_string('properties', 'journey_id') }} as journey_id,
        {{ safar.try_cast(
            safar.json_extract_string('properties', 'attempt'), 'integer',
        ) }} as attempt,
        {{ safar.try_cast(
            safar.json_extract_string('properties', 'in_doubt'), 'boolean',
        ) }} as is_in_doubt,
        {{ safar.json_extract_string('properties', 'reason') }} as drop_reason,
        {{ safar.json_extract_string('properties', 'detail') }} as detail
    from events

),

deliveries as (

    select
        delivery_id,
        {{ safar.max_by('person_id', latest) }} as person_id,
        {{ safar.max_by('channel', latest) }}
        filter (where channel is not null) as channel,
        {{ safar.max_by('category', latest) }}
        filter (where category is not null) as category,
        {{ safar.max_by('provider', latest) }}
        filter (where provider is not null) as provider,
        {{ safar.max_by('campaign_id', latest) }}
        filter (where campaign_id is not null) as campaign_id,
        {{ safar.max_by('journey_id', latest) }}
        filter (where journey_id is not null) as journey_id,
        min(case when event_name = 'Message Queued' then occurred_at end) as queued_at,
        min(case when event_name = 'Message Sent' then occurred_at end) as sent_at,
        min(case when event_name = 'Message Delivered' then occurred_at end) as delivered_at,
        min(case when event_name = 'Message Failed' then occurred_at end) as failed_at,
        min(case when event_name = 'Message Bounced' then occurred_at end) as bounced_at,
        min(case when event_name = 'Message Dropped' then occurred_at end) as dropped_at,
        {{ safar.max_by('drop_reason', latest) }}
        filter (where event_name = 'Message Dropped') as drop_reason,
        {{ safar.max_by('detail', latest) }}
        filter (
            where event_name in ('Message Failed', 'Message Bounced', 'Message Dropped')
        ) as failure_detail,
        min(case when event_name = 'Message Opened' then occurred_at end) as first_opened_at,
        min(case when event_name = 'Message Clicked' then occurred_at end) as first_clicked_at,
        count(
            distinct case when event_name = 'Message Opened' then message_id end
        ) as open_count,
        count(
            distinct case when event_name = 'Message Clicked' then message_id end
        ) as click_count,
        max(attempt) as attempts,
        coalesce(
            {{ dbt.bool_or("event_name = 'Message Sent' and is_in_doubt") }}, false
        ) as was_in_doubt
    from delivery_events
    {#- Events named like ours but without a delivery_id were not written by the platform. #}
    where delivery_id is not null
    group by delivery_id

),

final as (

    select
        delivery_id,
        person_id,
        channel,
        category,
        provider,
        campaign_id,
        journey_id,
        {#-
            The furthest state reached. Proof that the message reached the person (a click,
            an open, a delivery report) outranks any failure report; a failure or bounce
            reported after the provider accepted it outranks that acceptance, since `sent`
            only means "handed over".
        #}
        case
            when click_count > 0 then 'clicked'
            when open_count > 0 then 'opened'
            when delivered_at is not null then 'delivered'
            when bounced_at is not null then 'bounced'
            when failed_at is not null then 'failed'
            when sent_at is not null then 'sent'
            when dropped_at is not null then 'dropped'
            else 'queued'
        end as status,
        queued_at,
        sent_at,
        delivered_at,
        failed_at,
        bounced_at,
        dropped_at,
        drop_reason,
        failure_detail,
        first_opened_at,
        first_clicked_at,
        open_count,
        click_count,
        attempts,
        was_in_doubt
    from deliveries

)

select * from final
