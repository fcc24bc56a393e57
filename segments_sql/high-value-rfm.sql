-- Champions and loyal customers by RFM, plus the top 5% by revenue.
with ranked as (
    select
        person_id,
        rfm_class,
        percent_rank() over (order by revenue) as revenue_rank
    from dim_users
    where revenue > 0
)

select person_id as user_id
from ranked
where rfm_class in ('champions', 'loyal')
   or revenue_rank >= 0.95
