-- Has the Android app installed (and not uninstalled) on at least one device.
select distinct person_id as user_id
from dim_devices
where platform = 'android'
  and uninstalled_at is null
