"""Resources every concern shares: where the Safar home is.

The home comes from ``SAFAR_HOME`` through ``EnvVar``, so the environment is read in exactly one
place per process and assets and sensors receive it as configuration.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from safar.config import SafarHome, home_from_env


class SafarResource(dg.ConfigurableResource):
    """The Safar home (data directory) that sensors watch and dbt builds into."""

    home: str = Field(description="Path of the Safar home: landing zone, warehouse, app DB.")

    def safar_home(self) -> SafarHome:
        """The configured home, with ``~`` expanded and the path made absolute."""
        return home_from_env(self.home)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"safar": SafarResource(home=dg.EnvVar("SAFAR_HOME"))})
