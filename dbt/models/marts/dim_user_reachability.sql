{#-
    Known people only: a message needs somebody to address. The first reason that applies
    wins, in the order a person would fix them (no address, then consent).
#}

with

users as (

    select * from {{ ref('dim_users') }}
    where is_known

),

devices as (

    select * from {{ ref('dim_devices') }}

),

app_devices as (

    select
        person_id,
        count(*) as app_device_count,
        count(case when push_token_state != 'uninstalled' then 1 end) as installed_device_count,
        count(case when push_token_state = 'active' then 1 end) as push_token_count
    from devices
    where platform in ('ios', 'android')
    group by person_id

),

web_push_subscriptions as (

    select
        person_id,
        count(*) as subscription_count
    from devices
    where platform = 'web' and push_token_state = 'active'
    group by person_id

),

people as (

    select
        users.person_id,
        users.email is not null
        and {{ safar.regexp_full_match('users.email', '[^@ ]+@[^@ ]+[.][^@ ]+') }} as has_email,
        users.phone is not null
        and {{ safar.regexp_full_match('users.phone', '[+][1-9][0-9]{6,14}') }} as has_phone,
        coalesce(users.email_opt_in, true) as is_email_allowed,
        coalesce(users.sms_opt_in, true) as is_sms_allowed,
        coalesce(users.push_opt_in, true) as is_push_allowed,
        coalesce(app_devices.app_device_count, 0) as app_device_count,
        coalesce(app_devices.installed_device_count, 0) as installed_device_count,
        coalesce(app_devices.push_token_count, 0) as push_token_count,
        coalesce(web_push_subscriptions.subscription_count, 0) as web_push_subscription_count
    from users
    left join app_devices
        on users.person_id = app_devices.person_id
    left join web_push_subscriptions
        on users.person_id = web_push_subscriptions.person_id

),

reasons as (

    select
        person_id,
        'email' as channel,
        case
            when not has_email then 'no_email'
            when not is_email_allowed then 'email_opt_out'
            else 'reachable'
        end as reason
    from people

    union all

    select
        person_id,
        'sms' as channel,
        case
            when not has_phone then 'no_phone'
            when not is_sms_allowed then 'sms_opt_out'
            else 'reachable'
        end as reason
    from people

    union all

    select
        person_id,
        'push' as channel,
        case
            when app_device_count = 0 then 'no_app_device'
            when installed_device_count = 0 then 'app_uninstalled'
            when push_token_count = 0 then 'no_push_token'
            when not is_push_allowed then 'push_opt_out'
            else 'reachable'
        end as reason
    from people

    union all

    select
        person_id,
        'web_push' as channel,
        case
            when web_push_subscription_count = 0 then 'no_web_push_subscription'
            when not is_push_allowed then 'push_opt_out'
            else 'reachable'
        end as reason
    from people

),

final as (

    select
        person_id,
        channel,
        reason = 'reachable' as is_reachable,
        reason
    from reasons

)

select * from final
