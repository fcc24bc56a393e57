-- Added a product to the cart in the last 24 hours and has not ordered since.
with added as (
    select person_id, max(occurred_at) as last_added_at
    from fct_events
    where event_name = 'Product Added'
      and occurred_at >= now() - interval 24 hour
      and occurred_at <= now()
    group by person_id
)

select added.person_id as user_id
from added
where not exists (
    select 1
    from fct_events as orders
    where orders.person_id = added.person_id
      and orders.event_name = 'Order Completed'
      and orders.occurred_at >= added.last_added_at
      and orders.occurred_at <= now()
)
