-- Two or more completed orders, ever.
select person_id as user_id
from dim_users
where order_count >= 2
