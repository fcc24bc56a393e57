-- Known people who did nothing at all in the last 14 days.
select person_id as user_id
from dim_users
where is_known
  and last_seen_at < now() - interval 14 day
