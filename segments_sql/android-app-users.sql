-- Has the Android app on at least one device: never uninstalled, or used again after the
-- last uninstall (dim_devices keeps the last uninstall time after a reinstall).
select distinct person_id as user_id
from dim_devices
where platform = 'android'
  and (uninstalled_at is null or last_seen_at > uninstalled_at)
