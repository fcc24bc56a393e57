-- Known users on the Irancell network, for Irancell-specific offers.
select person_id as user_id
from dim_users
where carrier = 'Irancell'
