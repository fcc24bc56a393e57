"""The code location loads, wires what the design asks for, and passes ``dg check defs``."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

import dagster_project.defs.dbt.jobs as jobs_module
import dagster_project.defs.dbt.project as project_module
from dagster_project.definitions import defs
from dagster_project.defs.dbt.assets import warehouse_dbt_assets
from dagster_project.defs.dbt.project import dbt_project, manifest_is_stale
from dagster_project.defs.segments.assets import segment_membership
from dagster_project.instance import prepare_dagster_home
from dagster_project.pools import WAREHOUSE_POOL

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def definitions() -> dg.Definitions:
    return defs()


def _dbt_models(tag: str | None = None) -> set[dg.AssetKey]:
    manifest = json.loads(dbt_project.manifest_path.read_text())
    return {
        dg.AssetKey(node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and (tag is None or tag in node["tags"])
    }


def test_every_job_sensor_and_resource_resolves(definitions: dg.Definitions) -> None:
    repository = definitions.get_repository_def()

    jobs = {job.name for job in repository.get_all_jobs()}
    assert {"build_warehouse_job", "refresh_micro_batch_job", "evaluate_segments_job"} <= jobs
    assert sorted(s.name for s in repository.sensor_defs) == [
        "dispatch_sensor",
        "landing_files_sensor",
        "segment_clock_sensor",
    ]
    assert {"safar", "dbt"} <= set(repository.get_top_level_resources())
    assert definitions.resolve_all_asset_keys()


def test_build_warehouse_job_selects_every_dbt_model(definitions: dg.Definitions) -> None:
    job = definitions.resolve_job_def("build_warehouse_job")

    assert _dbt_models() and job.asset_layer.selected_asset_keys == _dbt_models()


def test_micro_batch_job_selects_the_models_tagged_micro_batch_then_segments(
    definitions: dg.Definitions,
) -> None:
    job = definitions.resolve_job_def("refresh_micro_batch_job")

    tagged = _dbt_models("micro_batch")
    segments = dg.AssetKey("segment_membership")
    assert tagged and job.asset_layer.selected_asset_keys == tagged | {segments}
    upstream = job.asset_layer.asset_graph.get(segments).parent_keys
    assert upstream and upstream <= tagged


def test_micro_batch_checks_read_only_micro_batch_models(definitions: dg.Definitions) -> None:
    manifest = json.loads(dbt_project.manifest_path.read_text())
    tagged = {uid for uid, n in manifest["nodes"].items() if "micro_batch" in n["tags"]}
    tests = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "test"}
    job = definitions.resolve_job_def("refresh_micro_batch_job")

    checks = job.asset_layer.asset_graph.asset_check_keys
    assert checks, "the micro-batch should still test what it builds"
    for key in checks:
        models = [d for d in tests[key.name]["depends_on"]["nodes"] if d.startswith("model.")]
        assert set(models) <= tagged, f"{key.name} reads {models}"


def test_the_sensor_targets_the_micro_batch_job(definitions: dg.Definitions) -> None:
    sensor = definitions.resolve_sensor_def("landing_files_sensor")

    assert sensor.job_name == "refresh_micro_batch_job"
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_warehouse_writes_share_one_pool_limited_to_one_slot(tmp_path: Path) -> None:
    assert warehouse_dbt_assets.op.pool == WAREHOUSE_POOL
    assert segment_membership.op.pool == WAREHOUSE_POOL

    settings = yaml.safe_load(prepare_dagster_home(tmp_path / "dagster_home").read_text())
    with dg.instance_for_test(overrides=settings) as instance:
        pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1


def test_an_operators_own_instance_settings_are_kept(tmp_path: Path) -> None:
    own = tmp_path / "dagster.yaml"
    own.write_text("telemetry:\n  enabled: false\n")

    assert prepare_dagster_home(tmp_path) == own
    assert own.read_text() == "telemetry:\n  enabled: false\n"


def test_assets_are_grouped_by_dbt_layer(definitions: dg.Definitions) -> None:
    groups = set(warehouse_dbt_assets.group_names_by_key.values())

    assert groups <= {"staging", "intermediate", "marts"} and "staging" in groups


@pytest.mark.parametrize("module", [project_module, jobs_module], ids=lambda m: m.__name__)
def test_doctests_pass(module: object) -> None:
    assert doctest.testmod(module).failed == 0


def test_manifest_is_stale_after_a_model_changes(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    manifest = tmp_path / "target" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    model = tmp_path / "models" / "a.sql"
    model.write_text("select 1")
    os.utime(manifest, (1_000, 1_000))
    os.utime(model, (500, 500))
    os.utime(tmp_path / "models", (500, 500))

    assert not manifest_is_stale(manifest, tmp_path)
    os.utime(model, (2_000, 2_000))
    assert manifest_is_stale(manifest, tmp_path)


def test_generated_dbt_folders_do_not_make_the_manifest_stale(tmp_path: Path) -> None:
    manifest = tmp_path / "target" / "manifest.json"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    os.utime(manifest, (1_000, 1_000))
    os.utime(manifest.parent, (2_000, 2_000))

    assert not manifest_is_stale(manifest, tmp_path)


def test_dg_check_defs_passes_from_the_repo_root(tmp_path: Path) -> None:
    # A home with nothing in it, as in CI: definitions must load (and dbt parse) offline.
    env = {**os.environ, "SAFAR_HOME": str(tmp_path / "home")}
    dg_cli = Path(sys.executable).parent / "dg"

    result = subprocess.run(
        [str(dg_cli), "check", "defs"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr
    assert (tmp_path / "home" / "dbt" / "dagster" / "manifest" / "manifest.json").exists()
