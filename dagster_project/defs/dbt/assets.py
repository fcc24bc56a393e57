"""Every dbt model of the warehouse as a Dagster asset, built with ``dbt build``.

One ``@dbt_assets`` definition covers the whole project; jobs (``jobs.py``) pick subsets of it,
and dagster-dbt turns the picked subset into dbt's ``--select``. dbt tests become asset checks.
"""


from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from pydantic import Field

from dagster_project.defs.dbt.project import dbt_project, run_target_dir
from dagster_project.defs.resources import SafarResource
from dagster_project.pools import WAREHOUSE_POOL
from safar.build import dbt_environment, prepare_catalog
from safar.lake import quarantine_corrupt
from safar.writer_lock import warehouse_writer


class SafarDbtTranslator(DagsterDbtTranslator):
    """Groups assets by dbt layer (``staging``, ``intermediate``, ``marts``)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # fqn is [project, layer, ..., name] for models; sources and flat models have no layer.
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props.get("resource_type") == "model" and len(fqn) > 2:
            return fqn[1]
        return super().get_group_name(dbt_resource_props)


class DbtBuildConfig(dg.Config):
    """Run configuration for a dbt build."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild incremental models from every landing file instead of new ones.",
    )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=SafarDbtTranslator(),
    pool=WAREHOUSE_POOL,
)
def warehouse_dbt_assets(
    context: dg.AssetExecutionContext,
    config: DbtBuildConfig,
    dbt: DbtCliResource,
    safar: SafarResource,
) -> Iterator[Any]:
    """Build (and test) the selected dbt models against the configured Safar home."""
    home = safar.safar_home()
    args = ["build", *(["--full-refresh"] if config.full_refresh else [])]
    # The pool serializes runs; the lock also keeps out the ingest sensor's live lane and
    # `safar build` from a shell.
    with warehouse_writer(home, purpose=f"Dagster run {context.run_id}: dbt {' '.join(args)}"):
        # The same preparation as `safar build`: a corrupt landing file must not stop the
        # batch, and the catalog needs WAL mode before the first write so dashboards never
        # block on it.
        quarantined = quarantine_corrupt(home)
        if quarantined:
            context.log.warning(
                f"quarantined {len(quarantined)} unreadable landing file(s): "
                + ", ".join(str(p) for p in quarantined)
            )
        prepare_catalog(home)
        with dbt_environment(home):
            yield from dbt.cli(args, context=context, target_path=run_target_dir(home)).stream()
