{{
    config(
        materialized='incremental',
        unique_key='message_id',
        incremental_strategy='delete+insert',
        on_schema_change='append_new_columns',
    )
}}

{#-
    Incremental: each run re-reads the landing files received from the high-watermark (the
    latest received_at already loaded) minus `lookback_days`, so late files are picked up, and
    replaces the rows of the message_ids it saw (delete+insert). A message_id already loaded
    from before the window keeps its row: it was received first. The result equals a full
    refresh as long as no file lands more than `lookback_days` behind the watermark.
#}

{%- set events_source = source('safar', 'events') -%}
{%- set read_landing_zone = (
    safar.is_unit_test() or safar.landing_zone_has_files('safar', 'events')
) -%}

{#- Landing folders are named after the received date: prune them with a literal. #}
{%- set cutoff_date = none -%}
{%- if is_incremental() and execute and not safar.is_unit_test() -%}
{%- set cutoff_result = run_query(
    "select cast(" ~ dbt.dateadd('day', -var('lookback_days'), 'max(received_at)')
    ~ " as date) from " ~ this
) -%}
{%- set cutoff_date = cutoff_result.columns[0].values()[0] -%}
{%- endif %}

with

{% if is_incremental() -%}
watermark as (

    select {{ dbt.dateadd('day', -var('lookback_days'), 'max(received_at)') }} as cutoff_at
    from {{ this }}

),

loaded_before_window as (

    select loaded.message_id
    from {{ this }} as loaded
    cross join watermark
    where loaded.received_at < watermark.cutoff_at

),

{% endif -%}

source as (

    {% if read_landing_zone -%}
    select * from {{ events_source }}
    {%- if cutoff_date is not none %}
    where date >= cast('{{ cutoff_date }}' as date)
    {%- endif %}
    {%- else -%}
    {{ safar.empty_source_relation('safar', 'events') }}
    {%- endif %}

),

{% if is_incremental() -%}
windowed as (

    select source.*
    from source
    cross join watermark
    left join loaded_before_window
        on source.message_id = loaded_before_window.message_id
    where
        (watermark.cutoff_at is null or source.received_at >= watermark.cutoff_at)
        and loaded_before_window.message_id is null

),
{%- else -%}
windowed as (

    select * from source

),
{%- endif %}

deduplicated as (

    select *
    from windowed
    qualify row_number() over (
            partition by message_id
            order by received_at, filename, file_row_number
        ) = 1

),

renamed as (

    select
        message_id,
        type,
        nullif(event, '') as event,
        nullif(user_id, '') as user_id,
        nullif(anonymous_id, '') as anonymous_id,
        nullif(previous_id, '') as previous_id,
        nullif(group_id, '') as group_id,
        cast(timestamp as timestamp) as timestamp,
        cast(original_timestamp as timestamp) as original_timestamp,
        cast(sent_at as timestamp) as sent_at,
        cast(received_at as timestamp) as received_at,
        properties,
        traits,
        context,
        source_id,
        nullif(context_device_id, '') as context_device_id,
        context_device_type,
        context_device_model,
        nullif(context_device_token, '') as context_device_token,
        context_os_name,
        context_app_version,
        context_timezone,
        context_locale,
        context_ip,
        context_page_url

    from deduplicated

),

classified as (

    select
        *,
        coalesce(user_id, anonymous_id) as distinct_id,
        case
            when type in ('track', 'page', 'screen') then coalesce(event, type)
            else type
        end as event_name,
        cast(timestamp as date) as event_date,
        case
            when lower(context_device_type) in ('ios', 'android') then lower(context_device_type)
            when type = 'page' or context_page_url is not null then 'web'
            when lower(context_os_name) in ('ios', 'ipados') then 'ios'
            when lower(context_os_name) = 'android' then 'android'
            else 'server'
        end as platform

    from renamed

),

final as (

    select
        *,
        {#- Browsers have no device id: the anonymous id is the browser's cookie. #}
        coalesce(
            context_device_id, case when platform = 'web' then anonymous_id end
        ) as device_id

    from classified

)

select * from final
