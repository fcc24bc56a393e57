{%- set text_traits = [
    'email', 'phone', 'first_name', 'last_name', 'city', 'country', 'carrier',
    'language', 'timezone', 'rfm_class',
] -%}

with

distinct_ids as (

    select * from {{ ref('int_distinct_ids_resolved') }}

),

events as (

    select * from {{ ref('fct_events') }}

),

active_events as (

    select * from {{ ref('int_events_sessionized') }}

),

attribute_history as (

    select * from {{ ref('dim_user_attribute_history') }}
    where is_current

),

consents as (

    select * from {{ ref('int_consents_resolved') }}

),

orders as (

    select * from {{ ref('int_orders_extracted') }}

),

devices as (

    select * from {{ ref('dim_devices') }}

),

people as (

    select
        person_id,
        {{ dbt.bool_or('is_known') }} as is_known
    from distinct_ids
    group by person_id

),

event_activity as (

    select
        person_id,
        min(occurred_at) as first_seen_at,
        max(occurred_at) as last_event_at,
        count(*) as event_count,
        min(
            case
                when (type = 'identify' and user_id is not null) or event_name = 'Signed Up'
                    then occurred_at
            end
        ) as signed_up_at
    from events
    group by person_id

),

last_activity as (

    select
        person_id,
        max(occurred_at) as last_active_at
    from active_events
    group by person_id

),

traits_pivoted as (

    select
        person_id,
        {%- for trait in text_traits %}
        max(case when attribute = '{{ trait }}' then value end) as {{ trait }},
        {%- endfor %}
        max(case when attribute = 'name' then value end) as name_trait,
        max(
            case when attribute = 'order_count' then {{ safar.try_cast('value', 'bigint') }} end
        ) as order_count_trait,
        {{ safar.json_object_agg('attribute', 'value_json') }} as custom_attributes
    from attribute_history
    group by person_id

),

consents_pivoted as (

    select
        person_id,
        {{ dbt.bool_or("case when channel = 'email' then is_opted_in end") }} as email_opt_in,
        {{ dbt.bool_or("case when channel = 'sms' then is_opted_in end") }} as sms_opt_in,
        {{ dbt.bool_or("case when channel = 'push' then is_opted_in end") }} as push_opt_in
    from consents
    group by person_id

),

order_totals as (

    select
        person_id,
        count(distinct order_id) as order_count,
        sum(revenue) as revenue,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from orders
    group by person_id

),

device_counts as (

    select
        person_id,
        count(*) as device_count
    from devices
    group by person_id

),

final as (

    select
        people.person_id,
        people.is_known,
        case when people.is_known then people.person_id end as user_id,
        event_activity.first_seen_at,
        coalesce(last_activity.last_active_at, event_activity.last_event_at) as last_seen_at,
        event_activity.signed_up_at,
        traits_pivoted.email,
        traits_pivoted.phone,
        traits_pivoted.first_name,
        traits_pivoted.last_name,
        coalesce(
            traits_pivoted.name_trait,
            nullif(
                trim(
                    coalesce(traits_pivoted.first_name, '')
                    || ' '
                    || coalesce(traits_pivoted.last_name, '')
                ),
                ''
            )
        ) as name,
        traits_pivoted.city,
        traits_pivoted.country,
        traits_pivoted.carrier,
        traits_pivoted.language,
        traits_pivoted.timezone,
        traits_pivoted.rfm_class,
        consents_pivoted.email_opt_in,
        consents_pivoted.sms_opt_in,
        consents_pivoted.push_opt_in,
        coalesce(traits_pivoted.custom_attributes, '{}') as custom_attributes,
        coalesce(device_counts.device_count, 0) as device_count,
        {#- The trait counts orders from before the landed events too; events catch up first. #}
        greatest(
            coalesce(order_totals.order_count, 0), coalesce(traits_pivoted.order_count_trait, 0)
        ) as order_count,
        coalesce(order_totals.revenue, 0) as revenue,
        order_totals.first_order_at,
        order_totals.last_order_at,
        coalesce(event_activity.event_count, 0) as event_count
    from people
    left join event_activity
        on people.person_id = event_activity.person_id
    left join last_activity
        on people.person_id = last_activity.person_id
    left join traits_pivoted
        on people.person_id = traits_pivoted.person_id
    left join consents_pivoted
        on people.person_id = consents_pivoted.person_id
    left join order_totals
        on people.person_id = order_totals.person_id
    left join device_counts
        on people.person_id = device_counts.person_id

)

select * from final
